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

import torch

from ant.baselines.base import Baseline, TaskShape, load_state, save_baseline
from ant.device import autocast, resolve_device
from ant.errors import UserError
from ant.io import write_json
from ant.methods import METHODS, Method
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
from ant.train.trainer import write_history

log = logging.getLogger(__name__)
BASELINES = [m.name for m in METHODS.values() if m.is_baseline]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=BASELINES, help="the baseline (ant/methods.py)")
    add_preset_argument(parser)
    add_common_arguments(parser)
    parser.add_argument("--pretrained", type=Path, help="the method's pre-trained checkpoint (S3-Rec)")


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


def prepare(args: argparse.Namespace, stage: str) -> tuple[Method, ModuleType, Hparams, Task, Baseline]:
    """What both baseline commands start from: the method, its settings, the one task and a fresh model."""
    method = METHODS[args.method]
    module = importlib.import_module(method.module)
    hp = parse_hparams(args.hparams, args.preset or method.preset, module.Settings)
    tasks = load_tasks(args.sequences, args.items, args.features, hp.max_history, method.modalities)
    if len(tasks) != 1:
        raise UserError(f"{stage} trains on one target task; got {len(tasks)} tasks")
    task = tasks[0]
    seed_everything(args.seed, args.threads or hp.train.threads)
    shape = TaskShape(
        n_items=task.n_items,
        n_users=len(task.sequences.user_idx),
        max_history=hp.max_history,
        features={m: f.values for m, f in task.features.items()},
    )
    return method, module, hp, task, module.Model(hp.model, shape)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    method, _, hp, task, model = prepare(args, "train-baseline")
    pretrained = args.pretrained
    if method.pretrain == "target":
        if pretrained is None:
            raise UserError(f"{method.name} fine-tunes its pre-trained model: pass --pretrained (pretrain-baseline)")
        state, _ = load_state(pretrained, method.name)
        model.load_state_dict(state)  # S3-Rec: load all, train all (spec section 7)
    elif pretrained is not None:
        raise UserError(f"{method.name} has no pre-training stage; --pretrained does not apply")
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
    out, variant = args.out_dir, method.variant_of(vars(hp.model))
    write_ranks(test.user_idx, test_eval, out / "ranks.parquet")
    save_baseline(model, out / "model.safetensors", method.name, hp.model, {"task": task.name, "variant": variant})
    write_history(result.history, out / "history.csv")
    metrics = {
        "task": task.name,
        "method": method.name,
        "strategy": variant,
        "label": method.title,
        "variant": variant,
        "seed": args.seed,
        "preset": args.preset or method.preset,
        "rows": layout,
        **run_record(task, result, test, test_eval, hp, model, pretrained, device, time.perf_counter() - start),
    }
    write_json(metrics, out / "metrics.json")
    trainer.finish()
    log.info("%s %s test %s", task.name, method.name, " ".join(f"{k} {v:.4f}" for k, v in test_eval.metrics.items()))
    return 0
