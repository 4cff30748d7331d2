"""Re-encrypt every stored provider secret with the first key of FIELD_ENCRYPTION_KEYS.

Key rotation: put the new key first (keep the old ones after it), run this, then drop the old keys.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers.crypto import DecryptionError, rotate_text
from providers.models import ProviderAuthState, ProviderConfig


class Command(BaseCommand):
    help = "Re-encrypt stored provider tokens and auth state with the first configured key."

    def handle(self, *args, **options):
        # All or nothing: a secret no key can read stops the run before anything is written.
        with transaction.atomic():
            configs = list(
                ProviderConfig.objects.select_for_update()
                .exclude(token_ciphertext="")
                .only("pk", "name", "token_ciphertext")
            )
            states = list(ProviderAuthState.objects.select_for_update().only("pk", "key"))
            for config in configs:
                config.token_ciphertext = self._rotate(config.token_ciphertext, config.name)
            for state in states:
                state.ciphertext = self._rotate(state.ciphertext, f"auth state {state.key}")
            ProviderConfig.objects.bulk_update(configs, ["token_ciphertext"])
            ProviderAuthState.objects.bulk_update(states, ["ciphertext"])
        self.stdout.write(
            f"Re-encrypted {len(configs)} token(s) and {len(states)} auth state(s) "
            "with the first key."
        )

    @staticmethod
    def _rotate(ciphertext: str, what: str) -> str:
        try:
            return rotate_text(ciphertext)
        except DecryptionError:
            raise CommandError(
                f"{what}: cannot be decrypted with any configured key; nothing was changed. "
                "Add the key it was written with to FIELD_ENCRYPTION_KEYS, or clear that token."
            ) from None
