"""Table III, negative transfer: each method as ground-built (G), fine-tuned (F) and re-learnt (R) per target task.

    python -m ant table negative-transfer results/runs/*/ant/*/seed*/metrics.json --csv OUT.csv --md OUT.md

Reads the runs' metrics.json (task, method, strategy, variant, seed, test metrics), averages each (task, method,
variant) over its seeds (± sample standard deviation when there are several) and lays the rows out as the paper
does: per task, the methods in the registry's order (ant/methods.py: UniSRec's before ANT's), each method's
variants in its registry order (G, F, R, +ID), any other after. The metrics are those of the history rule the
runs were evaluated under (eval.exclude_history; runs under different rules are refused). The CSV has one row per
(task, method, variant) and each row's Recall@10 change against the same method's G row, in % (negative =
negative transfer); the Markdown is the paper's layout (a row per task and metric, a column per method and
variant: UniSRec-G, UniSRec-F, UniSRec-R, ANT-G, ...) and marks each method's best value in bold.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ant.errors import UserError
from ant.io import read_json, write_text
from ant.methods import METHODS, Variant

METRICS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50")
HEADERS = {"recall@10": "R@10", "recall@50": "R@50", "ndcg@10": "N@10", "ndcg@50": "N@50"}
METHOD_ORDER = tuple(METHODS)
RULE_NAMES = {"history_kept": "history items kept as candidates", "history_excluded": "history items excluded"}


def _variant(method: str, variant: str) -> Variant | None:
    known = METHODS.get(method)
    return next((v for v in known.variants if v.name == variant), None) if known else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json of the runs")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")


def run(args: argparse.Namespace) -> int:
    rows = summarise([read_run(p) for p in args.metrics])
    write_text(to_csv(rows), args.csv)
    write_text(to_markdown(rows), args.md)
    return 0


def read_run(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path}: not found")
    run = read_json(path)
    missing = [k for k in ("task", "method", "strategy", "seed", "test", "history_rule") if k not in run]
    missing += [f"test.{m}" for m in METRICS if m not in run.get("test", {})]
    if missing:
        raise UserError(f"{path}: not a run's metrics.json (missing {', '.join(missing)})")
    return {**run, "variant": run.get("variant") or run["strategy"], "path": str(path)}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, method, variant): seed count, mean and std of each metric, Recall@10 vs G in %."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    task_order: dict[str, int] = {}
    if len(rules := {run["history_rule"] for run in runs}) > 1:
        raise UserError(f"the runs were evaluated under different history rules {sorted(rules)}: rerun them alike")
    for run in runs:
        task_order.setdefault(run["task"], len(task_order))
        key = (run["task"], run["method"], run["variant"])
        if any(other["seed"] == run["seed"] for other in groups[key]):
            raise UserError(f"{run['path']}: a second run of {key} with seed {run['seed']}")
        groups[key].append(run)

    rows = []
    for (task, method, variant), members in groups.items():
        known = _variant(method, variant)
        row: dict[str, Any] = {
            "task": task,
            "method": METHODS[method].title if method in METHODS else method,
            "strategy": variant,
            "label": known.label if known else members[0].get("label") or variant,
            "seeds": len(members),
            "history_rule": members[0]["history_rule"],
            "_ground": not known.load if known else members[0].get("label") == "G",
        }
        for metric in METRICS:
            values = [float(m["test"][metric]) for m in members]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
            row[metric], row[f"{metric}_std"] = mean, std
        variants = METHODS[method].variant_names if method in METHODS else ()
        row["_sort"] = (
            task_order[task],
            METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER),
            method,
            variants.index(variant) if variant in variants else len(variants),
            variant,
        )
        rows.append(row)
    rows.sort(key=lambda r: r["_sort"])
    ground = {(r["task"], r["method"]): r["recall@10"] for r in rows if r["_ground"]}
    for row in rows:
        base = ground.get((row["task"], row["method"]))
        row["recall@10_vs_G_pct"] = 100.0 * (row["recall@10"] - base) / base if base and not row["_ground"] else None
        del row["_sort"], row["_ground"]
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns = ["task", "method", "strategy", "label", "seeds", "history_rule"]
    columns += [c for m in METRICS for c in (m, f"{m}_std")] + ["recall@10_vs_G_pct"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_value(row[c]) for c in columns})
    return out.getvalue()


def column_label(row: dict[str, Any]) -> str:
    """A (method, variant) column of the paper's layout: "UniSRec-G", "ANT-R"; a label naming its method as is."""
    return row["label"] if row["method"] in row["label"] else f"{row['method']}-{row['label']}"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The paper's layout: a row per task and metric, a column per (method, variant) in registry order; bold = the
    method's best variant on that task and metric."""
    columns = list(dict.fromkeys(column_label(r) for r in rows))
    cell: dict[tuple[str, str], dict[str, Any]] = {(r["task"], column_label(r)): r for r in rows}
    best: dict[tuple[str, str, str], float] = {}
    for row in rows:
        for m in METRICS:
            key = (row["task"], row["method"], m)
            best[key] = max(best.get(key, -math.inf), row[m])
    lines = ["| Task | Metric | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for task in dict.fromkeys(r["task"] for r in rows):
        for m in METRICS:
            cells = []
            for column in columns:
                row = cell.get((task, column))
                if row is None:
                    cells.append("–")
                    continue
                text = f"{row[m]:.4f}" + (f" ± {row[f'{m}_std']:.4f}" if row[f"{m}_std"] is not None else "")
                cells.append(f"**{text}**" if row[m] == best[(task, row["method"], m)] else text)
            lines.append(f"| {task} | {HEADERS[m]} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seeds"] for r in rows})
    note = (
        f"\nTest metrics (full ranking over all items of the task, {RULE_NAMES.get(rows[0]['history_rule'], '?')}); "
        "G = trained from scratch, F = fine-tuned, R = re-learnt, +ID = with item-ID embeddings (UniSRec+ID: F "
        "with them, ANT+ID: R with them). "
        f"Mean over {'/'.join(map(str, seeds))} seed(s)" + (", ± sample std" if max(seeds) > 1 else "") + "; "
        "bold = the method's best on the task; – = not run.\n"
    )
    return "\n".join(lines) + "\n" + note


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value
