"""NOVA (Liu et al., AAAI'21) as the ANT authors' released `Nova` / `NovaLayer` port ran it (spec baselines.md
section 9): ids and frozen side information fused once, keys from the fused stream, values from the id stream.

    X_m frozen feature tables (N + 1) x d_m, row 0 zero: text 768, image 1024, price 64 (fp16 upstream)
    E   item ids (N + 1) x d, row 0 padding;  P  positions L x d (L = max_history, 50)
    f_i = proj([E[i] ; X_text[i] ; X_image[i] ; X_price[i]]),  proj: Linear(d + 768 + 1024 + 64, d)   fused item
    K0_t = Dropout(f(x_t) + P[t])      [B, T, d]  key stream, the SAME K0 feeds every layer (never updated)
    h_t  = Dropout(E[x_t] + P[t])      [B, T, d]  value stream, no input LayerNorm
    NovaLayer x layers (own LN_key, LN_value, LN_ff, eps 1e-8):
      k = LN_key(K0), v = LN_value(h)
      a = MHA(query k, key k, value v) + v         torch.nn.MultiheadAttention, packed in_proj, out_proj
      a' = LN_ff(a);  h = a' + Dropout(W2 GELU(W1 a' + b1) + b2)     FFN inner size d
    u = h at len - 1;  score(i) = cos(u, f_i) / tau over the N real items (no positions in f); next-item CE

The attention mask is boolean "disallowed" = causal OR key is padding, [B, T, T], expanded to [B * heads, T, T].
MultiheadAttention reads slot b * heads + h of a 3-D mask as sample b, head h; upstream expanded it head-major
(`mask.repeat(heads, 1, 1)`), so that slot holds the mask of sample (b * heads + h) mod B: the causal part is the
same, the padding part is borrowed from another row, and a head whose lender has a shorter history cannot see this
row's latest items (`mask_layout: upstream`, the default, the paper's numbers). `fixed` interleaves
(`repeat_interleave`): every head gets its own sample's mask. Under `upstream` a row's output depends on the
other rows of its batch and their order, so the one-pass all-positions rows are not exact and evaluation runs in
batches of 2,048 rows in the given order (`eval_batch_rows`).

A real query only ever sees keys j <= its own position, which are real in its own row, whatever mask it borrows:
padded positions never reach a real output, so they are fed as zeros and trimming trailing padding is exact
under both layouts (and key 0 is always allowed, so no attention row is empty).

Init: N(0, 0.02) on every Linear and Embedding weight (out_proj too), biases 0, LayerNorm (1, 0); the packed
in_proj_weight keeps PyTorch's Xavier-uniform draw (it is a bare Parameter, not a Linear). Upstream's `squeeze()`
calls (which break at batch size 1) are not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ant.baselines.base import Baseline, TaskShape, ids
from ant.model.ant import LAYER_NORM_EPS, cosine_logits
from ant.model.dropout import dropout
from ant.model.transformer import recbole_init, right_padded

MASK_LAYOUTS = ("upstream", "fixed")
MODALITIES = ("text", "image", "price")  # concatenated after the id embedding in this order (upstream)
UPSTREAM_EVAL_ROWS = 2048  # the authors' evaluation batch: with the upstream mask results depend on it


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d (Table A1 per task: 256, or 128 on Instruments and Office); also the FFN width
    layers: int = 2  # NovaLayers; each reads the same key stream K0
    attention_heads: int = 2  # heads of torch.nn.MultiheadAttention
    dropout: float = 0.5  # on both input streams and the feed-forward output
    attn_dropout: float = 0.5  # on the attention probabilities (MultiheadAttention's dropout)
    temperature: float = 0.07  # tau of the cosine scores cos(u, f) / tau
    fp16_features: bool = True  # store the frozen feature tables in fp16, as upstream casts them on load
    mask_layout: str = "upstream"  # "upstream": heads borrow other rows' padding masks (repeat); "fixed": own

    def problems(self) -> list[str]:
        """What is wrong with these values (ant.train.hparams prefixes "model.")."""
        out = []
        if self.mask_layout not in MASK_LAYOUTS:
            out.append(f"mask_layout must be one of {', '.join(MASK_LAYOUTS)}")
        if not isinstance(self.fp16_features, bool):
            out.append("fp16_features must be true or false")
        return out


def attention_mask(real: torch.Tensor, heads: int, layout: str) -> torch.Tensor:
    """MultiheadAttention's 3-D boolean mask (True = disallowed) of right-padded rows real [B, T]:
    [B * heads, T, T], slot b * heads + h read as sample b, head h."""
    steps = real.shape[1]
    pos = torch.arange(steps, device=real.device)
    causal = pos.unsqueeze(0) > pos.unsqueeze(1)  # [query, key]: a later key
    disallowed = causal.unsqueeze(0) | ~real.unsqueeze(1)  # [B, query, key]: later or padding
    if layout == "upstream":
        return disallowed.repeat(heads, 1, 1)  # head-major: slot s holds sample s mod B
    if layout == "fixed":
        return disallowed.repeat_interleave(heads, dim=0)  # slot b * heads + h holds sample b
    raise ValueError(f"mask_layout must be one of {', '.join(MASK_LAYOUTS)}, not {layout!r}")


class NovaLayer(nn.Module):
    def __init__(self, hidden_size: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of attention_heads {heads}")
        self.dropout = dropout
        self.norm_key = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.norm_value = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.attention = nn.MultiheadAttention(hidden_size, heads, dropout=attn_dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(hidden_size, hidden_size)  # inner size d, as upstream
        self.ffn_out = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, key: torch.Tensor, h: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """key, h [n, d]: the real tokens of a [B, T] batch at (row, column) `where`; mask [B * heads, T, T]."""
        batch, steps = mask.shape[0] // self.attention.num_heads, mask.shape[1]
        k, v = self.norm_key(key), self.norm_value(h)  # [n, d] each
        k_pad = k.new_zeros(batch, steps, k.shape[1]).index_put(where, k)  # [B, T, d], padding never read
        v_pad = v.new_zeros(batch, steps, v.shape[1]).index_put(where, v)
        attended, _ = self.attention(k_pad, k_pad, v_pad, attn_mask=mask, need_weights=False)  # [B, T, d]
        a = self.norm_ff(attended[where] + v)  # [n, d]: the residual is the normalised value
        return a + dropout(self.ffn_out(F.gelu(self.ffn_in(a))), self.dropout, self.training)


class Model(Baseline):
    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        d = settings.hidden_size
        widths = []
        for modality in MODALITIES:
            if modality not in task.features:
                raise ValueError(f"NOVA reads the {modality} features: the task has none")
            values = torch.as_tensor(task.features[modality], dtype=torch.float32)  # [N, d_m] in item_idx order
            table = torch.cat([values.new_zeros(1, values.shape[1]), values])  # [N + 1, d_m] in id order
            # frozen inputs rebuilt from the task with the model, not weights (fp16 once on load, upstream)
            self.register_buffer(modality, table.half() if settings.fp16_features else table, persistent=False)
            widths.append(values.shape[1])
        self.items = nn.Embedding(task.n_items + 1, d, padding_idx=0)
        self.position = nn.Embedding(task.max_history, d)
        self.proj = nn.Linear(d + sum(widths), d)  # d + 768 + 1024 + 64 at paper size
        self.layers = nn.ModuleList(
            NovaLayer(d, settings.attention_heads, settings.dropout, settings.attn_dropout)
            for _ in range(settings.layers)
        )
        # MultiheadAttention's in_proj_weight is a bare Parameter: it keeps PyTorch's Xavier-uniform draw
        self.apply(recbole_init)

    @property
    def exact_all_positions(self) -> bool:  # type: ignore[override]
        """One causal pass gives each prefix row's state only if no head borrows another row's mask."""
        return self.settings.mask_layout == "fixed"

    @property
    def eval_batch_rows(self) -> int | None:
        """Under the upstream mask, scores depend on the batch: evaluate in upstream's batches of 2,048 rows."""
        return UPSTREAM_EVAL_ROWS if self.settings.mask_layout == "upstream" else None

    def fused(self, tokens: torch.Tensor) -> torch.Tensor:
        """f of RecBole ids tokens [n] -> [n, d]: proj(id ; text ; image ; price), features back in float."""
        parts = [self.items(tokens)] + [getattr(self, m)[tokens].float() for m in MODALITIES]
        return self.proj(torch.cat(parts, dim=-1))  # [n, d + sum d_m] -> [n, d]

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        batch, steps = history.shape
        if steps > self.position.num_embeddings:
            raise ValueError(
                f"a history of {steps} positions is longer than max_history {self.position.num_embeddings}"
            )
        real = right_padded(length, steps)  # [B, T]
        where = real.nonzero(as_tuple=True)  # (row, column) of every real token
        tokens = ids(history)[where]  # [n] RecBole ids
        position = self.position.weight[where[1]]  # [n, d]
        p = self.settings.dropout
        key = dropout(self.fused(tokens) + position, p, self.training)  # K0 [n, d], shared by every layer
        h = dropout(self.items(tokens) + position, p, self.training)  # h0 [n, d]
        mask = attention_mask(real, self.settings.attention_heads, self.settings.mask_layout)  # [B * heads, T, T]
        for layer in self.layers:
            h = layer(key, h, where, mask)
        return h.new_zeros(batch, steps, h.shape[1]).index_put(where, h)  # [B, T, d], zero padding

    def candidates(self) -> torch.Tensor:
        """The fused f of the N real items [N, d] (ids 1..N, no positions)."""
        ids = torch.arange(1, self.items.num_embeddings, device=self.items.weight.device)
        return self.evaluation_cached(lambda: self.fused(ids))

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """states [M, d] -> [M, N] cos(u, f) / tau in float32 even under autocast."""
        return cosine_logits(states, self.candidates(), self.settings.temperature)
