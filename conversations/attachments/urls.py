from django.urls import path

from conversations.attachments import views

urlpatterns = [
    path("attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/<uuid:attachment_id>/", views.attachment_download, name="attachment"),
    path(
        "attachments/<uuid:attachment_id>/remove/",
        views.attachment_remove,
        name="attachment_remove",
    ),
]
