"""NPE (Nguyen & Takasu, IJCAI'18) as RecBole v1.1.1 runs it (spec baselines.md section 3).

    U   users n_users x d;  E  item ids (N + 1) x d, NO padding index (row 0 is an ordinary, trainable row)
    s   = Dropout(ReLU(U[u])) + Dropout(ReLU(sum_{t < L} E[x_t]))      L = max_history (50), x_t = 0 at padding
    score(i) = s . ReLU(E[i])                                         candidate vectors are non-negative
    loss: next-item cross-entropy over the N real items (RecBole's BPR branch is unused)

No attention, no positions: an order-invariant bag of the history plus a user vector. RecBole pads every history
to L columns and, without a padding index, its sum includes (L - len) E[0]: a trainable hidden length feature
(`sum_padding`, spec section 3). It is added here as that term, (L - len) E[0], so cutting a batch's trailing
padding changes nothing, and so running sums give every prefix of a history at once: the state at position j is
the prefix row of j + 1 items, padding term for that length included, which makes `train.rows: all_positions`
exact (spec section 2.6; the windows beyond L stay prefix rows, ant.train.batches). Prefix rows and the scorer
need one state per row, so `loss` (for prefix rows) and `scores` sum the whole history instead.

Spec deviations, recorded: RecBole's unused second item table (`embedding_seq_item`) is omitted; the user table
has the task's n_users rows (RecBole adds a padding user row, which only nudges the Xavier std); the padding row
E[0] is never a candidate (spec section 2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ant.baselines.base import Baseline, TaskShape, ids
from ant.model.dropout import dropout
from ant.model.transformer import right_padded
from ant.train.batches import Batch


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 256  # d, RecBole's embedding_size (its default is 64; the paper runs 256, Table A1 per task)
    dropout: float = 0.3  # RecBole's dropout_prob, on the user vector and on the history sum (separate masks)
    sum_padding: bool = True  # upstream: the history sum includes (L - len) E[0]; False sums the real items only


class Model(Baseline):
    exact_all_positions = True  # running sums: position j is exactly the prefix row of j + 1 items

    def __init__(self, settings: Settings, task: TaskShape) -> None:
        super().__init__()
        self.settings = settings
        self.max_history = task.max_history  # L: the columns RecBole pads every history to
        self.users = nn.Embedding(task.n_users, settings.hidden_size)
        self.items = nn.Embedding(task.n_items + 1, settings.hidden_size)  # no padding_idx (spec section 3)
        for table in (self.users, self.items):
            nn.init.xavier_normal_(table.weight)  # RecBole's xavier_normal_initialization, on every embedding

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """[B, T, d]: at position j the state of the prefix history[:, :j + 1] (positions >= length: unused)."""
        items = self.real_items(history, length)  # [B, T, d]
        count = torch.arange(1, history.shape[1] + 1, device=history.device)  # [T]: items in each prefix
        return self.state(items.cumsum(dim=1), count, user.unsqueeze(1))  # running sums: every prefix at once

    def scores(
        self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The evaluator's scorer, from the whole history's sum alone (= encode at len - 1, without the rest)."""
        return self.logits(self.state(self.real_items(history, length).sum(dim=1), length, user))  # [B, N]

    def loss(self, batch: Batch) -> torch.Tensor:
        if batch.target.dim() == 2:  # all_positions rows: the running sums of `encode`
            return super().loss(batch)
        state = self.state(self.real_items(batch.history, batch.length).sum(dim=1), batch.length, batch.user)
        return F.cross_entropy(self.logits(state), batch.target)  # prefix rows: only each row's last state

    def real_items(self, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """E[x_t] at the real positions, 0 at padding: [B, T] -> [B, T, d]."""
        if history.shape[1] > self.max_history:
            raise ValueError(f"a history of {history.shape[1]} positions is longer than max_history {self.max_history}")
        return self.items(ids(history)) * right_padded(length, history.shape[1]).unsqueeze(-1)

    def state(self, bag: torch.Tensor, count: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """s = Dropout(ReLU(U[u])) + Dropout(ReLU(bag + (L - count) E[0])) for sums `bag` [..., d] of `count` [...]
        real items; `user` broadcasts against count ([B] with [B], or [B, 1] with [T])."""
        if self.settings.sum_padding:
            # a history of `count` items padded to L columns adds (L - count) E[0] (spec section 3)
            bag = bag + (self.max_history - count).to(bag.dtype).unsqueeze(-1) * self.items.weight[0]
        # one user vector per state, dropped out independently, as each prefix row's would be
        person = F.relu(self.users(user)).expand_as(bag)  # [..., d]
        p, training = self.settings.dropout, self.training
        return dropout(person, p, training) + dropout(F.relu(bag), p, training)

    def candidates(self) -> torch.Tensor:
        return F.relu(self.items.weight[1:])  # [N, d]: ReLU(E[i]) for the real items, never E[0]
