"""What a `fetch-images` run is asked to do, and which of it changes what a shard stores.

`stored()` is the part that goes into a shard's fingerprint (sizes, limits, schemes, redirects, quality):
change one and every shard is fetched again. Timeouts, retries, workers and per-host limits are not in it:
they change how hard we try, not what a success stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FetchSettings:
    per_item: int = 4
    max_side: int = 256
    max_bytes: int = 20_000_000
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb limit
    schemes: tuple[str, ...] = ("http", "https", "file")
    cross_host_redirects: bool = True
    jpeg_quality: int = 90
    timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 1.0
    workers: int = 32
    per_host: int = 8
    shard_items: int = 2000

    def stored(self) -> dict[str, Any]:
        """The settings that change what a shard stores (its fingerprint); the rest is how hard we try."""
        keys = ("per_item", "max_side", "max_bytes", "max_pixels", "schemes", "cross_host_redirects", "jpeg_quality")
        return {k: getattr(self, k) for k in keys}
