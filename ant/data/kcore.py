"""`python -m ant kcore`: interactions + items_raw -> sequences.parquet, items.parquet, stats.json.

Steps, exactly in the order of spec §1 (the published Table I counts depend on it):
  1. exact duplicate interactions (same user, item, rating, timestamp) collapse to one; the same
     (user, item) at another time stays;
  2. interactions whose item has no meta record are dropped;
  3. iterative k-core: users and items with fewer than k interactions are dropped, both at once in each
     round (as UniSRec does), until a round drops nothing. The result is the largest subset in which every
     user and item has >= k interactions, whatever the order of the input;
  4. each user's interactions are ordered by (timestamp, item id), so ties are broken reproducibly.

Outputs:
  sequences.parquet  user_idx i32 (0..U-1 in user_id order), user_id, item_idx list<i32> (time order),
                     item_id list<str>, timestamp list<i64>; sorted by user_idx.
  items.parquet      item_idx i32 (0..N-1 in item_id order) and the items_raw columns of the kept items;
                     sorted by item_idx.
  stats.json         task, users, items, interactions, k, `steps` (every step from the raw line to the
                     final interaction, with what it removed and what is left) and the ingest statistics.

How it stays fast on Clothing (32M rows): string ids are touched twice only: once to turn them into dense
int codes, once at the end to sort the few kept ids. Everything else is numpy on int arrays: the rows are
sorted (and deduplicated) by packing (user, item, timestamp rank, rating rank) into one uint64 and
sorting those values, and each k-core round is two bincounts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ant.errors import UserError
from ant.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

ITEM_COLUMNS = ["item_id", "title", "brand", "categories", "text", "price_usd", "image_urls", "image_fallback_urls"]
SEQUENCES_SCHEMA = pa.schema(
    [
        ("user_idx", pa.int32()),
        ("user_id", pa.string()),
        ("item_idx", pa.list_(pa.int32())),
        ("item_id", pa.list_(pa.string())),
        ("timestamp", pa.list_(pa.int64())),
    ]
)
_ROW_GROUP = 1 << 17  # users per row group of sequences.parquet
Hasher = Callable[[pl.Series, int], np.ndarray]


# ---------------------------------------------------------------- ids -> codes ---------------------------
def _polars_hash(ids: pl.Series, seed: int) -> np.ndarray:
    return ids.hash(seed=seed).to_numpy()


@dataclass(frozen=True)
class Codes:
    """Dense codes 0..n-1 of a string column (in no particular order) and one row holding each code."""

    codes: np.ndarray  # int32 [rows]
    row_of_code: np.ndarray  # int64 [n]

    @property
    def n(self) -> int:
        return len(self.row_of_code)


def encode(ids: pl.Series, hasher: Hasher = _polars_hash) -> Codes:
    """Dense int codes of string ids.

    Fast path: the dense rank of a 64-bit hash (no hash table of strings, which is what costs on 10M+
    ids). It is checked with a second, independent hash: every row of a code must agree on it, so a
    collision is caught unless both hashes collide at once (~2^-64 per colliding pair). If the check
    fails, the exact path (a dictionary of the strings) is taken instead.
    """
    codes = pl.Series(hasher(ids, 0)).rank("dense").to_numpy().astype(np.int64) - 1
    check = hasher(ids, 1)
    row_of_code = np.empty(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
    row_of_code[codes] = np.arange(len(codes))
    if not np.array_equal(check[row_of_code][codes], check):
        log.warning("64-bit hash collision among %d ids; encoding them exactly instead", len(ids))
        encoded = pc.dictionary_encode(ids.to_arrow().cast(pa.large_string()))
        codes = encoded.indices.to_numpy().astype(np.int64)
        row_of_code = np.empty(len(encoded.dictionary), dtype=np.int64)
        row_of_code[codes] = np.arange(len(codes))
    if len(row_of_code) >= np.iinfo(np.int32).max:
        raise UserError("more than 2^31 distinct users or items; int32 indices cannot hold them")
    return Codes(codes.astype(np.int32), row_of_code)


def dense_rank(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each value among the distinct values, the sorted distinct values)."""
    distinct = np.sort(values)
    if len(distinct):
        distinct = distinct[np.concatenate([[True], distinct[1:] != distinct[:-1]])]
    return np.searchsorted(distinct, values), distinct


def sorted_rows(columns: list[np.ndarray], sizes: list[int], unique: bool) -> list[np.ndarray]:
    """Rows (column c holds ints in [0, sizes[c])) in lexicographic order, without duplicates if `unique`.

    When a row fits in 64 bits it is packed into one uint64 and the packed values are sorted (numpy's
    fastest sort: no index permutation to drag along); otherwise a lexsort does the same, slower.
    """
    bits = [max(int(size - 1).bit_length(), 1) for size in sizes]
    if sum(bits) <= 64:
        key = np.zeros(len(columns[0]), dtype=np.uint64)
        for column, width in zip(columns, bits, strict=True):
            key <<= np.uint64(width)
            key |= column.astype(np.uint64)
        key.sort()
        if unique and len(key):
            key = key[np.concatenate([[True], key[1:] != key[:-1]])]
        out = []
        for width in reversed(bits):
            out.append((key & np.uint64((1 << width) - 1)).astype(np.int64))
            key >>= np.uint64(width)
        return out[::-1]
    order = np.lexsort(columns[::-1])
    out = [column[order].astype(np.int64) for column in columns]
    if unique and len(order):
        new = np.zeros(len(order), dtype=bool)
        new[0] = True
        for column in out:
            new[1:] |= column[1:] != column[:-1]
        out = [column[new] for column in out]
    return out


# ---------------------------------------------------------------- the k-core ------------------------------
def kcore_mask(user: np.ndarray, item: np.ndarray, k: int) -> tuple[np.ndarray, list[dict[str, int]]]:
    """Mask of the interactions in the k-core, and the counts after each round that removed something.

    Each round drops, at once, every interaction of a user or an item with fewer than k of them; the rows
    left are compacted after each round, so later rounds (usually most of them) only touch the survivors.
    """
    keep = np.zeros(len(user), dtype=bool)
    n_users = int(user.max()) + 1 if len(user) else 0
    n_items = int(item.max()) + 1 if len(item) else 0
    alive = np.arange(len(user), dtype=np.int64)
    rounds: list[dict[str, int]] = []
    while True:
        user_deg = np.bincount(user, minlength=n_users)
        item_deg = np.bincount(item, minlength=n_items)
        if rounds:  # what the previous round left
            rounds[-1] |= {"users": int(np.count_nonzero(user_deg)), "items": int(np.count_nonzero(item_deg))}
        ok = (user_deg[user] >= k) & (item_deg[item] >= k)
        if ok.all():
            break
        user, item, alive = user[ok], item[ok], alive[ok]
        rounds.append({"interactions": len(alive)})
    keep[alive] = True
    return keep, rounds


def _counts(user: np.ndarray, item: np.ndarray) -> dict[str, int]:
    """Interactions, distinct users and distinct items of int-coded rows."""
    return {
        "interactions": len(user),
        "users": int(np.count_nonzero(np.bincount(user))) if len(user) else 0,
        "items": int(np.count_nonzero(np.bincount(item))) if len(item) else 0,
    }


def _step(name: str, before: int, counts: dict[str, int]) -> dict[str, Any]:
    """One row of stats.json's `steps`: what is left after the step and how many interactions it removed."""
    return {"step": name, "removed": before - counts["interactions"], **counts}


# ---------------------------------------------------------------- outputs ---------------------------------
def _index_in_id_order(ids: pl.Series, codes: Codes, kept: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """For the kept codes: code -> index 0..len(kept)-1 in id order (-1 elsewhere), and the sorted ids."""
    kept_ids = ids.gather(codes.row_of_code[kept])
    order = kept_ids.arg_sort().to_numpy()
    index = np.full(codes.n, -1, dtype=np.int64)
    index[kept[order]] = np.arange(len(kept))
    return index, kept_ids.gather(order).to_arrow().cast(pa.string())


def _sequences_table(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray, user_ids: pa.Array,
                     item_ids: pa.Array) -> pa.Table:  # fmt: skip
    """Rows sorted by (user, timestamp, item) -> one row per user with list columns."""
    lengths = np.bincount(user, minlength=len(user_ids))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return pa.table(
        {
            "user_idx": pa.array(np.arange(len(user_ids), dtype=np.int32)),
            "user_id": user_ids,
            "item_idx": pa.ListArray.from_arrays(offsets, pa.array(item.astype(np.int32))),
            "item_id": pa.ListArray.from_arrays(offsets, item_ids.take(pa.array(item))),
            "timestamp": pa.ListArray.from_arrays(offsets, pa.array(timestamp.astype(np.int64))),
        },
        schema=SEQUENCES_SCHEMA,
    )


def _items_table(items_raw: Path, kept: pa.Array) -> pa.Table:
    """The items_raw rows of the kept item ids (sorted), with item_idx."""
    schema = pq.read_schema(items_raw)
    missing = [c for c in ITEM_COLUMNS if c not in schema.names]
    if missing:
        raise UserError(f"{items_raw} lacks the columns {missing}; rerun the ingest")
    wanted = pl.Series("item_id", kept)
    frame = (
        pl.scan_parquet(items_raw)
        .select(ITEM_COLUMNS)
        .filter(pl.col("item_id").is_in(wanted.implode()))
        .collect()
        .unique("item_id", keep="first", maintain_order=True)
        .sort("item_id")
    )
    if frame.height != len(kept):
        raise UserError(f"{items_raw}: {len(kept)} kept items expected, {frame.height} found; is it this task's file?")
    frame = frame.with_columns(item_idx=pl.int_range(frame.height, dtype=pl.Int32)).select(["item_idx", *ITEM_COLUMNS])
    target = pa.schema([pa.field("item_idx", pa.int32()), *[schema.field(c) for c in ITEM_COLUMNS]])
    return frame.to_arrow().cast(target)


# ---------------------------------------------------------------- the step -------------------------------
def kcore(
    task: str,
    interactions: str | Path,
    items_raw: str | Path,
    ingest_stats: str | Path,
    k: int,
    sequences_out: str | Path,
    items_out: str | Path,
    stats_out: str | Path,
    hasher: Hasher = _polars_hash,
) -> dict[str, Any]:
    """Run steps 1-4 (see the module docstring); returns the statistics also written to `stats_out`."""
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    ingest = read_json(ingest_stats)
    frame = pl.read_parquet(interactions, columns=["user_id", "item_id", "rating", "timestamp"])
    if frame.height == 0 or any(frame.null_count().row(0)):
        raise UserError(f"{interactions}: no interactions, or null values in them; rerun the ingest")
    users, items = encode(frame["user_id"], hasher), encode(frame["item_id"], hasher)
    t_rank, t_values = dense_rank(frame["timestamp"].to_numpy())
    r_rank, r_values = dense_rank(frame["rating"].to_numpy().view(np.uint32))  # bit patterns: exact

    ratings = ingest["ratings"]
    non_blank = ratings["lines"] - ratings["blank_lines"]
    steps = [
        {"step": "raw lines of the ratings file", "removed": None, "interactions": ratings["lines"]},
        {"step": "blank lines skipped", "removed": ratings["blank_lines"], "interactions": non_blank},
        _step("malformed lines skipped", non_blank, _counts(users.codes, items.codes)),
    ]
    if steps[-1]["removed"] != ratings["malformed_lines"]:
        raise UserError(f"{interactions} does not match {ingest_stats} (interaction counts differ); rerun the ingest")

    # 1. sorted by (user, item, timestamp, rating): exact duplicates are adjacent and dropped
    user, item, t, r = sorted_rows(
        [users.codes, items.codes, t_rank, r_rank], [users.n, items.n, len(t_values), len(r_values)], unique=True
    )
    steps.append(_step("1. exact duplicates collapsed", steps[-1]["interactions"], _counts(user, item)))

    # 2. interactions of items without a meta record
    meta_ids = pl.scan_parquet(items_raw).select("item_id").collect().get_column("item_id")
    has_meta = frame["item_id"].gather(items.row_of_code).is_in(meta_ids.implode()).to_numpy()
    kept = has_meta[item]
    user, item, t, r = user[kept], item[kept], t[kept], r[kept]
    steps.append(_step("2. items without metadata dropped", steps[-1]["interactions"], _counts(user, item)))

    # 3. the k-core, round by round
    keep, rounds = kcore_mask(user, item, k)
    for number, counts in enumerate(rounds, 1):
        steps.append(_step(f"3. {k}-core round {number}", steps[-1]["interactions"], counts))
    user, item, t, r = user[keep], item[keep], t[keep], r[keep]
    if len(user) == 0:
        raise UserError(f"task {task}: nothing is left after the {k}-core; the data is too sparse for k={k}")

    # 4. indices in id order, rows in (user, timestamp, item) order
    user_index, user_ids = _index_in_id_order(frame["user_id"], users, np.flatnonzero(np.bincount(user)))
    item_index, item_ids = _index_in_id_order(frame["item_id"], items, np.flatnonzero(np.bincount(item)))
    del frame
    user, t, item, r = sorted_rows(
        [user_index[user], t, item_index[item], r],
        [len(user_ids), len(t_values), len(item_ids), len(r_values)],
        unique=False,
    )
    final = _counts(user, item)
    steps.append(_step("4. final, ordered by (timestamp, item id)", steps[-1]["interactions"], final))

    sequences = _sequences_table(user, item, t_values[t], user_ids, item_ids)
    item_table = _items_table(Path(items_raw), item_ids)
    stats = {"task": task, **{key: final[key] for key in ("users", "items", "interactions")}, "k": k}
    stats |= {"steps": steps, "ingest": ingest}
    with contextlib.ExitStack() as stack:
        seq_tmp = stack.enter_context(atomic_path(sequences_out))
        items_tmp = stack.enter_context(atomic_path(items_out))
        pq.write_table(sequences, seq_tmp, compression="zstd", row_group_size=_ROW_GROUP)
        pq.write_table(item_table, items_tmp, compression="zstd")
        write_json(stats, stats_out)
    log.info("%s: %d users, %d items, %d interactions", task, final["users"], final["items"], final["interactions"])
    return stats


# ---------------------------------------------------------------- CLI ------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name (written into stats.json)")
    parser.add_argument("--interactions", required=True, help="interactions.parquet from `ingest`")
    parser.add_argument("--items-raw", required=True, help="items_raw.parquet from `ingest`")
    parser.add_argument("--ingest-stats", required=True, help="ingest.json from `ingest`")
    parser.add_argument("--k", type=int, default=5, help="minimum interactions per user and per item (default 5)")
    parser.add_argument("--sequences", required=True, help="output sequences.parquet")
    parser.add_argument("--items", required=True, help="output items.parquet")
    parser.add_argument("--stats", required=True, help="output stats.json")


def run(args: argparse.Namespace) -> int:
    kcore(args.task, args.interactions, args.items_raw, args.ingest_stats, args.k, args.sequences, args.items,
          args.stats)  # fmt: skip
    return 0
