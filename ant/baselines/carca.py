"""CARCA (Rashed et al., RecSys'22): the official TensorFlow code's architecture (6f77ecc) under ANT's protocol,
next-item softmax CE over all items per prefix row (spec baselines.md section 10).

    f_i   = text_i ⊕ image_i ⊕ price_i  (frozen, 768 + 1024 + 64 = 1,856; row 0 zero)      c  a context [6] or none
    e(i, c) = embComp([√d E_id[i] ; D_f([f_i ; c])]),  D_f: Linear(F + 6, 5d),  embComp: Linear(6d, d), both linear
    history H⁰_t = Dropout(e(x_t, c_t) [+ P[t]]) × nonpad_t                                         [B, T, d]
    block × layers:  x = LN(H);  Q = σ(W_q x), K = σ(W_k H), V = σ(W_v H)   σ = LeakyReLU(0.2), heads split d
                     A = softmax_t(Q_h K_hᵀ / √d_h) over real keys, × real query, Dropout;  O = [A_h V_h]_h
                     y = LN(O ⊙ x);  H = (Dropout(W_2 Dropout(σ(W_1 y))) + y) × nonpad   (1x1 convs = Linear)
    H = LN(H) (final), padding zeroed
    scorer, candidate i of row b, q = e(i, c_target(b)):  Q' = σ(W'_q q), K' = σ(W'_k H), V' = σ(W'_v H)
        logit = b + w · ((Σ_t a_t V'_t) [⊙ q]),   a = Dropout(softmax_t(Q'_h K'_hᵀ / √d_h)) per head

Exact chunked form (never B × N × d): logit_{b,c} = b + Σ_h Σ_t a_{h,b,c,t} s_{h,b,c,t} with s = <V'_{h,t}, w_h>
(no use_res) or <V'_{h,t}, w_h ⊙ q_{c,h}> (use_res). e is linear in c, so q_{b,c} = e(c, 0) + G c_target(b): the
[B, h, T] part of s from G c and the [h, C, dh] part from e(c, 0) never meet in a B × C × d tensor; only Q' under
time6 (a LeakyReLU of a row-dependent sum) is [h, B, C, dh] per chunk. Each chunk of `candidate_chunk` items holds
[h, B, T, C] attention entries and is recomputed in the backward pass (activation checkpointing); only the [B, N]
logits stay. Training and evaluation share `scores`; `loss` is CE over it (prefix rows: the encoder is
bidirectional, so one pass does not give every prefix's state, `exact_all_positions` False; the target is never
in the input). `encode` returns the final H [B, T, d]; `candidates` e(i, 0) [N, d] (context-free; CARCA never
scores by dot product with them).

The item table e(i, 0) of all N + 1 ids is computed once per call and serves history and candidates ("one
embedding"); embComp ∘ D_f is linear, so it is evaluated as features @ (W_c2 W_f)ᵀ (N × F × d instead of N × F × 5d
multiply-adds), the same function and parameters. Context `none` (default): no c, learned positions P (L × d,
Glorot) added to the history input (a documented deviation: upstream builds P but never adds it; order came from
time). `time6`: per interaction (normalised year, month, day, day-of-week, day-of-year, week) from the sequences'
timestamps, as upstream's PreprocessData: year (y - min) / (max - min) over the task's interactions (0 when all in
one year), month / 12, day / 31, weekday (Monday 0) / 7, day-of-year / 365, ISO week / 4 (upstream's divisor). A
history position gets its interaction's context, every candidate the target interaction's.

Init as the code: TF defaults (Glorot-uniform weights, zero biases, LayerNorm (1, 0), eps 1e-8) for the id table,
P and every projection; N(0, 0.01) for D_f (`feat_emb`), embComp and the logit layer, as the code initialises all
three (the spec names D_f's). Upstream detects padding as all-zero vectors; explicit masks here. l2_emb is
upstream's `l2_regularizer` on the id table and P: loss += l2_emb · ½ (‖E_id‖² + ‖P‖²), per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ant.baselines.base import Baseline, TaskShape, ids
from ant.model.dropout import dropout
from ant.model.transformer import right_padded
from ant.train.batches import Batch

CONTEXTS = ("none", "time6")
MODALITIES = ("text", "image", "price")  # concatenated in this order into f_i
SLOPE = 0.2  # tf.nn.leaky_relu's default alpha (PyTorch's is 0.01)
EPS = 1e-8  # upstream `normalize`
CONTEXT_SIZE = 6


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d (Table A1: 256 on every task); D_f has 5d outputs, embComp 6d inputs
    layers: int = 2  # CARCA blocks (upstream num_blocks)
    attention_heads: int = 2  # heads of every attention, the scorer's too
    dropout: float = 0.5  # one rate, as upstream: the input, attention probabilities (scorer too), both FFN layers
    l2_emb: float = 0.0  # loss += l2_emb · ½ (‖E_id‖² + ‖P‖²), upstream's l2_regularizer on the two tables
    use_res: bool = True  # scorer output × q (upstream `use_res`: True for Beauty and Games, False for Men, Fashion)
    context: str = "none"  # "none": no context, learned positions; "time6": six date features from timestamps
    candidate_chunk: int = 1024  # items per chunk of the scorer: [heads, B, T, chunk] entries alive at a time

    def problems(self) -> list[str]:
        """What is wrong with these values (ant.train.hparams prefixes "model.")."""
        out = []
        if self.context not in CONTEXTS:
            out.append(f"context must be one of {', '.join(CONTEXTS)}")
        if not isinstance(self.use_res, bool):
            out.append("use_res must be true or false")
        if type(self.candidate_chunk) is not int or self.candidate_chunk < 1:  # bool is an int subclass
            out.append("candidate_chunk must be a positive integer")
        if not self.l2_emb >= 0:
            out.append("l2_emb must be >= 0")
        return out


def time6(seconds: np.ndarray) -> np.ndarray:
    """int64 [n] seconds since the epoch (UTC) -> float32 [n, 6], upstream's normalised date features."""
    days = np.floor_divide(seconds, 86_400)
    date = days.astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (date - date.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0 (pandas' dayofweek)
    day_of_year = (date - date.astype("datetime64[Y]")).astype(np.int64) + 1
    thursday = (days - weekday + 3).astype("datetime64[D]")  # an ISO week belongs to the year of its Thursday
    week = (thursday - thursday.astype("datetime64[Y]")).astype(np.int64) // 7 + 1
    span = int(year.max() - year.min()) if len(year) else 0
    relative_year = (year - year.min()) / span if span else np.zeros(len(year))
    columns = [relative_year, month / 12, day / 31, weekday / 7, day_of_year / 365, week / 4]
    return np.stack(columns, axis=1).astype(np.float32)


def heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """[..., T, d] -> [n, ..., T, d / n]: the head axis first."""
    return x.unflatten(-1, (n, -1)).movedim(-2, 0)


def chunk_logits(
    query: torch.Tensor,
    shift: torch.Tensor | None,
    keys: torch.Tensor,
    padding: torch.Tensor,
    s_rows: torch.Tensor | None,
    values: torch.Tensor | None,
    weighted: torch.Tensor | None,
    p: float,
    training: bool,
) -> torch.Tensor:
    """Σ_h Σ_t a s of C candidates for B rows, [B, C] in float32 (the logit bias not added).

    query [h, C, dh]: W'_q e(c, 0) + b'_q per head; shift [h, B, dh] or None: W'_q G c_target (time6);
    keys [h, B, T, dh] already divided by √dh; padding [B, T] True at padding;
    s_rows [h, B, T] or None: <V'_t, w_h> (no use_res) or <V'_t, w_h ⊙ G c_target> (use_res under time6);
    values [h, B, T, dh] and weighted [h, C, dh] = w_h ⊙ e(c, 0) (use_res) or None.
    Everything per chunk is laid out [h, B, T, C] (T before C) so that each product is one batched matmul into
    fresh contiguous memory, which the masks then overwrite in place. Dropout on a is applied to the other factor,
    Σ_t (m_t a_t) s_t = Σ_t a_t (m_t s_t), as the softmax keeps its output for the backward pass, and its 1 / (1 - p)
    to the [B, C] sum."""
    n_heads, batch, steps, dh = keys.shape
    if shift is None:  # one query per candidate, shared by every row: [h, B·T, dh] @ [h, dh, C]
        att = keys.reshape(n_heads, batch * steps, dh) @ F.leaky_relu(query, SLOPE).transpose(1, 2)
        att = att.masked_fill_(padding.reshape(1, batch * steps, 1), float("-inf")).view(n_heads, batch, steps, -1)
    else:  # time6: the query depends on the row's target context, [h, B, C, dh] for this chunk only
        att = keys @ F.leaky_relu(query.unsqueeze(1) + shift.unsqueeze(2), SLOPE).transpose(2, 3)
        att = att.masked_fill_(padding[None, :, :, None], float("-inf"))
    att = torch.softmax(att, dim=2).flatten(1, 2)  # over t: [h, B·T, C]
    if values is not None:  # s = <V'_t, w_h ⊙ e(c, 0)> (+ the rows' part): [h, B·T, dh] @ [h, dh, C]
        s = values.reshape(n_heads, batch * steps, dh) @ weighted.transpose(1, 2)
        if s_rows is not None:
            s = s.add_(s_rows.reshape(n_heads, batch * steps, 1))
    else:  # without use_res s does not depend on the candidate
        s = s_rows.reshape(n_heads, batch * steps, 1).expand_as(att)
    dropped = training and p > 0
    if dropped:  # m_t: kept with p 1 - p (the draw of ant.model.dropout)
        drop = torch.rand_like(att) < p
        s = s.masked_fill_(drop, 0.0) if values is not None else s.masked_fill(drop, 0.0)
    with torch.autocast(att.device.type, enabled=False):  # the sum that makes the logit, in float32
        total = (att * s).view(n_heads, batch, steps, -1).sum(dim=(0, 2), dtype=torch.float32)  # [B, C]
    return total / (1.0 - p) if dropped else total


class Attention(nn.Module):
    """The LeakyReLU projections of upstream `multihead_attention` (the blocks' and the scorer's)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, p: float) -> None:
        super().__init__()
        self.n_heads, self.p = n_heads, p
        self.norm_query = nn.LayerNorm(d, eps=EPS)
        self.attention = Attention(d)
        self.norm_ffn = nn.LayerNorm(d, eps=EPS)
        self.ffn_in, self.ffn_out = nn.Linear(d, d), nn.Linear(d, d)  # the 1x1 convolutions, d -> d -> d

    def forward(self, h: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """h [B, T, d] (zero at padding), real [B, T] -> [B, T, d]; bidirectional over the real positions."""
        x = self.norm_query(h)
        a = self.attention
        q = heads(F.leaky_relu(a.query(x), SLOPE), self.n_heads)  # [h, B, T, dh]
        k = heads(F.leaky_relu(a.key(h), SLOPE), self.n_heads)
        v = heads(F.leaky_relu(a.value(h), SLOPE), self.n_heads)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [h, B, T(query), T(key)]
        logits = logits.masked_fill(~real[None, :, None, :], float("-inf"))  # padding keys
        att = torch.softmax(logits, dim=-1) * real[None, :, :, None]  # padding queries (upstream query masks)
        o = (dropout(att, self.p, self.training) @ v).movedim(0, -2).flatten(-2)  # [B, T, d]
        y = self.norm_ffn(o * x)  # the multiplicative residual O ⊙ LN(H)
        inner = dropout(F.leaky_relu(self.ffn_in(y), SLOPE), self.p, self.training)
        return (dropout(self.ffn_out(inner), self.p, self.training) + y) * real.unsqueeze(-1)


class Model(Baseline):
    exact_all_positions = False  # bidirectional: prefix rows only (spec section 2.6)

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        d, time = settings.hidden_size, settings.context == "time6"
        missing = [m for m in MODALITIES if m not in task.features]
        if missing:
            raise ValueError(f"CARCA reads the text, image and price features: the task has no {', '.join(missing)}")
        f = np.concatenate([np.asarray(task.features[m], np.float32) for m in MODALITIES], axis=1)  # [N, F]
        features = torch.cat([torch.zeros(1, f.shape[1]), torch.from_numpy(f)])  # [N + 1, F] in id order
        self.register_buffer("features", features, persistent=False)  # frozen input, rebuilt with the model
        if time:
            if task.timestamps is None:
                raise ValueError("CARCA's time6 context reads the sequences' timestamps: the task has none")
            offsets, seconds = task.timestamps
            self.register_buffer("context_offsets", torch.as_tensor(offsets, dtype=torch.int64), persistent=False)
            self.register_buffer("context", torch.from_numpy(time6(seconds)), persistent=False)  # [interactions, 6]
        self.items = nn.Embedding(task.n_items + 1, d, padding_idx=0)
        self.feature_dense = nn.Linear(f.shape[1] + (CONTEXT_SIZE if time else 0), 5 * d)  # D_f, `feat_emb`
        self.compress = nn.Linear(6 * d, d)  # `embComp`
        self.position = None if time else nn.Embedding(task.max_history, d)
        self.blocks = nn.ModuleList(
            Block(d, settings.attention_heads, settings.dropout) for _ in range(settings.layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=EPS)
        self.scorer = Attention(d)
        self.logit = nn.Linear(d, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.xavier_uniform_(module.weight)  # TF's glorot_uniform (tf.layers.dense, get_variable)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for module in (self.feature_dense, self.compress, self.logit):
            nn.init.normal_(module.weight, 0.0, 0.01)
        with torch.no_grad():
            self.items.weight[0] = 0.0  # upstream zero_pad

    # ---------------------------------------------------------------- embeddings
    def item_table(self) -> torch.Tensor:
        """e(i, 0) of every id, [N + 1, d] (row 0 only ever feeds padding, which is masked)."""
        d = self.settings.hidden_size
        w_ids, w_features = self.compress.weight[:, :d], self.compress.weight[:, d:]  # [d, d], [d, 5d]
        w_f = self.feature_dense.weight[:, : self.features.shape[1]]  # [5d, F]: the context columns follow
        table = (self.items.weight * math.sqrt(d)) @ w_ids.T  # [N + 1, d], the √d-scaled ids
        table = table + self.features @ (w_features @ w_f).T  # [N + 1, F] @ [F, d]
        return table + w_features @ self.feature_dense.bias + self.compress.bias

    def context_shift(self, context: torch.Tensor) -> torch.Tensor:
        """G c = embComp's feature half of D_f's context columns: [..., 6] -> [..., d], so e(i, c) = e(i, 0) + G c."""
        d = self.settings.hidden_size
        g = self.compress.weight[:, d:] @ self.feature_dense.weight[:, self.features.shape[1] :]  # [d, 6]
        return context @ g.T

    def contexts(
        self, steps: int, length: torch.Tensor, user: torch.Tensor | None, position: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """time6: each history position's context [B, T, 6] (zero at padding) and the target's [B, 6]."""
        if self.settings.context == "none":
            return None, None
        if user is None or position is None:
            raise ValueError("CARCA's time6 context needs each row's user and target position")
        target = self.context_offsets[user] + position  # [B]: flat index of the target interaction
        cols = torch.arange(steps, device=length.device)
        real = cols.unsqueeze(0) < length.unsqueeze(1)  # [B, T]
        flat = torch.where(real, target.unsqueeze(1) - length.unsqueeze(1) + cols.unsqueeze(0), 0)  # [B, T]
        return self.context[flat] * real.unsqueeze(-1), self.context[target]

    def hidden(
        self, table: torch.Tensor, history: torch.Tensor, length: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        steps = history.shape[1]
        if self.position is not None and steps > self.position.num_embeddings:
            raise ValueError(
                f"a history of {steps} positions is longer than max_history {self.position.num_embeddings}"
            )
        real = right_padded(length, steps)  # [B, T]
        x = table[ids(history)]  # [B, T, d]; padding reads row 0, masked below
        x = x + (self.position.weight[:steps] if context is None else self.context_shift(context))
        h = dropout(x, self.settings.dropout, self.training) * real.unsqueeze(-1)
        for block in self.blocks:
            h = block(h, real)
        return self.final_norm(h) * real.unsqueeze(-1)  # [B, T, d], zero padding

    def encode(
        self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The final H [B, T, d] (zero at padding); time6 needs each row's user and target position."""
        context, _ = self.contexts(history.shape[1], length, user, position)
        return self.hidden(self.item_table(), history, length, context)

    def candidates(self) -> torch.Tensor:
        return self.item_table()[1:]  # [N, d]: e(i, 0), the candidates' context-free embeddings

    # ---------------------------------------------------------------- scoring
    def cross_attention(
        self, hidden: torch.Tensor, length: torch.Tensor, q0: torch.Tensor, shift: torch.Tensor | None
    ) -> torch.Tensor:
        """logits [B, N] (float32) of candidates e(c, 0) = q0 [N, d] (+ G c_target = shift [B, d]) against the
        final H [B, T, d], in chunks of candidate_chunk items, each checkpointed when gradients are recorded."""
        s, n_heads = self.settings, self.settings.attention_heads
        sc = self.scorer
        keys = heads(F.leaky_relu(sc.key(hidden), SLOPE), n_heads)  # [h, B, T, dh]
        keys = (keys / math.sqrt(keys.shape[-1])).contiguous()  # the 1/√dh of every logit, once per batch
        values = heads(F.leaky_relu(sc.value(hidden), SLOPE), n_heads).contiguous()
        padding = ~right_padded(length, hidden.shape[1])  # [B, T]
        query = heads(sc.query(q0), n_heads)  # [h, N, dh]
        query_shift = None if shift is None else heads(shift @ sc.query.weight.T, n_heads)  # [h, B, dh]
        w = self.logit.weight.view(n_heads, 1, -1)  # [h, 1, dh]
        if s.use_res:
            weighted = w * heads(q0, n_heads)  # [h, N, dh]: w_h ⊙ e(c, 0)
            s_rows = None if shift is None else (values * (w * heads(shift, n_heads)).unsqueeze(2)).sum(-1)
        else:
            weighted, s_rows = None, (values * w.unsqueeze(2)).sum(-1)  # [h, B, T]
        out = []
        for lo in range(0, q0.shape[0], s.candidate_chunk):
            part = slice(lo, lo + s.candidate_chunk)
            args = (query[:, part], query_shift, keys, padding, s_rows, values if s.use_res else None)
            args += (None if weighted is None else weighted[:, part], s.dropout, self.training)
            if torch.is_grad_enabled():  # recomputed in the backward pass: one chunk's [h, B, T, C] alive at a time
                out.append(checkpoint(chunk_logits, *args, use_reentrant=False))
            else:
                out.append(chunk_logits(*args))
        return torch.cat(out, dim=1) + self.logit.bias.float()  # [B, N]

    def scores(
        self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, N] cross-attention logits over the N real items (the evaluator's scorer and the loss's logits)."""
        table = self.item_table()
        context, target = self.contexts(history.shape[1], length, user, position)
        hidden = self.hidden(table, history, length, context)
        shift = None if target is None else self.context_shift(target)
        return self.cross_attention(hidden, length, table[1:], shift)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Softmax CE over all N items per prefix row, plus upstream's L2 on the id table and P."""
        if batch.target.dim() != 1:
            raise ValueError("CARCA trains on prefix rows: its bidirectional encoder has one state set per row")
        logits = self.scores(batch.history, batch.length, batch.user, batch.position)
        loss = F.cross_entropy(logits, batch.target)
        if self.settings.l2_emb:
            tables = [self.items.weight] + ([] if self.position is None else [self.position.weight])
            loss = loss + self.settings.l2_emb * 0.5 * sum(t.float().pow(2).sum() for t in tables)
        return loss
