import uuid

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    provider_config = models.ForeignKey(
        "providers.ProviderConfig",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    fallback_chain = models.ForeignKey(
        "providers.FallbackChain",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    model = models.CharField(max_length=200, blank=True, default="")
    system_prompt = models.TextField(blank=True, default="")
    # temperature, max_tokens, ...: passed to the provider as keyword arguments.
    options = models.JSONField(default=dict, blank=True)
    # The leaf of the branch the user looks at; following `parent` from it gives the branch.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set while an import writes the conversation, or a delete removes it, in many short
    # transactions: its owner never sees half of it. A row still hidden long after this time was
    # left by a process that died, and is swept away. Nullable without a default, like
    # Message.content_html, so that SQLite adds the column in place (see there).
    hidden_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "archived", "-updated_at"], name="conv_owner_recent"),
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)

    @property
    def target_name(self) -> str:
        """The name of what answers here (a provider config or a fallback chain); "" for the
        default. Reads the related row: select it with the conversation where that matters."""
        if self.provider_config_id and self.provider_config:
            return self.provider_config.name
        if self.fallback_chain_id and self.fallback_chain:
            return self.fallback_chain.name
        return ""


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_detail = models.CharField(max_length=500, blank=True, default="")
    # The sanitised HTML of a finished answer, saved once when it ends (see
    # conversations.rendering.message_html), and the rendering version that made it. Nullable
    # without defaults on purpose: SQLite adds such columns in place, while any other new column
    # makes Django rebuild the table, which drops the full-text triggers of migration 0002.
    content_html = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001
    content_html_version = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last time a streaming answer's partial text was saved: a `streaming` row whose checkpoint is
    # too old belongs to a dead process and is marked `interrupted`.
    checkpointed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="msg_conv_created"),
            models.Index(fields=["status", "checkpointed_at"], name="msg_status_checkpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def meta_title(self) -> str:
        return meta_title(
            provider=self.provider,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )

    @property
    def error_for_user(self) -> str:
        """The error as its user is told it (the stored detail is for admins)."""
        from conversations.errors import error_detail_for_user

        return error_detail_for_user(code=self.error_code, detail=self.error_detail)


def meta_title(
    *, provider: str, model: str, prompt_tokens: int | None, completion_tokens: int | None
) -> str:
    """An answer's tooltip: who wrote it (whole, where the page may cut the name short) and its
    token counts. The one rule for the page (`_message.html`) and the script (`message.done`'s
    `meta`)."""
    name = model or provider
    tokens = (
        f"{prompt_tokens} prompt + {completion_tokens or 0} answer tokens"
        if prompt_tokens is not None
        else ""
    )
    return " · ".join(part for part in (name, tokens) if part)
