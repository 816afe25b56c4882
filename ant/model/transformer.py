"""The RecBole v1.1.1 Transformer (spec baselines.md section 2.2), for every sequence model of the project: ANT's
user-intent encoder and the SASRec, BERT4Rec, FDSA and S3-Rec baselines, causal or bidirectional.

    h0_t = Dropout(LayerNorm(E[x_t] + P[t]))                                   input (`embed`)
    a    = LayerNorm(h + Dropout(W_O Attn(h)))                                  post-LN layer, x n_layers
    h'   = LayerNorm(a + Dropout(W_2 GELU(W_1 a + b_1) + b_2))

Attention: Q, K, V (one packed Linear with bias) and W_O, heads splitting d, scores / sqrt(d / heads), softmax
over the allowed keys (masked keys get a true -inf: RecBole's additive -10000 gives exactly 0 after the softmax in
float32 too), dropout on the probabilities. A causal encoder lets query i see real keys j <= i, a bidirectional
one every real key. GELU in its erf form; LayerNorm eps a setting (RecBole 1e-12, ANT and the authors' ports 1e-8);
the feed-forward width `inner_size` is independent of d. Positions are column indices (+ `first_position`):
right-padded rows count them from the oldest item, so cutting trailing padding changes nothing; a left-padded
batch (S3-Rec pre-training) passes where its columns start.

Only real tokens are computed: every position-wise step (projections, feed-forward, LayerNorm, dropout) runs on
the packed [n_real, d] tokens and only the attention itself sees the padded [B, T] layout. Histories are short
(median 6 items, padded to the batch's longest), so this does several times less work than the padded layout,
with the same outputs at real positions; padded positions of the output are zero.

Module names mark the parts that adaptation strategies treat differently (ant.model.ant.PARTS): `position` (P),
`input_norm` (the input LayerNorm) and `layers` (the Transformer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ant.model.dropout import dropout

RECBOLE_EPS = 1e-12  # RecBole's LayerNorm eps; ANT passes the authors' 1e-8 (spec baselines.md section 2.2)


class TransformerLayer(nn.Module):
    def __init__(
        self, hidden_size: int, heads: int, inner_size: int, dropout: float, attn_dropout: float, eps: float
    ) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of attention_heads {heads}")
        self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout
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
        attended = (
            (dropout(weights, self.attn_dropout, self.training) @ v).transpose(1, 2).reshape(batch, steps, hidden)
        )
        x = self.attn_norm(x + dropout(self.attn_out(attended[where]), self.dropout, self.training))
        return self.ffn_norm(x + dropout(self.ffn_out(F.gelu(self.ffn_in(x))), self.dropout, self.training))


def recbole_init(module: nn.Module, std: float = 0.02) -> None:
    """RecBole's `_init_weights` (apply to a model): Linear and Embedding weights N(0, std), biases 0, LayerNorm
    (1, 0). Padding rows are drawn too (they get no gradient through lookups)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def right_padded(length: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] True at the real positions of right-padded rows of `length` items."""
    return torch.arange(steps, device=length.device).unsqueeze(0) < length.unsqueeze(1)


def last_position(hidden: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """The output at each right-padded row's last real position (the user vector): [B, T, d] -> [B, d]."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), length - 1]


def run_layers(
    layers: nn.ModuleList, x: torch.Tensor, real: torch.Tensor, causal: bool, where: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Transformer layers over x [n_real, d], the real tokens of a [B, T] batch at (row, column) `where` =
    real.nonzero(), in that order -> [B, T, d] with zero padding."""
    batch, steps = real.shape
    pos = torch.arange(steps, device=real.device)
    allowed = real.unsqueeze(1).expand(batch, steps, steps)  # [B, query, key]: real keys only
    if causal:
        allowed = allowed & (pos.unsqueeze(1) >= pos.unsqueeze(0))  # and keys j <= i
    # a query also sees itself: nothing changes for real queries, and a padded one (never read) has no empty row
    mask = (allowed | torch.eye(steps, dtype=torch.bool, device=real.device)).unsqueeze(1)  # [B, 1, T, T]
    for layer in layers:
        x = layer(x, where, mask)
    return x.new_zeros(batch, steps, x.shape[1]).index_put(where, x)


class SequenceEncoder(nn.Module):
    """Input embedding (positions, LayerNorm, dropout) + Transformer layers: RecBole's sequence encoder."""

    def __init__(
        self,
        hidden_size: int,
        max_length: int,
        layers: int,
        heads: int,
        inner_size: int,
        dropout: float,
        attn_dropout: float | None = None,
        eps: float = RECBOLE_EPS,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.position = nn.Embedding(max_length, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout, self.causal = dropout, causal
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.layers = nn.ModuleList(
            TransformerLayer(hidden_size, heads, inner_size, dropout, attn_dropout, eps) for _ in range(layers)
        )

    def embed(self, items: torch.Tensor, where: tuple[torch.Tensor, ...], first_position: int = 0) -> torch.Tensor:
        """Dropout(LayerNorm(v + P)) of the tokens of items [B, T, d] at (row, column) `where`: [n_real, d]."""
        steps = items.shape[1]
        if first_position + steps > self.position.num_embeddings:
            raise ValueError(
                f"a history of {first_position + steps} positions is longer than max_history "
                f"{self.position.num_embeddings}"
            )
        x = self.input_norm(items[where] + self.position.weight[where[1] + first_position])
        return dropout(x, self.dropout, self.training)

    def forward(self, items: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Right-padded rows: items [B, T, d] (any values at padding), length [B] in 1..T -> hidden [B, T, d]."""
        return self.encode(items, right_padded(length, items.shape[1]))

    def encode(self, items: torch.Tensor, real: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """Any padding: real [B, T] marks the tokens; column t has position first_position + t."""
        where = real.nonzero(as_tuple=True)  # (row, column) of every real token, found once
        return run_layers(self.layers, self.embed(items, where, first_position), real, self.causal, where)
