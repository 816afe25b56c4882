"""FDSA (Zhang et al., IJCAI'19), UniSRec's text variant `baselines/fdsa.py` (spec baselines.md section 6).

    E   item ids (N + 1) x d, row 0 padding;  X  the frozen BERT text table (N + 1) x 768, row 0 zero
    A   = Linear(768, d) + ReLU (RecBole's MLPLayers([768, d])), its output follows d
    P, LN, Dropout: ONE position table, ONE LayerNorm and one dropout shared by both streams (and LN again below)
    item stream     h_id   = Transformer_id(Dropout(LN(E[x_t] + P[t])))          causal, its own layers
    feature stream  h_text = Transformer_text(Dropout(LN(A(X[x_t]) + P[t])))     causal, its own layers
    u   = Dropout(LN(W [h_id ; h_text] + b)), W: Linear(2d, d), at the last real position
    score(i) = u . E[i]: candidates are id-only, the text shapes the user vector only

The head is position-wise, so applying it at every position gives each prefix row's u at once: with causal
streams `train.rows: all_positions` is exact (spec section 2.6). Upstream pools at len - 1 first and then applies
the head; the same computation per row. RecBole's defaults apart from d: 2 layers, 2 heads, FFN inner 256,
dropout 0.5 / 0.5, LayerNorm eps 1e-12, N(0, 0.02) initialisation of every Linear and Embedding (A included).

X by default is what UniSRec's code really gives the model: its frozen copy of the BERT table is re-drawn
N(0, 0.02) by that initialisation, so the paper's FDSA read a frozen random table, not the text
(`text_table: upstream`; `features` reads the BERT table; ant.baselines.base.text_table).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ant.baselines.base import TEXT_TABLES, Baseline, TaskShape, ids, text_table
from ant.model.dropout import dropout
from ant.model.transformer import RECBOLE_EPS, TransformerLayer, recbole_init, right_padded, run_layers


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d, also the adapter's output (UniSRec hard-codes 300; Table A1 gives 64/128 per task)
    layers: int = 2  # Transformer layers of each stream
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width, independent of d (RecBole)
    dropout: float = 0.5  # the one shared dropout: both inputs, the head, the hidden states (hidden_dropout_prob)
    attn_dropout: float = 0.5  # on the attention probabilities (attn_dropout_prob)
    text_table: str = "upstream"  # "upstream": a frozen random table, as UniSRec's code; "features": BERT's

    def problems(self) -> list[str]:
        """What is wrong with these values (ant.train.hparams prefixes "model.")."""
        return [] if self.text_table in TEXT_TABLES else [f"text_table must be one of {', '.join(TEXT_TABLES)}"]


class Model(Baseline):
    exact_all_positions = True  # causal streams + a position-wise head (module docstring)

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        d = settings.hidden_size
        # [N + 1, 768] in id order, frozen; rebuilt (not stored) with the model: see base.text_table
        text = text_table(task, settings.text_table)
        self.register_buffer("text", text, persistent=False)
        self.items = nn.Embedding(task.n_items + 1, d, padding_idx=0)
        self.adapter = nn.Sequential(nn.Linear(text.shape[1], d), nn.ReLU())  # MLPLayers([768, d]), dropout 0
        self.position = nn.Embedding(task.max_history, d)  # shared by both streams (spec section 6)
        self.input_norm = nn.LayerNorm(d, eps=RECBOLE_EPS)  # shared by both inputs and the output head
        self.item_layers, self.feature_layers = (
            nn.ModuleList(
                TransformerLayer(
                    d,
                    settings.attention_heads,
                    settings.inner_size,
                    settings.dropout,
                    settings.attn_dropout,
                    RECBOLE_EPS,
                )
                for _ in range(settings.layers)
            )
            for _ in range(2)
        )
        self.concat = nn.Linear(2 * d, d)  # upstream `concat_layer`
        self.apply(recbole_init)  # as RecBole, this also draws the padding row (it gets no gradient)

    def embed(self, vectors: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Dropout(LN(v + P[t])) of the real tokens' vectors [n, d] at (row, column) `where`, shared P and LN."""
        return dropout(self.input_norm(vectors + self.position.weight[where[1]]), self.settings.dropout, self.training)

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        batch, steps = history.shape
        if steps > self.position.num_embeddings:
            raise ValueError(
                f"a history of {steps} positions is longer than max_history {self.position.num_embeddings}"
            )
        real = right_padded(length, steps)  # [B, T]
        where = real.nonzero(as_tuple=True)  # (row, column) of every real token
        tokens = ids(history)[where]  # [n] RecBole ids of the real tokens
        item_in = self.embed(self.items(tokens), where)  # [n, d]
        feature_in = self.embed(self.adapter(self.text[tokens]), where)  # [n, 768] -> [n, d]
        h_id = run_layers(self.item_layers, item_in, real, True, where)  # [B, T, d], causal
        h_text = run_layers(self.feature_layers, feature_in, real, True, where)  # [B, T, d], causal
        # the head at every real position: upstream applies it to the len - 1 outputs only (same per row)
        joint = self.concat(torch.cat([h_id[where], h_text[where]], dim=-1))  # [n, 2d] -> [n, d]
        u = dropout(self.input_norm(joint), self.settings.dropout, self.training)  # the shared LN a third time
        return u.new_zeros(batch, steps, u.shape[1]).index_put(where, u)  # [B, T, d], zero padding

    def candidates(self) -> torch.Tensor:
        return self.items.weight[1:]  # [N, d]: ids only, never padding
