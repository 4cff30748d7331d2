"""The local model's worker process: llama.cpp runs here, never in a server process.

llama.cpp is native code: a build that uses an instruction the CPU (or its hypervisor) forbids
dies with SIGILL, and a bad file or a bug can crash it too. Run as `python -m
providers.llamacpp_worker`, this module holds one model and generates one answer at a time; the
server side (providers.llamacpp_supervisor) starts it, feeds it requests one after another, and
notices when it dies. It imports neither Django nor the provider layer, only llama-cpp-python.

The protocol: one JSON object per line, UTF-8.

Server -> worker, on the worker's stdin:
    {"op": "generate", "id": 7, "path": "/abs/file.gguf", "n_ctx": 4096, "n_threads": null,
     "messages": [...], "chat_format": null, "max_tokens": 512, "stop": [], "seed": 123,
     "sampling": {"temperature": 0.7, "top_p": 0.95, ...}}
    {"op": "stop", "id": 7}          stop request 7 before its next token (ignored once it ended)
    end of input                     the server is gone or shutting down: the worker exits

Worker -> server, on the worker's stdout (fd 1 itself is pointed at stderr, so nothing the native
library prints can corrupt the stream):
    {"id": 7, "event": "loaded"}                       the model is ready; generation starts
    {"id": 7, "event": "text", "text": "Hel"}          answer text, in order
    {"id": 7, "event": "usage", "prompt": 31, "completion": 8}
    {"id": 7, "event": "finish", "reason": "stop"}     or "length"
    {"id": 7, "event": "error", "kind": "bad_request", "message": "..."}   short, for users
    {"id": 7, "event": "end", "stopped": false}        always last; the worker is free again
                                                       ("stopped": it ended early, on a stop)

The server sends a request only after the previous one's "end": requests queue in the server.
`--fault SIGNAL` (tests only) makes the worker die of SIGNAL when its first request arrives.
"""

import argparse
import codecs
import json
import logging
import os
import queue
import random
import resource
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

logger = logging.getLogger("providers.llamacpp_worker")

Emit = Callable[[dict[str, Any]], None]


class RequestError(Exception):
    """A failure to report for one request: `kind` names the provider error the server raises."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- Prompt formatting -----------------------------------------------------------------------

# Prompt formats for GGUF files that carry no chat template. Written as Jinja templates so that a
# built-in format and a file's own template take the same path through llama-cpp-python's
# sandboxed renderer. System prompts are folded into the first user turn for Gemma (see
# normalise_messages): Gemma has no system role, and llama-cpp-python's own "gemma" format drops
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


def normalise_messages(messages: list[dict[str, str]], *, fold_system: bool) -> list[dict]:
    """Messages a strict chat template accepts: no empty ones, and roles that alternate.

    Consecutive messages of one role (a user who sent twice after a failed answer) are joined,
    since templates such as Gemma's refuse them. With `fold_system`, system prompts go in front of
    the first user message.
    """
    system = [m["content"] for m in messages if m.get("role") == "system" and m.get("content")]
    result: list[dict] = []
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
class PromptFormat:
    name: str
    template: str
    stop: list[str]


def prompt_format(llm: Any, chat_format: str | None) -> PromptFormat:
    if chat_format:
        if chat_format not in CHAT_TEMPLATES:
            raise RequestError(
                "bad_request",
                f"Unknown chat_format {chat_format!r}; use one of: {', '.join(CHAT_TEMPLATES)}.",
            )
        return PromptFormat(chat_format, CHAT_TEMPLATES[chat_format], STOP_STRINGS[chat_format])
    template = llm.metadata.get("tokenizer.chat_template")
    if template:
        return PromptFormat("gguf", template, [])
    name = FORMAT_BY_ARCHITECTURE.get(llm.metadata.get("general.architecture", ""), "chatml")
    return PromptFormat(name, CHAT_TEMPLATES[name], STOP_STRINGS[name])


def render(llm: Any, fmt: PromptFormat, messages: list[dict[str, str]]) -> str:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token_text(token: int) -> str:
        return (
            llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""
        )

    formatter = Jinja2ChatFormatter(
        template=fmt.template,
        eos_token=token_text(llm.token_eos()),
        bos_token=token_text(llm.token_bos()),
    )
    messages = normalise_messages(messages, fold_system=fmt.name == "gemma")
    try:
        return formatter(messages=messages).prompt
    except Exception as exc:
        # A GGUF's own template may refuse a conversation (raise_exception in Jinja) or be broken.
        logger.warning("LlamaCpp: the chat template failed: %s", exc)
        raise RequestError(
            "bad_request", "The model's chat template rejected this conversation."
        ) from exc


def fit_prompt(llm: Any, fmt: PromptFormat, messages: list[dict], *, reserve: int) -> list[int]:
    """The prompt's tokens, dropping the oldest turns until `reserve` tokens are left to answer."""
    messages = list(messages)
    while True:
        # The templates write the BOS token themselves; parsing special tokens turns their text
        # (<|im_start|>, <bos>, ...) into the real control tokens.
        tokens = llm.tokenize(render(llm, fmt, messages).encode(), add_bos=False, special=True)
        if len(tokens) + reserve <= llm.n_ctx():
            return tokens
        turns = [i for i, m in enumerate(messages) if m.get("role") != "system"]
        if len(turns) <= 1:
            raise RequestError(
                "bad_request",
                f"The message is too long for the local model ({llm.n_ctx()} tokens of context).",
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


def is_end_of_generation(llm: Any, token: int) -> bool:
    """End of sequence or end of turn (<|im_end|>, <|eot_id|>, ...): llama.cpp knows them all.

    llama-cpp-python has no public call for this; its own completion code asks the vocabulary the
    same way.
    """
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


# --- The model and one generation ------------------------------------------------------------


class LoadedModel:
    """The worker's one model. Another file (or other context settings) replaces it, so the
    worker never holds two: a 7B file next to another would not fit in memory."""

    def __init__(self) -> None:
        self.llm: Any = None
        self._key: tuple | None = None

    def get(self, *, path: str, n_ctx: int, n_threads: int | None) -> Any:
        key = (path, n_ctx, n_threads)
        if self._key == key:
            return self.llm
        self.close()
        from llama_cpp import Llama

        try:
            llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        except ValueError as exc:
            logger.warning("LlamaCpp: could not load %s: %s", path, exc)
            name = os.path.basename(path)
            raise RequestError(
                "upstream_error",
                f"The model file {name!r} could not be loaded (is it a GGUF file?).",
            ) from exc
        self.llm, self._key = llm, key
        return llm

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm, self._key = None, None


def generate(
    model: LoadedModel, request: dict[str, Any], emit: Emit, cancelled: Callable[[], bool]
) -> bool:
    """Run one generation, emitting its events (all but "end"); True when it was stopped."""
    llm = model.get(path=request["path"], n_ctx=request["n_ctx"], n_threads=request["n_threads"])
    emit({"event": "loaded"})
    fmt = prompt_format(llm, request["chat_format"])
    reserve = min(request["max_tokens"], llm.n_ctx() // 2)
    prompt = fit_prompt(llm, fmt, request["messages"], reserve=reserve)
    max_tokens = min(request["max_tokens"], llm.n_ctx() - len(prompt))
    stops = [*fmt.stop, *request["stop"]]
    seed = request["seed"]
    llm.set_seed(seed if seed is not None else random.getrandbits(31))
    sampling = request["sampling"]
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
            if cancelled():
                return True
            if is_end_of_generation(llm, token):
                finish = "stop"
                break
            completion_tokens += 1
            pending += decoder.decode(llm.detokenize([token]))
            text, pending, stopped = split_at_stop(pending, stops)
            if not answered:
                text = text.lstrip()
                answered = bool(text)
            if text:
                emit({"event": "text", "text": text})
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
            emit({"event": "text", "text": pending})
    emit({"event": "usage", "prompt": len(prompt), "completion": completion_tokens})
    emit({"event": "finish", "reason": finish})
    return False


# --- The process -----------------------------------------------------------------------------


class Commands:
    """What the server sent: generate requests in order, and the ids it asked to stop."""

    def __init__(self) -> None:
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopped: set[int] = set()

    def read(self, stream: IO[bytes]) -> None:
        """Read commands until the input ends, then end the process: nobody is listening."""
        for line in stream:
            command = json.loads(line)
            if command["op"] == "stop":
                self.stopped.add(command["id"])
            elif command["op"] == "generate":
                self.requests.put(command)
        # os._exit rather than sys.exit: the main thread may be inside llama.cpp, mid-answer.
        os._exit(0)


def serve(commands: Commands, output: IO[str], fault: str | None) -> None:
    model = LoadedModel()
    while True:
        request = commands.requests.get()
        # A stop that crossed its request's end in the pipe would otherwise stay here forever.
        for stale in [i for i in list(commands.stopped) if i < request["id"]]:
            commands.stopped.discard(stale)
        if fault:
            # Tests only: a real death by a real signal, as a bad build would die. No core file.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.Signals[fault])
        answer(model, request, output, commands)


def answer(
    model: LoadedModel, request: dict[str, Any], output: IO[str], commands: Commands
) -> None:
    """One request, from its first event to its "end"."""
    request_id = request["id"]

    def emit(event: dict[str, Any]) -> None:
        output.write(json.dumps({"id": request_id, **event}) + "\n")
        output.flush()

    stopped = False
    try:
        stopped = generate(model, request, emit, lambda: request_id in commands.stopped)
    except RequestError as exc:
        emit({"event": "error", "kind": exc.kind, "message": str(exc)})
    except Exception:
        logger.exception("LlamaCpp: generation failed")
        emit({"event": "error", "kind": "upstream_error", "message": "The local model failed."})
    commands.stopped.discard(request_id)
    emit({"event": "end", "stopped": stopped})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The local model's worker (see the docstring).")
    parser.add_argument("--fault", choices=[s.name for s in signal.Signals], default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The protocol keeps the real stdout; fd 1 becomes stderr for anything native code prints.
    output = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    commands = Commands()
    threading.Thread(
        target=commands.read, args=(sys.stdin.buffer,), name="commands", daemon=True
    ).start()
    serve(commands, output, args.fault)


if __name__ == "__main__":
    main()
