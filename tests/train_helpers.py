"""Small synthetic worlds on disk for the training tests: real Parquet files and real feature stores.

`make_world(root)` writes auxiliary tasks and a target task that share concepts (ant.train.synthetic), and
returns the flags the training commands take. Models are tiny so that a run takes a second or two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ant.cli import main
from ant.train.synthetic import synthetic_task, write_task
from ant.train.trainer import RESUME_FILE

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


def kill_once_resumable(argv: list[str], out: Path) -> None:
    """Run `python -m ant <argv>` in a subprocess and SIGKILL it as soon as its first resume.pt exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ant", *argv],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (out / RESUME_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "metrics.json").exists()


def assert_same_run(whole: Path, resumed: Path) -> None:
    """Bit-identical weights and equal test metrics."""
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())
    assert (
        json.loads((resumed / "metrics.json").read_text())["test"]
        == json.loads((whole / "metrics.json").read_text())["test"]
    )


def perturb_(model: torch.nn.Module, std: float = 0.3, by_prefix: dict[str, float] | None = None) -> torch.nn.Module:
    """Redraw every parameter so that each one matters to the outputs (a reference test must not pass on zeros):
    LayerNorm gains 1 + N(0, 0.3²), everything else N(0, std²), or the std of the first matching name prefix."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                prefix = next((k for k in (by_prefix or {}) if name.startswith(k)), None)
                p.normal_(0.0, by_prefix[prefix] if prefix else std)
    return model


def padded_histories(lengths: list[int], steps: int, n_items: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random right-padded item_idx histories [B, steps] (PAD = -1 after each length) and their lengths [B]."""
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(0, n_items, (len(lengths), steps), generator=g)
    length = torch.tensor(lengths)
    history[torch.arange(steps).unsqueeze(0) >= length.unsqueeze(1)] = -1
    return history, length
