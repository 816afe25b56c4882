"""What the training commands share: their flags, seeding, the trainer they build, the resume fingerprint, and
the run's outputs (ranks.parquet, the metric sections of metrics.json)."""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ant.io import sha256_file, write_parquet
from ant.train.data import Task
from ant.train.distributed import Group
from ant.train.evaluate import EvalRows, Evaluation, reference_metrics
from ant.train.history_rules import HISTORY_RULES
from ant.train.hparams import Hparams
from ant.train.trainer import Objective, Trainer, TrainResult
from ant.versions import STAGES

log = logging.getLogger(__name__)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, what in (("sequences", "sequences.parquet"), ("items", "items.parquet")):
        parser.add_argument(
            f"--{flag}", action="append", default=[], metavar="NAME=PATH", help=f"a task's {what} (repeat per task)"
        )
    parser.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="NAME.MODALITY=MANIFEST",
        help="a task's feature manifest, for each of text, image and price",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout")
    parser.add_argument("--hparams", default="{}", help="JSON: model, optim, train, eval, max_history (see config)")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder of the run's outputs")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: train.threads)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on a terminal"
    )


def common_argv(args: argparse.Namespace, threads: int | None = None) -> list[str]:
    """The flags of add_common_arguments that `args` holds, as a command line (a process re-launching its command
    under torchrun); `threads` replaces --threads."""
    argv = [f"--{flag}={spec}" for flag in ("sequences", "items", "features") for spec in getattr(args, flag)]
    argv += [f"--seed={args.seed}", f"--hparams={args.hparams}", f"--out-dir={args.out_dir}"]
    threads = threads or args.threads
    return [*argv, *([f"--threads={threads}"] if threads else []), "--progress" if args.progress else "--no-progress"]


def keep_freed_memory() -> bool:
    """Let glibc reuse freed large blocks instead of returning them to the kernel (Linux; False elsewhere).

    glibc serves every block above 32 MB with a fresh mmap and unmaps it when freed, and the kernel zero-fills each
    page on first touch. A paper-sized CPU training step allocates and frees GBs of such blocks (the K heads'
    [K, n, d_m] inputs, the padded [B, T, 3d] attention inputs), and the page faults took a third of it (sys time
    48 s of a 124 s benchmark). Served from the heap and never trimmed below 2 GB, the next step reuses them: the
    same computation, numbers unchanged; the process keeps its peak memory instead of giving it back."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def seed_everything(seed: int, threads: int) -> None:
    """What every training command sets up first: torch's threads, the seeds, glibc's reuse of freed memory."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code that draws from numpy's global state gets a seeded one too
    torch.manual_seed(seed)


def fingerprint(stage: str, settings: dict[str, Any], tasks: list[Task], files: list[Path] = ()) -> str:
    """Digest of everything a run's result depends on: the stage's code version (ant/versions.py), its settings,
    each task's inputs and extra files. A resume.pt written under another digest is not resumed."""
    digest = hashlib.sha256(
        json.dumps({"stage": stage, "version": STAGES[stage], **settings}, sort_keys=True, default=str).encode()
    )
    for task in tasks:
        digest.update(task.name.encode())
        digest.update(sha256_file(task.files.sequences).encode())
        for modality in sorted(task.features):
            digest.update(json.dumps(task.features[modality].manifest, sort_keys=True).encode())
    for path in files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def make_trainer(
    objective: Objective,
    hp: Hparams,
    seed: int,
    out_dir: Path,
    fingerprint: str,
    progress: bool,
    group: Group | None = None,
) -> Trainer:
    return Trainer(
        objective,
        epochs=hp.optim.epochs,
        lr=hp.optim.lr,
        lr_decay=hp.optim.lr_decay,
        patience=hp.optim.patience,
        device=objective.device,
        seed=seed,
        out_dir=out_dir,
        fingerprint=fingerprint,
        select=hp.optim.select,
        progress=progress,
        group=group,
    )


def metric_sections(name: str, flat: dict[str, float]) -> dict[str, Any]:
    """Validation or test metrics as metrics.json sections: `name` (the configured history rule), then
    `name_history_kept`, `name_history_excluded`, and per task (pre-training) `name_per_task`."""
    sections: dict[str, Any] = {name: {k: v for k, v in flat.items() if "/" not in k}}
    for rule in HISTORY_RULES:
        sections[f"{name}_{rule}"] = {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith(f"{rule}/")}
    per_task: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        group, _, metric = key.partition("/")
        if metric and group not in HISTORY_RULES:
            per_task.setdefault(group, {})[metric] = value
    if per_task:
        sections[f"{name}_per_task"] = per_task
    return sections


def evaluation_counts(evaluation: Evaluation) -> dict[str, Any]:
    """The test rows' ties and repeats, for metrics.json."""
    return {
        "tied_targets": {rule: result.tied_targets for rule, result in evaluation.rules.items()},
        "repeated_targets": evaluation.repeated_targets,
    }


def run_record(
    task: Task,
    result: TrainResult,
    test: EvalRows,
    test_eval: Evaluation,
    hp: Hparams,
    model: torch.nn.Module,
    pretrained: Path | None,
    device: torch.device,
    seconds: float,
) -> dict[str, Any]:
    """What every run's metrics.json holds besides its method's own keys: training, both rules' metrics, ties
    and repeats, references, size, provenance and settings."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from,
        "history_rule": test_eval.rule,
        "tie_rule": hp.eval.ties,
        "selection": hp.optim.select,
        **metric_sections("valid", result.best_metrics),
        **metric_sections("test", test_eval.flat_metrics()),
        **evaluation_counts(test_eval),
        "users": len(test),
        "items": task.n_items,
        "reference_test": reference_metrics(task.splits["train"].target, test, task.n_items, hp.eval.ks),
        "parameters": parameter_counts(model),
        "pretrained": str(pretrained) if pretrained else None,
        "pretrained_sha256": sha256_file(pretrained) if pretrained else None,
        "device": str(device),
        "seconds": round(seconds, 2),
        "hparams": hp.to_dict(),
    }


def write_ranks(user_idx: np.ndarray, evaluation: Evaluation, path: Path) -> None:
    """ranks.parquet: user_idx and the test target's rank under each history rule (float: the expected tie rule
    gives halves; inf = the target repeated its history and was excluded, a miss)."""
    columns = {"user_idx": pa.array(user_idx.astype(np.int32))}
    columns |= {f"rank_{rule}": pa.array(result.ranks.astype(np.float64)) for rule, result in evaluation.rules.items()}
    write_parquet(pa.table(columns), path)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": sum(p.numel() for p in model.parameters()) - trainable}
