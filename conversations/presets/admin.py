from django.contrib import admin

from conversations.presets.models import PromptPreset


@admin.register(PromptPreset)
class PromptPresetAdmin(admin.ModelAdmin):
    """Staff publish a preset here, or on the presets page (as its owner)."""

    list_display = ["title", "owner", "published", "target", "updated_at"]
    list_filter = ["published"]
    search_fields = ["title", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
