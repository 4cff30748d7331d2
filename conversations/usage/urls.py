from django.urls import path

from conversations.usage import views

urlpatterns = [path("account/usage/", views.usage_page, name="usage")]
