"""The in-process channel layer of embedded mode (no REDIS_URL)."""

import time

from channels import layers

# How often expired messages and group memberships are swept out.
SWEEP_SECONDS = 1.0


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """channels' in-process layer without its quadratic cost: that one sweeps every channel and
    every group membership for expired entries on each receive and each group_send, so with
    500 sockets every frame paid for 500 sockets (a quarter of the server's time starting 500
    answers at once). Here the sweep runs at most once per SWEEP_SECONDS; an expired message
    (60 s old by default) may be delivered up to that much later than it would have been."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = float("-inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = now
        super()._clean_expired()
