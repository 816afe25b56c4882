"""Training rows as pre-built padded tensors, and the shuffled batches the trainer iterates over.

Rows come from ant.data.split (train prefixes). Two layouts (config train.rows, spec section 7):
  prefixes        one row per training target: history [L] and its target (the paper's way);
  all_positions   for a causal encoder the output at position j of s_1..s_k equals the output of the prefix row
                  s_1..s_{j+1}, so one row per user carries all its first L targets (target[j] = s_{j+2}) and
                  only targets beyond the first L (whose 50-item history slides) stay as prefix rows. The same
                  (history, target) pairs, far fewer forward passes.
A batch is cut to its longest history (right padding, positions counted from the oldest item, so the outputs do
not change) and moved to the device; nothing in the loop touches single rows in Python.
`batch_size` counts targets: with all_positions a batch holds about batch_size / (targets per row) rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ant.data.split import PAD, Rows
from ant.train.data import shift_items

RowLayout = Literal["prefixes", "all_positions"]


@dataclass(frozen=True)
class Batch:
    history: torch.Tensor  # int64 [B, T], PAD = -1, T = longest history in the batch
    length: torch.Tensor  # int64 [B], 1..T
    target: torch.Tensor  # int64 [B] (prefixes) or [B, T] with PAD where a position has no target
    user: torch.Tensor  # int64 [B], each row's task-local user_idx (user-aware models: NPE)
    # int64 [B], the sequence position of the target after history[:, length - 1] (ant.data.split.Rows): for
    # models that read per-interaction context (CARCA's time6); None in hand-built batches of models that do not
    position: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.history.shape[0]

    def select(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The hidden states that predict a target, those targets, and the batch row of each: [M, d], [M], [M].

        With prefixes every row has one target (row = 0..B-1); with all_positions a row holds several targets of
        one user, which an in-batch loss must not use as negatives of each other (ant.train.losses)."""
        rows = torch.arange(len(self), device=hidden.device)
        if self.target.dim() == 1:
            return hidden[rows, self.length - 1], self.target, rows
        has = self.target != PAD
        return hidden[has], self.target[has], rows.unsqueeze(1).expand_as(self.target)[has]


@dataclass(frozen=True)
class TrainRows:
    history: torch.Tensor  # int32 [n, L]
    length: torch.Tensor  # int32 [n]
    target: torch.Tensor  # int32 [n] or [n, L]
    user: torch.Tensor  # int64 [n]
    position: torch.Tensor  # int32 [n], sequence position of the target after history[:, length - 1]

    def __len__(self) -> int:
        return self.history.shape[0]

    @property
    def n_targets(self) -> int:
        return len(self) if self.target.dim() == 1 else int((self.target != PAD).sum())

    @classmethod
    def build(cls, rows: Rows, layout: RowLayout = "prefixes", offset: int = 0) -> TrainRows:
        """Rows of one task; `offset` shifts item_idx to global item-table rows (pre-training)."""
        if layout == "prefixes":
            columns = rows.history, rows.length, rows.target, rows.user_idx, rows.position
        elif layout == "all_positions":
            columns = _all_positions(rows)
        else:
            raise ValueError(f"unknown row layout {layout!r}")
        history, length, target, user, position = columns
        return cls(
            history=torch.from_numpy(shift_items(history, offset)),
            length=torch.from_numpy(length.astype(np.int32)),
            target=torch.from_numpy(shift_items(target, offset)),
            user=torch.from_numpy(user.astype(np.int64)),
            position=torch.from_numpy(position.astype(np.int32)),
        )

    @classmethod
    def concat(cls, parts: list[TrainRows]) -> TrainRows:
        fields = ("history", "length", "target", "user", "position")
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))

    def rows_per_batch(self, batch_size: int) -> int:
        return max(1, round(batch_size * len(self) / max(self.n_targets, 1)))

    def steps(self, batch_size: int) -> int:
        return -(-len(self) // self.rows_per_batch(batch_size))

    def batches(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """One epoch: shuffled with `generator` (in order without one), each batch cut to its longest history."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        per = self.rows_per_batch(batch_size)
        for lo in range(0, n, per):
            idx = order[lo : lo + per]
            length = self.length[idx]
            steps = int(length.max())
            target = self.target[idx] if self.target.dim() == 1 else self.target[idx, :steps]
            yield Batch(
                history=self.history[idx, :steps].to(device, torch.int64, non_blocking=True),
                length=length.to(device, torch.int64, non_blocking=True),
                target=target.to(device, torch.int64, non_blocking=True),
                user=self.user[idx].to(device, non_blocking=True),
                position=self.position[idx].to(device, torch.int64, non_blocking=True),
            )


def _all_positions(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Prefix rows -> one multi-target row per user (its first L targets) + prefix rows for the targets after.
    A kept row's position stays its own target's, the one after its last history column."""
    n, max_len = rows.history.shape
    if n == 0:
        return rows.history, rows.length, np.full((0, max_len), PAD, np.int32), rows.user_idx, rows.position
    user = rows.user_idx
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[starts, n])
    nth = np.arange(n) - np.repeat(starts, counts) + 1  # 1-based target number within the user
    # split() lists each user's prefixes together, in time order: then the k-th history holds min(k, L) items
    if not np.array_equal(rows.length, np.minimum(nth, max_len)):
        raise ValueError("training rows are not grouped by user in time order; cannot build all_positions rows")
    user_of_row = np.repeat(np.arange(len(starts)), counts)
    window = nth == np.repeat(np.minimum(counts, max_len), counts)  # the row whose history spans the window
    in_window = nth <= max_len
    after = np.flatnonzero(~in_window)
    n_users = len(starts)
    target = np.full((n_users + len(after), max_len), PAD, np.int32)
    target[user_of_row[in_window], nth[in_window] - 1] = rows.target[in_window]
    target[n_users + np.arange(len(after)), max_len - 1] = rows.target[after]
    keep = np.concatenate([np.flatnonzero(window), after])
    return rows.history[keep], rows.length[keep], target, rows.user_idx[keep], rows.position[keep]
