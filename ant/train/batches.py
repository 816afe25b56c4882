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

What ANT's objectives ask of a batch besides (all computed on the host, so the device never waits on the host):
  by_length  (a number of cells) the batch's rows sorted by history length and cut into groups of lengths
             (2^(g-1), 2^g], each to be encoded cut to its own longest history (`Batch.states`); neighbouring
             groups are merged while a merge pads fewer than `by_length` (row, column) cells (a pass of its own
             would cost more than it saves), and a batch left with one group stays one pass in the shuffled
             order (small batches: unchanged). The same rows and targets as the shuffled batch, so the
             same in-batch negatives and data order; a mixed pre-training batch's longest history is usually 50
             while the median is 4-6, so the user encoder's padded [B, T] work shrinks several times. A loss that
             is a mean over the rows, or an in-batch softmax over them, does not depend on their order.
  distinct   the batch's distinct item rows (histories and targets, sorted): each is encoded once.
  part       (rank, world): one process's share of every global batch for data-parallel training
             (ant.train.distributed): the rows of the global batch split in `world` nearly equal consecutive parts,
             so the processes together see the very batches of one process, and `first_row` / `share_targets` say
             where the share sits in its global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ant.data.split import PAD, Rows
from ant.model.transformer import last_position
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
    # by_length: (first row, end row, longest history) of each group of consecutive rows; None = one group
    groups: tuple[tuple[int, int, int], ...] | None = None
    # distinct: int64 [n] the sorted distinct items of histories and targets, padding looked up as item 0
    items: torch.Tensor | None = None
    first_row: int = 0  # data-parallel share: the global batch row of this batch's row 0
    share_targets: tuple[int, ...] | None = None  # data-parallel share: the targets of every process's share

    def __len__(self) -> int:
        return self.history.shape[0]

    def states(self, encode: Callable[[slice, int], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`select` of the hidden states `encode(rows, steps)` [b, steps, d] of the rows `rows`, cut to `steps`
        columns, called once per group: the same states, targets and rows as `select(encode(all, T))`."""
        if self.groups is None:
            return self.select(encode(slice(0, len(self)), self.history.shape[1]))
        parts = []
        for lo, hi, steps in self.groups:
            target = self.target[lo:hi] if self.target.dim() == 1 else self.target[lo:hi, :steps]
            part = Batch(self.history[lo:hi, :steps], self.length[lo:hi], target, self.user[lo:hi])
            states, targets, rows = part.select(encode(slice(lo, hi), steps))
            parts.append((states, targets, rows + lo))
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def last_states(
        self, encode: Callable[[slice, int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`states` of a prefixes batch (one target per row) from `encode(rows, steps)` [b, d], the state at each
        of those rows' last real position alone (the one `select` reads), called once per group."""
        if self.target.dim() != 1:
            raise ValueError("last_states is for one target per row (train.rows prefixes)")
        groups = self.groups or ((0, len(self), self.history.shape[1]),)
        parts = [encode(slice(lo, hi), steps) for lo, hi, steps in groups]
        states = parts[0] if len(parts) == 1 else torch.cat(parts)
        return states, self.target, torch.arange(len(self), device=states.device)

    def select(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The hidden states that predict a target, those targets, and the batch row of each: [M, d], [M], [M].

        With prefixes every row has one target (row = 0..B-1); with all_positions a row holds several targets of
        one user, which an in-batch loss must not use as negatives of each other (ant.train.losses)."""
        rows = torch.arange(len(self), device=hidden.device)
        if self.target.dim() == 1:
            return last_position(hidden, self.length), self.target, rows
        has = self.target != PAD
        at = has.reshape(-1).nonzero().squeeze(1)  # index_select: its backward is a fast index_add
        return (
            hidden.reshape(-1, hidden.shape[2]).index_select(0, at),
            self.target[has],
            rows.unsqueeze(1).expand_as(self.target)[has],
        )


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
        self,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        *,
        by_length: int | None = None,
        distinct: bool = False,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """One epoch: shuffled with `generator` (in order without one), each batch cut to its longest history;
        by_length, distinct and part as the module says."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        per = self.rows_per_batch(batch_size)
        rank, world = part
        for lo in range(0, n, per):
            idx = order[lo : lo + per]
            extra: dict = {}
            if world > 1:
                shares = torch.tensor_split(idx, world)
                targets = tuple(
                    len(s) if self.target.dim() == 1 else int((self.target[s] != PAD).sum()) for s in shares
                )
                extra = {"first_row": sum(len(s) for s in shares[:rank]), "share_targets": targets}
                idx = shares[rank]
            length = self.length[idx]
            if by_length is not None:
                ordered, sort = torch.sort(length, stable=True)
                groups = _length_groups(ordered, by_length)
                if groups is not None:  # else one pass, in the shuffled order
                    length, idx, extra["groups"] = ordered, idx[sort], groups
            steps = int(length.max()) if len(idx) else 1
            history = self.history[idx, :steps]
            target = self.target[idx] if self.target.dim() == 1 else self.target[idx, :steps]
            if distinct:
                extra["items"] = _move(
                    torch.unique(torch.cat([history.flatten(), target.flatten()]).clamp(min=0)), device
                )
            yield Batch(
                history=_move(history, device),
                length=_move(length, device),
                target=_move(target, device),
                user=_move(self.user[idx], device),
                position=_move(self.position[idx], device),
                **extra,
            )


def _move(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """int64 on the device; from pinned memory on CUDA, so that the copy runs while the host prepares the next."""
    t = t.to(torch.int64)
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def _length_groups(length: torch.Tensor, min_saved: int) -> tuple[tuple[int, int, int], ...] | None:
    """(lo, hi, longest) of runs of sorted `length` [B]: first the lengths in (2^(g-1), 2^g], then neighbours
    merged while a merge pads fewer than `min_saved` cells (a group's own pass costs more than that saves);
    None when one group is left (one pass)."""
    if len(length) == 0:
        return None
    bits = torch.ceil(torch.log2(length.double())).long()  # 1 -> 0, 2 -> 1, 3..4 -> 2, 5..8 -> 3, ...
    cuts = (torch.nonzero(bits[1:] != bits[:-1]).flatten() + 1).tolist()
    bounds = [0, *cuts, len(length)]
    runs = [(lo, hi, int(length[hi - 1])) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    while len(runs) > 1:
        # padding added by merging run i into run i + 1: its rows padded to the longer run's longest
        added = [(hi - lo) * (runs[i + 1][2] - longest) for i, (lo, hi, longest) in enumerate(runs[:-1])]
        i = min(range(len(added)), key=added.__getitem__)
        if added[i] >= min_saved:
            break
        runs[i : i + 2] = [(runs[i][0], runs[i + 1][1], runs[i + 1][2])]
    return tuple(runs) if len(runs) > 1 else None


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
