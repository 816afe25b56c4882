"""`python -m ant pretrain`: pre-train ANT on the auxiliary tasks (spec sections 5 and 7).

All tasks' training rows are mixed and shuffled together; each task keeps its own items, laid out one after the
other in a global item table (task t's item i is row offsets[t] + i), so an in-batch softmax spans the batch's
targets from every task and two tasks' items are never confused. Loss = in-batch softmax (duplicate targets
masked) + align_weight * text-image alignment (items without an image left out). The kept epoch is the one with
the best Recall@10 pooled over all auxiliary validation users, each ranked within its own task's items (a
micro-average: a task weighs by its users, as "Recall@10 over the auxiliary tasks' validation rows" says), under the
configured history rule (eval.exclude_history); both rules' pooled metrics and every task's own are in history.csv
and metrics.json.

Outputs in --out-dir: model.safetensors, metrics.json (valid and test, pooled and per task), history.csv.

train.gpus N > 1: the command starts itself again as N processes under torchrun (--threads is then the job's
total, split between them), which pre-train data-parallel on the same global batches (ant.train.distributed);
started by torchrun directly, it runs as one of its processes and train.gpus is the number torchrun started.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, replace

from ant.device import autocast, resolve_device
from ant.io import write_json
from ant.model.ant import ANT, ANTConfig, save_model
from ant.train import distributed
from ant.train.batches import TrainRows
from ant.train.data import ItemTable, load_tasks, parse_task_args
from ant.train.evaluate import EvalRows, history_rule
from ant.train.hparams import parse_hparams
from ant.train.objectives import PretrainObjective
from ant.train.runs import (
    add_common_arguments,
    common_argv,
    fingerprint,
    make_trainer,
    metric_sections,
    parameter_counts,
    seed_everything,
)
from ant.train.trainer import write_history

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    hp = parse_hparams(args.hparams, "pretrain")
    threads = args.threads or hp.train.threads
    if hp.train.gpus > 1 and not distributed.launched():
        parse_task_args(args.sequences, args.items, args.features)  # a bad flag: one line here, not N tracebacks
        return distributed.launch(["pretrain", *common_argv(args, max(1, threads // hp.train.gpus))], hp.train.gpus)
    group = distributed.from_env(hp.train.device)
    if distributed.launched():  # the settings say how many processes ran (the fingerprint, metrics.json)
        hp = replace(hp, train=replace(hp.train, gpus=group.size if group else 1))
    tasks = load_tasks(args.sequences, args.items, args.features, hp.max_history)
    names = [t.name for t in tasks]
    device = group.device if group else resolve_device(hp.train.device)
    seed_everything(args.seed, threads)

    model = ANT(ANTConfig(dims=tasks[0].dims, max_history=hp.max_history, **asdict(hp.model))).to(device)
    distributed.seed_rank(args.seed, group)
    table = ItemTable.from_tasks(tasks, device)
    rows = TrainRows.concat(
        [TrainRows.build(t.splits["train"], hp.train.rows, table.offsets[i]) for i, t in enumerate(tasks)]
    )
    valid = {t.name: EvalRows.build(t.splits["valid"]) for t in tasks}
    objective = PretrainObjective(model, table, names, rows, valid, hp, device, group)
    settings = {"seed": args.seed, "hparams": hp.to_dict()}
    trainer = make_trainer(
        objective, hp, args.seed, args.out_dir, fingerprint("pretrain", settings, tasks), args.progress, group
    )
    log.info(
        "pre-train on %s (%d training targets) on %s%s: %d parameters",
        ", ".join(names),
        rows.n_targets,
        device,
        f" and {group.size - 1} more process(es)" if group else "",
        parameter_counts(model)["trainable"],
    )
    result = trainer.fit()
    with autocast(device):
        test = objective.evaluate({t.name: EvalRows.build(t.splits["test"]) for t in tasks})
    if group is not None and not group.main:  # rank 0 writes the outputs
        distributed.close(group)
        return 0
    out, rule = args.out_dir, history_rule(hp.eval.exclude_history)
    save_model(model, out / "model.safetensors", {"tasks": json.dumps(names), "seed": str(args.seed)})
    write_history(result.history, out / "history.csv")
    write_json(
        {
            "stage": "pretrain",
            "method": "ant",
            "tasks": names,
            "seed": args.seed,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from,
            "selection": f"recall@10 pooled over all auxiliary validation users, {rule}",
            "history_rule": rule,
            "tie_rule": hp.eval.ties,
            **metric_sections("valid", result.best_metrics),
            **metric_sections("test", objective.metrics(test)),
            "items": {t.name: t.n_items for t in tasks},
            "training_targets": rows.n_targets,
            "parameters": parameter_counts(model),
            "device": str(device),
            "processes": group.size if group else 1,
            "seconds": round(time.perf_counter() - start, 2),
            "hparams": hp.to_dict(),
        },
        out / "metrics.json",
    )
    trainer.finish()
    distributed.close(group)
    return 0
