"""AsyncAuthedProvider's auth cache in the database, so every server process shares one login.

Same interface as base.FileAuthStore; the JSON is encrypted like provider tokens.
"""

import json
import logging

from channels.db import database_sync_to_async

from providers.crypto import DecryptionError, decrypt_text, encrypt_text
from providers.models import ProviderAuthState
from providers.types import AuthResult

logger = logging.getLogger(__name__)


class DatabaseAuthStore:
    def __init__(self, *, key: str) -> None:
        self.key = key

    # Not thread-sensitive: a sync caller (an admin action, a command) reaches this through the
    # sync bridge while it blocks its own thread, which may be the very thread a thread-sensitive
    # call would queue behind (asgiref's single-thread or per-request executor): a deadlock.
    # Each call is one self-contained query, so any worker thread will do.
    async def load(self) -> AuthResult | None:
        return await database_sync_to_async(self._load, thread_sensitive=False)()

    async def save(self, auth_result: AuthResult | None) -> None:
        await database_sync_to_async(self._save, thread_sensitive=False)(auth_result)

    def _load(self) -> AuthResult | None:
        ciphertext = (
            ProviderAuthState.objects.filter(key=self.key)
            .values_list("ciphertext", flat=True)
            .first()
        )
        if ciphertext is None:
            return None
        try:
            data = json.loads(decrypt_text(ciphertext))
        except (DecryptionError, ValueError):
            logger.warning("auth state %s is unreadable; authenticating again", self.key)
            return None
        return AuthResult(**data) if isinstance(data, dict) else None

    def _save(self, auth_result: AuthResult | None) -> None:
        if auth_result is None:
            ProviderAuthState.objects.filter(key=self.key).delete()
            return
        ProviderAuthState.objects.update_or_create(
            key=self.key,
            defaults={"ciphertext": encrypt_text(json.dumps(auth_result.get_dict()))},
        )
