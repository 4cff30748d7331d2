"""The provider class hierarchy (after gpt4free's base provider, async-first on httpx).

A provider is declared like a plugin: class attributes (`url`, `api_base`, `working`, `needs_auth`,
`supports_stream`, `models`, `default_model`, ...) and one async method. The sync entry points are
bridges over the async ones (see providers.bridge).
"""

import asyncio
import inspect
import json
import logging
import os
import tempfile
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from django.conf import settings

from providers.bridge import iter_sync, run_sync
from providers.errors import (
    BadRequestError,
    MissingAuthError,
    ModelNotFoundError,
    PaymentRequiredError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
)
from providers.types import (
    SAMPLING_OPTIONS,
    AsyncResult,
    AuthResult,
    CreateResult,
    Messages,
    ResponseObject,
)

logger = logging.getLogger(__name__)

# The keyword arguments a caller may discover through get_parameters(); anything else a provider
# accepts is internal.
PARAMETER_NAMES = (
    *SAMPLING_OPTIONS,
    "model", "messages", "stream", "timeout", "proxy", "media", "response_format", "prompt",
    "negative_prompt", "tools", "conversation", "history_disabled", "api_key", "api_base",
    "width", "height", "max_retries", "web_search", "guidance_scale", "num_inference_steps",
    "randomize_seed", "safe", "enhance", "private", "aspect_ratio", "n",
)  # fmt: skip

_EXAMPLES_BY_NAME: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Hello"}],
    "media": [],
    "tools": [],
    "stop": [],
    "response_format": {"type": "text"},
    "conversation": {},
}
_EXAMPLES_BY_TYPE: dict[type, Any] = {
    str: "", int: 0, float: 0.0, bool: False, list: [], dict: {}, tuple: [],
}  # fmt: skip


class _ClassProperty:
    # `classmethod` wrapping `property` no longer works (removed in Python 3.13).
    def __init__(self, fget: Callable[[type], Any]) -> None:
        self.fget = fget

    def __get__(self, instance: object, owner: type) -> Any:
        return self.fget(owner)


def _annotation_types(annotation: Any) -> list[Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return [annotation]


def _example_for(parameter: inspect.Parameter) -> Any:
    if parameter.default is not inspect.Parameter.empty:
        default = parameter.default
        try:
            json.dumps(default)
        except TypeError:
            return None
        return default
    if parameter.name in _EXAMPLES_BY_NAME:
        return _EXAMPLES_BY_NAME[parameter.name]
    for annotation in _annotation_types(parameter.annotation):
        origin = typing.get_origin(annotation) or annotation
        if origin in _EXAMPLES_BY_TYPE:
            return _EXAMPLES_BY_TYPE[origin]
    return None


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


class BaseProvider(ABC):
    url: ClassVar[str | None] = None
    api_base: ClassVar[str | None] = None
    label: ClassVar[str | None] = None
    working: ClassVar[bool] = False
    needs_auth: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = False
    supports_message_history: ClassVar[bool] = False
    supports_system_message: ClassVar[bool] = False
    # Accepts images as OpenAI-style `image_url` content parts (a config enables it: `vision`).
    supports_vision: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def get_create_function(cls) -> Callable[..., Any]: ...

    @classmethod
    @abstractmethod
    def get_async_create_function(cls) -> Callable[..., Any]: ...

    @classmethod
    def get_dict(cls) -> dict[str, Any]:
        return {"name": cls.__name__, "url": cls.url, "label": cls.label or cls.__name__}


class AbstractProvider(BaseProvider):
    @classmethod
    @abstractmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool, **kwargs: Any
    ) -> CreateResult:
        """A sync iterator of chunks: text, or response objects such as FinishReason."""

    @classmethod
    async def create_async(
        cls,
        model: str,
        messages: Messages,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- the gpt4free signature callers expect
        loop: asyncio.AbstractEventLoop | None = None,
        executor: Any = None,
        **kwargs: Any,
    ) -> str:
        """The whole text, with `create_completion` run off the event loop.

        Past `timeout` the await ends with ProviderTimeoutError; the worker thread cannot be
        killed, it finishes its request in the background.
        """
        loop = loop or asyncio.get_running_loop()
        kwargs.setdefault("stream", False)

        def collect() -> str:
            chunks = cls.create_completion(model, messages, **kwargs)
            return "".join(chunk for chunk in chunks if isinstance(chunk, str))

        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, collect), timeout)
        except ProviderTimeoutError:
            raise
        except TimeoutError as exc:
            raise ProviderTimeoutError() from exc

    @classmethod
    def get_create_function(cls) -> Callable[..., Any]:
        return cls.create_completion

    @classmethod
    def get_async_create_function(cls) -> Callable[..., Any]:
        return cls.create_async

    @classmethod
    def _entry_point(cls) -> Callable[..., Any]:
        return cls.create_completion

    @classmethod
    def get_parameters(cls, as_json: bool = False) -> dict[str, Any]:
        signature = inspect.signature(cls._entry_point(), eval_str=True)
        parameters = {
            name: parameter
            for name, parameter in signature.parameters.items()
            if name in PARAMETER_NAMES and (name != "stream" or cls.supports_stream)
        }
        if not as_json:
            return parameters
        example = {name: _example_for(parameter) for name, parameter in parameters.items()}
        return {
            **example,
            "provider": cls.__name__,
            "model": getattr(cls, "default_model", None),
            "stream": cls.supports_stream,
        }

    @_ClassProperty
    def params(cls) -> str:
        lines = [f"{cls.__name__} supports:"]
        for name, parameter in cls.get_parameters().items():
            line = f"  {name}: {_type_name(parameter.annotation)}"
            if parameter.default is not inspect.Parameter.empty:
                default = parameter.default
                line += f' = "{default}"' if isinstance(default, str) else f" = {default!r}"
            lines.append(line)
        return "\n".join(lines)


class AsyncProvider(AbstractProvider):
    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = False, **kwargs: Any
    ) -> CreateResult:
        yield run_sync(lambda: cls.create_async(model, messages, **kwargs))

    @classmethod
    @abstractmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str: ...

    @classmethod
    def _entry_point(cls) -> Callable[..., Any]:
        return cls.create_async


class AsyncGeneratorProvider(AbstractProvider):
    supports_stream = True

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> CreateResult:
        chunks = iter_sync(
            lambda: cls.create_async_generator(model, messages, stream=stream, **kwargs)
        )
        if stream:
            yield from chunks
            return
        collected = list(chunks)
        text = "".join(chunk for chunk in collected if isinstance(chunk, str))
        if text:
            yield text
        yield from (chunk for chunk in collected if isinstance(chunk, ResponseObject))

    @classmethod
    async def create_async(
        cls,
        model: str,
        messages: Messages,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- same signature as AbstractProvider's
        **kwargs: Any,
    ) -> str:
        kwargs.pop("loop", None)
        kwargs.pop("executor", None)
        kwargs.setdefault("stream", False)

        async def collect() -> str:
            parts = []
            async for chunk in cls.create_async_generator(model, messages, **kwargs):
                if isinstance(chunk, str):
                    parts.append(chunk)
            return "".join(parts)

        try:
            return await asyncio.wait_for(collect(), timeout)
        except ProviderTimeoutError:
            raise
        except TimeoutError as exc:
            raise ProviderTimeoutError() from exc

    @classmethod
    @abstractmethod
    def create_async_generator(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> AsyncResult:
        """An async generator of chunks (declare it as `async def ... yield`)."""

    @classmethod
    def get_async_create_function(cls) -> Callable[..., Any]:
        return cls.create_async_generator

    @classmethod
    def _entry_point(cls) -> Callable[..., Any]:
        return cls.create_async_generator


class ProviderModelMixin:
    default_model: ClassVar[str | None] = None
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = {}
    image_models: ClassVar[list[str]] = []
    vision_models: ClassVar[list[str]] = []
    last_model: ClassVar[str | None] = None

    @classmethod
    def get_models(cls, **kwargs: Any) -> list[str]:
        if not cls.models and cls.default_model:
            return [cls.default_model]
        return list(cls.models)

    @classmethod
    def get_model(cls, model: str | None, **kwargs: Any) -> str:
        if not model:
            model = cls.default_model or ""
        elif model in cls.model_aliases:
            model = cls.model_aliases[model]
        elif cls.models:
            valid = cls.get_models(**kwargs)
            if model not in valid:
                raise ModelNotFoundError(
                    f"Model {model!r} is not supported by {cls.__name__}; "
                    f"valid models: {', '.join(valid)}"
                )
        cls.last_model = model
        return model


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: MissingAuthError,
    402: PaymentRequiredError,
    429: RateLimitError,
}
# An upstream's message is kept whole up to this length here: it may quote the token, which only
# the caller that knows the token can take out (providers.scrubbing), and a cut made before that
# could leave part of it behind. The caller cuts to display length after scrubbing.
MAX_UPSTREAM_MESSAGE = 8192


class RaiseErrorMixin:
    @staticmethod
    def raise_error(data: Any, status: int | None = None) -> None:
        """Raise the typed error `data` describes (an upstream error body or stream event).

        Does nothing when `data` carries no error.
        """
        if not isinstance(data, dict):
            return
        message: str | None = None
        if data.get("error_message"):
            message = str(data["error_message"])
        elif data.get("error"):
            error = data["error"]
            if isinstance(error, bool):
                message = "Unknown error"
            elif isinstance(error, dict):
                code, text = error.get("code"), error.get("message")
                if status is None and isinstance(code, int) and 400 <= code < 600:
                    status = code
                if code == status and text:
                    # The code is the status: "Error 429: 429: ..." would say it twice.
                    message = str(text)
                elif code and text:
                    message = f"{code}: {text}"
                else:
                    message = str(text or code or error.get("type") or "Unknown error")
            else:
                message = str(error)
        if message is None:
            return
        message = message[:MAX_UPSTREAM_MESSAGE]
        if status is None:
            raise ResponseError(message)
        raise _STATUS_ERRORS.get(status, ResponseStatusError)(f"Error {status}: {message}")


class AuthFileMixin:
    parent: ClassVar[str | None] = None

    @classmethod
    def get_cache_file(cls) -> Path:
        return Path(settings.PROVIDERS_AUTH_DIR) / f"auth_{cls.parent or cls.__name__}.json"


class AuthStore(Protocol):
    """Where an AsyncAuthedProvider keeps its AuthResult between requests."""

    async def load(self) -> AuthResult | None: ...

    async def save(self, auth_result: AuthResult | None) -> None: ...


class FileAuthStore:
    """The library form: a JSON file, private to its owner (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> AuthResult | None:
        return await asyncio.to_thread(read_cache_file, self.path)

    async def save(self, auth_result: AuthResult | None) -> None:
        await asyncio.to_thread(write_cache_file, self.path, auth_result)


def read_cache_file(path: Path) -> AuthResult | None:
    """The cached AuthResult, or None when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.warning("auth cache %s is unreadable; authenticating again", path.name)
        return None
    return AuthResult(**data) if isinstance(data, dict) else None


def write_cache_file(path: Path, auth_result: AuthResult | None) -> None:
    if auth_result is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written to a private temporary file (mkstemp creates it 0600, with a name no other writer,
    # thread or process, can share) and renamed, so a reader never sees half a file and the secret
    # is never readable by others, not even for an instant.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(auth_result.get_dict(), handle)
        os.chmod(tmp, 0o600)  # exactly 0600, whatever the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AsyncAuthedProvider(AsyncGeneratorProvider, AuthFileMixin):
    @classmethod
    async def on_auth_async(cls, api_key: str | None = None, **kwargs: Any) -> AsyncResult:
        """Progress chunks, then one AuthResult. The default needs an api_key."""
        if not api_key:
            raise MissingAuthError(f"{cls.__name__} needs an api_key.")
        yield AuthResult(api_key=api_key)

    @classmethod
    def on_auth(cls, **kwargs: Any) -> CreateResult:
        yield from iter_sync(lambda: cls.on_auth_async(**kwargs))

    @classmethod
    def write_cache_file(cls, cache_file: Path, auth_result: AuthResult | None = None) -> None:
        write_cache_file(cache_file, auth_result)

    @classmethod
    @abstractmethod
    def create_authed(
        cls, model: str, messages: Messages, auth_result: AuthResult, **kwargs: Any
    ) -> AsyncResult:
        """An async generator of chunks, using `auth_result` for the request."""

    @classmethod
    async def _authenticate(cls, store: AuthStore, **kwargs: Any) -> AsyncIterator[Any]:
        auth_result = None
        async for chunk in cls.on_auth_async(**kwargs):
            if isinstance(chunk, AuthResult):
                auth_result = chunk
            else:
                yield chunk
        if auth_result is None:
            raise MissingAuthError(f"{cls.__name__} could not authenticate.")
        await store.save(auth_result)
        yield auth_result

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        stream: bool = True,
        auth_store: AuthStore | None = None,
        **kwargs: Any,
    ) -> AsyncResult:
        store = auth_store or FileAuthStore(cls.get_cache_file())
        auth_result = await store.load()
        fresh = auth_result is None
        if fresh:
            async for chunk in cls._authenticate(store, **kwargs):
                if isinstance(chunk, AuthResult):
                    auth_result = chunk
                else:
                    yield chunk
        answered = False
        try:
            async for chunk in cls.create_authed(
                model, messages, auth_result, stream=stream, **kwargs
            ):
                answered = True
                yield chunk
        except MissingAuthError:
            # A stale cached login: log in again once, but never after part of an answer went out.
            if fresh or answered:
                raise
            logger.info("%s: cached auth rejected; authenticating again", cls.__name__)
            await store.save(None)
            async for chunk in cls._authenticate(store, **kwargs):
                if isinstance(chunk, AuthResult):
                    auth_result = chunk
                else:
                    yield chunk
            async for chunk in cls.create_authed(
                model, messages, auth_result, stream=stream, **kwargs
            ):
                yield chunk
