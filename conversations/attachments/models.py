import uuid

from django.conf import settings
from django.db import models


def attachment_path(instance: "Attachment", filename: str) -> str:
    # The stored name carries no part of the user's file name: an id is safe in every storage
    # (no path tricks, no case or length rules of a file system or a bucket).
    return f"attachments/{instance.owner_id}/{instance.id}"


class Attachment(models.Model):
    """A file a user attached to a message: uploaded first (unattached, `message` empty), then
    claimed by the message that sends it, and deleted with that message's conversation."""

    class Kind(models.TextChoices):
        TEXT = "text"
        PDF = "pdf"
        IMAGE = "image"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        "conversations.Message",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
    )
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # The type found from the file's bytes (images) or its kind, never the one the browser sent.
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    file = models.FileField(upload_to=attachment_path, max_length=200)
    # What the provider reads of a text file or a PDF (its extracted text); empty for images.
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["owner", "message", "created_at"], name="attachment_owner_unsent"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def token_estimate(self) -> int:
        from conversations.attachments.content import token_estimate

        return token_estimate(self.text)
