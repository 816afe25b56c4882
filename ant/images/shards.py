"""The images stage's files: Parquet shards, their fingerprints (resume), the manifest, and reading them back.

In the output folder:
  part-NNNNN.parquet  one row per URL tried: item_idx i32, slot i16, fallback bool, url str, status str,
                      error str ("" when ok), bytes binary (the re-encoded image when ok, else null). A shard
                      covers a contiguous item_idx range; its Parquet metadata holds a fingerprint of its items'
                      URLs and of the settings that change what is stored, and its count of transient failures.
  manifest.json       written last (the rule's output): settings, shards with checksums, the counts.
  stats.json          the counts by cause.

Resume: a shard whose fingerprint matches is kept, so after a kill a rerun fetches only the missing shards;
with `retry_transient` a shard that holds transient failures is fetched again too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ant.data.items import items_digest
from ant.errors import UserError
from ant.images.fetch import Slots, is_transient
from ant.images.settings import FetchSettings
from ant.io import read_parquet, sha256_file, write_json, write_parquet
from ant.resumable import FINGERPRINT_KEY, load_manifest, shard_metadata
from ant.versions import STAGES

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_TRANSIENT_KEY = b"ant.transient"

ROW_SCHEMA = pa.schema(
    [
        ("item_idx", pa.int32()),
        ("slot", pa.int16()),
        ("fallback", pa.bool_()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("bytes", pa.binary()),
    ]
)


@dataclass(frozen=True)
class ImageShard:
    number: int
    start: int
    stop: int
    fingerprint: str

    @property
    def file(self) -> str:
        return f"part-{self.number:05d}.parquet"


def item_slots(table: pa.Table, per_item: int) -> list[Slots]:
    """Per item, its first per_item (primary, fallback) URL pairs."""
    primaries = table.column("image_urls").to_pylist()
    fallbacks = (
        table.column("image_fallback_urls").to_pylist()
        if "image_fallback_urls" in table.column_names
        else [None] * len(primaries)
    )
    slots = []
    for idx, (primary, fallback) in enumerate(zip(primaries, fallbacks, strict=True)):
        primary, fallback = primary or [], fallback or [None] * len(primary or [])
        if len(fallback) != len(primary):
            raise UserError(
                f"item_idx {idx}: {len(primary)} image_urls but {len(fallback)} image_fallback_urls; "
                "the two lists must be of the same length (rerun the data stage)"
            )
        slots.append(list(zip(primary, fallback, strict=True))[:per_item])
    return slots


def plan_shards(item_ids: list[str], slots: list[Slots], settings: FetchSettings) -> list[ImageShard]:
    shards = []
    stored = json.dumps(settings.stored(), sort_keys=True)
    for number, start in enumerate(range(0, len(item_ids), settings.shard_items)):
        stop = min(start + settings.shard_items, len(item_ids))
        digest = hashlib.sha256(f"{FORMAT_VERSION}\0{STAGES['images']}\0{stored}\0".encode())
        for item_id, item in zip(item_ids[start:stop], slots[start:stop], strict=True):
            digest.update(json.dumps([item_id, item]).encode())
        shards.append(ImageShard(number, start, stop, digest.hexdigest()))
    return shards


def shard_is_done(path: Path, shard: ImageShard, retry_transient: bool = False) -> bool:
    meta = shard_metadata(path)
    if meta is None or meta.get(FINGERPRINT_KEY) != shard.fingerprint.encode():
        return False
    return not (retry_transient and int(meta.get(_TRANSIENT_KEY, b"0")) > 0)


def write_shard(path: Path, shard: ImageShard, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA) if rows else ROW_SCHEMA.empty_table()
    transient = sum(is_transient(r["status"]) for r in rows)
    table = table.replace_schema_metadata(
        {FINGERPRINT_KEY: shard.fingerprint.encode(), _TRANSIENT_KEY: str(transient).encode()}
    )
    # JPEG bytes do not compress: store them plain, compress the small columns
    compression = {name: ("NONE" if name == "bytes" else "ZSTD") for name in ROW_SCHEMA.names}
    write_parquet(table, path, compression=compression, use_dictionary=["status", "error"])


def write_manifest(
    out_dir: Path,
    shards: list[ImageShard],
    item_ids: list[str],
    slots: list[Slots],
    settings: FetchSettings,
    stats_path: str | Path | None,
) -> dict[str, Any]:
    names = ["item_idx", "slot", "fallback", "status"]
    columns = [read_parquet(out_dir / s.file, columns=names) for s in shards]
    rows = pa.concat_tables(columns) if columns else ROW_SCHEMA.empty_table().select(names)
    stats = count(rows, len(item_ids), slots)
    manifest = {
        "format_version": FORMAT_VERSION,
        "items": len(item_ids),
        "items_sha256": items_digest(item_ids),
        "settings": settings.stored(),
        "shards": [
            {
                "file": s.file,
                "start": s.start,
                "stop": s.stop,
                "fingerprint": s.fingerprint,
                "sha256": sha256_file(out_dir / s.file),
            }
            for s in shards
        ],
        "stats": stats,
    }
    if stats_path is not None:
        write_json(stats, stats_path)
    write_json(manifest, out_dir / MANIFEST)
    by_status = ", ".join(f"{k} {v}" for k, v in stats["by_status"].items())
    log.info(
        "%d of %d items have an image; URLs tried: %s", stats["items_with_image"], stats["items"], by_status or "none"
    )
    return manifest


def count(rows: pa.Table, n_items: int, slots: list[Slots]) -> dict[str, Any]:
    """Counts by cause: items with/without an image, slots, and every URL tried by status."""
    status = np.asarray(rows.column("status").to_pylist(), dtype=object)
    ok = status == "ok"
    item_idx = rows.column("item_idx").to_numpy()
    with_image = np.zeros(n_items, dtype=bool)
    with_image[item_idx[ok]] = True
    n_slots = sum(len(s) for s in slots)
    return {
        "items": n_items,
        "items_with_image": int(with_image.sum()),
        "items_without_image": int(n_items - with_image.sum()),
        "items_without_urls": sum(1 for s in slots if not s),
        "slots": n_slots,
        "slots_ok": int(ok.sum()),
        "slots_ok_by_fallback": int((ok & rows.column("fallback").to_numpy(zero_copy_only=False)).sum()),
        "urls_tried": len(status),
        "by_status": dict(sorted(Counter(status.tolist()).items())),
    }


# ---------------------------------------------------------------- reading -------------------------------
def read_manifest(manifest_path: str | Path, item_ids: list[str] | None = None) -> dict[str, Any]:
    """An image manifest, checked against the item list it must have been fetched for."""
    path = Path(manifest_path)
    manifest = load_manifest(path, FORMAT_VERSION, "image", "fetch_images rule")
    if item_ids is not None and (
        manifest["items"] != len(item_ids) or manifest["items_sha256"] != items_digest(item_ids)
    ):
        raise UserError(f"{path} was fetched for another item list; rerun the fetch_images rule")
    return manifest


def read_ok_images(
    manifest_path: str | Path, manifest: dict[str, Any], start: int, stop: int
) -> tuple[np.ndarray, list[bytes]]:
    """(item_idx, JPEG bytes) of every image that loaded for items start..stop-1, in (item, slot) order."""
    folder = Path(manifest_path).parent
    idx: list[np.ndarray] = []
    data: list[bytes] = []
    for entry in manifest["shards"]:
        if entry["stop"] <= start or entry["start"] >= stop:
            continue
        table = pq.read_table(
            folder / entry["file"],
            columns=["item_idx", "bytes"],
            filters=[("status", "==", "ok"), ("item_idx", ">=", start), ("item_idx", "<", stop)],
        )
        idx.append(table.column("item_idx").to_numpy())
        data += table.column("bytes").to_pylist()
    return (np.concatenate(idx) if idx else np.zeros(0, dtype=np.int32)), data
