"""Forms of the chat pages: they validate what a plain HTML form (or the script) posts."""

import uuid
from typing import Any

from django import forms

from conversations.errors import ChatError
from conversations.protocol import (
    MAX_TOKENS_LIMIT,
    PROVIDER_OPTIONS,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    ChatSend,
    text_within_limit,
)
from conversations.selectors import sidebar_cursor_parse

# An upload is read into memory to be parsed; anything bigger is not one of our exports.
IMPORT_MAX_BYTES = 20 * 1024 * 1024


def _within_content_limit(value: str, name: str) -> str:
    """The socket's rule (bytes, not characters), as a form error."""
    try:
        return text_within_limit(value, name)
    except ChatError as exc:
        raise forms.ValidationError(exc.detail, code=exc.code) from None


def target_value(*, name: str, model: str) -> str:
    """The picker's option value: provider name and model in one field, so one <select> works
    without JavaScript. Names are slugs (no colon); models may contain colons."""
    return f"{name}:{model}"


def target_choices(targets: list[dict[str, Any]]) -> list:
    """<optgroup>s of the picker: one per enabled provider config or chain."""
    choices = []
    for target in targets:
        models = target["models"] or [target["default_model"]]
        options = [
            (target_value(name=target["name"], model=model), model or "default model")
            for model in models
        ]
        choices.append((target["label"], options))
    return choices


def default_target_value(targets: list[dict[str, Any]]) -> str:
    for target in targets:
        if target["is_default"]:
            return target_value(name=target["name"], model=target["default_model"])
    if targets:
        return target_value(name=targets[0]["name"], model=targets[0]["default_model"])
    return ""


class ConversationSettingsForm(forms.Form):
    target = forms.ChoiceField(label="Model", required=False)
    temperature = forms.FloatField(
        label="Temperature", required=False, min_value=TEMPERATURE_MIN, max_value=TEMPERATURE_MAX,
        widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "default"}),
    )  # fmt: skip
    max_tokens = forms.IntegerField(
        label="Max tokens", required=False, min_value=1, max_value=MAX_TOKENS_LIMIT,
        widget=forms.NumberInput(attrs={"placeholder": "default"}),
    )  # fmt: skip
    system = forms.CharField(
        label="System prompt",
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "How the assistant should behave in this chat"}
        ),
    )

    def __init__(self, *args, targets: list[dict[str, Any]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = target_choices(targets)

    def clean_system(self) -> str:
        return _within_content_limit(self.cleaned_data["system"], "system")

    def clean_target(self) -> tuple[str, str] | None:
        value = self.cleaned_data.get("target") or ""
        if not value:
            return None
        name, _, model = value.partition(":")
        return name, model

    def options(self) -> dict[str, Any]:
        """Temperature and max tokens, only the ones the user set (as in a chat.send)."""
        data = self.cleaned_data
        return {name: data[name] for name in PROVIDER_OPTIONS if data.get(name) is not None}


class ComposerForm(ConversationSettingsForm):
    content = forms.CharField(
        label="Message",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Send a message"}),
    )
    parent = forms.UUIDField(required=False, widget=forms.HiddenInput)

    field_order = ["content", "parent", "target", "temperature", "max_tokens", "system"]

    def clean_content(self) -> str:
        content = _within_content_limit(self.cleaned_data["content"], "content")
        if not content.strip():
            raise forms.ValidationError("Write a message first.")
        return content

    def chat_send(
        self, *, conversation_id: uuid.UUID | None, attachments: tuple[uuid.UUID, ...] = ()
    ) -> ChatSend:
        """The same request the script sends as a `chat.send` frame (`attachments`: the ids of
        the files posted with the form, stored by the view)."""
        data = self.cleaned_data
        target = data["target"]
        return ChatSend(
            conversation=conversation_id,
            parent=data.get("parent"),
            content=data["content"],
            provider=target[0] if target else None,
            model=(target[1] or None) if target else None,
            options=self.options(),
            # A post without the field (not from our page) leaves the system prompt alone.
            system=data["system"] if "system" in self.data else None,
            attachments=attachments,
        )


class RenameForm(forms.Form):
    title = forms.CharField(label="Title", max_length=200)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="Conversation file",
        help_text="A JSON export from this site, or a JSON object with an OpenAI-style "
        '"messages" list.',
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {IMPORT_MAX_BYTES // (1024 * 1024)} MB."
            )
        return upload


class SearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=200)
    provider = forms.CharField(label="Provider", required=False, max_length=64)
    model = forms.CharField(label="Model", required=False, max_length=200)
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    # Where the page starts: the cursor that the previous page's "More results" link carried.
    after = forms.CharField(required=False, max_length=100)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data


class SidebarPageForm(forms.Form):
    """Which page of the conversation list: the cursor is the `<updated_at>~<id>` of the last
    conversation of the previous page, as the page's "Older conversations" link gave it."""

    cursor = forms.CharField(required=False, max_length=100)

    def clean_cursor(self) -> str | None:
        value = self.cleaned_data["cursor"]
        if not value:
            return None
        if sidebar_cursor_parse(cursor=value) is None:
            raise forms.ValidationError("Not a page of this list.")
        return value


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=100, help_text="What the key is for, e.g. “laptop” or “editor”."
    )
    store_conversations = forms.BooleanField(
        label="Save this key's calls in my history", required=False
    )

    def clean_name(self):
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name


class FolderForm(forms.Form):
    name = forms.CharField(label="Folder name", max_length=100)
