from typing import Any

from django import forms

from conversations.errors import ChatError
from conversations.forms import target_choices
from conversations.protocol import text_within_limit


def _within_limit(value: str, name: str) -> str:
    try:
        return text_within_limit(value, name)
    except ChatError as exc:
        raise forms.ValidationError(exc.detail, code=exc.code) from None


class PresetForm(forms.Form):
    title = forms.CharField(label="Title", max_length=100)
    text = forms.CharField(label="Prompt", strip=False, widget=forms.Textarea(attrs={"rows": 6}))
    system_prompt = forms.CharField(
        label="System prompt", required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    target = forms.ChoiceField(label="Model", required=False)
    temperature = forms.FloatField(
        label="Temperature", required=False, min_value=0.0, max_value=2.0,
        widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "the chat's"}),
    )  # fmt: skip
    published = forms.BooleanField(label="Publish to every user", required=False)

    def __init__(
        self, *args, targets: list[dict[str, Any]], user, current_target: str = "", **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.user = user
        choices = [("", "The chat's model"), *target_choices(targets)]
        # A preset whose provider was removed keeps its model until it is changed.
        known = {value for _, group in choices[1:] for value, _ in group}
        if current_target and current_target not in known:
            choices.append((current_target, f"{current_target} (no longer offered)"))
        self.fields["target"].choices = choices

    def clean_text(self) -> str:
        text = _within_limit(self.cleaned_data["text"], "text")
        if not text.strip():
            raise forms.ValidationError("Write the prompt.")
        return text

    def clean_system_prompt(self) -> str:
        return _within_limit(self.cleaned_data["system_prompt"], "system")

    def clean_published(self) -> bool:
        published = self.cleaned_data["published"]
        if published and not self.user.is_staff:
            raise forms.ValidationError("Only administrators can publish presets.")
        return published

    def preset_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "title": data["title"],
            "text": data["text"],
            "system_prompt": data["system_prompt"],
            "target": data["target"],
            "temperature": data["temperature"],
            "published": data["published"],
        }
