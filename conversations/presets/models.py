from django.conf import settings
from django.db import models


class PromptPreset(models.Model):
    """A saved prompt: its text for the composer, and the settings it starts a chat with."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompt_presets"
    )
    title = models.CharField(max_length=100)
    text = models.TextField()
    system_prompt = models.TextField(blank=True, default="")
    # The model picker's value, `<provider or chain name>:<model>`; blank keeps the chat's model.
    # Kept as text: a provider removed later leaves the preset usable, only without its model.
    target = models.CharField(max_length=300, blank=True, default="")
    temperature = models.FloatField(null=True, blank=True)
    # Offered to every user of the site, read-only to all but its owner; only staff set it.
    published = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]
        indexes = [
            models.Index(fields=["owner", "title"], name="preset_owner_title"),
            models.Index(
                fields=["title"], condition=models.Q(published=True), name="preset_published"
            ),
        ]

    def __str__(self) -> str:
        return self.title
