"""SASRec, the user-intent encoder (spec section 4), exactly as RecBole's SASRec that UniSRec and ANT build on.

Input at position j of a left-aligned, right-padded history: dropout(LayerNorm(v_{s_j} + P_j)); then post-LayerNorm
Transformer layers (self-attention -> dropout -> residual -> LayerNorm; Linear -> GELU -> Linear -> dropout ->
residual -> LayerNorm) under a causal plus key-padding mask. The user vector is the output at the last real
position. Positions count from the oldest item, so cutting a batch's trailing padding changes nothing.

Only real positions are computed: every position-wise step (projections, feed-forward, LayerNorm, dropout) runs on
the packed [n_real, d] tokens and only the attention itself sees the padded [B, T] layout. Histories are short
(median 6 items, padded to the batch's longest), so this does several times less work than the padded layout,
with the same outputs at real positions; padded positions of the output are zero.

Module names mark the parts that the adaptation strategies treat differently (ant.model.ant.PARTS):
`position` (P), `input_norm` (the input LayerNorm) and `layers` (the Transformer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ant.model.dropout import dropout

RECBOLE_EPS = 1e-12  # RecBole's LayerNorm eps; ANT passes the authors' 1e-8 (spec baselines.md section 2.2)


class TransformerLayer(nn.Module):
    def __init__(self, hidden_size: int, heads: int, inner_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of attention_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attn_out = nn.Linear(hidden_size, hidden_size)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn_in = nn.Linear(hidden_size, inner_size)
        self.ffn_out = nn.Linear(inner_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """x [n, d]: the real tokens of a [B, T] batch at (row, position) `where`; mask [B, 1, T, T]."""
        (batch, _, steps, _), hidden = mask.shape, x.shape[1]
        packed = self.qkv(x)  # bf16 under autocast while x stays float32
        qkv = packed.new_zeros(batch, steps, 3 * hidden).index_put(where, packed)
        q, k, v = qkv.view(batch, steps, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # each [B, h, T, d_head]
        weights = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        weights = torch.softmax(weights.masked_fill(~mask, float("-inf")), dim=-1)
        attended = (dropout(weights, self.dropout, self.training) @ v).transpose(1, 2).reshape(batch, steps, hidden)
        x = self.attn_norm(x + dropout(self.attn_out(attended[where]), self.dropout, self.training))
        return self.ffn_norm(x + dropout(self.ffn_out(F.gelu(self.ffn_in(x))), self.dropout, self.training))


class SASRec(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        max_length: int,
        layers: int,
        heads: int,
        inner_size: int,
        dropout: float,
        eps: float = RECBOLE_EPS,
    ) -> None:
        super().__init__()
        self.position = nn.Embedding(max_length, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = dropout
        self.layers = nn.ModuleList(
            TransformerLayer(hidden_size, heads, inner_size, dropout, eps) for _ in range(layers)
        )

    def forward(self, items: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """items [B, T, d] (any values at padded positions), length [B] in 1..T -> hidden states [B, T, d]."""
        batch, steps, hidden = items.shape
        if steps > self.position.num_embeddings:
            raise ValueError(f"history of {steps} items is longer than max_history {self.position.num_embeddings}")
        pos = torch.arange(steps, device=items.device)
        real = pos.unsqueeze(0) < length.unsqueeze(1)  # [B, T] positions that hold an item
        causal = pos.unsqueeze(1) >= pos.unsqueeze(0)  # [T, T] query j sees keys <= j
        mask = (causal.unsqueeze(0) & real.unsqueeze(1)).unsqueeze(1)  # [B, 1, T, T]; key 0 is always real
        where = real.nonzero(as_tuple=True)  # (row, position) of every real token, found once
        x = dropout(self.input_norm(items[where] + self.position.weight[where[1]]), self.dropout, self.training)
        for layer in self.layers:
            x = layer(x, where, mask)
        return x.new_zeros(batch, steps, hidden).index_put(where, x)

    @staticmethod
    def last(hidden: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The user vector: the output at each row's last real position."""
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), length - 1]
