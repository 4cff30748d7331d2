"""The forms of the chat pages: what a plain form post becomes."""

import uuid
from datetime import date

from conversations.forms import (
    ComposerForm,
    SearchForm,
    SidebarPageForm,
    default_target_value,
    target_choices,
)

TARGETS = [
    {"name": "local", "kind": "config", "label": "local", "models": ["llama3:8b", "qwen"],
     "default_model": "qwen", "is_default": False},
    {"name": "cloud", "kind": "config", "label": "cloud", "models": [],
     "default_model": "gpt-4", "is_default": True},
    {"name": "either", "kind": "chain", "label": "either (fallback)", "models": [],
     "default_model": "", "is_default": False},
]  # fmt: skip


def test_picker_groups_models_by_provider_and_keeps_colons_in_model_names():
    assert target_choices(TARGETS) == [
        ("local", [("local:llama3:8b", "llama3:8b"), ("local:qwen", "qwen")]),
        ("cloud", [("cloud:gpt-4", "gpt-4")]),
        ("either (fallback)", [("either:", "default model")]),
    ]


def test_default_pick_is_the_default_provider_with_its_default_model():
    assert default_target_value(TARGETS) == "cloud:gpt-4"
    assert default_target_value(TARGETS[:1]) == "local:qwen"
    assert default_target_value([]) == ""


def test_composer_post_becomes_the_same_request_as_a_chat_send_frame():
    parent = uuid.uuid4()
    conversation = uuid.uuid4()
    form = ComposerForm(
        {"content": "  Hello\n", "target": "local:llama3:8b", "temperature": "0.7",
         "max_tokens": "", "system": "", "parent": str(parent)},
        targets=TARGETS,
    )  # fmt: skip

    assert form.is_valid(), form.errors
    request = form.chat_send(conversation_id=conversation)

    assert request.conversation == conversation and request.parent == parent
    assert request.content == "  Hello\n"  # sent as typed
    assert (request.provider, request.model) == ("local", "llama3:8b")
    assert request.options == {"temperature": 0.7}
    assert request.system == ""


def test_chain_target_leaves_the_model_to_the_chain_and_a_missing_system_field_alone():
    form = ComposerForm({"content": "Hi", "target": "either:"}, targets=TARGETS)

    assert form.is_valid(), form.errors
    request = form.chat_send(conversation_id=None)

    assert (request.provider, request.model, request.system) == ("either", None, None)


def test_composer_refuses_blank_text_unknown_models_and_out_of_range_options():
    form = ComposerForm(
        {"content": " \n ", "target": "local:gpt-9", "temperature": "3", "max_tokens": "0"},
        targets=TARGETS,
    )

    assert not form.is_valid()
    assert set(form.errors) == {"content", "target", "temperature", "max_tokens"}
    assert form.errors["content"] == ["Write a message first."]


def test_search_dates_must_be_in_order():
    form = SearchForm({"q": "x", "since": "2024-02-01", "until": "2024-01-01"})
    assert not form.is_valid()
    assert form.non_field_errors() == ["The start date is after the end date."]

    form = SearchForm({"q": "x", "since": "2024-01-01", "until": "2024-01-01"})
    assert form.is_valid() and form.cleaned_data["since"] == date(2024, 1, 1)


def test_sidebar_cursor_must_be_an_aware_time_that_converts_to_utc_and_an_id():
    ident = uuid.uuid4()
    good = f"2024-05-01T10:00:00+02:00~{ident}"

    form = SidebarPageForm({"cursor": good})
    assert form.is_valid() and form.cleaned_data["cursor"] == good
    assert SidebarPageForm({}).is_valid()
    for bad in (
        f"0001-01-01T00:00:00+05:00~{ident}",
        f"9999-12-31T23:59:59-05:00~{ident}",
        f"2024-05-01T10:00:00~{ident}",
        "2024-05-01T10:00:00+00:00~not-an-id",
        "2024-05-01T10:00:00+00:00",
    ):
        assert not SidebarPageForm({"cursor": bad}).is_valid(), bad
