"""The local provider with the real packaged model (SmolLM2-135M-Instruct) in its real worker
process: prompts, streaming, stops, queueing, and what happens when the worker dies or hangs.

Generations use greedy decoding (temperature 0). COUNT is a prompt this model answers with well
over a hundred tokens, STORY one it goes on with past any max_tokens used here.
"""

import asyncio
import os
import signal
import sys

import pytest

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the `local` dependency group)")

from llama_cpp import Llama

from providers.errors import (
    BadRequestError,
    ModelNotFoundError,
    ProviderTimeoutError,
    ResponseError,
)
from providers.llamacpp import (
    DEFAULT_SYSTEM_PROMPT,
    FORMER_PACKAGED_MODEL,
    PACKAGED_MODEL,
    LlamaCpp,
    packaged_model_path,
    with_system_prompt,
)
from providers.llamacpp_supervisor import PROJECT_ROOT, WorkerDiedError, local_model
from providers.llamacpp_worker import prompt_format, render, split_at_stop
from providers.types import FinishReason, Usage

pytestmark = pytest.mark.local_model

COUNT = [{"role": "user", "content": "Count from 1 to 100: 1, 2, 3, 4, 5,"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon."}]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]
# The text of SmolLM2's BOS token, which the built-in formats open with.
BOS = "<|im_start|>"
# How long a test waits for the worker to reach a state (generous: CI shares two cores).
STATE_TIMEOUT = 60


def generate(messages=COUNT, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 8)
    return LlamaCpp.create_async_generator(PACKAGED_MODEL, messages, **kwargs)


async def collect(messages=COUNT, **kwargs) -> list:
    return [chunk async for chunk in generate(messages, **kwargs)]


def texts(chunks: list) -> list[str]:
    return [chunk for chunk in chunks if isinstance(chunk, str)]


def usage_of(chunks: list) -> Usage:
    [usage] = [chunk for chunk in chunks if isinstance(chunk, Usage)]
    return usage


async def wait_until(condition, what: str) -> None:
    """Poll `condition` (state held by the supervisor's threads, which set no asyncio event)."""
    try:
        async with asyncio.timeout(STATE_TIMEOUT):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not reached within {STATE_TIMEOUT}s: {what}")


def worker_pid() -> int:
    assert local_model.worker is not None
    return local_model.worker.pid


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def vocabulary() -> Llama:
    """The packaged model's tokenizer and metadata only (no weights): for prompt rendering."""
    return Llama(model_path=str(packaged_model_path()), vocab_only=True, verbose=False)


def tokens_of(vocabulary: Llama, messages: list, chat_format: str | None = None) -> int:
    prompt = render(vocabulary, prompt_format(vocabulary, chat_format), messages)
    return len(vocabulary.tokenize(prompt.encode(), add_bos=False, special=True))


def prompt_tokens(vocabulary: Llama, messages: list, chat_format: str | None = None) -> int:
    """What the worker reads for `messages` by default: the default system prompt included."""
    return tokens_of(vocabulary, with_system_prompt(messages, DEFAULT_SYSTEM_PROMPT), chat_format)


# --- Prompt formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chat_format", "expected"),
    [
        (
            # The GGUF's own template (ChatML), used unless a format is chosen.
            None,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        ("plain", f"{BOS}Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:"),
        (
            # Gemma has no system role: the system prompt opens the first user turn.
            "gemma",
            f"{BOS}<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
            "<start_of_turn>model\nHello!<end_of_turn>\n"
            "<start_of_turn>user\nBye<end_of_turn>\n"
            "<start_of_turn>model\n",
        ),
        (
            "chatml",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (
            "llama-3",
            f"{BOS}<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
    ],
)
def test_chat_format_renders_the_conversation(vocabulary, chat_format, expected):
    assert render(vocabulary, prompt_format(vocabulary, chat_format), CONVERSATION) == expected


def test_the_packaged_model_uses_the_chat_template_of_its_gguf(vocabulary):
    assert vocabulary.metadata.get("tokenizer.chat_template")
    assert prompt_format(vocabulary, None).name == "gguf"


def test_plain_format_opens_with_a_preamble_when_there_is_no_system_prompt(vocabulary):
    prompt = render(vocabulary, prompt_format(vocabulary, "plain"), FRANCE)
    assert prompt == (
        f"{BOS}A conversation between a user and a helpful assistant.\n\n"
        "User: What is the capital of France?\nAssistant:"
    )


def test_repeated_and_empty_turns_are_merged_for_strict_templates(vocabulary):
    messages = [
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Second"},
    ]
    prompt = render(vocabulary, prompt_format(vocabulary, "gemma"), messages)
    assert (
        prompt == f"{BOS}<start_of_turn>user\nFirst\n\nSecond<end_of_turn>\n<start_of_turn>model\n"
    )


async def test_unknown_chat_format_is_a_bad_request():
    with pytest.raises(BadRequestError, match="plain, gemma, chatml, llama-3"):
        await collect(chat_format="markdown")


async def test_the_default_system_prompt_is_read_only_when_the_conversation_has_none(vocabulary):
    default = usage_of(await collect(FRANCE, max_tokens=1))
    own = usage_of(await collect(CONVERSATION, max_tokens=1))
    switched_off = usage_of(await collect(FRANCE, max_tokens=1, system_prompt=""))
    with_default = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *FRANCE]
    assert default.prompt_tokens == tokens_of(vocabulary, with_default)
    # The conversation's own system prompt replaces the default rather than joining it.
    assert own.prompt_tokens == tokens_of(vocabulary, CONVERSATION)
    # Switched off, the model reads its GGUF template's own system line instead.
    assert switched_off.prompt_tokens == tokens_of(vocabulary, FRANCE)
    assert switched_off.prompt_tokens != default.prompt_tokens


async def test_the_default_answers_who_wrote_romeo_and_juliet():
    question = [{"role": "user", "content": "Who wrote Romeo and Juliet?"}]
    chunks = await collect(question, max_tokens=64)
    assert "Shakespeare" in "".join(texts(chunks))
    assert chunks[-1] == FinishReason("stop")


async def test_configs_naming_the_former_packaged_model_get_the_current_one():
    assert LlamaCpp.get_model(FORMER_PACKAGED_MODEL) == PACKAGED_MODEL
    stream = LlamaCpp.create_async_generator(
        FORMER_PACKAGED_MODEL, FRANCE, temperature=0, max_tokens=2
    )
    chunks = [chunk async for chunk in stream]
    assert texts(chunks) and usage_of(chunks).completion_tokens == 2


# --- Streaming text out of tokens ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pending", "stops", "expected"),
    [
        ("Hello", ["\nUser:"], ("Hello", "", False)),
        ("Hello\nUs", ["\nUser:"], ("Hello", "\nUs", False)),
        ("\nUser", ["\nUser:"], ("", "\nUser", False)),
        ("Hello\nUser: more", ["\nUser:"], ("Hello", "", True)),
        ("a<end_of", ["<end_of_turn>"], ("a", "<end_of", False)),
        # The earliest stop wins, whichever comes first in the list.
        ("x<|eot_id|>y\nUser:", ["\nUser:", "<|eot_id|>"], ("x", "", True)),
        # Held back: the longest ending that could still grow into any stop.
        ("ab\nAssis", ["\nUser:", "\nAssistant:"], ("ab", "\nAssis", False)),
        ("ab\n", ["\nUser:", "\nAssistant:"], ("ab", "\n", False)),
        ("abc", [""], ("abc", "", False)),
        ("abc", [], ("abc", "", False)),
    ],
)
def test_split_at_stop(pending, stops, expected):
    assert split_at_stop(pending, stops) == expected


async def test_streaming_yields_several_deltas_that_join_to_the_whole_answer():
    streamed = await collect(max_tokens=16)
    whole = await collect(max_tokens=16, stream=False)
    assert len(texts(streamed)) > 1
    assert texts(whole) == ["".join(texts(streamed))]
    assert streamed[-2:] == whole[-2:]


async def test_max_tokens_is_honoured_and_usage_reported(vocabulary):
    chunks = await collect(max_tokens=8)
    usage = usage_of(chunks)
    assert usage.completion_tokens == 8
    assert usage.prompt_tokens == prompt_tokens(vocabulary, COUNT)
    assert usage.total_tokens == usage.prompt_tokens + 8
    assert chunks[-1] == FinishReason("length")


async def test_chat_format_option_changes_the_prompt_the_model_reads(vocabulary):
    own = usage_of(await collect(max_tokens=1))
    plain = usage_of(await collect(max_tokens=1, chat_format="plain"))
    assert own.prompt_tokens == prompt_tokens(vocabulary, COUNT)
    assert plain.prompt_tokens == prompt_tokens(vocabulary, COUNT, "plain")
    assert own.prompt_tokens != plain.prompt_tokens


async def test_a_stop_string_ends_the_answer_and_is_never_shown():
    full = "".join(texts(await collect(max_tokens=16)))
    assert " 4," in full
    chunks = await collect(max_tokens=16, stop=[" 4,"])
    answer = "".join(texts(chunks))
    assert answer == full[: full.index(" 4,")]
    assert chunks[-1] == FinishReason("stop")


# --- The worker process: stops, queueing, crashes, hangs ------------------------------------


async def stop_after_first_delta(how: str) -> None:
    if how == "close":
        stream = generate(STORY, max_tokens=400)
        assert isinstance(await anext(stream), str)
        await stream.aclose()
        return
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in generate(STORY, max_tokens=400):
            first_delta.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(STATE_TIMEOUT):
        await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("how", ["close", "cancel"])
async def test_a_stop_mid_generation_frees_the_worker_for_the_next_request(how):
    await collect(max_tokens=1)
    pid, honoured = worker_pid(), local_model.worker.stops_honoured
    await stop_after_first_delta(how)
    # The worker ends the request early, before its next token; it was not killed to get there.
    await wait_until(lambda: not local_model.busy, "the worker is free")
    assert local_model.worker.stops_honoured == honoured + 1
    assert worker_pid() == pid and process_exists(pid)
    chunks = await collect(max_tokens=4)
    assert usage_of(chunks).completion_tokens == 4
    assert worker_pid() == pid


async def test_a_request_queued_behind_a_stopped_one_starts_once_the_worker_is_free():
    stream = generate(STORY, max_tokens=400)
    assert isinstance(await anext(stream), str)
    queued = asyncio.create_task(collect(FRANCE, max_tokens=4))
    await wait_until(lambda: local_model._slot._waiters, "the second request is queued")
    await stream.aclose()
    chunks = await asyncio.wait_for(queued, STATE_TIMEOUT)
    assert usage_of(chunks).completion_tokens >= 1
    assert isinstance(chunks[-1], FinishReason)


async def test_two_concurrent_requests_queue_for_one_worker_and_both_complete(vocabulary):
    first, second = await asyncio.gather(
        collect(COUNT, max_tokens=6), collect(FRANCE, max_tokens=6)
    )
    for chunks, messages in ((first, COUNT), (second, FRANCE)):
        assert texts(chunks)
        assert usage_of(chunks).prompt_tokens == prompt_tokens(vocabulary, messages)
        assert isinstance(chunks[-1], FinishReason)
    assert not local_model.busy


async def test_a_request_that_waits_past_its_timeout_for_the_busy_worker_times_out():
    assert await local_model._slot.acquire(max_wait=5)
    try:
        with pytest.raises(ProviderTimeoutError, match="busy"):
            await collect(timeout=0.1)
    finally:
        local_model._slot.release()
    assert not local_model.busy


async def test_a_worker_killed_mid_answer_ends_that_answer_and_the_next_gets_a_fresh_one():
    stream = generate(STORY, max_tokens=400)
    assert isinstance(await anext(stream), str)
    killed = worker_pid()
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(WorkerDiedError) as caught:
        async with asyncio.timeout(STATE_TIMEOUT):
            async for _ in stream:
                pass
    assert str(caught.value).startswith("The local model stopped unexpectedly (SIGKILL).")
    assert caught.value.code == "local_model_stopped"
    assert not local_model.busy
    chunks = await collect(FRANCE, max_tokens=4)
    assert isinstance(chunks[-1], FinishReason)
    assert worker_pid() != killed


async def test_a_worker_that_stops_sending_tokens_is_killed_and_replaced(settings):
    stream = generate(STORY, max_tokens=400)
    assert isinstance(await anext(stream), str)
    # Short only from here: on a busy machine the prompt alone may take longer than this. The
    # watchdog reads the setting at every look.
    settings.LOCAL_MODEL_STALL_SECONDS = 5
    stuck = worker_pid()
    os.kill(stuck, signal.SIGSTOP)  # alive, but not one more token
    try:
        with pytest.raises(ProviderTimeoutError, match="stopped answering"):
            async with asyncio.timeout(STATE_TIMEOUT):
                async for _ in stream:
                    pass
        # Killed and reaped before the answer ended.
        assert not process_exists(stuck)
    finally:
        if process_exists(stuck):
            os.kill(stuck, signal.SIGCONT)
    settings.LOCAL_MODEL_STALL_SECONDS = 120
    chunks = await collect(FRANCE, max_tokens=4)
    assert isinstance(chunks[-1], FinishReason)
    assert worker_pid() != stuck


async def test_closing_the_supervisor_ends_the_worker_and_the_next_request_starts_one():
    await collect(max_tokens=1)
    worker = local_model.worker
    local_model.close()
    assert worker.process.returncode == 0  # it exited by itself when its input closed
    chunks = await collect(FRANCE, max_tokens=2)
    assert isinstance(chunks[-1], FinishReason)
    assert local_model.worker is not worker


async def test_max_tokens_below_one_is_refused():
    with pytest.raises(BadRequestError):
        await collect(max_tokens=0)


# --- Model files -----------------------------------------------------------------------------


@pytest.mark.parametrize("given_as", ["model_path", "model"])
async def test_a_missing_model_file_is_model_not_found_without_the_servers_path(tmp_path, given_as):
    path = tmp_path / "models" / "absent.gguf"
    stream = (
        LlamaCpp.create_async_generator("", COUNT, model_path=str(path))
        if given_as == "model_path"
        else LlamaCpp.create_async_generator(str(path), COUNT)
    )
    with pytest.raises(ModelNotFoundError) as caught:
        await anext(stream)
    assert "absent.gguf" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


async def test_a_file_that_is_not_gguf_is_a_load_error_and_the_worker_carries_on(tmp_path):
    await collect(max_tokens=1)
    pid = worker_pid()
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ResponseError, match="could not be loaded") as caught:
        await collect(model_path=str(path))
    assert str(tmp_path) not in str(caught.value)
    assert not local_model.busy
    chunks = await collect(max_tokens=2)
    assert isinstance(chunks[-1], FinishReason)
    assert worker_pid() == pid


# --- The worker's lifetime follows its server process ----------------------------------------

SERVER_SCRIPT = """
import asyncio, os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django.setup()
from providers.llamacpp import PACKAGED_MODEL, LlamaCpp
from providers.llamacpp_supervisor import local_model

async def answer():
    messages = [{"role": "user", "content": "Hi"}]
    async for _ in LlamaCpp.create_async_generator(PACKAGED_MODEL, messages, max_tokens=2):
        pass

asyncio.run(answer())
print(local_model.worker.pid, flush=True)
if sys.argv[1] == "wait":
    sys.stdin.read()
"""


def is_gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("server_ends", ["exits", "is_killed"])
async def test_the_worker_ends_with_its_server_process(server_ends):
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER_SCRIPT,
        "exit" if server_ends == "exits" else "wait",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        async with asyncio.timeout(STATE_TIMEOUT):
            worker = int(await server.stdout.readline())
        assert not is_gone(worker) or server_ends == "exits"
        if server_ends == "is_killed":
            server.kill()  # no exit hooks: the worker only sees its input close
        await asyncio.wait_for(server.wait(), STATE_TIMEOUT)
        await wait_until(lambda: is_gone(worker), "the worker has exited")
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
