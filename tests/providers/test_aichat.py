import pytest

from providers.aichat import Aichat, format_prompt
from providers.errors import MissingAuthError, ResponseError

CONVERSATION = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": ""},
    {"role": "user", "content": "Tell me more"},
]


def test_single_message_prompt_is_its_content():
    assert format_prompt([{"role": "user", "content": "Just this"}]) == "Just this"


def test_several_messages_become_role_lines_then_assistant():
    assert format_prompt(CONVERSATION) == (
        "System: Be kind.\nUser: Hi\nUser: Tell me more\nAssistant:"
    )


async def test_request_matches_the_aichat_wire_format(fake_upstream):
    fake_upstream.behave(reply="A whole answer.")
    answer = await Aichat.create_async(
        "gpt-3.5-turbo", CONVERSATION, api_base=fake_upstream.url, temperature=0.1, top_p=0.8
    )
    assert answer == "A whole answer."
    [request] = fake_upstream.requests
    assert (request.method, request.path) == ("POST", "/api/text")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["origin"] == "https://chat-gpt.org"
    assert request.headers["referer"] == "https://chat-gpt.org/chat"
    assert request.headers["user-agent"].startswith("Mozilla/5.0 ")
    assert request.json == {
        "message": format_prompt(CONVERSATION),
        "temperature": 0.1,
        "presence_penalty": 0,
        "top_p": 0.8,
        "frequency_penalty": 0,
    }


async def test_defaults_are_temperature_half_and_top_p_one(fake_upstream):
    await Aichat.create_async("gpt-3.5-turbo", CONVERSATION[:2], api_base=fake_upstream.url)
    body = fake_upstream.requests[0].json
    assert (body["temperature"], body["top_p"]) == (0.5, 1)


async def test_falsy_response_flag_raises_response_error(fake_upstream):
    fake_upstream.behave(error_body={"response": False, "message": "nope"})
    with pytest.raises(ResponseError):
        await Aichat.create_async("gpt-3.5-turbo", CONVERSATION, api_base=fake_upstream.url)


async def test_error_status_goes_through_raise_error(fake_upstream):
    fake_upstream.behave(status=401)
    with pytest.raises(MissingAuthError):
        await Aichat.create_async("gpt-3.5-turbo", CONVERSATION, api_base=fake_upstream.url)


def test_sync_create_completion_yields_the_answer_once(fake_upstream):
    fake_upstream.behave(reply="Sync answer")
    chunks = list(
        Aichat.create_completion("gpt-3.5-turbo", CONVERSATION, api_base=fake_upstream.url)
    )
    assert chunks == ["Sync answer"]
