"""S3-Rec's pretext tasks (spec baselines.md section 7): what one pre-training batch becomes, vectorised.

UniSRec's `S3Rec.reconstruct_pretrain_data` builds, per row, in Python lists:
  - the row's real items re-padded on the LEFT to max_history (the last item at position L - 1);
  - MIP / MAP: each real position masked with p = mask_ratio; a masked position gets a negative item drawn
    uniformly from the ids 1..N not in the row (upstream's range 1..N+1 also admits the mask id: not reproduced);
  - SP (rows of >= 2 items): a segment length k in [1, len // 2] and a start in [0, len - k]; the masked-segment
    input has the segment replaced by mask tokens, the positive input keeps the segment in place and masks every
    other real position, the negative input puts an equally long slice of the concatenation of all histories in
    the batch (in batch order, slices may cross rows) in the segment's place the same way. A row of one item keeps
    its sequence unchanged in all three inputs and still counts in the SP sum (upstream does exactly this);
  - AAP / MAP labels: every item is its own attribute (ids 0..N, n_attributes = N + 1). Upstream takes them from
    the RIGHT-padded sequence at the input's (left-padded) index, a misalignment the paper's numbers most likely
    carry: `label_alignment = "upstream"` reproduces it, "fixed" labels each position with its own item.
Here the same tensors come from a few batched operations, with draws from torch's global generator (seeded by the
trainer) instead of Python's `random`. A batch of width T < L (cut to its longest history) is left-padded to T
columns that hold the absolute positions L - T .. L - 1, so nothing changes against the full width (spec 2.6).

The attribute heads score positions against all N + 1 attributes: (B L) x (N + 1) would be 1.3 G entries on
Office at batch 1,024. `attribute_bce` scores only the positions that count, in chunks of about ATTRIBUTE_CHUNK
entries, each recomputed in the backward pass (activation checkpointing), so one chunk is alive at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LabelAlignment = Literal["upstream", "fixed"]
ALIGNMENTS = ("upstream", "fixed")
ATTRIBUTE_CHUNK = 1 << 25  # score entries per chunk of an attribute head (128 MiB in float32, its gradient alike)


@dataclass(frozen=True)
class Draws:
    """The random choices of one batch (what upstream takes from `random`); every tensor on the batch's device."""

    masked: torch.Tensor  # bool [B, T], left-padded layout: the real positions replaced by the mask token
    negative: torch.Tensor  # int64 [B, T]: MIP negative ids (1..N, not in the row), read at masked positions
    segment_length: torch.Tensor  # int64 [B]: SP segment length k in 1..len // 2; 0 for rows of < 2 items
    segment_start: torch.Tensor  # int64 [B]: its first item among the row's items (0 = oldest), in 0..len - k
    negative_start: torch.Tensor  # int64 [B]: the negative slice's start in the batch's concatenated histories


@dataclass(frozen=True)
class Pretext:
    """The inputs and labels of the four losses, all [B, T] in the left-padded layout (id 0 = padding)."""

    first_position: int  # absolute position of column 0: L - T
    real: torch.Tensor  # bool: the row's items (the last T - len columns of padding are on the left)
    items: torch.Tensor  # the row's items, left-padded: MIP's positives
    masked: torch.Tensor  # bool: masked real positions (MIP, MAP); AAP reads the real unmasked ones
    masked_items: torch.Tensor  # items with the masked positions set to the mask token: the encoder's input
    negative: torch.Tensor  # MIP's negatives (read at masked positions)
    labels: torch.Tensor  # AAP / MAP attribute ids 0..N per position (label_alignment)
    segment_masked: torch.Tensor  # SP: the row with its segment masked
    segment_positive: torch.Tensor  # SP: the segment in place, every other real position masked
    segment_negative: torch.Tensor  # SP: the batch slice in the segment's place, every other real position masked


def left_pad(items: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] (0 = padding) -> the same rows left-padded [B, T] and their real mask [B, T]."""
    steps = items.shape[1]
    column = torch.arange(steps, device=items.device).unsqueeze(0)  # [1, T]
    shift = (steps - length).unsqueeze(1)  # [B, 1] padding columns on the left
    real = column >= shift
    return items.gather(1, (column - shift).clamp(min=0)) * real, real


def uniform_int(high: torch.Tensor) -> torch.Tensor:
    """One integer uniform in 0..high - 1 per element of `high` (int64, >= 1), from torch's global generator."""
    u = torch.rand(high.shape, dtype=torch.float64, device=high.device)  # 53 bits: exact for any count here
    return torch.minimum((u * high).long(), high - 1)


def negatives(items: torch.Tensor, n_items: int, uniform: torch.Tensor) -> torch.Tensor:
    """Per position an id drawn uniformly from the ids 1..N not in its row: items [B, T] (0 = padding), uniform
    [B, T] in [0, 1) (float64) -> [B, T]. Exact inverse-rank sampling, no rejection loop.

    With the row's distinct items m_1 < ... < m_k and g_j = m_j - j (how many non-members lie below m_j), the q-th
    non-member is q + #{j : g_j < q}. A row holding all N items has no non-member: it gets N + 1, the mask id (the
    only other id upstream's range 1..N+1 could give; never happens on real data)."""
    batch, _ = items.shape
    beyond = n_items + 1
    ordered = torch.where(items > 0, items, beyond).sort(dim=1).values  # [B, T], padding last
    previous = torch.cat([ordered.new_zeros(batch, 1), ordered[:, :-1]], dim=1)
    first = (ordered != previous) & (ordered <= n_items)  # first occurrence of each distinct real item
    below = torch.where(first, ordered - first.cumsum(1), beyond)  # [B, T]: g_j, or never counted
    free = (n_items - first.sum(1, keepdim=True)).clamp(min=1)  # [B, 1] ids not in the row
    q = torch.minimum((uniform * free).long(), free - 1) + 1  # [B, T] in 1..free
    return q + (below.unsqueeze(1) < q.unsqueeze(2)).sum(2)  # [B, T, T] -> [B, T]


def draw(items: torch.Tensor, real: torch.Tensor, length: torch.Tensor, n_items: int, mask_ratio: float) -> Draws:
    """The batch's random choices; items [B, T] left-padded ids, real [B, T], length [B] (spec section 7)."""
    masked = (torch.rand(items.shape, device=items.device) < mask_ratio) & real  # each real item with p
    negative = negatives(items, n_items, torch.rand(items.shape, dtype=torch.float64, device=items.device))
    long = length >= 2  # rows that get a segment
    half = torch.where(long, length // 2, 1)
    segment_length = torch.where(long, 1 + uniform_int(half), 0)  # k in 1..len // 2
    segment_start = torch.where(long, uniform_int((length - segment_length + 1).clamp(min=1)), 0)  # 0..len - k
    total = length.sum()  # items in the concatenation of the batch's histories
    negative_start = torch.where(long, uniform_int((total - segment_length + 1).clamp(min=1)), 0)  # 0..total - k
    return Draws(masked, negative, segment_length, segment_start, negative_start)


def attribute_labels(
    right: torch.Tensor, left: torch.Tensor, first_position: int, alignment: LabelAlignment
) -> torch.Tensor:
    """AAP / MAP label ids [B, T] for the left-padded input `left` of the right-padded rows `right` [B, T].

    fixed: each position's own item. upstream (UniSRec's variant, spec section 7): the one-hot of the
    right-padded sequence, L columns wide, at the input's absolute index p = first_position + column: s_p if
    p < len, else the padding id 0. So for len <= L / 2 every real position is labelled with attribute 0."""
    if alignment == "fixed":
        return left
    steps = right.shape[1]
    p = first_position + torch.arange(steps, device=right.device)  # [T] absolute index of each input column
    return torch.where(p < steps, right[:, p.clamp(max=steps - 1)], 0)  # columns >= T of `right` are padding


def segments(
    left: torch.Tensor, real: torch.Tensor, right: torch.Tensor, length: torch.Tensor, draws: Draws, mask_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SP's three inputs [B, T] (left-padded): the masked segment, the positive and the negative segment."""
    steps = left.shape[1]
    index = torch.arange(steps, device=left.device).unsqueeze(0) - (steps - length).unsqueeze(1)  # item number
    start, end = draws.segment_start.unsqueeze(1), (draws.segment_start + draws.segment_length).unsqueeze(1)
    inside = (index >= start) & (index < end)  # [B, T] the segment's positions (none for rows of < 2 items)
    pool = right[right > 0]  # [M] every history of the batch, concatenated in batch order
    slice_ = pool[(draws.negative_start.unsqueeze(1) + index - start).clamp(0, pool.numel() - 1)]  # [B, T]
    masked_segment = torch.where(inside, mask_id, left)
    positive = torch.where(inside, left, mask_id) * real
    negative = torch.where(inside, slice_, mask_id) * real
    short = (draws.segment_length == 0).unsqueeze(1)  # a row of one item: all three are the row itself
    return masked_segment, torch.where(short, left, positive), torch.where(short, left, negative)


def build(
    history_ids: torch.Tensor,
    length: torch.Tensor,
    max_history: int,
    n_items: int,
    alignment: LabelAlignment,
    mask_ratio: float,
    draws: Draws | None = None,
) -> Pretext:
    """A pre-training batch: right-padded ids [B, T] (0 = padding), length [B]; `draws` None = draw them now."""
    steps = history_ids.shape[1]
    if steps > max_history:
        raise ValueError(f"a history of {steps} positions is longer than max_history {max_history}")
    left, real = left_pad(history_ids, length)
    if draws is None:
        draws = draw(left, real, length, n_items, mask_ratio)
    mask_id = n_items + 1
    first_position = max_history - steps  # trimmed from the left: the last item stays at position L - 1
    segment_masked, segment_positive, segment_negative = segments(left, real, history_ids, length, draws, mask_id)
    return Pretext(
        first_position=first_position,
        real=real,
        items=left,
        masked=draws.masked,
        masked_items=torch.where(draws.masked, mask_id, left),
        negative=draws.negative,
        labels=attribute_labels(history_ids, left, first_position, alignment),
        segment_masked=segment_masked,
        segment_positive=segment_positive,
        segment_negative=segment_negative,
    )


def _softplus_sum(queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ softplus(q . F_a) over a chunk of queries [c, d] and all attributes [A, d]: one [c, A] block."""
    return F.softplus(queries @ features.T).sum()


def attribute_bce(queries: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_m Σ_a BCE(σ(q_m . F_a), [a = labels_m]) = Σ_m (Σ_a softplus(q_m . F_a) - q_m . F_labels_m), summed as
    upstream (AAP, MAP); queries [M, d], features [A, d], labels [M]. In float32 even under autocast, chunked.

    The log-sigmoid form is BCE(σ(s), y) exactly; torch's BCELoss upstream clamps each log at -100, which differs
    only once float32's σ saturates (|s| > ~17)."""
    with torch.autocast(queries.device.type, enabled=False):
        q, f = queries.float(), features.float()
        total = -(q * f[labels]).sum()  # the positive attribute's -s term
        rows = max(1, ATTRIBUTE_CHUNK // max(f.shape[0], 1))
        for lo in range(0, q.shape[0], rows):  # a few chunks per batch, each [<= rows, A], freed after use
            total = total + checkpoint(_softplus_sum, q[lo : lo + rows], f, use_reentrant=False)
        return total
