"""Loading the tasks a training command is given: `--sequences NAME=PATH --items NAME=PATH` and
`--features NAME.MODALITY=MANIFEST`, the very files its rule declares as inputs.

A task is its sequences (split by ant.data.split, the one split), its item count and its frozen feature
matrices. `ItemTable` puts the features of one or several tasks on the device as one global item table: task t's
item i is row offsets[t] + i, which is how pre-training mixes tasks in one batch and one in-batch softmax.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ant.data.items import read_items
from ant.data.split import PAD, Rows, Sequences, read_sequences, split
from ant.errors import UserError
from ant.features.store import Features, load_features
from ant.model.item_encoder import MODALITIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFiles:
    sequences: Path
    items: Path
    features: dict[str, Path]  # modality -> manifest.json


@dataclass(frozen=True)
class Task:
    name: str
    files: TaskFiles
    n_items: int
    sequences: Sequences
    splits: dict[str, Rows]
    features: dict[str, Features]  # modality -> [n_items, d_m]

    @property
    def dims(self) -> dict[str, int]:
        return {m: f.dim for m, f in self.features.items()}


def _named(flag: str, spec: str, example: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UserError(f"{flag} {spec!r}: expected NAME=PATH, e.g. {flag} {example}")
    return name, Path(path)


def parse_task_args(
    sequences: list[str], items: list[str], features: list[str], modalities: tuple[str, ...] = MODALITIES
) -> dict[str, TaskFiles]:
    """The NAME=PATH and NAME.MODALITY=MANIFEST flags -> {name: TaskFiles}: every task's sequences and items and
    a store for each of `modalities` (the ones the method reads), no other."""
    seq_paths: dict[str, Path] = {}
    for spec in sequences:
        name, path = _named("--sequences", spec, "Scientific=results/data/Scientific/sequences.parquet")
        if name in seq_paths:
            raise UserError(f"--sequences: task {name!r} given twice")
        seq_paths[name] = path
    item_paths: dict[str, Path] = {}
    for spec in items:
        name, path = _named("--items", spec, "Scientific=results/data/Scientific/items.parquet")
        if name not in seq_paths:
            raise UserError(f"--items {spec!r}: task {name!r} has no --sequences")
        item_paths[name] = path
    manifests: dict[str, dict[str, Path]] = {name: {} for name in seq_paths}
    for spec in features:
        key, path = _named("--features", spec, "Scientific.text=.../manifest.json")
        name, dot, modality = key.rpartition(".")
        if not dot:
            raise UserError(
                f"--features {spec!r}: expected NAME.MODALITY=MANIFEST, e.g. Scientific.text=.../manifest.json"
            )
        if name not in seq_paths:
            raise UserError(f"--features {spec!r}: task {name!r} has no --sequences")
        if modality not in modalities:
            raise UserError(
                f"--features {spec!r}: modality {modality!r} is not read here; "
                f"expected: {', '.join(modalities) or 'none'}"
            )
        manifests[name][modality] = path
    if not seq_paths:
        raise UserError(
            "no task given: pass --sequences NAME=PATH, --items NAME=PATH and --features NAME.MODALITY=PATH"
        )
    for name in seq_paths:
        if name not in item_paths:
            raise UserError(f"task {name!r}: no --items")
        if missing := [m for m in modalities if m not in manifests[name]]:
            raise UserError(f"task {name!r}: no --features for {', '.join(missing)}")
    return {name: TaskFiles(seq_paths[name], item_paths[name], manifests[name]) for name in seq_paths}


def load_task(name: str, files: TaskFiles, max_history: int) -> Task:
    for path in (files.sequences, files.items):
        if not path.exists():
            raise UserError(f"task {name}: {path} not found (run the data rules for this task)")
    n_items = read_items(files.items).num_rows
    sequences = read_sequences(files.sequences)
    if len(sequences.items) and (sequences.items.min() < 0 or sequences.items.max() >= n_items):
        raise UserError(f"task {name}: {files.sequences} refers to item_idx outside 0..{n_items - 1} of {files.items}")
    try:
        splits = split(sequences, max_history)
    except ValueError as err:
        raise UserError(f"task {name}: {files.sequences}: {err}") from err
    if len(splits["valid"]) == 0 or len(splits["train"]) == 0:
        raise UserError(f"task {name}: {files.sequences} has no training or validation rows")
    features = {m: load_features(path, files.items) for m, path in files.features.items()}
    log.info(
        "task %s: %d users, %d items, %d training rows; features %s",
        name,
        len(sequences.user_idx),
        n_items,
        len(splits["train"]),
        ", ".join(f"{m} {f.dim}-d ({int(f.present.sum())} present)" for m, f in features.items()),
    )
    return Task(name, files, n_items, sequences, splits, features)


def load_tasks(
    sequences: list[str],
    items: list[str],
    features: list[str],
    max_history: int,
    modalities: tuple[str, ...] = MODALITIES,
) -> list[Task]:
    parsed = parse_task_args(sequences, items, features, modalities)
    tasks = [load_task(name, files, max_history) for name, files in parsed.items()]
    dims = tasks[0].dims
    for task in tasks[1:]:
        if task.dims != dims:
            raise UserError(
                f"feature dimensions differ between tasks {tasks[0].name} {dims} and {task.name} {task.dims}: "
                "every task must use the same encoders"
            )
    return tasks


@dataclass
class ItemTable:
    """Raw features of the items of one or more tasks, on the device; task t owns rows offsets[t]:offsets[t+1]."""

    features: dict[str, torch.Tensor]  # modality -> float32 [N, d_m]
    present: dict[str, torch.Tensor]  # modality -> bool [N]
    offsets: list[int]

    @classmethod
    def from_tasks(cls, tasks: list[Task], device: torch.device) -> ItemTable:
        offsets = np.concatenate([[0], np.cumsum([t.n_items for t in tasks])]).tolist()
        return cls(
            features={
                m: torch.from_numpy(np.concatenate([t.features[m].values for t in tasks])).to(device)
                for m in MODALITIES
            },
            present={
                m: torch.from_numpy(np.concatenate([t.features[m].present for t in tasks])).to(device)
                for m in MODALITIES
            },
            offsets=[int(o) for o in offsets],
        )

    @property
    def n_items(self) -> int:
        return self.offsets[-1]

    def gather(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The features of the table rows `rows` [n] (index_select: several times faster than f[rows] on the CPU)."""
        return {m: f.index_select(0, rows) for m, f in self.features.items()}

    def task_slice(self, t: int) -> slice:
        return slice(self.offsets[t], self.offsets[t + 1])


def shift_items(items: np.ndarray, offset: int) -> np.ndarray:
    """item_idx -> global table row, leaving PAD as it is."""
    return np.where(items == PAD, PAD, items + offset).astype(np.int32) if offset else items
