from providers.types import AuthResult, FinishReason, ProviderInfo, Usage


def test_response_objects_read_as_empty_text_so_concatenation_keeps_only_text():
    chunks = ["Hel", Usage(1, 2, 3), "lo", FinishReason("stop"), ProviderInfo("p", "m")]
    assert "".join(str(chunk) for chunk in chunks) == "Hello"
    assert f"{FinishReason('length')}{Usage(0, 0, 0)}" == ""


def test_usage_and_finish_reason_carry_their_fields():
    usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
    assert FinishReason("stop").reason == "stop"


def test_auth_result_round_trips_its_fields_and_never_shows_them():
    result = AuthResult(api_key="sk-hidden", cookies={"session": "c00kie"})
    assert AuthResult(**result.get_dict()) == result
    assert "sk-hidden" not in repr(result) and "c00kie" not in repr(result)
    assert str(result) == ""
