"""One trainer for every model (ANT and the baselines): the model-specific part is an `Objective`.

    Adam (ant.train.adam: trainable parameters only, no weight decay), learning rate x lr_decay after every epoch,
    validation after every epoch, the best-validation weights kept (strictly better `select` metric; ties keep the
    earlier epoch; select None: no validation, the last epoch kept),
    optional early stopping after `patience` epochs without improvement, bf16 autocast on CUDA, a progress bar.

Exact resume: after every epoch the trainer writes `resume.pt` in the run's folder (atomically; it is not an
output of the rule): model, optimiser (and its learning rate), best weights, history, epoch, and the RNG states
(torch CPU and CUDA, the shuffling generator). A run killed at any point and started again with the same inputs
continues from the last finished epoch and ends with the same weights as an uninterrupted run (on CPU, bit for
bit; CUDA kernels such as embedding backward are not deterministic). A `resume.pt` written for different inputs
or settings (its fingerprint differs) is ignored. `finish()` removes it once the run's outputs are written.

Data-parallel (a `group`, ant.train.distributed): every process runs this loop on its share of each batch; after
each backward the gradients are summed over the processes, so every process takes the same step; the epoch's
losses are summed over them (each is a share of the global mean); only rank 0 writes resume.pt, with every
rank's RNG states, and each rank restores its own.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from ant.device import autocast
from ant.errors import UserError
from ant.io import atomic_path, write_text
from ant.train import distributed
from ant.train.adam import Adam
from ant.train.distributed import Group

log = logging.getLogger(__name__)
RESUME_FILE = "resume.pt"
# the layout of resume.pt; 2: the optimiser is ant.train.adam's (1 held torch.optim's Adam and its scheduler)
RESUME_FORMAT = 2


class Objective(Protocol):
    """What the trainer needs of a model: its module, its batches, its loss and its validation."""

    model: nn.Module
    device: torch.device  # where the model and its batches live

    def batches(self, generator: torch.Generator) -> Iterable[Any]:
        """One epoch of batches, shuffled with `generator`."""

    def steps(self) -> int:
        """Number of batches per epoch (for the progress bar)."""

    def loss(self, batch: Any) -> torch.Tensor | dict[str, torch.Tensor]:
        """The training loss of a batch, or a dict with the total under "loss" and its parts (logged)."""

    def validate(self) -> dict[str, float]:
        """Validation metrics (higher is better for the selection metric); called in eval mode, without grad."""


@dataclass
class TrainResult:
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    stopped_early: bool
    resumed_from: int  # 0 = fresh start
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        objective: Objective,
        *,
        epochs: int,
        lr: float,
        lr_decay: float,
        patience: int | None,
        device: torch.device,
        seed: int,
        out_dir: str | Path,
        fingerprint: str,
        select: str | None = "recall@10",
        progress: bool = True,
        group: Group | None = None,
    ) -> None:
        self.objective, self.model = objective, objective.model
        self.epochs, self.patience, self.device, self.select = epochs, patience, device, select
        self.fingerprint, self.group = fingerprint, group
        self.progress = progress and (group is None or group.main)
        self.resume_path = Path(out_dir) / RESUME_FILE
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ValueError("the model has no trainable parameter")
        self.optimizer = Adam(self.trainable, lr=lr, gamma=lr_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, Any]] = []
        self.best_epoch, self.best_score, self.best_metrics = 0, -math.inf, {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs, self.epoch = 0, 0

    # ------------------------------------------------------------------ training
    def fit(self) -> TrainResult:
        resumed_from = self._resume()
        stopped_early = False
        while self.epoch < self.epochs:
            if self.patience is not None and self.bad_epochs >= self.patience:
                stopped_early = True
                break
            self.epoch += 1
            row = self._train_epoch()
            row |= self._validate() if self.select is not None else self._keep_last()
            self.history.append(row)
            log.info(
                "epoch %d/%d loss %.4f (%.1fs) valid %s%s",
                self.epoch,
                self.epochs,
                row["loss"],
                row["train_seconds"],
                _fmt(
                    {
                        k.removeprefix("valid_"): v
                        for k, v in row.items()
                        if k.startswith("valid_") and k != "valid_seconds"
                    }
                ),
                " *" if row["best"] else "",
            )
            self._save_resume()
        if self.best_state is None:  # zero epochs run in this configuration: nothing to select
            raise ValueError("no epoch was trained")
        self.model.load_state_dict(self.best_state)
        log.info("best epoch %d: %s", self.best_epoch, _fmt(self.best_metrics))
        return TrainResult(
            self.best_epoch, self.best_metrics, self.epoch, stopped_early, resumed_from, list(self.history)
        )

    def _train_epoch(self) -> dict[str, Any]:
        self.model.train()
        start, lr = time.perf_counter(), self.optimizer.lr
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        bar = tqdm(
            total=self.objective.steps(),
            desc=f"epoch {self.epoch}",
            leave=False,
            disable=None if self.progress else True,
        )
        for batch in self.objective.batches(self.generator):
            self.optimizer.zero_grad()
            with autocast(self.device):
                out = self.objective.loss(batch)
            parts = out if isinstance(out, dict) else {"loss": out}
            parts["loss"].backward()
            if self.group is not None:
                distributed.all_reduce_gradients(self.trainable)
            self.optimizer.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float()
            steps += 1
            bar.update()
        bar.close()
        self.optimizer.decay()
        if self.group is not None and sums:  # each process's losses are shares of the global batch's
            sums = dict(zip(sums, distributed.all_reduce_sum(torch.stack(list(sums.values()))), strict=True))
        means = {key: float(value) / max(steps, 1) for key, value in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise UserError(
                f"training diverged at epoch {self.epoch} (loss {means.get('loss')}); lower the learning rate"
            )
        return {"epoch": self.epoch, "lr": lr, **means, "train_seconds": round(time.perf_counter() - start, 3)}

    def _keep_last(self) -> dict[str, Any]:
        """Without validation (pre-training stages that run a fixed budget), the last epoch is the kept one."""
        self.best_epoch = self.epoch
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        return {"best": True}

    def _validate(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.model.eval()
        with torch.no_grad(), autocast(self.device):
            metrics = self.objective.validate()
        score = metrics[self.select]
        improved = score > self.best_score
        if improved:
            self.best_epoch, self.best_score, self.best_metrics = self.epoch, score, dict(metrics)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return {
            **{f"valid_{k}": v for k, v in metrics.items()},
            "valid_seconds": round(time.perf_counter() - start, 3),
            "best": improved,
        }

    # ------------------------------------------------------------------ resume
    def _rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _save_resume(self) -> None:
        rng = self._rng_state()
        if self.group is not None:  # every rank's own draws; the shuffling generator is the same on all
            ranks = distributed.gather_objects(rng)
            if not self.group.main:
                return
            rng = {**rng, "ranks": ranks}
        state = {
            "format": RESUME_FORMAT,
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best": {
                "epoch": self.best_epoch,
                "score": self.best_score,
                "metrics": self.best_metrics,
                "state": self.best_state,
            },
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": {**rng, "shuffle": self.generator.get_state()},
        }
        with atomic_path(self.resume_path) as tmp:
            torch.save(state, tmp)

    def _resume(self) -> int:
        if not self.resume_path.exists():
            return 0
        try:
            state = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file is never trusted: start over
            log.warning("ignoring unreadable %s (%s); starting from scratch", self.resume_path, err)
            return 0
        if state.get("format") != RESUME_FORMAT:
            log.warning(
                "ignoring %s: written by another version of the trainer; starting from scratch", self.resume_path
            )
            return 0
        if state.get("fingerprint") != self.fingerprint:
            log.warning("ignoring %s: written for other inputs or settings; starting from scratch", self.resume_path)
            return 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        best = state["best"]
        self.best_epoch, self.best_score, self.best_metrics, self.best_state = (
            best["epoch"],
            best["score"],
            best["metrics"],
            best["state"],
        )
        self.bad_epochs, self.history, self.epoch = state["bad_epochs"], state["history"], state["epoch"]
        rng = state["rng"]["ranks"][self.group.rank] if self.group is not None else state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(state["rng"]["shuffle"])
        log.info("resumed from %s after epoch %d", self.resume_path, self.epoch)
        return self.epoch

    def finish(self) -> None:
        """Drop the resume checkpoint: call once the run's outputs are written (on rank 0, which wrote it)."""
        if self.group is None or self.group.main:
            self.resume_path.unlink(missing_ok=True)


def history_csv(history: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in history for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def write_history(history: list[dict[str, Any]], path: str | Path) -> None:
    write_text(history_csv(history), path)


def _fmt(metrics: dict[str, float]) -> str:
    """The overall metrics on one log line; per-task ones ("task/metric") are in history.csv."""
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "/" not in k)
