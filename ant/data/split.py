"""The one split of the project (spec §1 steps 5-6): leave-one-out with the 50-most-recent history.

For a user with time-ordered items s_1..s_n (n >= 3):
  - test:  target s_n,     history s_1..s_{n-1}
  - valid: target s_{n-1}, history s_1..s_{n-2}
  - train: every prefix, targets s_2..s_{n-2}, history s_1..s_{t-1}
and every history is cut to its `max_history` most recent items. Histories are stored oldest first,
left-aligned and right-padded with PAD, so #train rows = #interactions - 3 * #users.

Everything is vectorised over a flat item array plus per-user offsets (the layout of a Parquet/Arrow list
column), and histories are gathered in bounded chunks so Clothing-size tasks fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ant.io import read_parquet

PAD = -1
SPLITS = ("train", "valid", "test")
_CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class Rows:
    """The rows of one split; row r predicts `target[r]` from `history[r, :length[r]]`."""

    user_idx: np.ndarray  # int32 [n]
    history: np.ndarray  # int32 [n, max_history], item_idx oldest first, PAD after `length`
    length: np.ndarray  # int32 [n], 1..max_history
    target: np.ndarray  # int32 [n], item_idx
    position: np.ndarray  # int32 [n], 0-based position of the target in its user's sequence (history column j
    #                       is at position - length + j); what a model reading per-interaction context needs

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Sequences:
    """All users' full time-ordered sequences as one flat array and offsets (CSR layout)."""

    items: np.ndarray  # int32 [total interactions], item_idx
    offsets: np.ndarray  # int64 [n_users + 1]; user u owns items[offsets[u]:offsets[u+1]]
    user_idx: np.ndarray  # int32 [n_users]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, lists: list[list[int]], user_idx: np.ndarray | None = None) -> Sequences:
        lengths = np.fromiter((len(s) for s in lists), dtype=np.int64, count=len(lists))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.fromiter((i for s in lists for i in s), dtype=np.int32, count=int(offsets[-1]))
        users = np.arange(len(lists), dtype=np.int32) if user_idx is None else np.asarray(user_idx, np.int32)
        return cls(items=items, offsets=offsets, user_idx=users)


def read_sequences(path: str | Path) -> Sequences:
    """Read `sequences.parquet` (user_idx, item_idx list<i32>, ...) without leaving Arrow's flat layout."""
    table = read_parquet(path, columns=["user_idx", "item_idx"]).combine_chunks()
    lists = table.column("item_idx").chunk(0) if table.num_rows else None
    if lists is None:
        return Sequences(np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, np.int32))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    items = lists.values.to_numpy().astype(np.int32)
    # a sliced list array may not start at 0
    items = items[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    users = table.column("user_idx").to_numpy().astype(np.int32)
    return Sequences(items=items, offsets=offsets, user_idx=users)


def read_timestamps(path: str | Path, seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """The `timestamp` list column of `sequences.parquet` (seconds since the epoch, aligned with `item_idx`), read
    as `seqs` was read from the same file: (offsets int64 [U + 1], seconds int64 [interactions]) with user u's
    times at seconds[offsets[u]:offsets[u + 1]], u = task-local user_idx (kcore writes user_idx 0..U-1 in row order,
    which this checks, so a row's user_idx is its CSR row)."""
    if not np.array_equal(seqs.user_idx, np.arange(len(seqs.user_idx))):
        raise ValueError(f"{path}: user_idx is not 0..U-1 in row order; cannot look up times by user_idx")
    table = read_parquet(path, columns=["timestamp"]).combine_chunks()
    if not table.num_rows:
        return seqs.offsets, np.zeros(0, np.int64)
    lists = table.column("timestamp").chunk(0)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    seconds = lists.values.to_numpy().astype(np.int64)[offsets[0] : offsets[-1]]  # a sliced list may not start at 0
    if not np.array_equal(offsets - offsets[0], seqs.offsets):
        raise ValueError(f"{path}: the timestamp lists are not aligned with the item_idx lists")
    return seqs.offsets, seconds


def split(seqs: Sequences, max_history: int = 50) -> dict[str, Rows]:
    """Train prefixes, validation and test rows of every user (see the module docstring)."""
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    lengths = seqs.lengths
    if len(lengths) and lengths.min() < 3:
        short = int((lengths < 3).sum())
        raise ValueError(f"{short} user(s) have fewer than 3 interactions; leave-one-out needs at least 3")
    n_users = len(lengths)
    user_pos = np.arange(n_users)

    n_train = lengths - 3
    train_user = np.repeat(user_pos, n_train)
    first_of_user = np.repeat(np.cumsum(n_train) - n_train, n_train)
    train_pos = np.arange(len(train_user), dtype=np.int64) - first_of_user + 1  # 1 .. n-3 (0-based)

    return {
        "train": _rows(seqs, train_user, train_pos, max_history),
        "valid": _rows(seqs, user_pos, lengths - 2, max_history),
        "test": _rows(seqs, user_pos, lengths - 1, max_history),
    }


def _rows(seqs: Sequences, user_pos: np.ndarray, target_pos: np.ndarray, max_history: int) -> Rows:
    """Rows whose target sits at `target_pos` (0-based, within the user) of user number `user_pos`."""
    base = seqs.offsets[user_pos]
    start = np.maximum(target_pos - max_history, 0)
    length = (target_pos - start).astype(np.int32)
    history = np.empty((len(user_pos), max_history), dtype=np.int32)
    cols = np.arange(max_history, dtype=np.int64)
    last = max(len(seqs.items) - 1, 0)
    for lo in range(0, len(user_pos), _CHUNK_ROWS):
        hi = lo + _CHUNK_ROWS
        idx = (base[lo:hi] + start[lo:hi])[:, None] + cols[None, :]
        valid = cols[None, :] < length[lo:hi, None]
        history[lo:hi] = np.where(valid, seqs.items[np.minimum(idx, last)], PAD)
    return Rows(
        user_idx=seqs.user_idx[user_pos].astype(np.int32),
        history=history,
        length=length,
        target=seqs.items[base + target_pos].astype(np.int32),
        position=target_pos.astype(np.int32),
    )
