"""The OpenAI-compatible provider against a real server we did not write: llama-cpp-python's.

The server (tests/llama_server.py) runs the packaged SmolLM2-135M-Instruct model. Answers use
greedy decoding (temperature 0) and a request for a long story, which this model answers with
hundreds of tokens, so a short max_tokens always cuts the answer and the streams are never
one-token long.
"""

import asyncio

import pytest

from providers.errors import (
    BadRequestError,
    MissingAuthError,
    ModelNotFoundError,
    UpstreamDroppedError,
)
from providers.models import ProviderConfig
from providers.openai_compatible import OpenAICompatible
from providers.services import apply_token, stream_chat
from providers.types import FinishReason, ProviderInfo, Usage
from tests.llama_server import LlamaServer

pytestmark = pytest.mark.local_model

PROMPT = [{"role": "user", "content": "Write a long story about a dragon."}]
MAX_TOKENS = 12
# A conversation longer than the server's context (about one token per word).
TOO_LONG = [{"role": "user", "content": "word " * 3000}]


def call(server: LlamaServer, **kwargs):
    kwargs.setdefault("model", server.model)
    kwargs.setdefault("messages", PROMPT)
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("api_key", server.api_key)
    return OpenAICompatible.create_async_generator(api_base=server.api_base, **kwargs)


async def collect(server: LlamaServer, **kwargs) -> list:
    return [chunk async for chunk in call(server, **kwargs)]


def texts(chunks: list) -> list[str]:
    return [chunk for chunk in chunks if isinstance(chunk, str)]


async def test_model_list_names_every_model_the_server_serves(llama_server):
    models = await OpenAICompatible.fetch_models(
        api_base=llama_server.api_base, api_key=llama_server.api_key
    )
    assert models == [llama_server.model, llama_server.missing_model]


async def test_streamed_answer_arrives_in_several_deltas_then_a_finish_reason(llama_server):
    chunks = await collect(llama_server)
    deltas = texts(chunks)
    assert len(deltas) > 1
    assert "".join(deltas).strip()
    # max_tokens reached the server: the answer was cut, not finished.
    assert chunks[-1] == FinishReason("length")


async def test_non_streaming_answer_is_one_text_with_usage_within_max_tokens(llama_server):
    chunks = await collect(llama_server, stream=False)
    assert isinstance(chunks[0], str) and chunks[0].strip()
    [usage] = [chunk for chunk in chunks if isinstance(chunk, Usage)]
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert chunks[-1] == FinishReason("length")


async def test_create_async_returns_the_whole_text(llama_server):
    text = await OpenAICompatible.create_async(
        llama_server.model,
        PROMPT,
        api_base=llama_server.api_base,
        api_key=llama_server.api_key,
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    assert isinstance(text, str) and len(text.split()) > 1


async def test_wrong_api_key_is_missing_auth_and_the_key_is_not_echoed(llama_server):
    wrong_key = "sk-wrong-key-for-the-llama-server"
    with pytest.raises(MissingAuthError) as caught:
        await collect(llama_server, api_key=wrong_key)
    assert "401" in str(caught.value)
    assert wrong_key not in str(caught.value)


async def test_too_long_conversation_is_a_bad_request_naming_the_context(llama_server):
    with pytest.raises(BadRequestError) as caught:
        await collect(llama_server, messages=TOO_LONG, stream=False)
    assert f"maximum context length is {llama_server.context_tokens} tokens" in str(caught.value)


async def test_a_listed_model_whose_file_is_gone_is_model_not_found(llama_server):
    # The server answers 400 (OpenAI says 404) with the code model_not_found.
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        await collect(llama_server, model=llama_server.missing_model, stream=False)


@pytest.mark.parametrize("failure", ["conversation-too-long", "model-file-gone"])
async def test_a_failure_after_the_200_header_is_not_taken_for_an_empty_answer(
    llama_server, failure
):
    # In streaming mode this server fails after it has sent "200 OK": the event stream is empty.
    if failure == "conversation-too-long":
        request = {"messages": TOO_LONG}
    else:
        request = {"model": llama_server.missing_model}
    with pytest.raises(UpstreamDroppedError):
        await collect(llama_server, **request)


async def test_a_stream_cut_short_by_another_request_is_reported_as_dropped(llama_server):
    received: list = []
    first_delta = asyncio.Event()

    async def long_answer() -> None:
        async for chunk in call(llama_server, max_tokens=150):
            received.append(chunk)
            first_delta.set()

    first = asyncio.create_task(long_answer())
    async with asyncio.timeout(60):
        await first_delta.wait()
    # The server ends the running stream (with [DONE] but no finish reason) to serve this one.
    second = await collect(llama_server)
    with pytest.raises(UpstreamDroppedError):
        await first
    assert texts(received)
    assert second[-1] == FinishReason("length")


def llama_server_config(server: LlamaServer, **fields) -> ProviderConfig:
    config = ProviderConfig(
        name="llama-server",
        provider_class="OpenAICompatible",
        api_base=server.api_base,
        default_model=server.model,
        **fields,
    )
    apply_token(config=config, token=server.api_key)
    return config


async def test_stream_chat_through_a_provider_config(llama_server, encryption_keys):
    config = llama_server_config(llama_server)
    chunks = [
        chunk async for chunk in stream_chat(config, PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    ]
    assert chunks[0] == ProviderInfo(provider="llama-server", model=llama_server.model)
    assert len(texts(chunks)) > 1
    assert chunks[-1] == FinishReason("length")


async def test_stream_chat_refuses_a_model_the_config_does_not_offer(llama_server, encryption_keys):
    # This server answers any name it does not know with its first model, so an unknown model is
    # caught by the config's own list (filled from the server's model list) before any request.
    models = await OpenAICompatible.fetch_models(
        api_base=llama_server.api_base, api_key=llama_server.api_key
    )
    config = llama_server_config(llama_server, allowed_models=models)
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        async for _ in stream_chat(config, PROMPT, model="no-such-model"):
            pass
