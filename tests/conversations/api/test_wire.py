"""Parsing OpenAI's chat-completions request: what is kept, what is refused, what is ignored."""

import json

import pytest

from conversations.api.wire import ApiError, completion_request_parse, sse_event


def parse(**body):
    return completion_request_parse(json.dumps(body).encode())


def test_messages_and_options_become_what_stream_chat_takes():
    request = parse(
        model="fake/fake-model",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "c", "name": "ada"},
        ],
        temperature=0,
        max_tokens=5,
        max_completion_tokens=9,
        stop="END",
        seed=3,
        top_p=0.5,
        stream=True,
        stream_options={"include_usage": True},
        tools=[],
        user="x",
    )
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "c"},
    ]
    assert request.options == {
        "temperature": 0.0,
        "top_p": 0.5,
        "max_tokens": 9,
        "seed": 3,
        "stop": ["END"],
    }
    assert (request.stream, request.include_usage) == (True, True)


def test_a_message_over_the_chats_size_limit_is_refused(settings):
    settings.CHAT_MAX_CONTENT_BYTES = 10
    with pytest.raises(ApiError) as raised:
        parse(model="m", messages=[{"role": "user", "content": "é" * 6}])
    assert raised.value.status == 400
    assert raised.value.param == "messages[0].content"


def test_an_overlong_model_name_is_an_unknown_model():
    with pytest.raises(ApiError) as raised:
        parse(model="m" * 400, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status == 404


def test_events_are_single_lines_whatever_the_text():
    event = sse_event({"text": "a\nb\r\nc\rd\u2028"})
    assert event.count(b"\n") == 2 and event.endswith(b"\n\n") and b"\r" not in event
