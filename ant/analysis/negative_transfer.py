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
import math
from pathlib import Path
from typing import Any

from ant.analysis.html import add_html_argument, write_markdown
from ant.analysis.runs_table import (
    HEADERS,
    METRICS,
    RULE_NAMES,
    cell_text,
    csv_text,
    group_runs,
    mean_std,
    one_rule,
    read_run,
)
from ant.io import write_text
from ant.methods import METHODS, Variant

METHOD_ORDER = tuple(METHODS)


def _variant(method: str, variant: str) -> Variant | None:
    known = METHODS.get(method)
    return next((v for v in known.variants if v.name == variant), None) if known else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json of the runs")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")
    add_html_argument(parser)


def run(args: argparse.Namespace) -> int:
    rows = summarise([read_run(p) for p in args.metrics])
    write_text(to_csv(rows), args.csv)
    write_markdown(to_markdown(rows), args.md, args.html, "Table III: negative transfer")
    return 0


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, method, variant): seed count, mean and std of each metric, Recall@10 vs G in %."""
    one_rule(runs)
    task_order = {task: i for i, task in enumerate(dict.fromkeys(run["task"] for run in runs))}
    groups = group_runs(runs, lambda run: (run["task"], run["method"], run["variant"]))

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
            row[metric], row[f"{metric}_std"] = mean_std([float(m["test"][metric]) for m in members])
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
    return csv_text(rows, columns)


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
                text = cell_text(row[m], row[f"{m}_std"])
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
