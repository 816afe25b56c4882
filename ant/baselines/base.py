"""What a baseline is to the one trainer and evaluator (spec baselines.md section 12), and what they share.

A baseline module defines a `Settings` dataclass (its config entry under `baselines.<method>`, a comment on every
field, the schema's defaults) and a `Model(settings, task)` subclass of `Baseline`. Its ids follow RecBole: item
id = item_idx + 1, row 0 of an id table is padding (and a mask token may follow the N items), but padding and mask
rows are never candidates: every softmax and every ranking runs over the N real items (spec section 2.3).

A model provides
  - `encode(history, length, user)`: hidden states [B, T, d], the state at position j predicting the item after
    history[:, j] (for a causal model, exactly the prefix row's state, so `train.rows: all_positions` is exact
    when `exact_all_positions`);
  - `candidates()`: the [N, d] vectors of the N items that states are scored against (dot product);
  - and inherits next-item cross-entropy (`loss`) and the evaluation scorer (`scores`) built from those two, or
    overrides them (BERT4Rec's cloze loss; its `encode` returns T + 1 columns, the mask token appended at len).
Random draws (masks, negatives, augmentations) come from torch's global generator inside `loss`, which the
trainer seeds and saves in resume.pt: the spec's `batch_transform(batch, rng)` is that, without a separate hook.
Histories arrive as task-local item_idx with PAD = -1 (ant.train.batches); `ids()` turns them into RecBole ids.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ant.errors import UserError
from ant.model.files import load_weights, read_metadata, save_weights
from ant.model.transformer import RECBOLE_EPS, SequenceEncoder, last_position
from ant.train.batches import Batch

FORMAT = "ant-baseline/1"


@dataclass(frozen=True)
class TaskShape:
    """What a baseline is built for: the task's sizes and, for feature-aware models, its frozen features."""

    n_items: int
    n_users: int
    max_history: int
    features: dict[str, np.ndarray]  # modality -> float32 [N, d_m] in item_idx order (the method's modalities)
    # (offsets int64 [n_users + 1], seconds int64 [interactions]): task-local user u's interaction times, in sequence
    # order, are seconds[offsets[u]:offsets[u + 1]] (ant.data.split.read_timestamps); only filled for a model that
    # reads them (CARCA's time6 context), None otherwise
    timestamps: tuple[np.ndarray, np.ndarray] | None = None


def ids(history: torch.Tensor) -> torch.Tensor:
    """Task-local item_idx with PAD = -1 -> RecBole item ids, 0 = padding."""
    return history + 1


class Baseline(nn.Module, metaclass=abc.ABCMeta):
    exact_all_positions: ClassVar[bool] = False  # one causal pass gives every prefix row's state (spec 2.6)
    # evaluate in batches of exactly this many rows, in row order: for a model whose scores depend on the other
    # rows of the batch (NOVA's upstream mask), as its reference evaluated; None: any batching (the evaluator's)
    eval_batch_rows: ClassVar[int | None] = None

    @abc.abstractmethod
    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, T, d] of histories [B, T] (item_idx, PAD = -1), lengths [B] and users [B]."""

    @abc.abstractmethod
    def candidates(self) -> torch.Tensor:
        """[N, d]: what a state is scored against, for the N real items in item_idx order."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """Next-item cross-entropy over the N real items, at every position of the batch that has a target."""
        states, target, _ = batch.select(self.encode(batch.history, batch.length, batch.user))
        return F.cross_entropy(self.logits(states), target)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """states [M, d] -> [M, N] dot products with every real item, in float32 even under autocast."""
        with torch.autocast(states.device.type, enabled=False):
            return states.float() @ self.candidates().float().T

    def evaluation_cached(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """compute(), or its last result while evaluating: in eval mode without grad, as long as no parameter or
        buffer has changed (same storage, same in-place version counter) and autocast is as it was. For candidate
        tables computed by a network (UniSRec's MoE, NOVA's fusion), which one evaluation would otherwise recompute
        for every batch of users; in training they are recomputed on every call (their dropout, their gradient)."""
        if self.training or torch.is_grad_enabled():
            return compute()
        tensors = [*self.parameters(), *self.buffers()]
        device = tensors[0].device.type if tensors else "cpu"
        key = (torch.is_autocast_enabled(device), *((t.data_ptr(), t._version) for t in tensors))
        cache = self.__dict__.get("_evaluation_cache")
        if cache is None or cache[0] != key:
            cache = (key, compute())
            self.__dict__["_evaluation_cache"] = cache  # a plain attribute: never a registered buffer or state
        return cache[1]

    def scores(
        self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The evaluator's scorer: each row's state at its last real position against all N items."""
        return self.logits(last_position(self.encode(history, length, user), length))


TEXT_TABLES = ("upstream", "features")


def text_table(task: TaskShape, which: str, std: float = 0.02) -> torch.Tensor:
    """The frozen text table of UniSRec's FDSA and S3-Rec, in id order ([N + 1, d_text], row 0 padding).

    "upstream": UniSRec's baselines build the model's frozen copy of the BERT table (`plm_embedding`, an
    nn.Embedding with requires_grad False) *before* `self.apply(self._init_weights)`, which re-draws every
    Embedding N(0, 0.02): the models train on a frozen random table, never on the text (found by
    benchmarks/recbole_crosscheck.py; the paper's numbers come from this). "features": the BERT features, a zero
    row 0 in front. Drawn from torch's generator, seeded before the model is built, so a rebuilt model (resume,
    fine-tuning) has the same table without storing it.
    """
    if "text" not in task.features:
        raise ValueError("this model reads the text features: the task has none")
    text = torch.as_tensor(task.features["text"], dtype=torch.float32)  # [N, d_text] in item_idx order
    if which == "upstream":
        return torch.randn(text.shape[0] + 1, text.shape[1]) * std
    if which != "features":
        raise ValueError(f"text_table must be one of {', '.join(TEXT_TABLES)}, not {which!r}")
    return torch.cat([text.new_zeros(1, text.shape[1]), text])


def recbole_encoder(settings: Any, max_length: int, causal: bool) -> SequenceEncoder:
    """RecBole's Transformer (eps 1e-12) from a baseline's settings: hidden_size, layers, attention_heads,
    inner_size, dropout, attn_dropout."""
    return SequenceEncoder(
        settings.hidden_size,
        max_length,
        settings.layers,
        settings.attention_heads,
        settings.inner_size,
        settings.dropout,
        settings.attn_dropout,
        eps=RECBOLE_EPS,
        causal=causal,
    )


def save_baseline(model: Baseline, path: str | Path, method: str, settings: Any, metadata: dict[str, str]) -> None:
    meta = {"method": method, "settings": json.dumps(asdict(settings), sort_keys=True), **metadata}
    save_weights(model, path, FORMAT, meta)


def load_state(path: str | Path, method: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and settings of a `method` file (e.g. S3-Rec's pre-trained checkpoint), checked."""
    meta = read_metadata(path, FORMAT, f"a {method} model")
    if meta.get("method") != method:
        raise UserError(f"{path} holds a {meta.get('method')} model, not {method}")
    return load_weights(path), json.loads(meta["settings"])
