"""ANT's two training objectives for the shared Trainer: pre-training (mixed tasks) and adaptation (one task).

Item vectors are computed once per step and shared by the histories and the candidates of that step, so an item
gets the same dropout and routing noise wherever it appears in the step (UniSRec runs its adaptor separately for
histories and candidates; this is the cheaper of two equally valid draws, and identical in evaluation).

Pre-training: the batch's items (histories and targets, all tasks, as rows of the global ItemTable) are encoded
once; loss = in-batch softmax over the batch's targets (duplicates, and a row's own other targets, masked:
ant.train.losses) + align_weight * text-image alignment.
Validation = Recall@10 (and the other metrics) pooled over the validation users of all auxiliary tasks, each
user ranked within its own task's items; the per-task values are logged too.
Adaptation: all items of the task are encoded every step; loss = cross-entropy over all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ant.model.ant import ANT
from ant.model.transformer import last_position
from ant.train.batches import Batch, TrainRows
from ant.train.data import ItemTable
from ant.train.evaluate import EvalRows, Evaluation, Scorer, evaluate, pooled
from ant.train.hparams import Hparams
from ant.train.losses import alignment_loss, in_batch_softmax_loss

ENCODE_CHUNK = 8192  # items per item-encoder call outside training (bounds the [K, n, d_m] head inputs)


@torch.no_grad()
def encode_items(model: ANT, table: ItemTable, rows: slice, with_ids: bool = False) -> torch.Tensor:
    """Vectors of the table rows `rows` in chunks (no grad); with_ids: their ID embedding uses the local index."""
    out = []
    for lo in range(rows.start, rows.stop, ENCODE_CHUNK):
        idx = torch.arange(lo, min(lo + ENCODE_CHUNK, rows.stop), device=next(model.parameters()).device)
        v, _ = model.item_vectors(table.gather(idx), idx - rows.start if with_ids else None)
        out.append(v)
    return torch.cat(out)


def ant_scorer(model: ANT, item_vectors: torch.Tensor) -> Scorer:
    """Scores of histories (task-local item_idx) against all items of their task."""

    def scorer(history: torch.Tensor, length: torch.Tensor, user: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        hidden = model.user_states(item_vectors[history.clamp(min=0)], length)
        return model.logits(last_position(hidden, length), item_vectors)

    return scorer


def evaluate_task(
    model: ANT, table: ItemTable, t: int, rows: EvalRows, hp: Hparams, device: torch.device
) -> Evaluation:
    was_training = model.training
    model.eval()
    vectors = encode_items(model, table, table.task_slice(t), with_ids=model.item_ids is not None)
    result = evaluate(
        ant_scorer(model, vectors),
        rows,
        len(vectors),
        ks=hp.eval.ks,
        exclude_history=hp.eval.exclude_history,
        ties=hp.eval.ties,
        batch_size=hp.train.eval_batch_size,
        device=device,
    )
    model.train(was_training)
    return result


class PretrainObjective:
    def __init__(
        self,
        model: ANT,
        table: ItemTable,
        task_names: list[str],
        rows: TrainRows,
        valid: dict[str, EvalRows],
        hp: Hparams,
        device: torch.device,
    ) -> None:
        self.model, self.table, self.rows, self.valid, self.hp, self.device = model, table, rows, valid, hp, device
        self.task_names = list(task_names)  # task t of the table is task_names[t]
        self.align = hp.optim.align_weight > 0 and {"text", "image"} <= set(model.config.modalities)

    def steps(self) -> int:
        return self.rows.steps(self.hp.optim.batch_size)

    def batches(self, generator: torch.Generator):
        return self.rows.batches(self.hp.optim.batch_size, self.device, generator)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        needed = torch.cat([batch.history.flatten(), batch.target.flatten()]).clamp(min=0)
        unique = torch.unique(needed)  # sorted: a row's position is found by searchsorted
        v, parts = self.model.item_vectors(self.table.gather(unique))
        history = v[torch.searchsorted(unique, batch.history.clamp(min=0))]
        states, target, rows = batch.select(self.model.user_states(history, batch.length))
        at = torch.searchsorted(unique, target)
        rec = in_batch_softmax_loss(self.model.logits(states, v[at]), target, rows)
        if not self.align:
            return {"loss": rec, "rec": rec}
        keep = self.table.present["image"][target] & self.table.present["text"][target]
        align = alignment_loss(self.model.logits(parts["image"][at], parts["text"][at]), target, keep, rows)
        return {"loss": rec + self.hp.optim.align_weight * align, "rec": rec, "align": align}

    def validate(self) -> dict[str, float]:
        return self.metrics(self.evaluate(self.valid))

    def evaluate(self, rows: dict[str, EvalRows]) -> dict[str, Evaluation]:
        """Each task's evaluation (its users ranked within its own items)."""
        return {
            name: evaluate_task(self.model, self.table, self.task_names.index(name), task_rows, self.hp, self.device)
            for name, task_rows in rows.items()
        }

    def metrics(self, per_task: dict[str, Evaluation]) -> dict[str, float]:
        """Pooled over the users of all tasks under both history rules, plus each task's under the chosen one."""
        out = pooled(list(per_task.values()), self.hp.eval.ks).flat_metrics()
        for name, result in per_task.items():
            out |= {f"{name}/{k}": v for k, v in result.metrics.items()}
        return out


class AdaptObjective:
    def __init__(
        self, model: ANT, table: ItemTable, rows: TrainRows, valid: EvalRows, hp: Hparams, device: torch.device
    ) -> None:
        self.model, self.table, self.rows, self.valid, self.hp, self.device = model, table, rows, valid, hp, device
        self.item_idx = torch.arange(table.n_items, device=device) if model.item_ids is not None else None

    def steps(self) -> int:
        return self.rows.steps(self.hp.optim.batch_size)

    def batches(self, generator: torch.Generator):
        return self.rows.batches(self.hp.optim.batch_size, self.device, generator)

    def loss(self, batch: Batch) -> torch.Tensor:
        v, _ = self.model.item_vectors(self.table.features, self.item_idx)
        hidden = self.model.user_states(v[batch.history.clamp(min=0)], batch.length)
        states, target, _ = batch.select(hidden)
        return F.cross_entropy(self.model.logits(states, v), target)

    def validate(self) -> dict[str, float]:
        return evaluate_task(self.model, self.table, 0, self.valid, self.hp, self.device).flat_metrics()
