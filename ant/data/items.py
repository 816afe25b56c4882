"""The reader of the data stage's items.parquet, and the digests that tie what is built from it to its items.

items.parquet (written by `kcore`): item_idx i32 (0..N-1, in order), item_id, and the items_raw columns.
`read_items` is how every later stage reads it: it refuses a missing or unreadable file, one that lacks a
column asked for, and one whose rows are not in item_idx order. A stage that stores something per item
records `items_digest` of the item order, and refuses to reuse it for another one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ant.errors import UserError
from ant.io import read_parquet


def read_items(items_path: str | Path, columns: Sequence[str] = ()) -> pa.Table:
    """item_idx, item_id and `columns` of items.parquet, checked: the file exists, has them, is in item order."""
    path = Path(items_path)
    if not path.exists():
        raise UserError(f"items table not found: {path} (run the data stage for this task first)")
    wanted = list(dict.fromkeys(["item_idx", "item_id", *columns]))
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise UserError(f"{path} is not a readable Parquet file ({err}); rerun the data stage") from err
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise UserError(f"{path} lacks column(s) {missing}; it was written by another version of the data stage")
    table = read_parquet(path, columns=wanted)
    idx = table.column("item_idx").to_numpy()
    if not np.array_equal(idx, np.arange(len(idx))):
        raise UserError(f"{items_path}: item_idx is not 0..N-1 in order")
    return table


def read_item_ids(items_path: str | Path) -> list[str]:
    """item_id in item_idx order from items.parquet (which is written sorted by item_idx)."""
    return read_items(items_path).column("item_id").to_pylist()


def column_digest(values: Iterable[str], end: bytes) -> str:
    """sha256 of a text column, each value followed by `end`: what is built from the column is stale when it
    changes."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode())
        digest.update(end)
    return digest.hexdigest()


def items_digest(item_ids: Iterable[str]) -> str:
    """Digest of the item order: a feature matrix or an image manifest is only valid for exactly this list of
    item ids."""
    return column_digest(item_ids, b"\n")
