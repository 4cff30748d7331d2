import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from providers.crypto import DecryptionError, decrypt_text, encrypt_text, rotate_text


def test_round_trip_and_ciphertext_does_not_contain_the_secret(encryption_keys):
    ciphertext = encrypt_text("sk-very-secret-value")
    assert "sk-very-secret-value" not in ciphertext
    assert decrypt_text(ciphertext) == "sk-very-secret-value"


def test_wrong_key_raises_instead_of_returning_ciphertext(settings, encryption_keys):
    ciphertext = encrypt_text("sk-very-secret-value")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError) as caught:
        decrypt_text(ciphertext)
    assert ciphertext not in str(caught.value)
    assert "sk-very-secret-value" not in str(caught.value)


def test_tampered_ciphertext_raises(encryption_keys):
    ciphertext = encrypt_text("secret")
    with pytest.raises(DecryptionError):
        decrypt_text(ciphertext[:-4] + "AAAA")


def test_old_key_still_decrypts_after_a_new_key_is_put_first(settings, encryption_keys):
    old_ciphertext = encrypt_text("secret")
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *encryption_keys]
    assert decrypt_text(old_ciphertext) == "secret"
    rotated = rotate_text(old_ciphertext)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert decrypt_text(rotated) == "secret"
    with pytest.raises(DecryptionError):
        decrypt_text(old_ciphertext)


def test_no_keys_is_a_configuration_error(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured):
        encrypt_text("secret")


def test_invalid_key_is_a_configuration_error_without_echoing_the_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured) as caught:
        encrypt_text("secret")
    assert "not-a-fernet-key" not in str(caught.value)


def test_invalid_key_is_named_by_its_position(settings):
    good = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [good, "not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured) as caught:
        encrypt_text("secret")
    assert str(caught.value) == "FIELD_ENCRYPTION_KEYS: value 2 of 2 is not a Fernet key."
    assert caught.value.__cause__ is None and good not in str(caught.value)
