"""The API through the official `openai` client and through raw HTTP (as `curl` sees it), against
a real server process and the fake upstream."""

import json
import time
from datetime import timedelta

import httpx
import openai
import pytest
from django.db.models import F
from django.utils import timezone

from conversations.api.services import api_key_create, api_key_revoke
from conversations.models import ApiCall, Conversation, Message
from providers.models import FallbackChain, FallbackChainMember, ProviderConfig
from tests.conversations import page_factories as make
from tests.conversations.api.conftest import STALE_SECONDS, WAIT
from tests.fake_upstream import deltas_of

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "The quick brown fox jumps over the lazy dog."
QUESTION = [{"role": "user", "content": "Tell me about foxes."}]


def wait_for(condition, what: str, timeout: float = WAIT):
    """Poll `condition` (a function returning a truthy value when met) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def finished_call(**filters) -> ApiCall:
    """The call's record once the server has written its end (it is written just after the
    response's last byte)."""
    return wait_for(
        lambda: ApiCall.objects.exclude(status=ApiCall.Status.RUNNING).filter(**filters).first(),
        "the call's record",
    )


def sse_events(body: bytes) -> list[str]:
    """The `data` of each event, split as the WHATWG event-stream rules say for what we send
    (one `data:` line per event, events ended by a blank line)."""
    assert body.endswith(b"\n\n"), body[-80:]
    events = []
    for block in body.decode().split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        events.append(lines[0][len("data: ") :])
    return events


def post_raw(http: httpx.Client, key: str | None, body, **headers) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(
        "/v1/chat/completions",
        content=content,
        headers={"Content-Type": "application/json", "Accept-Encoding": "identity", **headers},
    )


def assert_error(response: httpx.Response, status: int, code: str | None, param=None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert body["error"]["param"] == param
    assert body["error"]["message"]
    return body["error"]


# --- Models ------------------------------------------------------------------------------------


def test_models_lists_every_config_model_the_chains_and_default(client_for, ada_key, chat_config):
    lonely = make.provider_config(name="lonely", default_model="", allowed_models=[])
    chain = FallbackChain.objects.create(name="resilient")
    FallbackChainMember.objects.create(chain=chain, config=chat_config, position=1)
    make.provider_config(name="off", enabled=False)
    models = client_for(ada_key).models.list()
    ids = [model.id for model in models.data]
    assert ids == ["default", "fake/fake-model", "fake/fake-model-2", "lonely", "resilient"]
    assert {model.object for model in models.data} == {"model"}
    assert lonely.name in {model.owned_by for model in models.data}


def test_one_model_by_its_id_and_unknown_routes_in_openais_shape(
    client_for, http, ada_key, chat_config
):
    model = client_for(ada_key).models.retrieve("fake/fake-model-2")
    assert (model.id, model.owned_by) == ("fake/fake-model-2", "fake")
    with pytest.raises(openai.NotFoundError):
        client_for(ada_key).models.retrieve("fake/nothing")
    headers = {"Authorization": f"Bearer {ada_key}"}
    assert_error(http.get("/v1/embeddings", headers=headers), 404, "unknown_url")
    assert_error(http.get("/v1/chat/completions", headers=headers), 405, "method_not_allowed")


# --- Completions through the official client ---------------------------------------------------


def test_streamed_completion_through_the_openai_client(
    client_for, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(reply=REPLY)
    stream = client_for(ada_key).chat.completions.create(
        model="fake/fake-model-2",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(deltas_of(REPLY))
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert {chunk.model for chunk in chunks} == {"fake/fake-model-2"}
    assert len({chunk.id for chunk in chunks}) == 1
    sent = fake_upstream.wait_done().json
    assert sent["model"] == "fake-model-2"
    assert sent["messages"] == QUESTION
    call = finished_call(user=ada)
    assert (call.status, call.key_name, call.provider, call.model, call.stream) == (
        ApiCall.Status.COMPLETE,
        "laptop",
        "fake",
        "fake-model-2",
        True,
    )
    assert call.completion_tokens == len(deltas_of(REPLY))
    assert call.http_status == 200 and call.duration_ms is not None


def test_completion_through_the_openai_client(client_for, ada, ada_key, chat_config, fake_upstream):
    fake_upstream.behave(reply=REPLY)
    completion = client_for(ada_key).chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Foxes?"}]},
            {"role": "assistant", "content": "Which?"},
            {"role": "user", "content": "Red ones."},
        ],
        temperature=0.5,
        max_completion_tokens=40,
        stop=["\n\n"],
        # Parameters we do not know are ignored, as OpenAI's API ignores them.
        extra_body={"user": "someone", "logit_bias": {}, "some_new_option": True},
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake/fake-model"
    assert completion.usage.completion_tokens == len(deltas_of(REPLY))
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    sent = fake_upstream.wait_done().json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1] == {"role": "user", "content": "Foxes?"}
    assert (sent["temperature"], sent["max_tokens"], sent["stop"]) == (0.5, 40, ["\n\n"])
    assert "some_new_option" not in sent and "user" not in sent
    call = finished_call(user=ada)
    assert (call.status, call.stream, call.model) == (ApiCall.Status.COMPLETE, False, "fake-model")
    assert call.conversation is None


def test_a_fallback_chain_answers_with_the_member_that_worked(
    client_for, ada_key, chat_config, fake_upstream
):
    dead = make.provider_config(name="dead", api_base="http://127.0.0.1:9/v1", timeout=5)
    chain = FallbackChain.objects.create(name="resilient")
    FallbackChainMember.objects.create(chain=chain, config=dead, position=1)
    FallbackChainMember.objects.create(chain=chain, config=chat_config, position=2)
    fake_upstream.behave(reply=REPLY)
    completion = client_for(ada_key).chat.completions.create(model="resilient", messages=QUESTION)
    assert completion.choices[0].message.content == REPLY
    assert completion.model == "fake/fake-model"


# --- The wire format, as curl sees it -----------------------------------------------------------


def test_stream_wire_format_matches_openai_byte_for_byte(http, ada_key, chat_config, fake_upstream):
    fake_upstream.behave(reply=REPLY)
    body = {"model": "fake/fake-model", "messages": QUESTION, "stream": True}
    response = post_raw(http, ada_key, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-encoding" not in response.headers
    events = sse_events(response.content)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert set(chunk) == {"id", "object", "created", "model", "system_fingerprint", "choices"}
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"].startswith("chatcmpl-")
        assert len(chunk["choices"]) == 1 and chunk["choices"][0]["index"] == 0
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    deltas = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-1]]
    assert deltas == deltas_of(REPLY)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])


def test_stream_with_include_usage_ends_with_a_usage_chunk(http, ada_key, chat_config):
    body = {
        "model": "fake/fake-model",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = post_raw(http, ada_key, body)
    events = sse_events(response.content)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert set(chunks[-1]["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_completion_wire_format(http, ada_key, chat_config, fake_upstream):
    fake_upstream.behave(reply=REPLY)
    response = post_raw(http, ada_key, {"model": "fake", "messages": QUESTION})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    }
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert abs(body["created"] - time.time()) < 600


# --- Refusals in OpenAI's error shape -----------------------------------------------------------


def test_missing_wrong_and_revoked_keys_get_401(http, ada, chat_config):
    created = api_key_create(user=ada, name="old")
    for key in (None, "chat-not-a-key", "x" * 500, created.key + "x"):
        response = post_raw(http, key, {"model": "default", "messages": QUESTION})
        error = assert_error(response, 401, "invalid_api_key")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert error["type"] == "invalid_request_error"
    assert (
        post_raw(http, created.key, {"model": "default", "messages": QUESTION}).status_code == 200
    )
    api_key_revoke(api_key=created.row)
    assert_error(
        post_raw(http, created.key, {"model": "default", "messages": QUESTION}),
        401,
        "invalid_api_key",
    )
    models = http.get("/v1/models", headers={"Authorization": f"Bearer {created.key}"})
    assert_error(models, 401, "invalid_api_key")
    # Not the sign-in page's redirect: API clients get the error itself.
    assert_error(http.get("/v1/models"), 401, "invalid_api_key")


def test_the_openai_client_raises_its_own_errors(client_for, ada_key, chat_config):
    with pytest.raises(openai.AuthenticationError):
        client_for("chat-wrong").models.list()
    with pytest.raises(openai.NotFoundError) as raised:
        client_for(ada_key).chat.completions.create(model="nope/nothing", messages=QUESTION)
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        ({"messages": QUESTION}, "model"),
        ({"model": "default"}, "messages"),
        ({"model": "default", "messages": []}, "messages"),
        ({"model": "default", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "default", "messages": [{"role": "system", "content": "x"}]}, "messages"),
        (
            {
                "model": "default",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ],
            },
            "messages[0].content",
        ),
        ({"model": "default", "messages": QUESTION, "temperature": 3}, "temperature"),
        ({"model": "default", "messages": QUESTION, "max_tokens": 0}, "max_tokens"),
        ({"model": "default", "messages": QUESTION, "stop": [1]}, "stop"),
        ({"model": "default", "messages": QUESTION, "stream": "yes"}, "stream"),
        ({"model": "default", "messages": QUESTION, "n": 2}, "n"),
        (
            {"model": "default", "messages": [{"role": "user", "content": "a\x00b"}]},
            "messages[0].content",
        ),
    ],
)
def test_bad_requests_get_400_naming_the_parameter(http, ada_key, chat_config, body, param):
    error = assert_error(post_raw(http, ada_key, body), 400, None, param)
    assert error["type"] == "invalid_request_error"
    call = finished_call()
    assert (call.status, call.http_status, call.key_name) == (ApiCall.Status.REFUSED, 400, "laptop")


def test_unknown_models_get_404(http, ada_key, chat_config):
    for model in ("nope", "fake/not-offered", "/fake-model", "off/fake-model"):
        error = assert_error(
            post_raw(http, ada_key, {"model": model, "messages": QUESTION}),
            404,
            "model_not_found",
            "model",
        )
        assert error["type"] == "invalid_request_error"


def test_a_user_at_the_answer_limit_gets_429_with_retry_after(http, ada, ada_key, chat_config):
    # Answers running in the chat count against the same limit.
    conversation = make.conversation(ada)
    make.chain(
        conversation,
        ["q", "a", "q", "a", "q", "a"],
        status=Message.Status.STREAMING,
        checkpointed_at=timezone.now(),
    )
    assert Message.objects.filter(status=Message.Status.STREAMING).count() >= 3
    response = post_raw(http, ada_key, {"model": "default", "messages": QUESTION})
    error = assert_error(response, 429, "rate_limited")
    assert error["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) >= 1
    call = finished_call()
    assert (call.status, call.http_status, call.error_code) == (
        ApiCall.Status.REFUSED,
        429,
        "rate_limited",
    )


def test_running_api_calls_count_against_the_answer_limit(
    http, api_server, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(reply=" ".join(["word"] * 300), chunk_delay=0.05)
    body = {"model": "default", "messages": QUESTION, "stream": True}
    headers = {"Authorization": f"Bearer {ada_key}", "Accept-Encoding": "identity"}
    with httpx.Client(base_url=api_server.url, timeout=WAIT) as other:
        streams = [
            other.stream("POST", "/v1/chat/completions", json=body, headers=headers)
            for _ in range(3)
        ]
        # Kept: an iterator that goes away closes its response.
        readers = []
        try:
            for stream in streams:
                response = stream.__enter__()
                assert response.status_code == 200
                readers.append(response.iter_bytes())
                next(readers[-1])
            # Past the staleness cutoff, the calls still hold their slots: they keep their rows
            # fresh while they run.
            wait_for(
                lambda: (
                    ApiCall.objects.filter(
                        status=ApiCall.Status.RUNNING,
                        alive_at__gte=F("started_at") + timedelta(seconds=STALE_SECONDS + 0.5),
                    ).count()
                    == 3
                ),
                "the running calls to outlive the staleness cutoff",
            )
            refused = post_raw(http, ada_key, {"model": "default", "messages": QUESTION})
            assert_error(refused, 429, "rate_limited")
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
    # Once the clients have left, their calls end and free the slots.
    wait_for(
        lambda: not ApiCall.objects.filter(status=ApiCall.Status.RUNNING).exists(),
        "the calls to end",
    )
    fake_upstream.behave(reply=REPLY)
    assert post_raw(http, ada_key, {"model": "default", "messages": QUESTION}).status_code == 200


def test_upstream_failures_get_502_without_the_upstreams_words(
    http, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(status=500, error_body={"error": {"message": "db at 10.0.0.7 is down"}})
    response = post_raw(http, ada_key, {"model": "default", "messages": QUESTION})
    error = assert_error(response, 502, "upstream_error")
    assert error["type"] == "api_error"
    assert "10.0.0.7" not in response.text
    call = finished_call(user=ada)
    assert (call.status, call.http_status, call.error_code) == (
        ApiCall.Status.ERROR,
        502,
        "upstream_error",
    )
    # Admins see what the upstream said.
    assert "10.0.0.7" in call.error_detail


def test_an_upstream_that_does_not_answer_in_time_gets_504(
    http, ada_key, chat_config, fake_upstream
):
    ProviderConfig.objects.filter(pk=chat_config.pk).update(timeout=1)
    fake_upstream.behave(first_byte_delay=20)
    response = post_raw(http, ada_key, {"model": "default", "messages": QUESTION, "stream": True})
    assert_error(response, 504, "timeout")


def test_a_failure_mid_stream_ends_it_with_an_error_event(
    client_for, http, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(reply=REPLY, drop_after=3)
    response = post_raw(http, ada_key, {"model": "default", "messages": QUESTION, "stream": True})
    assert response.status_code == 200
    events = sse_events(response.content)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_dropped" and error["type"] == "api_error"
    texts = [json.loads(event)["choices"][0]["delta"].get("content") for event in events[1:-1]]
    assert texts == deltas_of(REPLY)[:3]
    # The official client raises it.
    stream = client_for(ada_key).chat.completions.create(
        model="default", messages=QUESTION, stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)
    call = finished_call(user=ada, stream=True)
    assert (call.status, call.error_code) == (ApiCall.Status.ERROR, "upstream_dropped")


# --- Leaving early ------------------------------------------------------------------------------


def test_a_client_that_leaves_a_stream_stops_the_upstream_request(
    api_server, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(reply=" ".join(["word"] * 500), chunk_delay=0.05)
    body = {"model": "default", "messages": QUESTION, "stream": True}
    headers = {"Authorization": f"Bearer {ada_key}", "Accept-Encoding": "identity"}
    with httpx.Client(base_url=api_server.url, timeout=WAIT) as client:
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            received = b""
            for data in response.iter_bytes():
                received += data
                if received.count(b"\n\n") >= 3:
                    break
    upstream = fake_upstream.wait_done()
    assert upstream.disconnected.is_set()
    call = finished_call(user=ada)
    assert call.status == ApiCall.Status.DISCONNECTED
    # It had sent far fewer than its 500 words when it saw its connection closed.
    assert received.count(b"\n\n") < 100


def test_the_openai_client_closing_a_stream_stops_the_upstream_request(
    client_for, ada, ada_key, chat_config, fake_upstream
):
    # The official client asks for gzip: the events then pass through the compression.
    fake_upstream.behave(reply=" ".join(["word"] * 500), chunk_delay=0.05)
    stream = client_for(ada_key).chat.completions.create(
        model="default", messages=QUESTION, stream=True
    )
    assert stream.response.headers["content-encoding"] == "gzip"
    received = []
    for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            break
    stream.close()
    assert fake_upstream.wait_done().disconnected.is_set()
    assert finished_call(user=ada).status == ApiCall.Status.DISCONNECTED


def test_a_client_that_leaves_before_the_answer_stops_the_upstream_request(
    api_server, ada, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(first_byte_delay=60)
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(
            api_key=ada_key, base_url=api_server.url + "/v1", max_retries=0, timeout=1.5
        ).chat.completions.create(model="default", messages=QUESTION)
    upstream = fake_upstream.wait_done()
    assert upstream.disconnected.is_set()
    call = finished_call(user=ada)
    assert call.status == ApiCall.Status.DISCONNECTED


# --- Bodies, CSRF, sessions ---------------------------------------------------------------------


def test_a_key_allows_a_signed_in_users_body_size(http, ada_key, chat_config, settings):
    long_text = "word " * (settings.HTTP_MAX_ANONYMOUS_BODY_BYTES // 5 * 4)
    body = {"model": "default", "messages": [{"role": "user", "content": long_text}]}
    assert len(json.dumps(body)) > settings.HTTP_MAX_ANONYMOUS_BODY_BYTES * 3
    assert post_raw(http, ada_key, body).status_code == 200
    # Without a valid key, the anonymous limit stands.
    refused = post_raw(http, "chat-wrong", body)
    assert refused.status_code == 413


def test_no_csrf_check_even_with_a_session_cookie(http, ada, ada_key, chat_config):
    from tests.live_server import session_cookie

    response = post_raw(
        http, ada_key, {"model": "default", "messages": QUESTION}, Cookie=session_cookie(ada)
    )
    assert response.status_code == 200, response.text


def test_a_session_alone_does_not_open_the_api(http, ada, chat_config):
    from tests.live_server import session_cookie

    response = post_raw(
        http, None, {"model": "default", "messages": QUESTION}, Cookie=session_cookie(ada)
    )
    assert_error(response, 401, "invalid_api_key")


# --- History and ownership ----------------------------------------------------------------------


def test_a_key_that_stores_calls_adds_them_to_its_users_history_only(
    client_for, client, ada, grace, chat_config, fake_upstream
):
    key = api_key_create(user=ada, name="notes", store_conversations=True).key
    fake_upstream.behave(reply=REPLY)
    client_for(key).chat.completions.create(
        model="fake/fake-model",
        messages=[{"role": "system", "content": "Be brief."}, *QUESTION],
    )
    call = finished_call(user=ada)
    conversation = call.conversation
    assert conversation is not None and conversation.owner == ada
    messages = list(conversation.messages.order_by("created_at"))
    assert [(m.role, m.content) for m in messages] == [
        ("user", QUESTION[0]["content"]),
        ("assistant", REPLY),
    ]
    assert conversation.system_prompt == "Be brief."
    assert messages[1].status == Message.Status.COMPLETE
    assert messages[1].parent_id == messages[0].pk
    assert conversation.current_leaf_id == messages[1].pk
    client.force_login(ada)
    assert REPLY in client.get(f"/c/{conversation.id}/").content.decode()
    client.force_login(grace)
    assert client.get(f"/c/{conversation.id}/").status_code == 404
    assert str(conversation.id) not in client.get("/").content.decode()


def test_one_users_key_never_reaches_another_users_history_or_calls(
    client_for, http, client, ada, grace, chat_config, fake_upstream
):
    grace_key = api_key_create(user=grace, name="grace's", store_conversations=True)
    ada_conversation = make.conversation(ada, title="Ada's secret plans")
    make.chain(ada_conversation, ["my plans", "noted"])
    fake_upstream.behave(reply=REPLY)
    client_for(grace_key.key).chat.completions.create(model="default", messages=QUESTION)
    call = finished_call(user=grace)
    assert call.api_key_id == grace_key.row.pk
    # Her call went into her history, not into ada's conversation, and the upstream saw only
    # what she sent.
    assert fake_upstream.wait_done().json["messages"] == QUESTION
    assert call.conversation.owner == grace
    assert list(Conversation.objects.filter(owner=ada)) == [ada_conversation]
    assert ada_conversation.messages.count() == 2
    assert ApiCall.objects.filter(user=ada).count() == 0
    # The account page lists only one's own keys, and revokes only one's own.
    ada_key = api_key_create(user=ada, name="ada's").row
    client.force_login(grace)
    page = client.get("/account/api-keys/").content.decode()
    assert "grace&#x27;s" in page and "ada&#x27;s" not in page and ada_key.prefix not in page
    assert client.post(f"/account/api-keys/{ada_key.pk}/revoke/").status_code == 404
    ada_key.refresh_from_db()
    assert not ada_key.revoked


# --- Secrets ------------------------------------------------------------------------------------


def test_the_upstream_token_never_reaches_a_response_or_the_log(
    client_for, http, api_server, ada, ada_key, chat_config, fake_upstream
):
    from providers.services import provider_config_set_token

    token = "sk-upstream-" + "Zq8" * 12
    provider_config_set_token(config=chat_config, token=token)
    # Accepted: the upstream receives the token, and the answer comes back without it.
    fake_upstream.behave(reply=REPLY, accept_token=token)
    completion = client_for(ada_key).chat.completions.create(model="default", messages=QUESTION)
    assert fake_upstream.wait_done().headers["authorization"] == f"Bearer {token}"
    assert completion.choices[0].message.content == REPLY
    seen = [completion.model_dump_json(), client_for(ada_key).models.list().model_dump_json()]
    # Failures that quote it, before and during a stream, in every mode.
    quoting = {"error": {"message": f"invalid key {token} for this account", "code": "bad"}}
    for status, stream in ((401, False), (401, True), (500, True), (400, False)):
        fake_upstream.behave(status=status, error_body=quoting)
        response = post_raw(
            http, ada_key, {"model": "default", "messages": QUESTION, "stream": stream}
        )
        assert response.status_code >= 400
        seen.append(response.text)
    fake_upstream.behave(error_body=quoting)
    seen.append(
        post_raw(http, ada_key, {"model": "default", "messages": QUESTION, "stream": True}).text
    )
    wait_for(
        lambda: not ApiCall.objects.filter(status=ApiCall.Status.RUNNING).exists(),
        "the calls to end",
    )
    for text in seen:
        assert token not in text and token[12:30] not in text
    for call in ApiCall.objects.all():
        assert token[12:30] not in call.error_detail
    log = api_server.log_path.read_text(errors="replace")
    assert token[12:30] not in log
    assert ada_key not in log and ada_key[10:30] not in log
