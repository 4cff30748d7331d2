"""The API through the official `openai` client and through raw HTTP, against a real server and
the fake upstream."""

import json

import pytest

from conversations.models import ApiCall
from tests.fake_upstream import deltas_of

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "The quick brown fox jumps over the lazy dog."


def test_models_lists_configs_chains_and_default(client_for, ada_key, chat_config):
    models = client_for(ada_key).models.list()
    ids = [model.id for model in models.data]
    assert ids == ["default", "fake/fake-model", "fake/fake-model-2"]


def test_streamed_completion_through_the_openai_client(
    client_for, ada_key, chat_config, fake_upstream
):
    fake_upstream.behave(reply=REPLY)
    stream = client_for(ada_key).chat.completions.create(
        model="fake/fake-model-2",
        messages=[{"role": "user", "content": "Tell me about foxes."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(deltas_of(REPLY))
    assert {chunk.model for chunk in chunks} == {"fake/fake-model-2"}
    sent = fake_upstream.wait_done().json
    assert sent["model"] == "fake-model-2"
    assert sent["messages"] == [{"role": "user", "content": "Tell me about foxes."}]
