import asyncio
import inspect
import json
import stat
import threading
import time

import pytest

from providers.aichat import Aichat
from providers.base import (
    AbstractProvider,
    AsyncAuthedProvider,
    AsyncGeneratorProvider,
    AsyncProvider,
    AuthFileMixin,
    ProviderModelMixin,
    RaiseErrorMixin,
)
from providers.errors import (
    BadRequestError,
    MissingAuthError,
    ModelNotFoundError,
    PaymentRequiredError,
    ProviderTimeoutError,
    RateLimitError,
    ResponseError,
    ResponseStatusError,
)
from providers.lockchat import Lockchat
from providers.openai_compatible import OpenAICompatible
from providers.raycast import Raycast
from providers.registry import all_providers
from providers.types import AuthResult, FinishReason, Usage
from tests.providers.conftest import USER_HELLO


class SyncEcho(AbstractProvider):
    calls: list = []

    @classmethod
    def create_completion(cls, model, messages, stream, delay: float = 0.0, **kwargs):
        cls.calls.append({"stream": stream, "thread": threading.get_ident(), **kwargs})
        time.sleep(delay)
        yield "Hello, "
        yield Usage(1, 2, 3)
        yield messages[-1]["content"]
        yield FinishReason("stop")


class AsyncEcho(AsyncProvider):
    @classmethod
    async def create_async(cls, model, messages, **kwargs):
        return f"{model}: {messages[-1]['content']}"


class Counter(AsyncGeneratorProvider):
    steps: list = []

    @classmethod
    async def create_async_generator(cls, model, messages, stream=True, count: int = 3, **kwargs):
        cls.steps.append(("stream", stream))
        for index in range(count):
            cls.steps.append(index)
            yield f"{index} "
        yield FinishReason("length")


# --- AbstractProvider.create_async ---------------------------------------------------------


async def test_create_async_joins_text_and_drops_response_objects():
    SyncEcho.calls.clear()
    assert await SyncEcho.create_async("m", USER_HELLO) == "Hello, Hello"


async def test_create_async_runs_off_the_event_loop_and_defaults_stream_to_false():
    SyncEcho.calls.clear()
    await SyncEcho.create_async("m", USER_HELLO)
    [call] = SyncEcho.calls
    assert call["stream"] is False
    assert call["thread"] != threading.get_ident()


async def test_create_async_uses_the_given_executor():
    from concurrent.futures import ThreadPoolExecutor

    SyncEcho.calls.clear()
    with ThreadPoolExecutor(1, thread_name_prefix="given") as executor:
        thread = await asyncio.get_running_loop().run_in_executor(executor, threading.get_ident)
        await SyncEcho.create_async("m", USER_HELLO, executor=executor)
    assert SyncEcho.calls[0]["thread"] == thread


async def test_create_async_past_timeout_raises_provider_timeout():
    with pytest.raises(ProviderTimeoutError) as caught:
        # The worker sleeps seconds past the timeout, however slowly this loop runs.
        await SyncEcho.create_async("m", USER_HELLO, timeout=0.05, delay=5)
    assert isinstance(caught.value, TimeoutError)


async def test_async_generator_create_async_past_timeout_raises_provider_timeout(fake_upstream):
    # The upstream would wait a minute (it stops waiting when the client leaves); a one-second
    # timeout leaves a loaded machine time to connect and send the request before it fires.
    fake_upstream.behave(first_byte_delay=60)
    with pytest.raises(ProviderTimeoutError):
        await OpenAICompatible.create_async(
            "fake-model", USER_HELLO, timeout=1.0, api_base=fake_upstream.url + "/v1"
        )
    # The abandoned request is closed, not left running in the background.
    request = await asyncio.to_thread(fake_upstream.wait_done)
    assert request.disconnected.is_set()


# --- AsyncProvider ----------------------------------------------------------------------------


def test_async_provider_create_completion_yields_the_single_result():
    assert list(AsyncEcho.create_completion("m", USER_HELLO)) == ["m: Hello"]


# --- AsyncGeneratorProvider and the sync bridges ------------------------------------------


def test_async_generator_provider_supports_stream():
    assert Counter.supports_stream is True
    assert AsyncEcho.supports_stream is False


def test_create_completion_streams_chunk_by_chunk():
    Counter.steps.clear()
    chunks = Counter.create_completion("m", USER_HELLO, stream=True, count=3)
    assert next(chunks) == "0 "
    # Only the first step has run: the generator is driven lazily, not collected.
    assert Counter.steps == [("stream", True), 0]
    assert list(chunks) == ["1 ", "2 ", FinishReason("length")]


def test_create_completion_without_stream_yields_the_joined_text():
    Counter.steps.clear()
    chunks = list(Counter.create_completion("m", USER_HELLO, stream=False, count=3))
    assert chunks == ["0 1 2 ", FinishReason("length")]
    assert Counter.steps[0] == ("stream", False)


def test_sync_bridge_works_from_a_worker_thread():
    result = {}

    def work():
        result["chunks"] = list(Counter.create_completion("m", USER_HELLO, count=2))
        result["single"] = list(AsyncEcho.create_completion("m", USER_HELLO))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert result["chunks"] == ["0 ", "1 ", FinishReason("length")]
    assert result["single"] == ["m: Hello"]


def test_sync_bridge_raises_the_providers_typed_error(fake_upstream):
    # Raycast refuses to run without a token; the sync caller gets that very error type.
    with pytest.raises(MissingAuthError):
        list(Raycast.create_completion("gpt-4", USER_HELLO, api_base=fake_upstream.url))
    fake_upstream.behave(status=429)
    with pytest.raises(RateLimitError, match=r"^Error 429: "):
        list(Aichat.create_completion("gpt-3.5-turbo", USER_HELLO, api_base=fake_upstream.url))


async def test_sync_bridge_raises_typed_errors_inside_a_running_event_loop(fake_upstream):
    fake_upstream.behave(status=402)
    with pytest.raises(PaymentRequiredError):
        list(
            OpenAICompatible.create_completion(
                "fake-model", USER_HELLO, api_base=fake_upstream.url + "/v1"
            )
        )


async def test_sync_bridge_works_inside_a_running_event_loop():
    # Sync code called from a coroutine: asyncio.run would refuse; the bridge must not deadlock.
    assert list(Counter.create_completion("m", USER_HELLO, count=2))[:2] == ["0 ", "1 "]
    assert list(AsyncEcho.create_completion("m", USER_HELLO)) == ["m: Hello"]


def test_closing_a_sync_stream_early_closes_the_upstream_connection(fake_upstream):
    fake_upstream.behave(reply="word " * 200, chunk_delay=0.01)
    chunks = OpenAICompatible.create_completion(
        "fake-model", USER_HELLO, stream=True, api_base=fake_upstream.url + "/v1"
    )
    assert next(chunks) == "word "
    chunks.close()
    assert fake_upstream.wait_done(5.0).disconnected.is_set()


def test_sync_stream_against_real_http(fake_upstream):
    fake_upstream.behave(reply="Over the bridge")
    chunks = list(
        OpenAICompatible.create_completion(
            "fake-model", USER_HELLO, stream=True, api_base=fake_upstream.url + "/v1"
        )
    )
    assert [c for c in chunks if isinstance(c, str)] == ["Over ", "the ", "bridge"]


async def test_async_generator_provider_create_async_joins_the_text():
    assert await Counter.create_async("m", USER_HELLO, count=2) == "0 1 "


# --- get_create_function / get_async_create_function ----------------------------------------


def test_create_functions_per_kind():
    assert SyncEcho.get_create_function() == SyncEcho.create_completion
    assert SyncEcho.get_async_create_function() == SyncEcho.create_async
    assert AsyncEcho.get_create_function() == AsyncEcho.create_completion
    assert AsyncEcho.get_async_create_function() == AsyncEcho.create_async
    assert Counter.get_create_function() == Counter.create_completion
    assert Counter.get_async_create_function() == Counter.create_async_generator
    assert AuthedEcho.get_async_create_function() == AuthedEcho.create_async_generator


# --- get_parameters and params --------------------------------------------------------------


class Documented(AsyncGeneratorProvider, ProviderModelMixin):
    default_model = "doc-model"

    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: list[dict[str, str]],
        stream: bool = True,
        proxy: str | None = None,
        temperature: float = 0.5,
        secret_internal: int = 1,
        max_tokens: int | None = None,
        seed: int = 42,
        **kwargs,
    ):
        yield ""


class NoStream(AsyncProvider):
    @classmethod
    async def create_async(cls, model: str, messages: list, stream: bool = False, top_k: int = 5):
        return ""


def test_get_parameters_keeps_signature_order_and_the_allow_list():
    parameters = Documented.get_parameters()
    assert list(parameters) == [
        "model",
        "messages",
        "stream",
        "proxy",
        "temperature",
        "max_tokens",
        "seed",
    ]
    assert all(isinstance(p, inspect.Parameter) for p in parameters.values())


def test_get_parameters_leaves_out_stream_without_stream_support():
    assert list(NoStream.get_parameters()) == ["model", "messages", "top_k"]


class SyncStreamer(AbstractProvider):
    supports_stream = True

    @classmethod
    def create_completion(cls, model: str, messages: list, stream: bool, top_p: float = 1.0):
        yield ""


def test_get_parameters_of_a_plain_abstract_provider_come_from_create_completion():
    # create_async would give model, messages, timeout: the entry point is create_completion.
    assert list(SyncStreamer.get_parameters()) == ["model", "messages", "stream", "top_p"]
    assert list(SyncEcho.get_parameters()) == ["model", "messages"]


def test_get_parameters_of_real_providers_hide_their_private_arguments():
    # Raycast's `auth` and Aichat's missing `stream` show the allow-list and supports_stream.
    assert list(Raycast.get_parameters()) == [
        "model",
        "messages",
        "stream",
        "proxy",
        "timeout",
        "api_key",
        "api_base",
        "temperature",
    ]
    assert list(Aichat.get_parameters()) == [
        "model",
        "messages",
        "proxy",
        "timeout",
        "api_base",
        "temperature",
        "top_p",
    ]
    assert "max_retries" in Lockchat.get_parameters()


def test_get_parameters_as_json_gives_serialisable_examples():
    result = Documented.get_parameters(as_json=True)
    json.dumps(result)
    assert result == {
        "model": "doc-model",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
        "proxy": None,
        "temperature": 0.5,
        "max_tokens": None,
        "seed": 42,
        "provider": "Documented",
    }


class Undocumented(AsyncGeneratorProvider):
    @classmethod
    async def create_async_generator(
        cls,
        model: str,
        messages: list,
        stream: bool,
        temperature: float,
        n: int,
        web_search: bool,
        proxy: str | None,
        seed: int | None,
        media: list,
        **kwargs,
    ):
        yield ""


def test_get_parameters_as_json_invents_examples_that_fit_the_annotation():
    assert Undocumented.get_parameters(as_json=True) == {
        "model": None,  # no default_model on a class without ProviderModelMixin
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
        "temperature": 0.0,
        "n": 0,
        "web_search": False,
        "proxy": "",
        "seed": 0,
        "media": [],
        "provider": "Undocumented",
    }


def test_get_parameters_as_json_of_every_registered_provider_is_json():
    for provider in all_providers():
        result = provider.get_parameters(as_json=True)
        assert json.loads(json.dumps(result)) == result, provider.__name__
        assert result["provider"] == provider.__name__
        assert result["stream"] is provider.supports_stream
        assert result["model"] == getattr(provider, "default_model", None)
    assert Aichat.get_parameters(as_json=True)["stream"] is False


def test_params_lists_one_parameter_per_line_with_quoted_string_defaults():
    class WithString(AsyncGeneratorProvider):
        @classmethod
        async def create_async_generator(
            cls, model: str, messages: list, stream: bool = True, proxy: str = "socks5://x"
        ):
            yield ""

    assert WithString.params.splitlines() == [
        "WithString supports:",
        "  model: str",
        "  messages: list",
        "  stream: bool = True",
        '  proxy: str = "socks5://x"',
    ]


def test_params_of_a_real_provider_show_union_types_and_defaults():
    lines = Raycast.params.splitlines()
    assert lines[0] == "Raycast supports:"
    assert "  proxy: str | None = None" in lines
    assert "  temperature: float = 0.5" in lines
    assert "  messages: list[dict[str, Any]]" in lines
    assert not any("auth" in line.split(":")[0] for line in lines)


# --- ProviderModelMixin ---------------------------------------------------------------------


class Modelled(ProviderModelMixin):
    default_model = "base"
    models = ["base", "large"]
    model_aliases = {"big": "large"}


class Unlisted(ProviderModelMixin):
    default_model = "only"


def test_get_models_returns_models_or_the_default():
    assert Modelled.get_models() == ["base", "large"]
    assert Unlisted.get_models() == ["only"]


def test_get_model_resolves_empty_and_aliases_and_records_last_model():
    assert Modelled.get_model(None) == "base"
    assert Modelled.get_model("") == "base"
    assert Modelled.get_model("big") == "large"
    assert Modelled.last_model == "large"


def test_get_model_refuses_an_unknown_model_naming_the_valid_ones():
    Modelled.last_model = None
    with pytest.raises(ModelNotFoundError) as caught:
        Modelled.get_model("tiny")
    assert "tiny" in str(caught.value) and "base, large" in str(caught.value)
    assert Modelled.last_model is None


def test_get_model_accepts_any_model_when_none_are_listed():
    assert Unlisted.get_model("anything") == "anything"


# --- RaiseErrorMixin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, MissingAuthError),
        (402, PaymentRequiredError),
        (400, BadRequestError),
        (429, RateLimitError),
        (500, ResponseStatusError),
        (403, ResponseStatusError),
    ],
)
def test_raise_error_maps_status(status, error_type):
    with pytest.raises(error_type) as caught:
        RaiseErrorMixin.raise_error({"error": "boom"}, status)
    assert str(caught.value) == f"Error {status}: boom"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"error_message": "plain message"}, "plain message"),
        ({"error": "a string"}, "a string"),
        ({"error": True}, "Unknown error"),
        ({"error": {"code": "quota", "message": "used up"}}, "quota: used up"),
        ({"error": {"message": "only message"}}, "only message"),
        ({"error": {"code": "only_code"}}, "only_code"),
    ],
)
def test_raise_error_reads_every_error_shape(data, text):
    with pytest.raises(ResponseStatusError) as caught:
        RaiseErrorMixin.raise_error(data, 500)
    assert str(caught.value) == f"Error 500: {text}"


def test_raise_error_maps_an_error_message_with_a_status():
    with pytest.raises(MissingAuthError, match=r"^Error 401: key revoked$"):
        RaiseErrorMixin.raise_error({"error_message": "key revoked"}, 401)


@pytest.mark.parametrize("status", [None, 429])
def test_raise_error_takes_a_numeric_code_as_the_status_without_repeating_it(status):
    with pytest.raises(RateLimitError) as caught:
        RaiseErrorMixin.raise_error({"error": {"code": 429, "message": "slow down"}}, status)
    assert str(caught.value) == "Error 429: slow down"


def test_raise_error_without_status_raises_response_error():
    with pytest.raises(ResponseError, match=r"^in-stream failure$"):
        RaiseErrorMixin.raise_error({"error": "in-stream failure"})


@pytest.mark.parametrize("data", [{}, {"error": None}, {"error": False}, {"ok": 1}, "text", None])
def test_raise_error_does_nothing_without_an_error(data):
    RaiseErrorMixin.raise_error(data, 500)


# --- AuthFileMixin and AsyncAuthedProvider --------------------------------------------------


def test_cache_file_is_named_after_parent_or_class(settings, tmp_path):
    settings.PROVIDERS_AUTH_DIR = tmp_path

    class Child(AuthFileMixin):
        parent = "Family"

    class Plain(AuthFileMixin):
        pass

    assert Child.get_cache_file() == tmp_path / "auth_Family.json"
    assert Plain.get_cache_file() == tmp_path / "auth_Plain.json"


class AuthedEcho(AsyncAuthedProvider):
    """Sends the cached api_key to the fake upstream's OpenAI endpoint."""

    logins: list = []

    @classmethod
    async def on_auth_async(cls, api_key=None, **kwargs):
        cls.logins.append(api_key)
        yield "logging in"
        async for chunk in super().on_auth_async(api_key=api_key, **kwargs):
            yield chunk

    @classmethod
    async def create_authed(cls, model, messages, auth_result, stream=True, **kwargs):
        kwargs.pop("api_key", None)
        async for chunk in OpenAICompatible.create_async_generator(
            model, messages, stream, api_key=auth_result.api_key, **kwargs
        ):
            yield chunk


async def test_default_on_auth_async_needs_an_api_key():
    with pytest.raises(MissingAuthError):
        async for _ in AsyncAuthedProvider.on_auth_async():
            pass
    results = [chunk async for chunk in AsyncAuthedProvider.on_auth_async(api_key="k")]
    assert results == [AuthResult(api_key="k")]


def test_on_auth_is_the_sync_twin():
    assert list(AuthedEcho.on_auth(api_key="k")) == ["logging in", AuthResult(api_key="k")]


def test_write_cache_file_is_private_and_none_deletes(tmp_path):
    path = tmp_path / "sub" / "auth_X.json"
    AsyncAuthedProvider.write_cache_file(path, AuthResult(api_key="secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"api_key": "secret"}
    AsyncAuthedProvider.write_cache_file(path, None)
    assert not path.exists()


def test_rewriting_a_world_readable_cache_file_makes_it_private(tmp_path):
    path = tmp_path / "auth_X.json"
    path.write_text("{}")
    path.chmod(0o644)
    AsyncAuthedProvider.write_cache_file(path, AuthResult(api_key="secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["auth_X.json"]  # no temporary file left


def test_concurrent_cache_writers_never_leave_a_half_written_file(tmp_path):
    path = tmp_path / "auth_X.json"
    results = [AuthResult(api_key=f"key-{index}", pad="x" * 50_000) for index in range(8)]
    threads = [
        threading.Thread(target=AsyncAuthedProvider.write_cache_file, args=(path, result))
        for result in results
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert AuthResult(**json.loads(path.read_text())) in results
    assert [p.name for p in tmp_path.iterdir()] == ["auth_X.json"]


def test_auth_result_repr_hides_values():
    assert "secret" not in repr(AuthResult(api_key="secret"))
    assert str(AuthResult(api_key="secret")) == ""


@pytest.fixture
def auth_dir(settings, tmp_path):
    settings.PROVIDERS_AUTH_DIR = tmp_path
    AuthedEcho.logins.clear()
    return tmp_path


async def authed_chunks(fake_upstream, api_key):
    return [
        chunk
        async for chunk in AuthedEcho.create_async_generator(
            "fake-model", USER_HELLO, api_key=api_key, api_base=fake_upstream.url + "/v1"
        )
    ]


async def test_authed_provider_logs_in_once_and_then_uses_the_cache(auth_dir, fake_upstream):
    fake_upstream.behave(reply="ok", accept_token="good-key")
    first = await authed_chunks(fake_upstream, "good-key")
    assert first[:2] == ["logging in", "ok"]
    second = await authed_chunks(fake_upstream, "good-key")
    assert second[0] == "ok"
    assert AuthedEcho.logins == ["good-key"]
    assert json.loads((auth_dir / "auth_AuthedEcho.json").read_text()) == {"api_key": "good-key"}


async def test_rejected_cached_auth_reauthenticates_once_and_rewrites_the_cache(
    auth_dir, fake_upstream
):
    AuthedEcho.write_cache_file(AuthedEcho.get_cache_file(), AuthResult(api_key="stale-key"))
    fake_upstream.behave(reply="ok", accept_token="fresh-key")
    chunks = await authed_chunks(fake_upstream, "fresh-key")
    assert [c for c in chunks if isinstance(c, str)] == ["logging in", "ok"]
    assert [r.headers["authorization"] for r in fake_upstream.requests] == [
        "Bearer stale-key",
        "Bearer fresh-key",
    ]
    assert json.loads(AuthedEcho.get_cache_file().read_text()) == {"api_key": "fresh-key"}


async def test_reauthentication_happens_only_once(auth_dir, fake_upstream):
    AuthedEcho.write_cache_file(AuthedEcho.get_cache_file(), AuthResult(api_key="stale-key"))
    fake_upstream.behave(accept_token="neither-key")
    with pytest.raises(MissingAuthError):
        await authed_chunks(fake_upstream, "fresh-but-wrong")
    assert [r.headers["authorization"] for r in fake_upstream.requests] == [
        "Bearer stale-key",
        "Bearer fresh-but-wrong",
    ]
    assert AuthedEcho.logins == ["fresh-but-wrong"]


def test_authed_provider_create_completion_is_the_sync_bridge(auth_dir, fake_upstream):
    fake_upstream.behave(reply="sync ok", accept_token="good-key")
    chunks = AuthedEcho.create_completion(
        "fake-model", USER_HELLO, api_key="good-key", api_base=fake_upstream.url + "/v1"
    )
    assert [c for c in chunks if isinstance(c, str)] == ["logging in", "sync ", "ok"]
    assert stat.S_IMODE(AuthedEcho.get_cache_file().stat().st_mode) == 0o600


async def test_fresh_auth_rejected_is_not_retried_forever(auth_dir, fake_upstream):
    fake_upstream.behave(accept_token="other-key")
    with pytest.raises(MissingAuthError):
        await authed_chunks(fake_upstream, "wrong-key")
    assert len(fake_upstream.requests) == 1


async def test_unreadable_cache_file_means_authenticating_again(auth_dir, fake_upstream):
    AuthedEcho.get_cache_file().write_text("{broken")
    fake_upstream.behave(reply="ok", accept_token="good-key")
    chunks = await authed_chunks(fake_upstream, "good-key")
    assert chunks[:2] == ["logging in", "ok"]
