import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from providers.crypto import decrypt_text, encrypt_text
from providers.models import ProviderAuthState, ProviderConfig
from providers.services import provider_config_set_token

TOKEN = "sk-command-line-token-5678"


def run(*args, stdin=None):
    out = io.StringIO()
    kwargs = {"stdout": out}
    if stdin is not None:
        kwargs["stdin"] = io.StringIO(stdin)
    call_command(*args, **kwargs)
    return out.getvalue()


# --- providers set / list / check -----------------------------------------------------------


@pytest.mark.django_db
def test_set_creates_a_config_with_the_token_from_stdin(encryption_keys, fake_upstream):
    out = run(
        "providers",
        "set",
        "local",
        "--class",
        "OpenAICompatible",
        "--api-base",
        fake_upstream.url + "/v1",
        "--model",
        "fake-model",
        "--token-stdin",
        "--default",
        stdin=TOKEN + "\n",
    )
    assert "Created local" in out and TOKEN not in out
    config = ProviderConfig.objects.get(name="local")
    assert (config.provider_class, config.default_model, config.is_default) == (
        "OpenAICompatible",
        "fake-model",
        True,
    )
    assert decrypt_text(config.token_ciphertext) == TOKEN


@pytest.mark.django_db
def test_set_updates_only_what_is_given(encryption_keys):
    run("providers", "set", "p", "--class", "OpenAICompatible", "--model", "m1")
    run("providers", "set", "p", "--disable")
    config = ProviderConfig.objects.get(name="p")
    assert (config.enabled, config.default_model) == (False, "m1")
    run("providers", "set", "p", "--enable", "--api-base", "http://127.0.0.1:8080/v1")
    config.refresh_from_db()
    assert (config.enabled, config.api_base, config.default_model) == (
        True,
        "http://127.0.0.1:8080/v1",
        "m1",
    )


@pytest.mark.django_db
def test_enable_and_disable_together_are_refused(encryption_keys):
    with pytest.raises(CommandError):
        run("providers", "set", "p", "--class", "OpenAICompatible", "--enable", "--disable")


@pytest.mark.django_db
def test_set_token_stdin_with_empty_input_clears_the_token(encryption_keys):
    run("providers", "set", "p", "--class", "OpenAICompatible", "--token-stdin", stdin=TOKEN)
    run("providers", "set", "p", "--token-stdin", stdin="")
    assert ProviderConfig.objects.get(name="p").token_ciphertext == ""


@pytest.mark.django_db
def test_set_refuses_a_token_that_cannot_go_into_a_header_without_quoting_it(encryption_keys):
    run("providers", "set", "p", "--class", "OpenAICompatible", "--token-stdin", stdin=TOKEN)
    bad = "sk-two\nlines-token-0000"
    with pytest.raises(CommandError, match="printable ASCII") as caught:
        run("providers", "set", "p", "--token-stdin", stdin=bad)
    assert "lines-token" not in str(caught.value)
    assert decrypt_text(ProviderConfig.objects.get(name="p").token_ciphertext) == TOKEN


@pytest.mark.django_db
def test_token_is_not_accepted_as_an_argument(encryption_keys):
    with pytest.raises(CommandError):
        run("providers", "set", "p", "--class", "OpenAICompatible", "--token", TOKEN)


@pytest.mark.django_db
def test_set_refuses_unknown_class_and_missing_class_for_new_config(encryption_keys):
    with pytest.raises(CommandError, match="Unknown provider class"):
        run("providers", "set", "p", "--class", "Nope")
    with pytest.raises(CommandError, match="--class is needed"):
        run("providers", "set", "p")
    assert not ProviderConfig.objects.exists()


@pytest.mark.django_db
def test_set_default_moves_the_default(encryption_keys):
    run("providers", "set", "a", "--class", "OpenAICompatible", "--default")
    run("providers", "set", "b", "--class", "OpenAICompatible", "--default")
    assert list(ProviderConfig.objects.filter(is_default=True).values_list("name", flat=True)) == [
        "b"
    ]


@pytest.mark.django_db
def test_list_shows_the_token_hint_never_the_token(encryption_keys):
    run("providers", "set", "p", "--class", "Raycast", "--token-stdin", stdin=TOKEN)
    out = run("providers", "list")
    assert "p\tRaycast\tenabled" in out
    assert "token: …5678" in out
    assert TOKEN not in out


@pytest.mark.django_db
def test_check_prints_latency_and_fails_for_a_broken_config(
    encryption_keys, fake_upstream, closed_port_url
):
    run("providers", "set", "good", "--class", "OpenAICompatible",
        "--api-base", fake_upstream.url + "/v1", "--model", "fake-model")  # fmt: skip
    out = run("providers", "check", "good")
    assert out.startswith("good: OK in ") and out.strip().endswith(" ms")
    run("providers", "set", "dead", "--class", "OpenAICompatible",
        "--api-base", closed_port_url + "/v1", "--model", "fake-model")  # fmt: skip
    with pytest.raises(CommandError, match="dead"):
        run("providers", "check")
    assert ProviderConfig.objects.get(name="dead").last_check_ok is False


# --- rotate_encryption_keys -----------------------------------------------------------------


@pytest.mark.django_db
def test_rotate_re_encrypts_tokens_and_auth_state_with_the_first_key(settings, encryption_keys):
    config = ProviderConfig.objects.create(name="p", provider_class="OpenAICompatible")
    provider_config_set_token(config=config, token=TOKEN)
    ProviderAuthState.objects.create(key="k", ciphertext=encrypt_text('{"api_key": "a"}'))
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *encryption_keys]
    out = run("rotate_encryption_keys")
    assert "1 token(s) and 1 auth state(s)" in out
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    config.refresh_from_db()
    assert decrypt_text(config.token_ciphertext) == TOKEN
    assert decrypt_text(ProviderAuthState.objects.get(key="k").ciphertext) == '{"api_key": "a"}'


@pytest.mark.django_db
def test_rotate_changes_nothing_when_a_secret_is_unreadable(settings, encryption_keys):
    good = ProviderConfig.objects.create(name="good", provider_class="OpenAICompatible")
    provider_config_set_token(config=good, token=TOKEN)
    before = ProviderConfig.objects.get(name="good").token_ciphertext
    lost_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [lost_key]
    lost = ProviderConfig.objects.create(name="lost", provider_class="OpenAICompatible")
    provider_config_set_token(config=lost, token="other-token-0000000")
    settings.FIELD_ENCRYPTION_KEYS = encryption_keys
    with pytest.raises(CommandError, match="lost: cannot be decrypted"):
        run("rotate_encryption_keys")
    assert ProviderConfig.objects.get(name="good").token_ciphertext == before
