import uuid

from conversations import frames


def _done(**fields):
    values = {
        "message_id": uuid.uuid4(),
        "conversation_id": uuid.uuid4(),
        "status": "complete",
        "content": "Hi",
        "html": "<p>Hi</p>",
        "prompt_tokens": None,
        "completion_tokens": None,
        "error_code": "",
        "error_detail": "",
        "provider": "local",
        "model": "",
    }
    return frames.message_done(**{**values, **fields})


def test_message_done_meta_is_the_tooltip_the_page_shows():
    assert _done()["meta"] == "local"
    assert _done(model="small", prompt_tokens=12, completion_tokens=None)["meta"] == (
        "small · 12 prompt + 0 answer tokens"
    )
    assert _done(provider="", prompt_tokens=3, completion_tokens=4)["meta"] == (
        "3 prompt + 4 answer tokens"
    )
