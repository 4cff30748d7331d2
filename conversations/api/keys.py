"""What an API key looks like, and how it is stored: a prefix, 256 random bits, and only the
SHA-256 of the whole key in the database."""

import hashlib
import secrets

KEY_PREFIX = "chat-"
# How much of the key lists show: the fixed prefix and a few random characters.
VISIBLE_CHARS = len(KEY_PREFIX) + 6


def api_key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def api_key_visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]
