"""What the two resumable, sharded outputs (fetch-images' shards, the feature store) share.

A shard is a Parquet file whose metadata holds, under FINGERPRINT_KEY, the fingerprint of everything its rows
depend on: a rerun keeps a shard only when that fingerprint matches, and computes a missing or damaged one
again (never trusting it). The manifest is the JSON written last, once every shard is there: it is what the
rules depend on, and it is read back only when it exists and has the format version its reader knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ant.errors import UserError
from ant.io import read_json

FINGERPRINT_KEY = b"ant.fingerprint"


def shard_metadata(path: Path) -> dict[bytes, bytes] | None:
    """The Parquet metadata of a written shard; None when it is missing or damaged (then it is computed again)."""
    if not path.exists():
        return None
    try:
        return pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None  # a damaged file is recomputed, never trusted


def load_manifest(path: Path, format_version: int, kind: str, rule: str) -> dict[str, Any]:
    """The `kind` manifest at `path`, refused when it is missing (the `rule` writes it) or of another version."""
    if not path.exists():
        raise UserError(f"{kind} manifest not found: {path} (run the {rule} for this task)")
    manifest = read_json(path)
    if manifest.get("format_version") != format_version:
        raise UserError(f"{path}: format version {manifest.get('format_version')}, expected {format_version}")
    return manifest
