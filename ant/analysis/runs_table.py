"""What the result tables over training runs share: reading a run's metrics.json, grouping runs by seed, the
mean ± sample std over seeds, a Markdown cell and a CSV value.

Used by Table II (overall.py), Table III (negative_transfer.py) and Table IV (ablation.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ant.errors import UserError
from ant.io import read_json

METRICS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50")
HEADERS = {"recall@10": "R@10", "recall@50": "R@50", "ndcg@10": "N@10", "ndcg@50": "N@50"}
RULE_NAMES = {"history_kept": "history items kept as candidates", "history_excluded": "history items excluded"}

Run = dict[str, Any]


def read_run(path: Path) -> Run:
    """A run's metrics.json with its `path` and `variant` (the strategy when an older run has none)."""
    if not path.exists():
        raise UserError(f"{path}: not found")
    run = read_json(path)
    missing = [k for k in ("task", "method", "strategy", "seed", "test", "history_rule") if k not in run]
    missing += [f"test.{m}" for m in METRICS if m not in run.get("test", {})]
    if missing:
        raise UserError(f"{path}: not a run's metrics.json (missing {', '.join(missing)})")
    return {**run, "variant": run.get("variant") or run["strategy"], "path": str(path)}


def one_rule(runs: Iterable[Run]) -> str:
    """The history rule all the runs were evaluated under; runs under different rules are not one table."""
    rules = {run["history_rule"] for run in runs}
    if len(rules) > 1:
        raise UserError(f"the runs were evaluated under different history rules {sorted(rules)}: rerun them alike")
    if not rules:
        raise UserError("no runs to tabulate")
    return rules.pop()


def group_runs(runs: Iterable[Run], key: Callable[[Run], Hashable]) -> dict[Any, list[Run]]:
    """The runs grouped by `key`, in order of first appearance; one seed twice in a group is refused (a run
    passed twice, or two run folders that are one table cell)."""
    groups: dict[Any, list[Run]] = defaultdict(list)
    for run in runs:
        k = key(run)
        if any(other["seed"] == run["seed"] for other in groups[k]):
            raise UserError(f"{run['path']}: a second run of {k} with seed {run['seed']}")
        groups[k].append(run)
    return dict(groups)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: one seed has no spread)."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, std


def cell_text(mean: float, std: float | None) -> str:
    """A Markdown cell: "0.1234" or "0.1234 ± 0.0012"."""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def seeds_text(counts: Iterable[int]) -> str:
    """The seed counts of a table's cells: "3", or "1/3" when the cells differ."""
    return "/".join(map(str, sorted(set(counts))))


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.6f}" if isinstance(value, float) else value


def csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: csv_value(row.get(c)) for c in columns})
    return out.getvalue()
