"""What the training commands share: their common flags, seeding, the resume fingerprint, the run's outputs."""

from __future__ import annotations

import argparse
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

log = logging.getLogger(__name__)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", action="append", default=[], metavar="NAME=DIR", help="a task's data folder (repeat per task)"
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


def seed_everything(seed: int, threads: int) -> None:
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code that draws from numpy's global state gets a seeded one too
    torch.manual_seed(seed)


def fingerprint(settings: dict[str, Any], tasks: list[Task], files: list[Path] = ()) -> str:
    """Digest of everything a run's result depends on: settings, each task's inputs, extra files."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for task in tasks:
        digest.update(task.name.encode())
        digest.update(sha256_file(task.data_dir / "sequences.parquet").encode())
        for modality in sorted(task.features):
            digest.update(json.dumps(task.features[modality].manifest, sort_keys=True).encode())
    for path in files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def write_ranks(user_idx: np.ndarray, ranks: np.ndarray, path: Path) -> None:
    table = pa.table({"user_idx": pa.array(user_idx.astype(np.int32)), "rank": pa.array(ranks.astype(np.int32))})
    write_parquet(table, path)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": sum(p.numel() for p in model.parameters()) - trainable}
