"""SASRec (Kang & McAuley, ICDM'18) as RecBole v1.1.1 runs it (spec baselines.md section 4).

    E   item ids (N + 1) x d, row 0 padding;  P  positions max_history x d
    h   = RecBole Transformer, causal (ant.model.transformer), input Dropout(LN(E[x_t] + P[t]))
    u   = h at the last real position;  score(i) = u . E[i]   (tied input and output embeddings)
    loss: next-item cross-entropy over the N real items at the last position of each prefix row; with
          train.rows = all_positions every position of a user's sequence at once (exact: the encoder is causal)

RecBole's defaults apart from d (the paper's 256, Table A1 per task): 2 layers, 2 heads, FFN inner 256 whatever
d is, dropout 0.5 on hidden states and attention, LayerNorm eps 1e-12, N(0, 0.02) initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ant.baselines.base import Baseline, TaskShape, ids, recbole_encoder
from ant.model.transformer import recbole_init


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d (RecBole's default is 64; the paper runs 256, Table A1 per task)
    layers: int = 2  # Transformer layers
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width, independent of d (RecBole)
    dropout: float = 0.5  # on the input and hidden states (RecBole's hidden_dropout_prob)
    attn_dropout: float = 0.5  # on the attention probabilities (attn_dropout_prob)


class Model(Baseline):
    exact_all_positions = True

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        self.items = nn.Embedding(task.n_items + 1, settings.hidden_size, padding_idx=0)
        self.encoder = recbole_encoder(settings, task.max_history, causal=True)
        self.apply(recbole_init)  # as RecBole, this also draws the padding row (it gets no gradient)

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.items(ids(history)), length)  # padding looks up row 0, never a real token

    def candidates(self) -> torch.Tensor:
        return self.items.weight[1:]
