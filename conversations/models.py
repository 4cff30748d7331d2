import uuid

from django.conf import settings
from django.db import models


class Folder(models.Model):
    """A user's named group of conversations in the sidebar. Deleting one leaves its
    conversations where they were, outside any folder."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="folders"
    )
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="folder_owner_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


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
    # Pinned conversations lead the sidebar, most recently pinned first. Both columns nullable
    # without defaults, like hidden_since below, so that SQLite adds them in place.
    pinned_at = models.DateTimeField(null=True, blank=True)
    folder = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
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
            # A user's running answers are counted at every start (the answer limit) through
            # their conversations. Without it PostgreSQL found them through the status index,
            # whose 'streaming' entries grow with every checkpoint of every answer (each one a
            # new row version) until a vacuum: 94,000 entries and 20 ms per start after a
            # few bench runs.
            models.Index(
                fields=["conversation"],
                condition=models.Q(status="streaming"),
                name="msg_streaming_conv",
            ),
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


class ApiKey(models.Model):
    """A key for the OpenAI-compatible API (conversations.api). Only a hash of the key is stored:
    the key itself is shown once, when it is created."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    # The key's first characters, shown in lists so a user can tell keys apart; too short to
    # help anyone guess the rest (the key carries 256 random bits after it).
    prefix = models.CharField(max_length=16, editable=False)
    # SHA-256 of the whole key, hex: a key is random and long, so a fast hash is as strong as
    # a slow one here, and it is checked on every request.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The API's calls made with this key are also saved as conversations in the user's history.
    store_conversations = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Refreshed at most once a minute (conversations.api.services.api_key_touch).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ApiCall(models.Model):
    """One call of `POST /v1/chat/completions`: who, with which key, to whom, and how it went.
    A `running` row holds one of its user's answer slots (CHAT_MAX_CONCURRENT_GENERATIONS), as a
    streaming message does."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETE = "complete"
        ERROR = "error"
        # The client went away before the answer was complete; the upstream request was ended.
        DISCONNECTED = "disconnected"
        # The server stopped while the call ran.
        INTERRUPTED = "interrupted"
        # Refused before any upstream was asked: a bad request, an unknown model, the user's
        # answer limit.
        REFUSED = "refused"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_calls"
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    # Kept as it was at the time of the call: a key may be renamed or deleted later.
    key_name = models.CharField(max_length=100, blank=True, default="")
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    stream = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_detail = models.CharField(max_length=500, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    # Refreshed while the call runs (as a streaming message's checkpoint is): a `running` row not
    # refreshed for CHAT_STALE_STREAM_SECONDS belongs to a process that died and no longer holds
    # its user's slot.
    alive_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "API call"
        indexes = [
            models.Index(fields=["user", "status", "alive_at"], name="apicall_user_status"),
        ]

    def __str__(self) -> str:
        return f"{self.key_name}: {self.provider}/{self.model} ({self.status})"


class SharedConversation(models.Model):
    """A read-only copy of one branch of a conversation, reachable by an unguessable token.

    The messages and their HTML are copied when the link is made, so later edits, retries or a
    switch to another branch do not change what the link shows; deleting the conversation or
    revoking the link (deleting this row) ends it."""

    token = models.CharField(max_length=64, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200, blank=True, default="")
    # [{"role": ..., "content": ..., "html": ... or None}], root first.
    messages = models.JSONField(default=list, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_recent")]

    def __str__(self) -> str:
        return self.title or str(self.conversation_id)


class UserSettings(models.Model):
    """One user's choices that follow them from device to device."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "System"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="chat_settings",
    )
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)

    def __str__(self) -> str:
        return f"settings of {self.user_id}"


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
