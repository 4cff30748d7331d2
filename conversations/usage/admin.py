from django.contrib import admin

from conversations.usage.models import ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices per model: answers of a priced model show what they cost to their users."""

    list_display = ["model", "input_per_million", "output_per_million", "updated_at"]
    search_fields = ["model"]
