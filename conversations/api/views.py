"""The API's routes. Thin: authenticate, parse, start the call, shape what stream_chat yields.

A client that goes away ends its call: Django cancels the view (or the streaming response) when
the ASGI server reports the disconnect, the cancellation reaches `stream_chat` where it waits
for the upstream, and closing that stream closes the upstream request.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chatsite.db import db_call
from conversations.answers import liveness_seconds
from conversations.api import selectors, services, wire
from conversations.api.wire import ApiError
from conversations.errors import ChatError
from conversations.models import ApiCall, ApiKey
from providers.errors import ProviderError, error_sentence
from providers.models import FallbackChain, ProviderConfig
from providers.services import stream_chat
from providers.types import FinishReason, ProviderInfo, Usage

logger = logging.getLogger(__name__)

# What a client is told to wait after a 429 for the user's answer limit: one of the user's
# answers has to end first, and there is no telling when; clients back off further themselves.
RETRY_AFTER_SECONDS = 1
# Errors that are the upstream taking too long (or our limits on it): 504, the rest 502.
TIMEOUT_CODES = {"timeout", "answer_idle", "answer_too_long"}
# Codes whose message is always our own words (never an upstream's), safe to pass on.
OWN_WORDS_CODES = {"answer_idle", "answer_too_long"}
_END = object()


def _error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        # RFC 6750, section 3: a refused bearer token names its scheme.
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _provider_error(exc: ProviderError) -> ApiError:
    """An upstream's failure as the client sees it: a fixed sentence per code (the message of a
    ProviderError may quote the upstream; admins see it in the call's record)."""
    message = str(exc) if exc.code in OWN_WORDS_CODES else error_sentence(exc.code)
    message = message or "The provider failed."
    if exc.code == "model_not_found":
        return ApiError(404, message, param="model", code="model_not_found")
    status = 504 if exc.code in TIMEOUT_CODES else 502
    return ApiError(status, message, type_="api_error", code=exc.code)


async def _authenticate(request: HttpRequest) -> ApiKey:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "No API key was given: send `Authorization: Bearer <key>`.",
            code="invalid_api_key",
        )
    api_key = await db_call(selectors.api_key_authenticate)(key=key.strip())
    if api_key is None:
        raise ApiError(401, "The API key is wrong or revoked.", code="invalid_api_key")
    if services.api_key_touch_due(api_key=api_key):
        await db_call(services.api_key_touch, writes=True)(api_key=api_key)
    return api_key


def _api_view(view):
    """Session-free: no CSRF check and no sign-in redirect (a key authenticates each request),
    and every refusal in OpenAI's error shape."""

    async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return await view(request, *args, **kwargs)
        except ApiError as error:
            return _error_response(error)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return csrf_exempt(login_not_required(wrapped))


def _method(request: HttpRequest, method: str) -> None:
    if request.method != method:
        raise ApiError(405, f"Use {method} here.", code="method_not_allowed")


@_api_view
async def model_list(request: HttpRequest) -> HttpResponse:
    """GET /v1/models"""
    _method(request, "GET")
    await _authenticate(request)
    models = await db_call(selectors.api_model_list)()
    return JsonResponse({"object": "list", "data": models})


@_api_view
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """GET /v1/models/{model}"""
    _method(request, "GET")
    await _authenticate(request)
    models = await db_call(selectors.api_model_list)()
    found = next((model for model in models if model["id"] == model_id), None)
    if found is None:
        raise ApiError(404, "The model does not exist.", param="model", code="model_not_found")
    return JsonResponse(found)


@_api_view
async def unknown_route(request: HttpRequest, path: str) -> HttpResponse:
    """Any other path under /v1/: OpenAI's error shape rather than an HTML page."""
    raise ApiError(404, "No such route in this API.", code="unknown_url")


@_api_view
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions"""
    _method(request, "POST")
    api_key = await _authenticate(request)
    parsed = None
    try:
        parsed = wire.completion_request_parse(request.body)
        call, target, model = await _call_start(api_key, parsed)
    except ApiError as error:
        # Recorded too (admins see who is refused, and why); a refusal holds no slot.
        await db_call(services.api_call_record_refusal, writes=True)(
            api_key=api_key,
            model=parsed.model if parsed else "",
            stream=parsed.stream if parsed else False,
            http_status=error.status,
            error_code=error.code or error.type,
            detail=error.message,
        )
        raise
    run = _CallRun(api_key=api_key, call=call, target=target, model=model, request=parsed)
    return await run.respond()


async def _call_start(
    api_key: ApiKey, parsed: wire.CompletionRequest
) -> tuple[ApiCall, ProviderConfig | FallbackChain, str | None]:
    """The target the request names and the call's `running` record, which takes one of the
    user's answer slots."""
    try:
        target, model = await db_call(selectors.api_target_resolve)(name=parsed.model)
    except ProviderError as exc:
        raise ApiError(404, str(exc), param="model", code="model_not_found") from None
    try:
        call = await db_call(services.api_call_start, writes=True)(
            api_key=api_key, target=target, model=model, stream=parsed.stream
        )
    except ChatError as exc:
        if exc.code != "rate_limited":
            raise
        raise ApiError(
            429,
            f"{exc.detail} (answers in the chat count too)",
            type_="rate_limit_error",
            code="rate_limited",
            retry_after=RETRY_AFTER_SECONDS,
        ) from None
    return call, target, model


class _CallRun:
    """One call from its start to its record: the upstream stream under the chat's time limits,
    shaped as a completion or as a stream of chunks."""

    def __init__(
        self,
        *,
        api_key: ApiKey,
        call: ApiCall,
        target: ProviderConfig | FallbackChain,
        model: str | None,
        request: wire.CompletionRequest,
    ) -> None:
        self.api_key = api_key
        self.call = call
        self.target = target
        self.request = request
        self.stream = stream_chat(target, request.messages, model=model, **request.options)
        self.started = time.monotonic()
        self.deadline = self.started + settings.CHAT_MAX_ANSWER_SECONDS
        self.began = False
        self.provider = target.name
        self.model = model or ""
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish_reason = "stop"
        self.id = wire.completion_id()
        self.created = wire.now_seconds()
        self.keepalive = asyncio.create_task(self._keep_alive(), name=f"api-call-{call.pk}")

    @property
    def public_model(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider

    async def _keep_alive(self) -> None:
        """Refresh the call's row while it runs, however long the upstream is silent (see
        ApiCall.alive_at); ends with the record, or at the latest past the answer's deadline."""
        every = liveness_seconds()
        while time.monotonic() < self.deadline + every:
            await asyncio.sleep(every)
            try:
                await db_call(services.api_call_keepalive, writes=True)(call_id=self.call.pk)
            except Exception:
                logger.warning("API call %s: keepalive failed", self.call.pk, exc_info=True)

    async def _next(self) -> object:
        """The stream's next chunk (or _END), within the chat's limits: the whole answer within
        CHAT_MAX_ANSWER_SECONDS, and once it has begun, no gap longer than
        CHAT_ANSWER_IDLE_SECONDS."""
        remaining = self.deadline - time.monotonic()
        idle = settings.CHAT_ANSWER_IDLE_SECONDS
        wait = min(remaining, idle) if self.began else remaining
        try:
            chunk = await asyncio.wait_for(anext(self.stream, _END), max(0.0, wait))
        except ProviderError:
            raise
        except TimeoutError:
            if wait < remaining:
                raise ProviderError(
                    f"The provider sent nothing for {idle:g} seconds, so the answer was ended.",
                    code="answer_idle",
                ) from None
            raise ProviderError(
                f"The answer took longer than {settings.CHAT_MAX_ANSWER_SECONDS:g} seconds, the "
                "most an answer may take, and was ended.",
                code="answer_too_long",
            ) from None
        self.began = True
        return chunk

    def _take(self, chunk: object) -> str | None:
        """Note what a chunk says about the answer; its text, if it is text."""
        if isinstance(chunk, str):
            if chunk:
                self.parts.append(chunk)
                return chunk
        elif isinstance(chunk, ProviderInfo):
            self.provider, self.model = chunk.provider, chunk.model
        elif isinstance(chunk, Usage):
            self.usage = chunk
        elif isinstance(chunk, FinishReason) and chunk.reason:
            self.finish_reason = chunk.reason
        return None

    async def respond(self) -> HttpResponse:
        try:
            # Up to the first chunk (the provider that answers, just before its first text), so
            # a failure before the answer begins gets its own HTTP status.
            first = await self._next()
        except ProviderError as exc:
            await self._record_failure(exc, status_sent=None)
            await self.stream.aclose()
            return _error_response(_provider_error(exc))
        except asyncio.CancelledError:
            await self.stream.aclose()
            await self._record(ApiCall.Status.DISCONNECTED, http_status=None)
            raise
        except BaseException:
            await self.stream.aclose()
            await self._record_crash()
            raise
        if self.request.stream:
            response = StreamingHttpResponse(
                self._chunks(first), content_type="text/event-stream; charset=utf-8"
            )
            response["Cache-Control"] = "no-cache"
            # Proxies such as nginx would otherwise hold the events back in their buffers.
            response["X-Accel-Buffering"] = "no"
            return response
        return await self._whole(first)

    async def _whole(self, first: object) -> HttpResponse:
        chunk = first
        async with aclosing(self.stream):
            try:
                while chunk is not _END:
                    self._take(chunk)
                    chunk = await self._next()
            except ProviderError as exc:
                await self._record_failure(exc, status_sent=None)
                return _error_response(_provider_error(exc))
            except asyncio.CancelledError:
                # The client left: the upstream request ends first, then the record.
                await self.stream.aclose()
                await self._record(ApiCall.Status.DISCONNECTED, http_status=None)
                raise
            except BaseException:
                await self._record_crash()
                raise
        await self._record(ApiCall.Status.COMPLETE, http_status=200)
        return JsonResponse(
            wire.completion_object(
                id_=self.id,
                created=self.created,
                model=self.public_model,
                content="".join(self.parts),
                finish_reason=self.finish_reason,
                usage=self.usage,
            )
        )

    def _chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None) -> bytes:
        return wire.sse_event(
            wire.chunk_object(
                id_=self.id,
                created=self.created,
                model=self.public_model,
                delta=delta,
                finish_reason=finish_reason,
                include_usage=self.request.include_usage,
            )
        )

    async def _chunks(self, first: object) -> AsyncIterator[bytes]:
        chunk = first
        async with aclosing(self.stream):
            try:
                self._take(chunk)
                # OpenAI's first chunk carries the role and empty content.
                yield self._chunk({"role": "assistant", "content": "", "refusal": None})
                while (chunk := await self._next()) is not _END:
                    text = self._take(chunk)
                    if text:
                        yield self._chunk({"content": text})
            except ProviderError as exc:
                await self._record_failure(exc, status_sent=200)
                error = _provider_error(exc)
                # Mid-stream, the status line is long gone: OpenAI's streams then carry the
                # error as an event of its own, which its client raises as an APIError.
                yield wire.sse_event(error.body())
                return
            except (asyncio.CancelledError, GeneratorExit):
                # The client left: cancelled while waiting for the upstream, or closed at a
                # yield (when it left while a chunk was being sent). The upstream request ends
                # first, then the record.
                await self.stream.aclose()
                await self._record(ApiCall.Status.DISCONNECTED, http_status=200)
                raise
            except BaseException:
                await self._record_crash()
                raise
        # Recorded before the last events go out: a client may leave as soon as it has read
        # `[DONE]`, and nothing after the last yield would then run.
        await self._record(ApiCall.Status.COMPLETE, http_status=200)
        ending = self._chunk({}, finish_reason=self.finish_reason)
        if self.request.include_usage:
            ending += wire.sse_event(
                wire.usage_chunk(
                    id_=self.id, created=self.created, model=self.public_model, usage=self.usage
                )
            )
        yield ending + wire.SSE_DONE

    # --- the record ----------------------------------------------------------------------------

    async def _record_failure(self, exc: ProviderError, *, status_sent: int | None) -> None:
        logger.warning("API call %s failed: %s: %s", self.call.pk, exc.code, exc)
        error = _provider_error(exc)
        await self._record(
            ApiCall.Status.ERROR,
            http_status=status_sent or error.status,
            error_code=exc.code,
            error_detail=str(exc),
        )

    async def _record_crash(self) -> None:
        logger.exception("API call %s failed", self.call.pk)
        await self._record(ApiCall.Status.ERROR, http_status=500, error_code="internal")

    async def _record(
        self, status: str, *, http_status: int | None, error_code: str = "", error_detail: str = ""
    ) -> None:
        outcome = services.CallOutcome(
            status=status,
            http_status=http_status,
            provider=self.provider,
            model=self.model,
            content="".join(self.parts),
            error_code=error_code,
            error_detail=error_detail,
            prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
        )
        self.keepalive.cancel()
        store = self.api_key.store_conversations
        finish = db_call(services.api_call_finish, writes=True)(
            call=self.call,
            outcome=outcome,
            duration_ms=round((time.monotonic() - self.started) * 1000),
            history=self.request.messages if store else None,
            target=self.target if store else None,
        )
        try:
            # Shielded: when the client has gone, this runs in a cancelled view, and the record
            # (which frees the user's slot) must still be written.
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("API call %s: could not save its record", self.call.pk)
