from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chatsite import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("v1/", include("conversations.api.urls")),
    path("", include("conversations.attachments.urls")),
    path("", include("conversations.urls")),
    path("", include("conversations.presets.urls")),
    path("", include("conversations.usage.urls")),
]

handler500 = "chatsite.views.server_error"
