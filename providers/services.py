"""Provider writes and the one entry point the rest of the app streams answers through."""

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from chatsite.db import db_call
from providers.auth_state import DatabaseAuthStore
from providers.base import (
    AbstractProvider,
    AsyncAuthedProvider,
    AsyncGeneratorProvider,
    BaseProvider,
)
from providers.bridge import run_sync
from providers.crypto import DecryptionError, decrypt_text, encrypt_text
from providers.errors import (
    BadRequestError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderError,
    ProviderNotFoundError,
    ResponseError,
)
from providers.models import FallbackChain, ProviderConfig
from providers.registry import get_provider
from providers.scrubbing import error_text_clean, exception_mentions_secret
from providers.selectors import (
    fallback_chain_members,
    provider_config_default_model,
    provider_config_models,
)
from providers.types import SAMPLING_OPTIONS, Chunk, Messages, ProviderInfo

logger = logging.getLogger(__name__)

# What a caller of stream_chat may set per request; everything else comes from the config.
CALLER_OPTIONS = frozenset(SAMPLING_OPTIONS)
# Below this length the last four characters would give away too much of the token.
MIN_TOKEN_LENGTH_FOR_HINT = 12


def provider_config_set_token(*, config: ProviderConfig, token: str | None) -> None:
    """Store `token` encrypted (None or "" clears it). Saves only the token fields."""
    apply_token(config=config, token=token)
    if config.pk is None:
        config.save()
    else:
        config.save(update_fields=["token_ciphertext", "token_last4", "updated_at"])


def provider_token_validate(*, token: str) -> None:
    """A token travels in an HTTP header: one line of printable ASCII.

    A line break or a non-ASCII character would make the HTTP library fail with an error that
    quotes the whole header, token included; refusing it here keeps it out of every error.
    """
    if any(not " " <= character <= "~" for character in token):
        raise ValidationError(
            "The token may only hold printable ASCII characters on one line.", code="token_chars"
        )


def apply_token(*, config: ProviderConfig, token: str | None) -> None:
    """Set the token fields on an unsaved instance (for forms that save the row themselves).

    Raises ValidationError (never quoting the token) for a token that cannot go into a header.
    """
    token = (token or "").strip()
    if token:
        provider_token_validate(token=token)
        config.token_ciphertext = encrypt_text(token)
        config.token_last4 = token[-4:] if len(token) >= MIN_TOKEN_LENGTH_FOR_HINT else ""
    else:
        config.token_ciphertext = ""
        config.token_last4 = ""


def provider_config_token(*, config: ProviderConfig) -> str | None:
    if not config.token_ciphertext:
        return None
    try:
        return decrypt_text(config.token_ciphertext)
    except DecryptionError as exc:
        raise MissingAuthError(
            f"The token stored for {config.name} cannot be decrypted; set it again."
        ) from exc


def provider_call_kwargs(
    *, config: ProviderConfig, options: dict[str, Any], token: str | None
) -> dict[str, Any]:
    """The keyword arguments a config contributes to a provider call, then the caller's options.

    Callers may only add sampling options: where the request goes and with which credentials
    (api_base, proxy, api_key, timeout, ...) is the admin's configuration, and a caller that
    could change it could send the stored token to a server of its choosing.
    """
    refused = sorted(set(options) - CALLER_OPTIONS)
    if refused:
        raise BadRequestError(f"Option {refused[0][:40]!r} cannot be set per request.")
    kwargs: dict[str, Any] = {**(config.options or {})}
    kwargs["timeout"] = config.timeout
    if config.api_base:
        kwargs["api_base"] = config.api_base
    if config.proxy:
        kwargs["proxy"] = config.proxy
    if token:
        kwargs["api_key"] = token
    kwargs.update({key: value for key, value in options.items() if value is not None})
    return kwargs


def _resolve_model(config: ProviderConfig, model: str | None) -> str:
    if not model:
        return provider_config_default_model(config=config)
    allowed = [str(name) for name in config.allowed_models or []]
    default = config.default_model
    if (allowed and model not in allowed) or (not allowed and default and model != default):
        raise ModelNotFoundError(f"Model {model!r} is not available on {config.name}.")
    return model


def _error_scrubbed(exc: ProviderError, secret: str | None) -> tuple[ProviderError, bool]:
    """`exc` fit to leave the provider layer: its text scrubbed of the token and then cut (in that
    order, see providers.scrubbing), and whether its chain of causes held the token (then it must
    not travel with the copy, since a traceback in a log would show it)."""
    text = str(exc)
    clean_text = error_text_clean(text=text, secret=secret)
    leaked = exception_mentions_secret(exc=exc, secret=secret)
    if clean_text == text and not leaked:
        return exc, False
    return type(exc)(clean_text, code=exc.code), leaked


async def _config_stream(
    config: ProviderConfig, messages: Messages, model: str | None, options: dict[str, Any]
) -> tuple[ProviderInfo, AsyncIterator[Chunk]]:
    cls = get_provider(config.provider_class)
    resolved = _resolve_model(config, model)
    token = provider_config_token(config=config)
    kwargs = provider_call_kwargs(config=config, options=options, token=token)
    if issubclass(cls, AsyncAuthedProvider):
        kwargs["auth_store"] = DatabaseAuthStore(key=f"config:{config.pk}:{cls.__name__}")

    async def chunks() -> AsyncIterator[Chunk]:
        stream = _provider_stream(cls, resolved, messages, kwargs)
        async with aclosing(stream):
            try:
                async for chunk in stream:
                    yield chunk
            except ProviderError as exc:
                clean, leaked = _error_scrubbed(exc, token)
                if clean is exc:
                    raise
                if leaked:
                    raise clean from None
                raise clean from exc
            except Exception as exc:
                # A provider bug or an answer shaped unlike its format: the caller still gets a
                # ProviderError, and the details go to the log (never to the user).
                if exception_mentions_secret(exc=exc, secret=token):
                    logger.error(
                        "provider %s failed unexpectedly (%s; details withheld: they hold the "
                        "token)",
                        cls.__name__,
                        type(exc).__name__,
                    )
                    raise ResponseError(code="malformed_response") from None
                logger.exception("provider %s failed unexpectedly", cls.__name__)
                raise ResponseError(code="malformed_response") from exc

    return ProviderInfo(provider=config.name, model=resolved), chunks()


def _provider_stream(
    cls: type[BaseProvider], model: str, messages: Messages, kwargs: dict[str, Any]
) -> AsyncIterator[Chunk]:
    if issubclass(cls, AsyncGeneratorProvider):
        return cls.create_async_generator(model, messages, stream=True, **kwargs)
    if issubclass(cls, AbstractProvider):
        # Non-streaming providers answer in one piece.
        return _one_piece(cls.create_async(model, messages, **kwargs))
    raise ProviderNotFoundError(f"{cls.__name__} has no usable entry point.")


async def _one_piece(answer: Awaitable[str]) -> AsyncIterator[Chunk]:
    text = await answer
    if text:
        yield text


async def _first_chunk(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    """The stream's first chunk in a list ([] for an empty answer). A failure before it raises
    here, where a chain can still try its next member."""
    try:
        return [await anext(stream)]
    except StopAsyncIteration:
        return []


async def _answer(
    info: ProviderInfo, first: list[Chunk], stream: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    """What stream_chat yields once an upstream has answered: who answered, then the text."""
    yield info
    for chunk in first:
        yield chunk
    async for chunk in stream:
        yield chunk


async def stream_chat(
    target: ProviderConfig | FallbackChain,
    messages: Messages,
    *,
    model: str | None = None,
    **options: Any,
) -> AsyncIterator[Chunk]:
    """Stream an answer: ProviderInfo once before the first text, then text deltas, optionally
    Usage and FinishReason. Every failure is a ProviderError.

    For a chain, members are tried in order while they fail before their first chunk; once one
    has answered, a failure ends the stream with its error (answers are never mixed). `model`
    applies to a chain member only when that member offers it.
    """
    if isinstance(target, ProviderConfig):
        info, stream = await _config_stream(target, messages, model, options)
        async with aclosing(stream):
            first = await _first_chunk(stream)
            async with aclosing(_answer(info, first, stream)) as answer:
                async for chunk in answer:
                    yield chunk
        return

    members = await db_call(fallback_chain_members)(chain=target)
    if not members:
        raise ProviderNotFoundError(f"The fallback chain {target.name} has no enabled members.")
    last_error: ProviderError | None = None
    for config in members:
        member_model = model if model and model in provider_config_models(config=config) else None
        try:
            info, stream = await _config_stream(config, messages, member_model, options)
        except ProviderError as exc:
            last_error = _log_fallback(target, config, exc)
            continue
        async with aclosing(stream):
            try:
                first = await _first_chunk(stream)
            except ProviderError as exc:
                last_error = _log_fallback(target, config, exc)
                continue
            async with aclosing(_answer(info, first, stream)) as answer:
                async for chunk in answer:
                    yield chunk
        return
    assert last_error is not None
    raise last_error


def _log_fallback(
    chain: FallbackChain, config: ProviderConfig, exc: ProviderError
) -> ProviderError:
    logger.warning(
        "fallback chain %s: %s failed before answering (%s: %s); trying the next member",
        chain.name,
        config.name,
        exc.code,
        exc,
    )
    return exc


# A message the cheapest way to ask for one token; the answer itself is thrown away.
CHECK_MESSAGES: Messages = [{"role": "user", "content": "Say OK."}]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    latency_ms: int | None = None


async def _first_chunk_latency(config: ProviderConfig) -> float:
    started = time.monotonic()
    async with aclosing(stream_chat(config, CHECK_MESSAGES, max_tokens=1)) as stream:
        async for chunk in stream:
            if isinstance(chunk, str) and chunk:
                break
    return time.monotonic() - started


def provider_config_check(*, config: ProviderConfig) -> CheckResult:
    """Make one tiny request (time to the first token of a one-token answer) and record it.

    Sync (for admin actions and commands); the request runs on a private event loop.
    """
    try:
        seconds = run_sync(lambda: _first_chunk_latency(config))
    except ProviderError as exc:
        result = CheckResult(ok=False, detail=f"{exc.code}: {exc}"[:300])
    else:
        latency_ms = round(seconds * 1000)
        result = CheckResult(ok=True, detail=f"OK in {latency_ms} ms", latency_ms=latency_ms)
    config.last_check_ok = result.ok
    config.last_check_detail = result.detail
    config.last_check_at = timezone.now()
    config.save(update_fields=["last_check_ok", "last_check_detail", "last_check_at"])
    return result
