from django.urls import path

from conversations.api import views

urlpatterns = [
    path("models", views.model_list, name="api_models"),
    path("chat/completions", views.chat_completions, name="api_chat_completions"),
]
