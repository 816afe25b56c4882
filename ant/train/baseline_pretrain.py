"""`python -m ant pretrain-baseline`: a baseline's own pre-training, whose checkpoint `train-baseline --pretrained`
fine-tunes: S3-Rec on the target task (spec baselines.md section 7), UniSRec on the auxiliary tasks (section 8).

The method's module provides `Model.pretrain_loss(batch)` (its pretext or contrastive losses, with augmentations
drawn from torch's seeded generator) and `Settings.pretrain_epochs` / `Settings.pretrain_lr` (None: the method's
lr) / optionally `Settings.pretrain_batch_size` (None or absent: the method's batch size). The rows are the
tasks' training prefixes, shuffled together; several tasks share one item table (task t's item i is row
offsets[t] + i, as in ANT's pre-training), so an in-batch loss spans every task and never confuses two tasks'
items. The stage runs a fixed number of epochs without validation and keeps the last weights (spec section 2.4),
with the trainer's exact resume after a kill, bf16 on CUDA and history.csv.

Outputs in --out-dir: model.safetensors, metrics.json (the stage's settings and losses), history.csv.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace

import numpy as np
import torch

from ant.baselines.base import save_baseline
from ant.device import resolve_device
from ant.errors import UserError
from ant.io import write_json
from ant.methods import METHODS
from ant.train.baseline import add_preset_argument, prepare
from ant.train.batches import Batch, TrainRows
from ant.train.runs import add_common_arguments, fingerprint, make_trainer, parameter_counts
from ant.train.trainer import write_history

log = logging.getLogger(__name__)
PRETRAINING = [m.name for m in METHODS.values() if m.is_baseline and m.pretrain is not None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=PRETRAINING, help="the baseline (ant/methods.py)")
    add_preset_argument(parser)
    add_common_arguments(parser)


class PretextObjective:
    """The pre-training losses of a baseline, no validation (the trainer keeps the last epoch)."""

    def __init__(self, model: torch.nn.Module, rows: TrainRows, batch_size: int, device: torch.device) -> None:
        self.model, self.rows, self.batch_size, self.device = model, rows, batch_size, device

    def steps(self) -> int:
        return self.rows.steps(self.batch_size)

    def batches(self, generator: torch.Generator):
        return self.rows.batches(self.batch_size, self.device, generator)

    def loss(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.model.pretrain_loss(batch)

    def validate(self) -> dict[str, float]:  # never called: select is None
        return {}


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    method, module, hp, tasks, shape = prepare(args, "pretrain-baseline", pretraining=True)
    model = module.Model(hp.model, shape)
    settings = hp.model
    lr = settings.pretrain_lr if settings.pretrain_lr is not None else hp.optim.lr
    batch_size = getattr(settings, "pretrain_batch_size", None) or hp.optim.batch_size
    stage = replace(
        hp.optim,
        epochs=settings.pretrain_epochs,
        lr=lr,
        batch_size=batch_size,
        lr_decay=1.0,
        select=None,
        patience=None,
    )
    hp = replace(hp, optim=stage)
    device = resolve_device(hp.train.device)
    model.to(device)
    offsets = np.cumsum([0] + [t.n_items for t in tasks])[:-1]
    # the losses are built per prefix row (pretext tasks, in-batch negatives): never all_positions
    parts = [TrainRows.build(t.splits["train"], "prefixes", int(o)) for t, o in zip(tasks, offsets, strict=True)]
    rows = TrainRows.concat(parts)
    names = [t.name for t in tasks]
    if len(rows) == 0:
        raise UserError(f"{', '.join(names)}: no training rows to pre-train on")
    objective = PretextObjective(model, rows, hp.optim.batch_size, device)
    run_settings = {"method": method.name, "seed": args.seed, "hparams": hp.to_dict()}
    trainer = make_trainer(
        objective, hp, args.seed, args.out_dir, fingerprint("baseline_pretrain", run_settings, tasks), args.progress
    )
    log.info(
        "pre-train %s on %s on %s for %d epochs: %d parameters",
        method.name,
        ", ".join(names),
        device,
        hp.optim.epochs,
        parameter_counts(model)["trainable"],
    )
    result = trainer.fit()
    out = args.out_dir
    save_baseline(
        model, out / "model.safetensors", method.name, settings, {"tasks": json.dumps(names), "stage": "pretrain"}
    )
    write_history(result.history, out / "history.csv")
    last = result.history[-1] if result.history else {}
    write_json(
        {
            "stage": "pretrain",
            "method": method.name,
            "tasks": names,
            "items": {t.name: t.n_items for t in tasks},
            "seed": args.seed,
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from,
            "last_epoch_losses": {k: v for k, v in last.items() if k not in ("epoch", "lr", "train_seconds", "best")},
            "training_rows": len(rows),
            "parameters": parameter_counts(model),
            "device": str(device),
            "seconds": round(time.perf_counter() - start, 2),
            "hparams": hp.to_dict(),
        },
        out / "metrics.json",
    )
    trainer.finish()
    return 0
