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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negatives_mask(items: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """[M, M] True where column j is removed from row i's softmax: j != i and (the same item, or the same row)."""
    removed = items.unsqueeze(0) == items.unsqueeze(1)
    if rows is not None:
        removed |= rows.unsqueeze(0) == rows.unsqueeze(1)
    return removed & ~torch.eye(len(items), dtype=torch.bool, device=items.device)


def in_batch_logits(logits: torch.Tensor, target_items: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """logits [M, M] with the removed columns of each row set to -inf (rows [M]: each target's batch row)."""
    return logits.masked_fill(negatives_mask(target_items, rows), float("-inf"))


def in_batch_softmax_loss(
    logits: torch.Tensor, target_items: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """logits [M, M]: row i = user state i, column j = target item of row j."""
    labels = torch.arange(len(target_items), device=logits.device)
    return F.cross_entropy(in_batch_logits(logits, target_items, rows), labels)


def alignment_loss(
    logits: torch.Tensor, target_items: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """logits [M, M]: row i = image of row i's target, column j = text of row j's target; keep [M] bool."""
    if not bool(keep.any()):
        return logits.sum() * 0.0  # no row with an image: zero, still part of the graph
    labels = torch.arange(len(target_items), device=logits.device)[keep]
    return F.cross_entropy(in_batch_logits(logits, target_items, rows)[keep], labels)
