"""The in-process llama.cpp provider, run with the real packaged model (Gemma 3 270M, base model).

Generations use greedy decoding (temperature 0) and COUNT, a prompt this model continues for well
over forty tokens in the provider's plain format, so a small max_tokens always cuts the answer.
"""

import asyncio
import threading

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
    PACKAGED_MODEL,
    LlamaCpp,
    _prompt_format,
    _render,
    packaged_model_path,
    shared_model,
    split_at_stop,
)
from providers.types import FinishReason, Usage

pytestmark = pytest.mark.local_model

COUNT = [{"role": "user", "content": "Count from 1 to 100: 1, 2, 3, 4, 5,"}]
FRANCE = [{"role": "user", "content": "The capital of France is"}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]


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


@pytest.fixture(scope="module")
def vocabulary() -> Llama:
    """The packaged model's tokenizer and metadata only (no weights): for prompt rendering."""
    return Llama(model_path=str(packaged_model_path()), vocab_only=True, verbose=False)


def prompt_tokens(vocabulary: Llama, messages: list, chat_format: str) -> int:
    prompt = _render(vocabulary, _prompt_format(vocabulary, chat_format), messages)
    return len(vocabulary.tokenize(prompt.encode(), add_bos=False, special=True))


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llamacpp-generation"]


def model_is_free() -> bool:
    """Whether a new request would get the model at once: nobody holds it at this instant."""
    return not shared_model._lock.locked()


# --- Prompt formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chat_format", "expected"),
    [
        (
            "plain",
            "<bos>Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:",
        ),
        (
            # Gemma has no system role: the system prompt opens the first user turn.
            "gemma",
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
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
            # The BOS text is this vocabulary's (<bos>); a Llama 3 file has its own.
            "llama-3",
            "<bos><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
    ],
)
def test_chat_format_renders_the_conversation(vocabulary, chat_format, expected):
    assert _render(vocabulary, _prompt_format(vocabulary, chat_format), CONVERSATION) == expected


def test_plain_format_opens_with_a_preamble_when_there_is_no_system_prompt(vocabulary):
    prompt = _render(vocabulary, _prompt_format(vocabulary, "plain"), FRANCE)
    assert prompt == (
        "<bos>A conversation between a user and a helpful assistant.\n\n"
        "User: The capital of France is\nAssistant:"
    )


def test_repeated_and_empty_turns_are_merged_for_strict_templates(vocabulary):
    messages = [
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Second"},
    ]
    prompt = _render(vocabulary, _prompt_format(vocabulary, "gemma"), messages)
    assert prompt == (
        "<bos><start_of_turn>user\nFirst\n\nSecond<end_of_turn>\n<start_of_turn>model\n"
    )


def test_a_file_without_a_chat_template_gets_the_format_of_its_architecture(vocabulary):
    assert not vocabulary.metadata.get("tokenizer.chat_template")
    assert _prompt_format(vocabulary, None).name == "gemma"


async def test_unknown_chat_format_is_a_bad_request():
    with pytest.raises(BadRequestError, match="plain, gemma, chatml, llama-3"):
        await collect(chat_format="markdown")


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
    assert usage.prompt_tokens == prompt_tokens(vocabulary, COUNT, "plain")
    assert usage.total_tokens == usage.prompt_tokens + 8
    assert chunks[-1] == FinishReason("length")


async def test_chat_format_option_changes_the_prompt_the_model_reads(vocabulary):
    # The packaged model is a base model: it gets the plain format unless told otherwise.
    plain = usage_of(await collect(max_tokens=1))
    gemma = usage_of(await collect(max_tokens=1, chat_format="gemma"))
    assert plain.prompt_tokens == prompt_tokens(vocabulary, COUNT, "plain")
    assert gemma.prompt_tokens == prompt_tokens(vocabulary, COUNT, "gemma")
    assert plain.prompt_tokens != gemma.prompt_tokens


async def test_a_stop_string_ends_the_answer_and_is_never_shown():
    full = "".join(texts(await collect(max_tokens=16)))
    assert " 3," in full
    chunks = await collect(max_tokens=16, stop=[" 3,"])
    answer = "".join(texts(chunks))
    assert answer == full[: full.index(" 3,")]
    assert chunks[-1] == FinishReason("stop")


# --- Stops, queueing and concurrency ---------------------------------------------------------


async def stop_after_first_delta(how: str) -> None:
    if how == "close":
        stream = generate(max_tokens=200)
        assert isinstance(await anext(stream), str)
        async with asyncio.timeout(10):
            await stream.aclose()
        return
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in generate(max_tokens=200):
            first_delta.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(60):
        await first_delta.wait()
    task.cancel()
    async with asyncio.timeout(10):
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("how", ["close", "cancel"])
async def test_a_stop_mid_generation_frees_the_model_for_the_next_request(how, vocabulary):
    await collect(max_tokens=1)  # the model is loaded before the stopwatch-free checks below
    await stop_after_first_delta(how)
    # Once the stop has returned, the worker has let go of the model and no thread runs on.
    assert model_is_free()
    for thread in generation_threads():
        thread.join(timeout=5)
        assert not thread.is_alive()
    # It stopped between tokens: the context holds the prompt and a few tokens, not 200.
    assert shared_model._llm.n_tokens < prompt_tokens(vocabulary, COUNT, "plain") + 40
    chunks = await collect(max_tokens=4)
    assert usage_of(chunks).completion_tokens == 4


async def test_two_concurrent_requests_queue_and_both_complete(vocabulary):
    first, second = await asyncio.gather(
        collect(COUNT, max_tokens=6), collect(FRANCE, max_tokens=6)
    )
    for chunks, messages in ((first, COUNT), (second, FRANCE)):
        assert texts(chunks)
        assert usage_of(chunks).prompt_tokens == prompt_tokens(vocabulary, messages, "plain")
        assert isinstance(chunks[-1], FinishReason)
    assert model_is_free()


async def test_a_request_that_waits_past_its_timeout_for_the_busy_model_times_out():
    assert shared_model.acquire(cancelled=threading.Event(), timeout=5)
    try:
        with pytest.raises(ProviderTimeoutError, match="busy"):
            await collect(timeout=0.1)
    finally:
        shared_model.release()


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


# Last: a failed load leaves no model loaded, so the next generation loads it again.
async def test_a_file_that_is_not_gguf_is_a_load_error_without_the_servers_path(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ResponseError, match="could not be loaded") as caught:
        await collect(model_path=str(path))
    assert str(tmp_path) not in str(caught.value)
    assert model_is_free()
