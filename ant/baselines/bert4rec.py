"""BERT4Rec (Sun et al., CIKM'19) as RecBole v1.1.1 runs it (spec baselines.md section 5).

    E   item ids (N + 2) x d: row 0 padding, 1..N the items, N + 1 the mask token (RecBole's mask_token = n_items)
    P   positions (L + 1) x d = 51 rows: one more than a history, for the mask appended at inference
    h   = RecBole Transformer, bidirectional (ant.model.transformer), input Dropout(LN(E[x_t] + P[t]))
    score(i) = h_t . E[i] over the N real items (no output projection or bias: those came with RecBole 1.2)

Training, the cloze task of RecBole's `MaskItemSequence` transform, on each prefix row's history only (the row's
target is never used): every real position independently becomes the mask token with p = mask_ratio (no
80/10/10 split). The masked positions are listed left-padded into int(mask_ratio * L) = 10 slots, so only the
LAST 10 masked positions of a row are predicted, and a slot is valid iff its position index is > 0: a mask at
position 0 is never predicted and rows of one item never train. The loss is the cross-entropy of the items under
the valid slots, averaged over the valid slots of the whole batch (spec section 5, pitfalls (a)-(d)).
Inference (`reconstruct_test_data`): append a padding column, put the mask token at index len, encode, read the
output at index len. So a 50-item history puts the mask at P[50], which training never reaches (pitfall (b)).

`variant: fixed` (spec section 5) repairs that: every masked position is predicted (position 0 included, no
10-slot cap), and each training row also gets the mask token appended at index len, labelled with the row's
target, so training and inference both use L + 1 columns and the last training target is predicted.

Masks are drawn from torch's global generator (the trainer seeds it and saves it with every checkpoint), not
from Python's `random` as upstream does, so runs reproduce and resume. Cutting a batch's trailing padding changes
nothing: padded keys are never attended to and the appended column sits at index len, inside the cut batch.
`train.rows: all_positions` is not exact for a bidirectional encoder (spec section 2.6): the trainer gives
BERT4Rec prefix rows whatever `rows` says.

Spec deviations, recorded: the softmax runs over the N real items, not over rows 0..N as RecBole's (spec section
2.3); a batch with no valid slot gives a zero loss where RecBole's 0 / 0 would be NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ant.baselines.base import Baseline, TaskShape, ids, recbole_encoder
from ant.errors import UserError
from ant.model.transformer import recbole_init, right_padded
from ant.train.batches import Batch

VARIANTS = ("recbole111", "fixed")


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d (RecBole's default is 64; the paper runs 256, Table A1 per task)
    layers: int = 2  # Transformer layers
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width, independent of d (RecBole)
    dropout: float = 0.5  # on the input and hidden states (RecBole v1.1.1's hidden_dropout_prob; 1.2 uses 0.2)
    attn_dropout: float = 0.5  # on the attention probabilities (attn_dropout_prob; 1.2 uses 0.2)
    mask_ratio: float = 0.2  # probability that a real history position becomes the mask token in training
    variant: str = "recbole111"  # "recbole111": upstream's loss slots; "fixed": every mask and the next item train

    def problems(self) -> list[str]:
        """Invalid values, for ant.train.hparams (which prefixes "model.")."""
        out = []
        if self.variant not in VARIANTS:
            out.append(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}")
        if not 0 < self.mask_ratio < 1:
            out.append("mask_ratio must be in (0, 1)")
        return out


class Model(Baseline):
    exact_all_positions = False  # bidirectional: a position's output depends on the items after it (spec 2.6)

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        self.mask_token = task.n_items + 1  # the row after the N items (RecBole: n_items, which counts padding)
        # RecBole lists the masked positions in int(mask_ratio * MAX_ITEM_LIST_LENGTH) slots (MaskItemSequence)
        self.slots = int(settings.mask_ratio * task.max_history)
        if settings.variant == "recbole111" and self.slots < 1:
            raise UserError(
                f"bert4rec: int(mask_ratio {settings.mask_ratio} x max_history {task.max_history}) = 0 loss slots"
            )
        self.items = nn.Embedding(task.n_items + 2, settings.hidden_size, padding_idx=0)
        # 51 positions: the appended mask of a full history sits at P[L]
        self.encoder = recbole_encoder(settings, task.max_history + 1, causal=False)
        self.apply(recbole_init)  # as RecBole, this also draws the padding row (it gets no gradient)

    def hidden(self, tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Right-padded RecBole ids [B, T] (0 padding, mask_token allowed), length [B] -> outputs [B, T, d]."""
        return self.encoder(self.items(tokens), length)

    def with_mask(self, tokens: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """`reconstruct_test_data`: ids [B, T] -> [B, T + 1], a padding column appended, the mask token at len."""
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        out = F.pad(tokens, (0, 1))  # [B, T + 1], the new column is padding (id 0)
        out[rows, length] = self.mask_token
        return out

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """[B, T + 1, d]: the outputs with the mask token appended at index len; the state at len predicts the next
        item (not the base class's len - 1: BERT4Rec reads where its mask sits, spec section 5)."""
        return self.hidden(self.with_mask(ids(history), length), length + 1)

    def candidates(self) -> torch.Tensor:
        return self.items.weight[1 : self.mask_token]  # [N, d]: neither padding nor the mask token

    def scores(
        self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        rows = torch.arange(history.shape[0], device=history.device)
        return self.logits(self.encode(history, length, user)[rows, length])  # [B, N]: the output at the mask

    def cloze(self, length: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the masks of right-padded rows [B] x steps: (masked, predicted), both bool [B, steps].

        masked: the positions that become the mask token; predicted: those whose item enters the loss."""
        real = right_padded(length, steps)  # [B, T]
        masked = real & (torch.rand(real.shape, device=length.device) < self.settings.mask_ratio)
        if self.settings.variant == "fixed":
            return masked, masked  # an explicit validity mask: all of them, position 0 included
        # left-padding the list into `slots` slots keeps the last `slots` masked positions of the row
        from_end = masked.flip(1).cumsum(1).flip(1)  # [B, T]: masked positions at or after t
        position = torch.arange(steps, device=length.device)
        return masked, masked & (from_end <= self.slots) & (position > 0)  # "index > 0" validity (pitfall (a))

    def loss(self, batch: Batch) -> torch.Tensor:
        """RecBole's masked-item cross-entropy over the N real items, averaged over the batch's predicted slots."""
        if batch.target.dim() != 1:
            raise ValueError("BERT4Rec trains on prefix rows (exact_all_positions is False)")
        history, length = batch.history, batch.length
        masked, predicted = self.cloze(length, history.shape[1])  # [B, T] each
        tokens = ids(history).masked_fill(masked, self.mask_token)  # [B, T]
        labels = history  # [B, T] item_idx: the masked item is the label
        if self.settings.variant == "fixed":
            # the appended mask at index len, labelled with the row's target: L + 1 columns, as at inference
            rows = torch.arange(len(batch), device=history.device)
            tokens = self.with_mask(tokens, length)  # [B, T + 1]
            labels = F.pad(labels, (0, 1), value=-1)  # [B, T + 1]
            labels[rows, length] = batch.target
            predicted = F.pad(predicted, (0, 1))  # [B, T + 1]
            predicted[rows, length] = True
            length = length + 1
        states = self.hidden(tokens, length)[predicted]  # [M, d]
        # sum / count rather than a mean: a batch without any predicted slot gives 0 (RecBole: 0 / 0 = NaN)
        total = F.cross_entropy(self.logits(states), labels[predicted], reduction="sum")
        return total / predicted.sum().clamp(min=1)
