"""Small synthetic worlds on disk for the training tests: real Parquet files and real feature stores.

`make_world(root)` writes auxiliary tasks and a target task that share concepts (ant.train.synthetic), and
returns the flags the training commands take. Models are tiny so that a run takes a second or two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ant.cli import main
from ant.train.synthetic import synthetic_task, write_task

TINY_MODEL = {"hidden_size": 16, "inner_size": 16, "experts": 2, "layers": 1, "attention_heads": 2}
SMALL_MODEL = {"hidden_size": 32, "inner_size": 32, "experts": 4, "dropout": 0.2}
DIMS = {"text": 12, "image": 10, "price": 4}


@dataclass(frozen=True)
class World:
    root: Path
    tasks: dict[str, tuple[Path, dict[str, Path]]]  # name -> (data dir, manifests)

    def flags(self, *names: str) -> list[str]:
        out = []
        for name in names:
            data, manifests = self.tasks[name]
            out += [
                "--sequences",
                f"{name}={data / 'sequences.parquet'}",
                "--items",
                f"{name}={data / 'items.parquet'}",
            ]
            for modality, path in manifests.items():
                out += ["--features", f"{name}.{modality}={path}"]
        return out


def make_world(root: Path, sizes: dict[str, tuple[int, int]] | None = None, clusters: int = 8) -> World:
    """Tasks named by `sizes` (name -> (users, items)); the last one is meant as the target."""
    sizes = sizes or {"AuxA": (120, 64), "AuxB": (100, 56), "Target": (80, 48)}
    tasks = {}
    for seed, (name, (users, items)) in enumerate(sizes.items(), start=1):
        task = synthetic_task(users, items, seed=seed, clusters=clusters, dims=DIMS, mean_length=7)
        tasks[name] = write_task(task, root, name)
    return World(root, tasks)


def hparams(epochs: int = 2, batch_size: int = 64, model: dict | None = None, device: str = "cpu", **optim) -> str:
    return json.dumps(
        {
            "model": model or TINY_MODEL,
            "optim": {"epochs": epochs, "batch_size": batch_size, **optim},
            "train": {"device": device, "eval_batch_size": 64, "threads": 1},  # tiny models: 1 thread is fastest
        }
    )


def run_cli(*argv: str) -> int:
    """`python -m ant <argv>` in this process (no interpreter start-up); leaves torch's thread count as it was."""
    threads = torch.get_num_threads()
    try:
        return main([*argv])
    finally:
        torch.set_num_threads(threads)
