"""`python -m ant fetch-images`: every item's images fetched, verified with Pillow, resized and stored re-encoded.

    python -m ant fetch-images --items results/data/T/items.parquet --out-dir results/images/T \\
        --stats results/images/T/stats.json --per-item 4 --max-side 256 ...

The stage in parts: which URLs and how (ant.images.fetch: slots, statuses, retries, politeness, redirects),
what is kept of an image (ant.images.process), the files in --out-dir and how a rerun resumes from them
(ant.images.shards), and what changes a shard (ant.images.settings). This module plans the shards, fetches
the missing ones in a thread pool and writes the manifest last.

No URL ever fails the stage: an item whose slots all fail has no image, and its image feature is the zero
vector with present = False; stats.json counts the failures by cause.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ant.data.items import read_items
from ant.errors import UserError
from ant.images.fetch import WEB_SCHEMES, Fetcher
from ant.images.settings import FetchSettings
from ant.images.shards import ImageShard, item_slots, plan_shards, shard_is_done, write_manifest, write_shard

log = logging.getLogger(__name__)


def fetch_images(
    items_path: str | Path,
    out_dir: str | Path,
    settings: FetchSettings,
    *,
    stats_path: str | Path | None = None,
    retry_transient: bool = False,
    on_shard: Callable[[ImageShard], None] | None = None,
) -> dict[str, Any]:
    """Fetch every missing shard, then write stats and the manifest; returns the manifest."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    table = read_items(items_path, ["image_urls"] + _optional_fallback(items_path))
    item_ids = table.column("item_id").to_pylist()
    slots = item_slots(table, settings.per_item)
    shards = plan_shards(item_ids, slots, settings)
    todo = [s for s in shards if not shard_is_done(out_dir / s.file, s, retry_transient)]
    log.info(
        "%s: %d of %d shard(s) already done, %d to fetch", out_dir, len(shards) - len(todo), len(shards), len(todo)
    )
    fetcher = Fetcher(settings)
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="fetch")
    try:
        with tqdm(
            total=sum(s.stop - s.start for s in todo),
            unit=" items",
            file=sys.stderr,
            desc="images",
            mininterval=0.5 if sys.stderr.isatty() else 15,
            disable=not todo,
        ) as progress:
            for shard in todo:
                rows = []
                items = range(shard.start, shard.stop)
                for item_rows in pool.map(fetcher.fetch_item, items, slots[shard.start : shard.stop]):
                    rows += item_rows
                    progress.update(1)
                write_shard(out_dir / shard.file, shard, rows)
                if on_shard is not None:
                    on_shard(shard)
    finally:
        # on Ctrl-C, drop the shard's queued items instead of fetching them all before exiting
        pool.shutdown(wait=True, cancel_futures=True)
    return write_manifest(out_dir, shards, item_ids, slots, settings, stats_path)


def _optional_fallback(items_path: str | Path) -> list[str]:
    names = pq.read_schema(items_path).names if Path(items_path).exists() else []
    return ["image_fallback_urls"] if "image_fallback_urls" in names else []


# ---------------------------------------------------------------- CLI -----------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FetchSettings()
    parser.add_argument("--items", required=True, help="the task's items.parquet")
    parser.add_argument("--out-dir", required=True, help="folder of the shards and manifest.json")
    parser.add_argument("--stats", default=None, help="write the counts by cause here too")
    parser.add_argument("--retry-transient", action="store_true", help="refetch shards with transient failures")
    parser.add_argument("--per-item", type=int, default=d.per_item, help="image slots per item")
    parser.add_argument("--max-side", type=int, default=d.max_side, help="long side of a stored image, pixels")
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes, help="largest download accepted")
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels, help="decompression-bomb limit")
    parser.add_argument("--schemes", nargs="+", default=list(d.schemes), choices=[*WEB_SCHEMES, "file"])
    parser.add_argument("--cross-host-redirects", action=argparse.BooleanOptionalAction, default=d.cross_host_redirects)
    parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    parser.add_argument("--timeout-s", type=float, default=d.timeout_s, help="connect and read timeout")
    parser.add_argument("--retries", type=int, default=d.retries, help="retries of a transient failure")
    parser.add_argument("--backoff-s", type=float, default=d.backoff_s, help="first retry delay, doubled each time")
    parser.add_argument("--workers", type=int, default=d.workers, help="downloads in flight in all")
    parser.add_argument("--per-host", type=int, default=d.per_host, help="downloads in flight per host")
    parser.add_argument("--shard-items", type=int, default=d.shard_items, help="items per shard (resume unit)")


def run(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(FetchSettings)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["schemes"] = tuple(dict.fromkeys(values["schemes"]))
    settings = FetchSettings(**values)
    positive = ("per_item", "max_side", "max_bytes", "max_pixels", "workers", "per_host", "shard_items")
    bad = [k for k in positive if getattr(settings, k) < 1]
    if bad or settings.timeout_s <= 0 or settings.retries < 0 or settings.backoff_s < 0:
        raise UserError(f"fetch-images: {bad or 'timeout/retries/backoff'} must be positive")
    if not 1 <= settings.jpeg_quality <= 95:
        raise UserError("--jpeg-quality must be in 1..95")
    fetch_images(args.items, args.out_dir, settings, stats_path=args.stats, retry_transient=args.retry_transient)
    return 0
