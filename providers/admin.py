"""Admin for provider configuration.

The token is write-only: the form has an empty password field (empty keeps the stored token)
and a "clear" checkbox; pages show at most "…last4". The change view is marked so Django's error
reports never include the posted token.
"""

import json
import re
from urllib.parse import urlsplit, urlunsplit

from django import forms
from django.contrib import admin, messages
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from providers.errors import ProviderError
from providers.models import FallbackChain, FallbackChainMember, ProviderConfig
from providers.registry import get_provider, provider_class_choices
from providers.selectors import provider_config_models
from providers.services import apply_token, provider_config_check, provider_token_validate


def token_hint(config: ProviderConfig) -> str:
    if not config.token_ciphertext:
        return "—"
    return f"…{config.token_last4}" if config.token_last4 else "set"


# Stands in for a proxy password on the form: the page shows the proxy's address and user but
# never its password, and a submitted mask means "keep the stored one".
PROXY_PASSWORD_MASK = "********"


def proxy_masked(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:{PROXY_PASSWORD_MASK}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def proxy_unmasked(submitted: str, stored: str) -> str:
    """The submitted proxy, with the stored password put back where the mask was left."""
    parts = urlsplit(submitted)
    if parts.password != PROXY_PASSWORD_MASK:
        return submitted
    old = urlsplit(stored)
    if not old.password:
        raise forms.ValidationError("Enter the proxy's password (none is stored).")
    netloc = parts.netloc.replace(f":{PROXY_PASSWORD_MASK}@", f":{old.password}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# What a new provider is, unless the admin picks another class: the common case by far.
DEFAULT_PROVIDER_CLASS = "OpenAICompatible"
_MODEL_SEPARATORS = re.compile(r"[,\n]")


class ModelListField(forms.CharField):
    """Model names one per line or separated by commas (a pasted JSON list is accepted too),
    stored as the list the JSON column holds."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        text = (value or "").strip()
        if text.startswith("["):
            try:
                names = json.loads(text)
            except ValueError:
                raise forms.ValidationError("Enter model names, one per line.") from None
            if not all(isinstance(name, str) for name in names):
                raise forms.ValidationError("Enter model names, one per line.")
        else:
            names = _MODEL_SEPARATORS.split(text)
        return list(dict.fromkeys(name.strip() for name in names if name.strip()))


class ProviderConfigForm(forms.ModelForm):
    provider_class = forms.ChoiceField(
        choices=(), label="Provider class", initial=DEFAULT_PROVIDER_CLASS
    )
    allowed_models = ModelListField(
        required=False,
        label="Allowed models",
        help_text="One per line or separated by commas; empty means the default model only.",
    )
    token = forms.CharField(
        label="API token",
        required=False,
        strip=True,
        # render_value=False: the page never carries the token back, not even after an error.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored token.",
    )
    clear_token = forms.BooleanField(required=False, label="Clear the stored API token")

    class Meta:
        model = ProviderConfig
        labels = {"api_base": "API base URL", "proxy": "Proxy URL"}
        help_texts = {
            "api_base": "Overrides the provider's default origin, e.g. https://host/v1.",
            "proxy": "http://user:password@host:port; the password is never shown again.",
        }
        fields = [
            "name",
            "provider_class",
            "enabled",
            "is_default",
            "api_base",
            "token",
            "clear_token",
            "proxy",
            "default_model",
            "allowed_models",
            "options",
            "vision",
            "timeout",
            "sort_order",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = provider_class_choices()
        current = self.instance.provider_class if self.instance.pk else None
        if current and current not in {value for value, _ in choices}:
            # Keep a class that is no longer installed visible instead of silently changing it.
            choices.append((current, f"{current} (not installed)"))
        self.fields["provider_class"].choices = choices
        if self.instance.proxy:
            self.initial["proxy"] = proxy_masked(self.instance.proxy)

    def clean_proxy(self) -> str:
        proxy = self.cleaned_data.get("proxy") or ""
        return proxy_unmasked(proxy, self.instance.proxy or "") if proxy else ""

    def clean_token(self) -> str:
        token = self.cleaned_data.get("token") or ""
        if token:
            provider_token_validate(token=token)
        return token

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_token") and cleaned.get("token"):
            raise forms.ValidationError("Either enter a new token or clear it, not both.")
        if cleaned.get("is_default"):
            other = (
                ProviderConfig.objects.filter(is_default=True)
                .exclude(pk=self.instance.pk)
                .values_list("name", flat=True)
                .first()
            )
            if other:
                self.add_error("is_default", f"{other} is the default; untick it there first.")
        if cleaned.get("vision") and cleaned.get("provider_class"):
            try:
                supports = get_provider(cleaned["provider_class"]).supports_vision
            except ProviderError:
                supports = False
            if not supports:
                self.add_error("vision", "This provider class cannot send images.")
        return cleaned


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigForm
    list_display = [
        "name",
        "provider_class",
        "enabled",
        "is_default",
        "models_display",
        "token_display",
        "last_check_display",
        "sort_order",
    ]
    list_filter = ["enabled", "provider_class"]
    search_fields = ["name", "provider_class", "default_model"]
    readonly_fields = ["token_display", "last_check_display", "last_check_at"]
    actions = ["check_connection"]
    fieldsets = [
        (None, {"fields": ["name", "provider_class", "enabled", "is_default", "sort_order"]}),
        ("Endpoint", {"fields": ["api_base", "proxy", "timeout"]}),
        ("Token", {"fields": ["token_display", "token", "clear_token"]}),
        ("Models", {"fields": ["default_model", "allowed_models", "options", "vision"]}),
        ("Last check", {"fields": ["last_check_display", "last_check_at"]}),
    ]

    @admin.display(description="Models")
    def models_display(self, config: ProviderConfig) -> str:
        return ", ".join(provider_config_models(config=config)) or "—"

    @admin.display(description="Stored API token")
    def token_display(self, config: ProviderConfig) -> str:
        return token_hint(config)

    @admin.display(description="Last check")
    def last_check_display(self, config: ProviderConfig) -> str:
        if config.last_check_ok is None:
            return "never"
        # A success's detail says so itself ("OK in 137 ms").
        return (
            config.last_check_detail
            if config.last_check_ok
            else ("Failed: " + config.last_check_detail)
        )

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("clear_token"):
            apply_token(config=obj, token=None)
        elif form.cleaned_data.get("token"):
            apply_token(config=obj, token=form.cleaned_data["token"])
        super().save_model(request, obj, form, change)

    @method_decorator(sensitive_post_parameters("token"))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    @admin.action(description="Check connection")
    def check_connection(self, request, queryset):
        for config in queryset:
            result = provider_config_check(config=config)
            # The admin capitalises a message's first letter: the name goes in quotes, after
            # a word, so it shows as typed.
            if result.ok:
                self.message_user(
                    request, f"Checked “{config.name}”: {result.detail}", messages.SUCCESS
                )
            else:
                self.message_user(
                    request, f"Checked “{config.name}”: failed — {result.detail}", messages.ERROR
                )


class FallbackChainMemberInline(admin.TabularInline):
    model = FallbackChainMember
    extra = 1
    fields = ["position", "config"]
    ordering = ["position"]


@admin.register(FallbackChain)
class FallbackChainAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "members_display"]
    inlines = [FallbackChainMemberInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("links__config")

    @admin.display(description="Members, in order")
    def members_display(self, chain: FallbackChain) -> str:
        links = sorted(chain.links.all(), key=lambda link: link.position)
        return " → ".join(link.config.name for link in links) or "—"
