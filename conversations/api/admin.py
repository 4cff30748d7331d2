"""Admin for API keys (create for any user, revoke) and the record of API calls (read-only)."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from conversations.api.keys import api_key_generate, api_key_hash, api_key_visible_prefix
from conversations.api.services import api_key_revoke
from conversations.models import ApiCall, ApiKey


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["user", "name", "store_conversations"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "user",
        "prefix_shown",
        "created_at",
        "last_used_at",
        "revoked_at",
        "store_conversations",
    ]
    list_filter = ["store_conversations", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    actions = ["revoke"]
    readonly_fields = ["prefix_shown", "created_at", "last_used_at", "revoked_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "store_conversations"]
        return ["user", "name", "store_conversations", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # A key belongs to its user for good; hand another user a key of their own.
        return ["user", *self.readonly_fields]

    @admin.display(description="key")
    def prefix_shown(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…" if obj.prefix else ""

    def save_model(self, request, obj, form, change):
        if not change:
            key = api_key_generate()
            obj.prefix = api_key_visible_prefix(key)
            obj.key_hash = api_key_hash(key)
            # Kept on the instance for the page that answers this post, and nowhere else.
            obj._new_key = key
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(obj, "_new_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        # The key is shown on this page only: a redirect would have to carry it in the session
        # or a cookie.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "key": key,
            "api_key": obj,
        }
        response = TemplateResponse(request, "admin/conversations/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key)
            count += 1
        messages.success(request, f"Revoked {count} key{'s' if count != 1 else ''}.")


@admin.register(ApiCall)
class ApiCallAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "user",
        "key_name",
        "provider",
        "model",
        "status",
        "http_status",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "duration_ms",
    ]
    list_filter = ["status", "stream", "provider", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["user__username", "key_name", "model"]
    list_select_related = ["user"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A record of what happened: viewed, never edited.
        return False
