from django.urls import path, re_path

from conversations.api import views

urlpatterns = [
    path("models", views.model_list, name="api_models"),
    path("models/<path:model_id>", views.model_detail, name="api_model"),
    path("chat/completions", views.chat_completions, name="api_chat_completions"),
    re_path(r"^(?P<path>.*)$", views.unknown_route),
]
