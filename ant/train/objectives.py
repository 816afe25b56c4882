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

Both encode a batch's users in groups of similar history length when train.length_groups is on
(ant.train.batches `by_length`): the same states as one padded pass, for a fraction of the padded work (in
training the dropout masks are drawn over the smaller layout: the same distribution, other draws). Pre-training
takes its distinct items from the batch, found on the host. With a process group (ant.train.distributed) the
pre-training loss is the share's part of the global batch's, against the global batch's candidates. With one
target per row (prefixes) only each row's last position is computed in the last Transformer layer
(ANT.user_vectors: the same states). Both draw their dropout masks as train.dropout_rng says (ant.model.dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ant.model.ant import ANT
from ant.model.dropout import draws
from ant.train.batches import Batch, TrainRows
from ant.train.data import ItemTable
from ant.train.distributed import Group, gather_columns, gather_evaluation, shard_rows
from ant.train.evaluate import EvalRows, Evaluation, Scorer, evaluate, pooled
from ant.train.hparams import Hparams
from ant.train.losses import Columns, alignment_loss, in_batch_softmax_loss

ENCODE_CHUNK = 8192  # items per item-encoder call outside training (bounds the [K, n, d_m] head inputs)
# train.length_groups: a group of a batch's rows gets a user-encoder pass of its own where that saves this many
# padded floats (cells x hidden size): on the CPU the padding's work is what counts (a pass costs little more),
# on a GPU the launches of one more pass cost more than the padding of a paper-sized batch (26 M floats)
SPLIT_FLOATS = {"cpu": 1 << 16, "cuda": 1 << 26}


def length_groups(hp: Hparams, model: ANT, device: torch.device) -> int | None:
    """TrainRows.batches' by_length for ANT: the padded cells a group's own pass must save (None: off)."""
    if not hp.train.length_groups:
        return None
    return SPLIT_FLOATS.get(device.type, SPLIT_FLOATS["cpu"]) // model.config.hidden_size


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
        return model.logits(model.user_vectors(item_vectors[history.clamp(min=0)], length), item_vectors)

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


def user_states(model: ANT, batch: Batch, item_vectors: torch.Tensor, at: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Batch.select of the user states of `batch`, whose history item j is item_vectors[at[j]] (at [B, T]),
    encoded group by group (Batch.groups) with only each group's columns looked up. With one target per row
    (prefixes) only each row's last position is read, so only it is computed in the last layer (ANT.user_vectors)."""

    def history(rows: slice, steps: int) -> torch.Tensor:  # index_select: its backward is a fast index_add
        index = at[rows, :steps]
        return item_vectors.index_select(0, index.reshape(-1)).view(*index.shape, -1)

    def encode(rows: slice, steps: int) -> torch.Tensor:
        return model.user_states(history(rows, steps), batch.length[rows])

    def encode_last(rows: slice, steps: int) -> torch.Tensor:
        return model.user_vectors(history(rows, steps), batch.length[rows])

    if len(batch) == 0:  # a data-parallel share of a last batch smaller than the processes
        none = batch.length.new_zeros(0)
        return item_vectors.new_zeros(0, item_vectors.shape[1]), none, none
    return batch.last_states(encode_last) if batch.target.dim() == 1 else batch.states(encode)


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
        group: Group | None = None,
    ) -> None:
        self.model, self.table, self.rows, self.valid, self.hp, self.device = model, table, rows, valid, hp, device
        self.task_names = list(task_names)  # task t of the table is task_names[t]
        self.align = hp.optim.align_weight > 0 and {"text", "image"} <= set(model.config.modalities)
        self.group = group  # data-parallel: this process's share of every batch; None: one process

    def steps(self) -> int:
        return self.rows.steps(self.hp.optim.batch_size)

    def batches(self, generator: torch.Generator):
        part = (self.group.rank, self.group.size) if self.group is not None else (0, 1)
        return self.rows.batches(
            self.hp.optim.batch_size,
            self.device,
            generator,
            by_length=length_groups(self.hp, self.model, self.device),
            distinct=True,
            part=part,
        )

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        with draws(self.hp.train.dropout_rng):
            return self._loss(batch)

    def _loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        unique = batch.items  # sorted: a row's position is found by searchsorted
        if unique is None:  # a batch made elsewhere (tests, benchmarks)
            unique = torch.unique(torch.cat([batch.history.flatten(), batch.target.flatten()]).clamp(min=0))
        v, parts = self.model.item_vectors(self.table.gather(unique))
        states, target, rows = user_states(self.model, batch, v, torch.searchsorted(unique, batch.history.clamp(min=0)))
        at = torch.searchsorted(unique, target)
        if self.group is not None:
            return self._share_loss(batch, states, target, rows + batch.first_row, v.index_select(0, at), parts, at)
        rec = in_batch_softmax_loss(self.model.logits(states, v.index_select(0, at)), target, rows)
        if not self.align:
            return {"loss": rec, "rec": rec}
        keep = self.table.present["image"][target] & self.table.present["text"][target]
        image, text = (parts[m].index_select(0, at) for m in ("image", "text"))
        align = alignment_loss(self.model.logits(image, text), target, keep, rows)
        return {"loss": rec + self.hp.optim.align_weight * align, "rec": rec, "align": align}

    def _share_loss(
        self,
        batch: Batch,
        states: torch.Tensor,
        target: torch.Tensor,
        rows: torch.Tensor,
        target_vectors: torch.Tensor,
        parts: dict[str, torch.Tensor],
        at: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """This process's part of the global batch's losses, its rows against all shares' targets."""
        keep = self.table.present["image"][target] & self.table.present["text"][target]
        d = target_vectors.shape[1]
        text = parts["text"].index_select(0, at)
        local = torch.cat([target_vectors, text], 1) if self.align else target_vectors  # [M_r, (2)d]
        vectors, meta = gather_columns(local, torch.stack([target, rows, keep.long()], 1), batch.share_targets)
        width = max(batch.share_targets)
        own = self.group.rank * width + torch.arange(len(target), device=target.device)
        columns = Columns(meta[:, 0], meta[:, 1], own, meta[:, 2] == 1, sum(batch.share_targets))
        rec = in_batch_softmax_loss(self.model.logits(states, vectors[:, :d]), target, rows, columns)
        if not self.align:
            return {"loss": rec, "rec": rec}
        logits = self.model.logits(parts["image"].index_select(0, at), vectors[:, d:])
        align = alignment_loss(logits, target, keep, rows, columns)
        return {"loss": rec + self.hp.optim.align_weight * align, "rec": rec, "align": align}

    def validate(self) -> dict[str, float]:
        return self.metrics(self.evaluate(self.valid))

    def evaluate(self, rows: dict[str, EvalRows]) -> dict[str, Evaluation]:
        """Each task's evaluation (its users ranked within its own items); with a process group each process
        ranks a shard of the users and all get the whole evaluation."""
        out = {}
        for name, task_rows in rows.items():
            t = self.task_names.index(name)
            shard = evaluate_task(self.model, self.table, t, shard_rows(task_rows, self.group), self.hp, self.device)
            out[name] = gather_evaluation(shard, self.group, self.hp.eval.ks)
        return out

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
        by_length = length_groups(self.hp, self.model, self.device)
        return self.rows.batches(self.hp.optim.batch_size, self.device, generator, by_length=by_length)

    def loss(self, batch: Batch) -> torch.Tensor:
        with draws(self.hp.train.dropout_rng):
            v, _ = self.model.item_vectors(self.table.features, self.item_idx)
            states, target, _ = user_states(self.model, batch, v, batch.history.clamp(min=0))
            return F.cross_entropy(self.model.logits(states, v), target)

    def validate(self) -> dict[str, float]:
        return evaluate_task(self.model, self.table, 0, self.valid, self.hp, self.device).flat_metrics()
