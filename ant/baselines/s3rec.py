"""S3-Rec (Zhou et al., CIKM'20), UniSRec's text variant `baselines/s3rec.py` on RecBole's `S3Rec` (spec
baselines.md section 7): self-supervised pre-training on the target task, then next-item fine-tuning.

    E   item ids (N + 2) x d: row 0 padding, 1..N the items, N + 1 the mask token;  P  positions L x d
    h   = ONE RecBole Transformer (ant.model.transformer), input Dropout(LN(E[x_t] + P[t])): bidirectional in
          pre-training (left-padded rows), causal in fine-tuning (right-padded rows); the same P serves both
          layouts, re-purposed between the stages as upstream (a RecBole design flaw, kept)
    F   = A(X_text), A = Linear(768, d) + ReLU over the frozen BERT table of all N + 1 ids (row 0 zero input):
          every item is its own attribute (n_attributes = N + 1)
    pre-training (`pretrain_loss`, pretext tasks in ant.baselines.s3rec_pretext), each loss SUMMED over positions
    and rows, not averaged; H = the bidirectional encoding of the masked sequence:
      AAP  real unmasked t:  Σ_a BCE(σ((W_aap h_t) . F_a), label_t,a)
      MIP  masked t:         -log σ( σ((W_mip h_t) . E[item_t]) - σ((W_mip h_t) . E[neg_t]) )   (double sigmoid)
      MAP  masked t:         Σ_a BCE(σ((W_map h_t) . F_a), label_t,a)
      SP   every row:        -log σ( σ((W_sp c) . p) - σ((W_sp c) . n) ), c, p, n the last-position encodings of
                             the masked-segment, positive and negative inputs                 (double sigmoid)
      total = w_aap AAP + w_mip MIP + w_map MAP + w_sp SP
    fine-tuning: load all, train all; u = causal h at len - 1, score(i) = u . E[i] over the N real items, next-item
    CE inherited from Baseline (exact with all_positions); the text is not used.

Heads W_aap, W_mip, W_map, W_sp: Linear(d, d) with bias; N(0, 0.02) init of every Linear and Embedding (RecBole).
X_text by default is what UniSRec's code really gives pre-training: the frozen BERT table re-drawn N(0, 0.02) by
that initialisation (`text_table: upstream`; `features` reads the BERT table; ant.baselines.base.text_table).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ant.baselines import s3rec_pretext as pretext
from ant.baselines.base import TEXT_TABLES, Baseline, TaskShape, ids, recbole_encoder, text_table
from ant.model.transformer import recbole_init, right_padded, run_layers
from ant.train.batches import Batch


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d (UniSRec's props use 300; Table A1 gives 300 per task via the config)
    layers: int = 2  # Transformer layers
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width, independent of d (RecBole)
    dropout: float = 0.5  # on the input and hidden states (hidden_dropout_prob)
    attn_dropout: float = 0.5  # on the attention probabilities (attn_dropout_prob)
    mask_ratio: float = 0.2  # pre-training: probability that a real position is replaced by the mask token
    aap_weight: float = 1.0  # associated attribute prediction (RecBole 1.2 and reportedly the original: 0.2)
    mip_weight: float = 0.2  # masked item prediction (RecBole 1.2 and reportedly the original: 1.0)
    map_weight: float = 1.0  # masked attribute prediction
    sp_weight: float = 0.5  # segment prediction
    pretrain_epochs: int = 300  # the pre-training stage's fixed budget, last epoch kept (RecBole: 500)
    pretrain_lr: float | None = None  # the pre-training stage's lr; None: the method's lr (spec open point 3)
    label_alignment: pretext.LabelAlignment = "upstream"  # AAP/MAP labels: "upstream" right-padded, "fixed"
    text_table: str = "upstream"  # "upstream": a frozen random table, as UniSRec's code; "features": BERT's

    def problems(self) -> list[str]:
        """What is wrong with these values (ant.train.hparams prefixes "model.")."""
        out = []
        if not 0 < self.mask_ratio < 1:
            out.append("mask_ratio must be in (0, 1)")
        for name in ("aap_weight", "mip_weight", "map_weight", "sp_weight"):
            if not getattr(self, name) >= 0:
                out.append(f"{name} must be >= 0")
        if not isinstance(self.pretrain_epochs, int) or self.pretrain_epochs < 1:
            out.append("pretrain_epochs must be a positive integer")
        if self.pretrain_lr is not None and not self.pretrain_lr > 0:
            out.append("pretrain_lr must be null or > 0")
        if self.label_alignment not in pretext.ALIGNMENTS:
            out.append(f"label_alignment must be one of {', '.join(pretext.ALIGNMENTS)}")
        if self.text_table not in TEXT_TABLES:
            out.append(f"text_table must be one of {', '.join(TEXT_TABLES)}")
        return out


def pair_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Σ -log σ(σ(pos) - σ(neg)): BCE(σ(σ(pos) - σ(neg)), 1) summed, the double sigmoid of MIP and SP."""
    return F.softplus(torch.sigmoid(negative.float()) - torch.sigmoid(positive.float())).sum()


class Model(Baseline):
    exact_all_positions = True  # fine-tuning is causal and read at each position (spec section 2.6)

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings, self.n_items, self.max_history = settings, task.n_items, task.max_history
        self.mask_id = task.n_items + 1
        d = settings.hidden_size
        # attribute a = item id a, [N + 1, 768] frozen; rebuilt (not stored) with the model: see base.text_table
        text = text_table(task, settings.text_table)
        self.register_buffer("text", text, persistent=False)
        self.items = nn.Embedding(task.n_items + 2, d, padding_idx=0)  # + the mask token N + 1
        # fine-tuning's direction; pre-training calls the same layers bidirectionally
        self.encoder = recbole_encoder(settings, task.max_history, causal=True)
        self.adapter = nn.Sequential(nn.Linear(text.shape[1], d), nn.ReLU())  # MLPLayers([768, d]), dropout 0
        self.aap, self.mip, self.map, self.sp = (nn.Linear(d, d) for _ in range(4))  # upstream `<task>_norm`
        self.apply(recbole_init)  # as RecBole, this also draws the padding row (it gets no gradient)

    # ------------------------------------------------------------------ the encoder, both directions
    def run(self, tokens: torch.Tensor, real: torch.Tensor, first_position: int, causal: bool) -> torch.Tensor:
        """Hidden states [B, T, d] of RecBole ids [B, T] with real tokens `real` (any padding), column 0 at
        absolute position `first_position`."""
        where = real.nonzero(as_tuple=True)
        x = self.encoder.embed(self.items(tokens), where, first_position)  # [n, d]
        return run_layers(self.encoder.layers, x, real, causal, where)

    # ------------------------------------------------------------------ fine-tuning and evaluation
    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return self.run(ids(history), right_padded(length, history.shape[1]), 0, causal=True)

    def candidates(self) -> torch.Tensor:
        return self.items.weight[1 : self.n_items + 1]  # [N, d]: never padding, never the mask token

    # ------------------------------------------------------------------ pre-training
    def attributes(self) -> torch.Tensor:
        """F = A(X_text): [N + 1, d], attribute a = item id a (0 = the padding item, A(0) = ReLU(bias))."""
        return self.adapter(self.text)

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The four pretext losses of a batch of prefix rows, with fresh draws (torch's global generator)."""
        s = self.settings
        tasks = pretext.build(
            ids(batch.history), batch.length, self.max_history, self.n_items, s.label_alignment, s.mask_ratio
        )
        return self.pretext_losses(tasks)

    def pretext_losses(self, p: pretext.Pretext) -> dict[str, torch.Tensor]:
        """{"loss": the weighted total, "aap", "mip", "map", "sp"} of built pretext inputs (each summed)."""
        s, batch = self.settings, p.items.shape[0]
        # the four encodings share one bidirectional pass: rows are independent (own masks, own dropout)
        tokens = torch.cat([p.masked_items, p.segment_masked, p.segment_positive, p.segment_negative])  # [4B, T]
        hidden = self.run(tokens, tokens > 0, p.first_position, causal=False)  # [4B, T, d]
        h = hidden[:batch]  # H of the masked sequence
        features = self.attributes()  # [N + 1, d]
        seen = p.real & ~p.masked  # AAP: real, unmasked positions
        aap = pretext.attribute_bce(self.aap(h[seen]), features, p.labels[seen])
        map_ = pretext.attribute_bce(self.map(h[p.masked]), features, p.labels[p.masked])
        z = self.mip(h[p.masked])  # [m, d]
        mip = pair_loss((z * self.items(p.items[p.masked])).sum(-1), (z * self.items(p.negative[p.masked])).sum(-1))
        context, positive, negative = hidden[batch:, -1].reshape(3, batch, -1)  # last column: each row's last item
        c = self.sp(context)  # [B, d]
        sp = pair_loss((c * positive).sum(-1), (c * negative).sum(-1))
        total = s.aap_weight * aap + s.mip_weight * mip + s.map_weight * map_ + s.sp_weight * sp
        return {"loss": total, "aap": aap, "mip": mip, "map": map_, "sp": sp}
