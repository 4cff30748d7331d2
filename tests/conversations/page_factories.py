"""Rows for the page tests: users, provider configs, conversations with branches.

Rows are written directly with the ORM (bulk_create for long chats) so that the page tests
measure the pages, not the engine.
"""

from datetime import timedelta

from django.utils import timezone

from conversations.models import Conversation, Message
from providers.models import ProviderConfig


def provider_config(*, name="fake", api_base="http://127.0.0.1:9/v1", **fields) -> ProviderConfig:
    fields.setdefault("default_model", "fake-model")
    fields.setdefault("allowed_models", ["fake-model", "fake-model-2"])
    return ProviderConfig.objects.create(
        name=name, provider_class="OpenAICompatible", api_base=api_base, **fields
    )


def conversation(owner, title="", **fields) -> Conversation:
    return Conversation.objects.create(owner=owner, title=title, **fields)


def chain(
    conversation: Conversation, contents: list[str], *, parent=None, **fields
) -> list[Message]:
    """Messages one below the other (user, assistant, user, ...) in one INSERT, with increasing
    timestamps; the conversation's current leaf becomes the last one."""
    start = timezone.now() - timedelta(seconds=len(contents) + 10)
    rows = []
    # Linked by id, not by instance: thousands of instances each holding its parent make a
    # chain too deep for Python to free without hitting the recursion limit.
    previous_id = parent.pk if parent is not None else None
    for index, content in enumerate(contents):
        role = Message.Role.USER if index % 2 == 0 else Message.Role.ASSISTANT
        row = Message(
            conversation=conversation, parent_id=previous_id, role=role, content=content, **fields
        )
        rows.append(row)
        previous_id = row.pk
    Message.objects.bulk_create(rows, batch_size=500)
    for index, row in enumerate(rows):
        row.created_at = start + timedelta(milliseconds=index)
    Message.objects.bulk_update(rows, ["created_at"], batch_size=500)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=rows[-1])
    conversation.current_leaf = rows[-1]
    return rows


def message(conversation: Conversation, content: str, *, role="user", parent=None, **fields):
    return Message.objects.create(
        conversation=conversation, role=role, content=content, parent=parent, **fields
    )
