"""Writes for the API (sync; async code calls them through chatsite.db): keys, and the record of
each call, optionally saved as a conversation in its user's history."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from conversations import titles
from conversations.api.keys import api_key_generate, api_key_hash, api_key_visible_prefix
from conversations.api.selectors import api_call_stale_cutoff
from conversations.models import ApiCall, ApiKey, Conversation, Message
from conversations.services import answer_slot_check
from providers.models import FallbackChain, ProviderConfig
from providers.types import Messages

# `last_used_at` is written at most this often per key: a busy key must not cost a write per
# request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEY_NAME = 100


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: `key` is the only copy of the secret, to be shown once."""

    row: ApiKey
    key: str


def api_key_create(
    *, user: AbstractBaseUser, name: str, store_conversations: bool = False
) -> NewApiKey:
    name = " ".join(name.split())[:MAX_KEY_NAME]
    if not name:
        raise ValueError("A key needs a name.")
    key = api_key_generate()
    row = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=api_key_visible_prefix(key),
        key_hash=api_key_hash(key),
        store_conversations=store_conversations,
    )
    return NewApiKey(row=row, key=key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key (for good); revoking a revoked key changes nothing."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=api_key.revoked_at
        )
    return api_key


def api_key_touch_due(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record a use of the key, at most once per LAST_USED_RESOLUTION (the condition is in the
    statement, so processes that race write once)."""
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=api_key.pk
    ).update(last_used_at=now)
    api_key.last_used_at = now


def api_call_start(
    *, api_key: ApiKey, target: ProviderConfig | FallbackChain, model: str | None, stream: bool
) -> ApiCall:
    """The `running` record of a call, once its user has a free answer slot (ChatError
    `rate_limited` otherwise): the check and the insert are one transaction, as for a chat."""
    with transaction.atomic():
        answer_slot_check(user=api_key.user)
        return ApiCall.objects.create(
            user=api_key.user,
            api_key=api_key,
            key_name=api_key.name,
            provider=target.name,
            model=model or "",
            stream=stream,
            alive_at=timezone.now(),
        )


def api_call_keepalive(*, call_id: int) -> None:
    """Show that the call's process is alive (see ApiCall.alive_at)."""
    ApiCall.objects.filter(pk=call_id, status=ApiCall.Status.RUNNING).update(
        alive_at=timezone.now()
    )


def api_call_record_refusal(
    *, api_key: ApiKey, model: str, stream: bool, http_status: int, error_code: str, detail: str
) -> ApiCall:
    """The record of a call refused before any upstream was asked (it never held a slot)."""
    return ApiCall.objects.create(
        user=api_key.user,
        api_key=api_key,
        key_name=api_key.name,
        model=model[:200],
        stream=stream,
        status=ApiCall.Status.REFUSED,
        http_status=http_status,
        error_code=error_code[:64],
        error_detail=detail[:500],
        duration_ms=0,
    )


@dataclass(frozen=True)
class CallOutcome:
    status: str
    http_status: int
    provider: str
    model: str
    content: str = ""
    error_code: str = ""
    error_detail: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def api_call_finish(
    *,
    call: ApiCall,
    outcome: CallOutcome,
    duration_ms: int,
    history: Messages | None = None,
    target: ProviderConfig | FallbackChain | None = None,
) -> ApiCall:
    """The call's final record, and with `history` (a key that stores its calls) the exchange
    as a new conversation of the call's user, in the same transaction."""
    with transaction.atomic():
        if history is not None and target is not None and outcome.status != ApiCall.Status.ERROR:
            call.conversation = _conversation_from_call(call, outcome, history, target)
        call.status = outcome.status
        call.http_status = outcome.http_status
        call.provider = outcome.provider[:64] or call.provider
        call.model = outcome.model[:200] or call.model
        call.error_code = outcome.error_code[:64]
        call.error_detail = outcome.error_detail[:500]
        call.prompt_tokens = outcome.prompt_tokens
        call.completion_tokens = outcome.completion_tokens
        call.duration_ms = max(0, duration_ms)
        call.save()
    return call


def _conversation_from_call(
    call: ApiCall,
    outcome: CallOutcome,
    history: Messages,
    target: ProviderConfig | FallbackChain,
) -> Conversation:
    system = "\n\n".join(item["content"] for item in history if item["role"] == "system")
    turns = [item for item in history if item["role"] != "system"]
    first_user = next((item["content"] for item in turns if item["role"] == "user"), "")
    conversation = Conversation.objects.create(
        owner=call.user,
        title=titles.title_from_text(first_user) if first_user else call.key_name,
        provider_config=target if isinstance(target, ProviderConfig) else None,
        fallback_chain=target if isinstance(target, FallbackChain) else None,
        model=outcome.model[:200],
        system_prompt=system,
    )
    now = timezone.now()
    parent = None
    for item in turns:
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=item["role"], content=item["content"]
        )
    status = (
        Message.Status.COMPLETE
        if outcome.status == ApiCall.Status.COMPLETE
        else Message.Status.STOPPED
    )
    answer = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        content=outcome.content,
        status=status,
        provider=outcome.provider[:64],
        model=outcome.model[:200],
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        checkpointed_at=now,
        completed_at=now,
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=answer)
    conversation.current_leaf = answer
    return conversation


def api_call_interrupt_dead(*, alive_before: datetime | None) -> int:
    """Mark `running` calls whose process is gone as `interrupted` (all of them, or those not
    refreshed since `alive_before`). Returns how many."""
    rows = ApiCall.objects.filter(status=ApiCall.Status.RUNNING)
    if alive_before is not None:
        rows = rows.filter(alive_at__lt=alive_before)
    return rows.update(status=ApiCall.Status.INTERRUPTED, error_code="interrupted")


def api_call_interrupt_stale() -> int:
    return api_call_interrupt_dead(alive_before=api_call_stale_cutoff())
