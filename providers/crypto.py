"""Encryption at rest for provider tokens and auth state.

Fernet keys come from settings.FIELD_ENCRYPTION_KEYS: the first encrypts, every one decrypts
(MultiFernet), so a new key can be put first and `manage.py rotate_encryption_keys` re-encrypts
before the old one is dropped.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_UNDECRYPTABLE = "Stored secret cannot be decrypted with the configured keys."


class DecryptionError(Exception):
    """The ciphertext was not made with any of the configured keys (or was altered)."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is empty: provider tokens cannot be stored or read."
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            # The position, never the value: the other keys of the list are secrets too, and
            # Fernet's own message is dropped (from None) so no traceback can quote the value.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: value {position} of {len(keys)} is not a Fernet key."
            ) from None
    return MultiFernet(fernets)


def _current() -> MultiFernet:
    return _multifernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_text(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode()


def decrypt_text(ciphertext: str) -> str:
    """The plain text; raises DecryptionError for a wrong key, never returns the ciphertext."""
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(_UNDECRYPTABLE) from exc


def rotate_text(ciphertext: str) -> str:
    """The same secret encrypted with the first key; raises DecryptionError like decrypt_text."""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(_UNDECRYPTABLE) from exc
