"""Admin for reviewing conversation history.

Read-only on purpose: a conversation is a record of what a user asked and what a model answered,
so no admin page adds one or rewrites a title or a message. A superuser may delete a whole
conversation (a user's request to forget it); single messages cannot be deleted, since that would
cut a branch out of the message tree.
"""

from django.contrib import admin
from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Left
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from conversations.models import Conversation, Message
from conversations.search import conversations_matching, has_search_index, messages_matching
from providers.models import FallbackChain, ProviderConfig

# The conversation page shows at most this many messages (the newest), so a conversation with
# thousands of messages still renders quickly.
INLINE_MESSAGE_LIMIT = 200
# Longer messages are cut on the conversation page; the message's own page has the full text.
INLINE_CONTENT_CHARS = 2000
LIST_PREVIEW_CHARS = 80


class BlankLabelledValuesFilter(admin.AllValuesFieldListFilter):
    """Django's "all values" filter, with a visible label for the empty string (the provider's
    default model, a user message's provider) instead of an empty link."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            if choice["display"] == "":
                choice = {**choice, "display": "(blank)"}
            yield choice


class LastActivityFilter(admin.DateFieldListFilter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = "last activity"


class ProviderTargetFilter(admin.SimpleListFilter):
    """The configured target: a provider config or a fallback chain (names may coincide across
    the two, hence the prefix in the parameter)."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        configs = ProviderConfig.objects.order_by("name").values_list("name", flat=True)
        chains = FallbackChain.objects.order_by("name").values_list("name", flat=True)
        return [
            *((f"config:{name}", name) for name in configs),
            *((f"chain:{name}", f"{name} (fallback chain)") for name in chains),
            ("none", "(none)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "none":
            return queryset.filter(provider_config__isnull=True, fallback_chain__isnull=True)
        kind, _, name = value.partition(":")
        if kind == "config":
            return queryset.filter(provider_config__name=name)
        if kind == "chain":
            return queryset.filter(fallback_chain__name=name)
        return queryset.none()


class MessageStatusFilter(admin.SimpleListFilter):
    """Conversations holding at least one message with the status, e.g. an answer that is still
    streaming or that ended in an error."""

    title = "has messages with status"
    parameter_name = "message_status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def queryset(self, request, queryset):
        if self.value() not in Message.Status.values:
            return queryset
        # EXISTS rather than a join, so the message count annotation is not multiplied.
        return queryset.filter(
            Exists(Message.objects.filter(conversation=OuterRef("pk"), status=self.value()))
        )


class NewestMessagesFormSet(BaseInlineFormSet):
    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            messages = super().get_queryset()
            newest = messages.order_by("-created_at", "-pk").values("pk")[:INLINE_MESSAGE_LIMIT]
            self._queryset = messages.filter(pk__in=newest).order_by("created_at", "pk")
        return self._queryset


class MessageInline(admin.TabularInline):
    model = Message
    formset = NewestMessagesFormSet
    fk_name = "conversation"
    fields = [
        "created_at",
        "role",
        "status",
        "provider",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "error_code",
        "error_detail",
        "content_display",
    ]
    readonly_fields = fields
    ordering = ["created_at"]
    show_change_link = True
    extra = 0
    can_delete = False

    def get_formset(self, request, obj=None, **kwargs):
        # Inline instances are made per request, so the heading can carry this page's numbers.
        total = getattr(obj, "message_count", None)
        if total is not None and total > INLINE_MESSAGE_LIMIT:
            self.verbose_name_plural = (
                f"messages (the newest {INLINE_MESSAGE_LIMIT} of {total:,}, oldest first)"
            )
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="Content")
    def content_display(self, message: Message) -> str:
        if len(message.content) <= INLINE_CONTENT_CHARS:
            return message.content
        rest = len(message.content) - INLINE_CONTENT_CHARS
        return (
            f"{message.content[:INLINE_CONTENT_CHARS]}…\n"
            f"({rest:,} more characters on the message's page)"
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "title_display",
        "owner",
        "provider_display",
        "model",
        "message_count",
        "last_activity",
    ]
    list_select_related = ["owner", "provider_config", "fallback_chain"]
    list_filter = [
        ProviderTargetFilter,
        ("model", BlankLabelledValuesFilter),
        MessageStatusFilter,
        ("updated_at", LastActivityFilter),
        "archived",
    ]
    # Only read when there is no full-text index (see get_search_results).
    search_fields = ["title", "messages__content"]
    search_help_text = "Words in titles and in message text."
    fieldsets = [
        (None, {"fields": ["title", "owner", "archived", "message_count"]}),
        ("Provider", {"fields": ["provider_config", "fallback_chain", "model", "options"]}),
        ("System prompt", {"fields": ["system_prompt"]}),
        ("Dates", {"fields": ["created_at", "updated_at", "current_leaf"]}),
    ]
    readonly_fields = ["message_count"]
    inlines = [MessageInline]

    def get_queryset(self, request) -> QuerySet[Conversation]:
        # A correlated subquery, not Count("messages"): a join would be multiplied by any other
        # join a filter or search adds, and each row's count is one index range scan.
        counts = (
            Message.objects.filter(conversation=OuterRef("pk"))
            .order_by()
            .values("conversation")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))
            )
        )

    def get_search_results(self, request, queryset, search_term):
        # The full-text index rather than `title__icontains` / `messages__content__icontains`:
        # those are `LIKE '%word%'` scans of every message plus a DISTINCT over the join.
        if not has_search_index():
            return super().get_search_results(request, queryset, search_term)
        return conversations_matching(conversations=queryset, query=search_term), False

    @admin.display(description="Title", ordering="title")
    def title_display(self, conversation: Conversation) -> str:
        return conversation.title or "(untitled)"

    @admin.display(description="Provider")
    def provider_display(self, conversation: Conversation) -> str:
        if conversation.provider_config_id:
            return conversation.provider_config.name
        if conversation.fallback_chain_id:
            return f"{conversation.fallback_chain.name} (fallback chain)"
        return "—"

    @admin.display(description="Messages", ordering="message_count")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.message_count

    @admin.display(description="Last activity", ordering="updated_at")
    def last_activity(self, conversation: Conversation):
        return conversation.updated_at

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The messages go with their conversation; MessageAdmin refusing to delete a single
        # message must not block that.
        perms_needed.discard(Message._meta.verbose_name)
        return deleted, counts, perms_needed, protected


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "preview",
        "conversation_link",
        "role",
        "status",
        "provider",
        "model",
        "created_at",
    ]
    list_select_related = ["conversation"]
    ordering = ["-created_at"]
    list_filter = [
        "status",
        "role",
        ("provider", BlankLabelledValuesFilter),
        ("model", BlankLabelledValuesFilter),
        "created_at",
    ]
    # Only read when there is no full-text index (see ConversationAdmin.get_search_results).
    search_fields = ["content"]
    search_help_text = "Words in the message text."
    fieldsets = [
        (None, {"fields": ["conversation", "parent", "role", "status", "content"]}),
        (
            "Answered by",
            {"fields": ["provider", "model", "prompt_tokens", "completion_tokens"]},
        ),
        ("Error", {"fields": ["error_code", "error_detail"]}),
        ("Dates", {"fields": ["created_at", "checkpointed_at", "completed_at"]}),
    ]

    def get_queryset(self, request) -> QuerySet[Message]:
        # A list page of 100 rows must not load 100 full answers to show their first words.
        return (
            super()
            .get_queryset(request)
            .annotate(content_start=Left("content", LIST_PREVIEW_CHARS + 1))
            .defer("content")
        )

    def get_search_results(self, request, queryset, search_term):
        if not has_search_index():
            return super().get_search_results(request, queryset, search_term)
        return messages_matching(messages=queryset, query=search_term), False

    @admin.display(description="Message")
    def preview(self, message: Message) -> str:
        text = " ".join(message.content_start.split())
        if len(message.content_start) > LIST_PREVIEW_CHARS:
            text = text[:LIST_PREVIEW_CHARS] + "…"
        return text or "(empty)"

    @admin.display(description="Conversation", ordering="conversation__updated_at")
    def conversation_link(self, message: Message) -> str:
        url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">{}</a>', url, message.conversation)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# The API's keys and calls (registered on import).
from conversations.api import admin as api_admin  # noqa: E402, F401
