"""`python -m ant train-baseline`: train one baseline on one target task in the one trainer (spec baselines.md).

    python -m ant train-baseline --method sasrec --sequences T=.../sequences.parquet --items T=.../items.parquet \
        [--features T.text=.../manifest.json] --hparams JSON --seed 0 --out-dir results/runs/T/sasrec/default/seed0

The method is an entry of the registry (ant/methods.py) whose module defines `Settings` and `Model`
(ant/baselines/base.py). --hparams' model section is that method's settings, its optim section starts from the
method's preset (`recbole`: no decay, early stop on validation NDCG@10 after 10 epochs, at most 300; `ant`: 100
epochs, decay 0.99, best validation Recall@10). The rows are the task's training prefixes; `train.rows:
all_positions` one causal pass per user where that is exact for the model (`Model.exact_all_positions`),
prefixes otherwise. A method that pre-trains on the target task (S3-Rec) starts from `--pretrained`, the output
of `python -m ant pretrain-baseline`.

Outputs in --out-dir, as for ANT's runs: metrics.json, ranks.parquet, model.safetensors, history.csv.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from ant.baselines.base import Baseline, TaskShape, load_state, save_baseline
from ant.data.split import read_timestamps
from ant.device import autocast, resolve_device
from ant.errors import UserError
from ant.io import write_json
from ant.methods import METHODS, Method, Variant
from ant.model.parts import part_function
from ant.train.batches import Batch, TrainRows
from ant.train.data import Task, load_tasks
from ant.train.evaluate import EvalRows, Evaluation, evaluate
from ant.train.hparams import PRESETS, Hparams, parse_hparams
from ant.train.runs import (
    add_common_arguments,
    fingerprint,
    make_trainer,
    parameter_counts,
    run_record,
    seed_everything,
    write_ranks,
)
from ant.train.strategy import apply_variant
from ant.train.trainer import write_history

log = logging.getLogger(__name__)
BASELINES = [m.name for m in METHODS.values() if m.is_baseline]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=BASELINES, help="the baseline (ant/methods.py)")
    add_preset_argument(parser)
    add_common_arguments(parser)
    parser.add_argument(
        "--variant", default="default", help="the method's variant (UniSRec: scratch, finetune, relearn, finetune_id)"
    )
    parser.add_argument("--pretrained", type=Path, help="the method's pre-trained checkpoint (S3-Rec, UniSRec)")


class BaselineObjective:
    """A baseline's loss on the trainer's batches and its validation through the one evaluator."""

    def __init__(self, model: Baseline, rows: TrainRows, valid: EvalRows, hp: Hparams, device: torch.device) -> None:
        self.model, self.rows, self.valid, self.hp, self.device = model, rows, valid, hp, device
        self.n_items = model.candidates().shape[0]

    def steps(self) -> int:
        return self.rows.steps(self.hp.optim.batch_size)

    def batches(self, generator: torch.Generator):
        return self.rows.batches(self.hp.optim.batch_size, self.device, generator)

    def loss(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.model.loss(batch)

    def validate(self) -> dict[str, float]:
        return self.evaluate(self.valid).flat_metrics()

    def evaluate(self, rows: EvalRows) -> Evaluation:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), autocast(self.device):
            result = evaluate(
                self.model.scores,
                rows,
                self.n_items,
                ks=self.hp.eval.ks,
                exclude_history=self.hp.eval.exclude_history,
                ties=self.hp.eval.ties,
                batch_size=self.hp.train.eval_batch_size,
                device=self.device,
                batch_rows=self.model.eval_batch_rows,
            )
        self.model.train(was_training)
        return result


def add_preset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=[p for p in PRESETS if p != "pretrain"], help="training preset (default: the method's)"
    )


def prepare(
    args: argparse.Namespace, stage: str, pretraining: bool = False
) -> tuple[Method, ModuleType, Hparams, list[Task], TaskShape]:
    """What both baseline commands start from: the method, its settings, its tasks and the shape of its model.

    One target task, or for a pre-training on the auxiliary tasks (UniSRec) several, whose items are laid out one
    task after the other (task t's item i is row offsets[t] + i of one item table, as ANT's pre-training does):
    the shape is then that of the concatenated table, and `Settings.pretrain_modalities()`, where the method has
    it, names the feature stores pre-training reads (UniSRec's word-dropped text)."""
    method = METHODS[args.method]
    module = importlib.import_module(method.module)
    hp = parse_hparams(args.hparams, args.preset or method.preset, module.Settings)
    several = pretraining and method.pretrain == "auxiliary"
    modalities = hp.model.pretrain_modalities() if several and hasattr(hp.model, "pretrain_modalities") else None
    tasks = load_tasks(args.sequences, args.items, args.features, hp.max_history, modalities or method.modalities)
    if len(tasks) != 1 and not several:
        raise UserError(f"{stage} trains on one target task; got {len(tasks)} tasks")
    seed_everything(args.seed, args.threads or hp.train.threads)
    shape = TaskShape(
        n_items=sum(t.n_items for t in tasks),
        n_users=sum(len(t.sequences.user_idx) for t in tasks),
        max_history=hp.max_history,
        features={m: np.concatenate([t.features[m].values for t in tasks]) for m in tasks[0].features},
        # per-interaction times only for a model whose settings read them (CARCA's time6), so no other method pays
        timestamps=read_timestamps(tasks[0].files.sequences, tasks[0].sequences)
        if getattr(hp.model, "context", None) == "time6"
        else None,
    )
    return method, module, hp, tasks, shape


def build_model(module: ModuleType, variant: Variant, hp: Hparams, shape: TaskShape) -> Baseline:
    """A fresh model (seeded by the caller) for `variant`; only a variant with item IDs asks for their table."""
    return module.Model(hp.model, shape, item_ids=True) if variant.item_ids else module.Model(hp.model, shape)


def load_pretrained(
    model: Baseline, module: ModuleType, method: Method, variant: Variant, pretrained: Path | None
) -> None:
    """The variant's parts from the checkpoint, the rest fresh, its frozen parts frozen (ant.train.strategy)."""
    if method.pretrain is None and pretrained is not None:
        raise UserError(f"{method.name} has no pre-training stage; --pretrained does not apply")
    if not variant.load and pretrained is not None:
        raise UserError(f"{method.name} {variant.name} trains from scratch; --pretrained does not apply")
    state = load_state(pretrained, method.name)[0] if variant.load and pretrained is not None else None
    apply_variant(model, variant, part_function(getattr(module, "PARTS", None)), state, pretrained)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    method, module, hp, (task,), shape = prepare(args, "train-baseline")
    if args.variant not in method.variant_names:
        raise UserError(f"{method.name} has no variant {args.variant!r}; known: {', '.join(method.variant_names)}")
    variant = method.variant(args.variant)
    pretrained = args.pretrained
    model = build_model(module, variant, hp, shape)
    load_pretrained(model, module, method, variant, pretrained)
    device = resolve_device(hp.train.device)
    model.to(device)
    layout = hp.train.rows if model.exact_all_positions else "prefixes"
    valid, test = EvalRows.build(task.splits["valid"]), EvalRows.build(task.splits["test"])
    objective = BaselineObjective(model, TrainRows.build(task.splits["train"], layout), valid, hp, device)
    settings = {"method": method.name, "seed": args.seed, "rows": layout, "hparams": hp.to_dict()}
    run_fingerprint = fingerprint("baselines", settings, [task], [pretrained] if pretrained else [])
    trainer = make_trainer(objective, hp, args.seed, args.out_dir, run_fingerprint, args.progress)
    log.info(
        "train %s on %s on %s (%s rows, preset %s): %d parameters",
        method.name,
        task.name,
        device,
        layout,
        args.preset or method.preset,
        parameter_counts(model)["trainable"],
    )
    result = trainer.fit()
    test_eval = objective.evaluate(test)
    out, folder = args.out_dir, method.folder(variant.name, vars(hp.model))
    write_ranks(test.user_idx, test_eval, out / "ranks.parquet")
    save_baseline(model, out / "model.safetensors", method.name, hp.model, {"task": task.name, "variant": folder})
    write_history(result.history, out / "history.csv")
    metrics = {
        "task": task.name,
        "method": method.name,
        "strategy": variant.name,
        "label": variant.label,
        "variant": folder,
        "seed": args.seed,
        "preset": args.preset or method.preset,
        "rows": layout,
        **run_record(task, result, test, test_eval, hp, model, pretrained, device, time.perf_counter() - start),
    }
    write_json(metrics, out / "metrics.json")
    trainer.finish()
    log.info("%s %s test %s", task.name, method.name, " ".join(f"{k} {v:.4f}" for k, v in test_eval.metrics.items()))
    return 0
