"""The API with a real OpenAI-compatible server we did not write as the provider:
llama-cpp-python's server running the packaged model (tests/llama_server.py), driven through our
server by the official `openai` client."""

import pytest

from conversations.models import ApiCall

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]


def test_models_and_both_modes_through_the_openai_client(
    client_for, ada, ada_key, llama_config, llama_server
):
    client = client_for(ada_key)
    ids = [model.id for model in client.models.list().data]
    assert f"llama-server/{llama_server.model}" in ids
    model = f"llama-server/{llama_server.model}"
    question = [{"role": "user", "content": "Write a long story about a dragon."}]
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=question,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1
    assert "".join(texts).strip()
    assert chunks[-1].choices == [] and chunks[-1].model == model
    completion = client.chat.completions.create(
        model=model, messages=question, max_tokens=16, temperature=0
    )
    assert completion.choices[0].message.content.strip()
    # The provider layer always streams from its upstream, and this server counts tokens only
    # in whole answers: no figures, so none are made up.
    assert completion.usage is None
    assert llama_server.api_key not in completion.model_dump_json()
    calls = ApiCall.objects.filter(user=ada, status=ApiCall.Status.COMPLETE)
    assert calls.count() >= 1
