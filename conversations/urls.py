from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.chat_new, name="chat"),
    path("send/", views.conversation_send, name="chat_send"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("render/", views.render_preview, name="render_preview"),
    path("history/", views.history, name="history"),
    path("export.json", views.export_all, name="export_all"),
    path("import/", views.conversation_import, name="import"),
    path("account/api-keys/", views.api_keys, name="api_keys"),
    path("account/api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
    path("account/", views.account, name="account"),
    path("account/theme/", views.account_theme, name="account_theme"),
    path("folders/new/", views.folder_create, name="folder_create"),
    path("folders/<uuid:folder_id>/rename/", views.folder_rename, name="folder_rename"),
    path("folders/<uuid:folder_id>/delete/", views.folder_delete, name="folder_delete"),
    path("s/<str:token>/", views.shared, name="shared"),
    path("shares/<int:share_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/pin/", views.conversation_pin, name="conversation_pin"),
    path("c/<uuid:conversation_id>/move/", views.conversation_move, name="conversation_move"),
    path("c/<uuid:conversation_id>/share/", views.conversation_share, name="conversation_share"),
    path("c/<uuid:conversation_id>/send/", views.conversation_send, name="conversation_send"),
    path(
        "c/<uuid:conversation_id>/settings/",
        views.conversation_settings,
        name="conversation_settings",
    ),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path(
        "c/<uuid:conversation_id>/archive/", views.conversation_archive, name="conversation_archive"
    ),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<uuid:conversation_id>/switch/", views.conversation_switch, name="conversation_switch"),
    path(
        "c/<uuid:conversation_id>/export.json",
        views.conversation_export,
        {"fmt": "json"},
        name="conversation_export_json",
    ),
    path(
        "c/<uuid:conversation_id>/export.md",
        views.conversation_export,
        {"fmt": "markdown"},
        name="conversation_export_markdown",
    ),
]
