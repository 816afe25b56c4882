"""ANT's in-batch losses of pre-training (spec section 5), on logits cos(., .) / temperature (ANT.logits).

Both are a softmax over the batch's M targets, in which row i's own target (column i) is the positive and the
other columns are its negatives, except those removed with a true -inf (UniSRec put a 0 logit there instead,
which still counts exp(0) = 1 in the denominator):
  - columns whose target is the same item as row i's (duplicates: the positive again, under another row);
  - columns that are other targets of row i's own training row (`rows`): with train.rows = all_positions one
    row carries up to max_history targets of one user, and a user's own next items are not negatives for one
    another, which shuffled prefix rows (the paper's layout) almost never put in the same batch. With prefixes
    every target has a row of its own and this removes nothing.
in_batch_softmax_loss: row i = the user state that predicts target i, columns = the batch's target items.
alignment_loss: the same softmax between the image embedding of row i's target (logit rows) and the text
    embeddings of all the batch's targets (columns), with the same columns removed; rows whose item has no
    image (or no text) are left out of the mean.
Adaptation and training from scratch use the plain cross-entropy over all items of the task.

Data-parallel training (ant.train.distributed) gives a process its share of the batch's rows and all the batch's
columns (`Columns`): logits [M_r, M], each row's own column at `Columns.own`, padding columns (item PAD) removed
like the others; the loss is the share's part of the batch's mean (a sum over its rows / all rows), so that the
shares' losses add up to the one-process loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ant.data.split import PAD

IGNORED = -100  # a label cross_entropy leaves out of its mean


@dataclass(frozen=True)
class Columns:
    """The whole batch's columns seen from one share of its rows (data-parallel training)."""

    items: torch.Tensor  # int64 [M] each column's target item, PAD in padding columns
    rows: torch.Tensor  # int64 [M] each column's row in the whole batch
    own: torch.Tensor  # int64 [M_r] the column of each of the share's rows' own target
    keep: torch.Tensor  # bool [M] columns whose item has an image and a text (alignment rows, over all shares)
    total: int  # targets of the whole batch (the denominator of its mean)


def negatives_mask(items: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """[M, M] True where column j is removed from row i's softmax: j != i and (the same item, or the same row)."""
    removed = items.unsqueeze(0) == items.unsqueeze(1)
    if rows is not None:
        removed |= rows.unsqueeze(0) == rows.unsqueeze(1)
    return removed & ~torch.eye(len(items), dtype=torch.bool, device=items.device)


def share_mask(items: torch.Tensor, rows: torch.Tensor, columns: Columns) -> torch.Tensor:
    """[M_r, M] negatives_mask of a share's rows (items, batch rows [M_r]) against all columns, padding removed."""
    removed = (items.unsqueeze(1) == columns.items.unsqueeze(0)) | (rows.unsqueeze(1) == columns.rows.unsqueeze(0))
    removed |= (columns.items == PAD).unsqueeze(0)
    removed[torch.arange(len(items), device=items.device), columns.own] = False  # the row's own target stays
    return removed


def in_batch_logits(logits: torch.Tensor, target_items: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """logits [M, M] with the removed columns of each row set to -inf (rows [M]: each target's batch row)."""
    return logits.masked_fill(negatives_mask(target_items, rows), float("-inf"))


def in_batch_softmax_loss(
    logits: torch.Tensor, target_items: torch.Tensor, rows: torch.Tensor | None = None, columns: Columns | None = None
) -> torch.Tensor:
    """logits [M, M]: row i = user state i, column j = target item of row j (a share: [M_r, M] and `columns`)."""
    if columns is not None:
        masked = logits.masked_fill(share_mask(target_items, rows, columns), float("-inf"))
        return F.cross_entropy(masked, columns.own, reduction="sum") / columns.total
    labels = torch.arange(len(target_items), device=logits.device)
    return F.cross_entropy(in_batch_logits(logits, target_items, rows), labels)


def alignment_loss(
    logits: torch.Tensor,
    target_items: torch.Tensor,
    keep: torch.Tensor,
    rows: torch.Tensor | None = None,
    columns: Columns | None = None,
) -> torch.Tensor:
    """logits [M, M]: row i = image of row i's target, column j = text of row j's target; keep [M] bool
    (a share: [M_r, M], keep [M_r] and `columns`: its part of the mean over all shares' kept rows)."""
    # rows left out through ignore_index, not logits[keep]: the same mean, without copying the kept rows out and
    # scattering their gradient back
    if columns is not None:
        masked = logits.masked_fill(share_mask(target_items, rows, columns), float("-inf"))
        share = F.cross_entropy(masked, columns.own.masked_fill(~keep, IGNORED), reduction="sum", ignore_index=IGNORED)
        return share / columns.keep.sum().clamp(min=1)  # no kept row anywhere: 0, still part of the graph
    if not bool(keep.any()):
        return logits.sum() * 0.0  # no row with an image: zero, still part of the graph
    labels = torch.arange(len(target_items), device=logits.device).masked_fill(~keep, IGNORED)
    return F.cross_entropy(in_batch_logits(logits, target_items, rows), labels, ignore_index=IGNORED)
