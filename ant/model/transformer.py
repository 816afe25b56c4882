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
with the same outputs at real positions; padded positions of the output are zero. Packed and padded layouts meet
through index_select / index_copy_ on flattened rows (`padded`), whose backward is fast, never through advanced
indexing, whose backward is an accumulating index_put. `SequenceEncoder.last` computes the last layer at each
row's last position alone, for callers that read only the user vector (ANT's prefixes rows and its scorer).

Module names mark the parts that adaptation strategies treat differently (ant.model.ant.PARTS): `position` (P),
`input_norm` (the input LayerNorm) and `layers` (the Transformer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ant.model.dropout import dropout, dropout_part

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

    def forward(
        self,
        x: torch.Tensor,
        where: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        only: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x [n, d]: the real tokens of a [B, T] batch at (row, position) `where`; mask [B, 1, T, T] -> [n, d].
        only = (token [B], column [B]): the outputs of one token per row alone (its index in x, its column) ->
        [B, d], as `_one_query_per_row` says."""
        if only is not None:
            return self._one_query_per_row(x, where, mask, *only)
        (batch, _, steps, _), hidden = mask.shape, x.shape[1]
        flat = flat_index(where, steps)
        packed = self.qkv(x)  # bf16 under autocast while x stays float32
        qkv = padded(packed, flat, batch, steps)
        q, k, v = qkv.view(batch, steps, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # each [B, h, T, d_head]
        weights = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        weights = torch.softmax(weights.masked_fill(~mask, float("-inf")), dim=-1)
        attended = (dropout(weights, self.attn_dropout, self.training) @ v).transpose(1, 2).reshape(-1, hidden)
        x = self.attn_norm(x + dropout(self.attn_out(attended.index_select(0, flat)), self.dropout, self.training))
        return self.ffn_norm(x + dropout(self.ffn_out(F.gelu(self.ffn_in(x))), self.dropout, self.training))

    def _one_query_per_row(
        self,
        x: torch.Tensor,
        where: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        token: torch.Tensor,
        column: torch.Tensor,
    ) -> torch.Tensor:
        """`forward` read at one token per row: keys and values of every token, the query, the attention output and
        the feed-forward of that token alone (a last layer whose other outputs nobody reads). Every step is
        row-wise or that token's attention row, so the outputs are forward's at those tokens, up to float
        rounding, and so are the dropout masks: torch's draws are made over forward's full shapes and read at
        those tokens (the generator ends where forward leaves it), sfc64's for the tokens alone."""
        (batch, _, steps, _), hidden = mask.shape, x.shape[1]
        kv = F.linear(x, self.qkv.weight[hidden:], self.qkv.bias[hidden:])  # [n, 2d]
        kv = padded(kv, flat_index(where, steps), batch, steps)
        k, v = kv.view(batch, steps, 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # each [B, h, T, d_head]
        x = x.index_select(0, token)  # [B, d]: the tokens read from here on
        q = F.linear(x, self.qkv.weight[:hidden], self.qkv.bias[:hidden]).view(batch, self.heads, 1, -1)
        rows = torch.arange(batch, device=x.device)
        allowed = mask[rows, :, column].unsqueeze(2)  # [B, 1, 1, T]: the query's row of the mask
        weights = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # [B, h, 1, T]
        weights = torch.softmax(weights.masked_fill(~allowed, float("-inf")), dim=-1)
        weights = dropout_part(
            weights,
            self.attn_dropout,
            self.training,
            (batch, self.heads, steps, steps),
            lambda m: m[rows, :, column].unsqueeze(2),
        )
        attended = (weights @ v).reshape(batch, hidden)  # [B, h, 1, d_head] -> [B, d]
        picked = (len(where[0]), hidden), lambda m: m[token]
        x = self.attn_norm(x + dropout_part(self.attn_out(attended), self.dropout, self.training, *picked))
        inner = self.ffn_out(F.gelu(self.ffn_in(x)))
        return self.ffn_norm(x + dropout_part(inner, self.dropout, self.training, *picked))


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


def flat_index(where: tuple[torch.Tensor, ...], steps: int) -> torch.Tensor:
    """The (row, column) tokens `where` of a [B, steps] layout as rows of its [B * steps] flattening."""
    return where[0] * steps + where[1]


def padded(x: torch.Tensor, flat: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
    """Tokens x [n, c] at rows `flat` of a [batch * steps] layout -> [batch, steps, c], zero elsewhere.

    Gathers and scatters of the packed tokens go through index_select / index_copy on flat rows: their backward
    is an index_add over rows (or a gather), several times faster on the CPU than the accumulating index_put
    that advanced indexing (x[rows, columns], x[index]) runs backward; the same values forward."""
    return x.new_zeros(batch * steps, x.shape[1]).index_copy_(0, flat, x).view(batch, steps, x.shape[1])


def right_padded(length: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] True at the real positions of right-padded rows of `length` items."""
    return torch.arange(steps, device=length.device).unsqueeze(0) < length.unsqueeze(1)


def last_position(hidden: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """The output at each right-padded row's last real position (the user vector): [B, T, d] -> [B, d]."""
    batch, steps = hidden.shape[:2]
    rows = torch.arange(batch, device=hidden.device) * steps + length - 1
    return hidden.reshape(batch * steps, -1).index_select(0, rows)


def run_layers(
    layers: nn.ModuleList,
    x: torch.Tensor,
    real: torch.Tensor,
    causal: bool,
    where: tuple[torch.Tensor, ...],
    last: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transformer layers over x [n_real, d], the real tokens of a [B, T] batch at (row, column) `where` =
    real.nonzero(), in that order -> [B, T, d] with zero padding; last [B] (right-padded rows' lengths): only the
    output at each row's last real position -> [B, d], the last layer computed there alone."""
    batch, steps = real.shape
    pos = torch.arange(steps, device=real.device)
    allowed = real.unsqueeze(1).expand(batch, steps, steps)  # [B, query, key]: real keys only
    if causal:
        allowed = allowed & (pos.unsqueeze(1) >= pos.unsqueeze(0))  # and keys j <= i
    # a query also sees itself: nothing changes for real queries, and a padded one (never read) has no empty row
    mask = (allowed | torch.eye(steps, dtype=torch.bool, device=real.device)).unsqueeze(1)  # [B, 1, T, T]
    if last is None:
        for layer in layers:
            x = layer(x, where, mask)
        return padded(x, flat_index(where, steps), batch, steps)
    only = (torch.cumsum(last, 0) - 1, last - 1)  # row-major tokens: row r's last is the (sum of lengths)-th
    for layer in layers[:-1]:
        x = layer(x, where, mask)
    return layers[-1](x, where, mask, only) if len(layers) else x.index_select(0, only[0])


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
        tokens = items.reshape(-1, items.shape[2]).index_select(0, flat_index(where, steps))
        x = self.input_norm(tokens + self.position.weight.index_select(0, where[1] + first_position))
        return dropout(x, self.dropout, self.training)

    def forward(self, items: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Right-padded rows: items [B, T, d] (any values at padding), length [B] in 1..T -> hidden [B, T, d]."""
        return self.encode(items, right_padded(length, items.shape[1]))

    def last(self, items: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """forward(items, length) at each row's last real position only (the user vector): [B, d], the last layer
        computed at those positions alone (TransformerLayer `only`): for a causal encoder a few times less work
        in that layer, the same outputs up to float rounding (tests/test_transformer_last.py)."""
        real = right_padded(length, items.shape[1])
        where = real.nonzero(as_tuple=True)
        return run_layers(self.layers, self.embed(items, where), real, self.causal, where, last=length)

    def encode(self, items: torch.Tensor, real: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """Any padding: real [B, T] marks the tokens; column t has position first_position + t."""
        where = real.nonzero(as_tuple=True)  # (row, column) of every real token, found once
        return run_layers(self.layers, self.embed(items, where, first_position), real, self.causal, where)
