"""Hostile frames against conversations.protocol, through a real socket, and the one size rule
the socket and the no-JavaScript form share."""

import logging
import uuid

import pytest

from conversations.forms import ComposerForm
from conversations.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


async def test_deeply_nested_json_is_bad_json_and_logs_nothing(open_socket, ada, caplog):
    socket = await open_socket(ada)
    # Well under the size limit, far deeper than the parser's stack.
    nested = "[" * 100_000 + "]" * 100_000
    caplog.set_level(logging.INFO)
    for _ in range(3):
        await socket.send_raw(nested)
        frame = await socket.receive()
        assert (frame["type"], frame["code"]) == ("error", "bad_json")
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("request_id", ['"a\\u0000b"', '"half \\ud800"', '"\\udc00"'])
async def test_request_ids_with_nul_or_lone_surrogates_are_refused_not_echoed(
    open_socket, ada, request_id
):
    socket = await open_socket(ada)
    conversation = uuid.uuid4()
    raw = (
        f'{{"type": "chat.subscribe", "conversation": "{conversation}", '
        f'"request_id": {request_id}}}'
    )
    await socket.send_raw(raw)
    frame = await socket.receive()
    assert (frame["type"], frame["code"], frame["request_id"]) == ("error", "invalid", None)
    assert "request_id" in frame["detail"]


def composer(content: str, system: str = "") -> ComposerForm:
    return ComposerForm(data={"content": content, "system": system}, targets=[])


@pytest.mark.parametrize("field", ["content", "system"])
def test_the_form_measures_text_in_bytes_as_the_socket_does(settings, field):
    settings.CHAT_MAX_CONTENT_BYTES = 1000
    # 400 characters, 1,200 bytes: a character count would let it through.
    text = "€" * 400
    form = composer(text, "") if field == "content" else composer("hi", text)
    assert not form.is_valid()
    assert form.errors[field] == [f"`{field}` is longer than 1000 bytes."]
    assert composer("€" * 333, "€" * 333).is_valid()


def test_the_no_javascript_form_refuses_what_the_socket_refuses(signed_in, settings, ada):
    settings.CHAT_MAX_CONTENT_BYTES = 1000
    response = signed_in.post("/send/", {"content": "é" * 501})
    assert response.status_code == 400
    assert "is longer than 1000 bytes." in response.content.decode()
    assert not Conversation.objects.filter(owner=ada).exists()
