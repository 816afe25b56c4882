"""Table IV, the ablation study: ANT-R and its ablations per target task (spec baselines.md section 14).

    python -m ant table ablation results/runs/*/ant/relearn*/seed*/metrics.json --csv OUT.csv --md OUT.md

A run is Table IV's when it is an ANT re-learning (method ant, strategy relearn): with no ablations it is the
"ANT" column (ANT-R of Table III), with ablations (metrics.json "ablations", ant.train.hparams.ABLATIONS) it is
the "w/o ..." column they name; any other run given is ignored (logged). Each cell is the mean ± sample std over
the seeds of a test metric under the configured history rule (the runs must agree). Columns in the paper's
order: w/o text, w/o image, w/o price, w/o MoE, w/o fusion (then any combination of ablations), ANT.

CSV: one row per (task, variant), each metric, its std, and the Recall@10 change against ANT-R of the same task
in % (negative = the part helps). Markdown: a row per task and metric (bold = best on the row), a row of the
Recall@10 changes, and for a task named as in the paper its Table IV numbers as "paper" rows.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ant.analysis.html import add_html_argument, write_markdown
from ant.analysis.published import TABLE_IV
from ant.analysis.runs_table import (
    HEADERS,
    METRICS,
    RULE_NAMES,
    Run,
    cell_text,
    csv_text,
    group_runs,
    mean_std,
    one_rule,
    read_run,
    seeds_text,
)
from ant.errors import UserError
from ant.io import write_text
from ant.train.hparams import ABLATIONS

log = logging.getLogger(__name__)

FULL = "ANT"  # the column of the full model
# what each ablation removes, as the paper's column titles name it ("w/o MoE")
PARTS = {"no_text": "text", "no_image": "image", "no_price": "price", "no_moe": "MoE", "no_fusion": "fusion"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "metrics",
        nargs="+",
        type=Path,
        help="metrics.json of the runs (runs other than ANT-R and its ablations are ignored)",
    )
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")
    add_html_argument(parser)


def run(args: argparse.Namespace) -> int:
    rows = summarise([read_run(p) for p in args.metrics])
    write_text(csv_text(rows, CSV_COLUMNS), args.csv)
    write_markdown(to_markdown(rows), args.md, args.html, "Table IV: ablation")
    return 0


def ablations_of(run: Run) -> tuple[str, ...]:
    """A run's ablations in ABLATIONS order; a name this version does not know is refused."""
    names = run.get("ablations") or []
    if unknown := [n for n in names if n not in ABLATIONS]:
        raise UserError(f"{run['path']}: unknown ablation(s) {unknown}; known: {', '.join(ABLATIONS)}")
    return tuple(sorted(set(names), key=ABLATIONS.index))


def label(ablations: tuple[str, ...]) -> str:
    return "w/o " + " & ".join(PARTS[a] for a in ablations) if ablations else FULL


def _order(ablations: tuple[str, ...]) -> tuple[int, int, tuple[int, ...]]:
    """Single ablations in the paper's order, then combinations, the full model last."""
    return (not ablations, len(ablations), tuple(ABLATIONS.index(a) for a in ablations))


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (task, variant), tasks in input order, variants in the paper's column order."""
    chosen = [r for r in runs if r["method"] == "ant" and r["strategy"] == "relearn"]
    if ignored := len(runs) - len(chosen):
        log.info("ignored %d run(s) that are not ANT re-learnings (Table IV is ANT-R and its ablations)", ignored)
    if not chosen:
        raise UserError("none of the runs is an ANT re-learning (method ant, strategy relearn)")
    rule = one_rule(chosen)
    tasks = list(dict.fromkeys(r["task"] for r in chosen))
    groups = group_runs(chosen, lambda r: (r["task"], ablations_of(r)))
    rows = []
    for task, ablations in sorted(groups, key=lambda key: (tasks.index(key[0]), _order(key[1]))):
        members = groups[(task, ablations)]
        row: dict[str, Any] = {
            "task": task,
            "variant": label(ablations),
            "ablations": "+".join(ablations),
            "seeds": len(members),
            "history_rule": rule,
        }
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = mean_std([float(m["test"][metric]) for m in members])
        rows.append(row)
    full = {r["task"]: r["recall@10"] for r in rows if r["variant"] == FULL}
    for row in rows:
        base = full.get(row["task"])
        ablated = row["variant"] != FULL and base
        row["recall@10_vs_ANT_pct"] = 100.0 * (row["recall@10"] - base) / base if ablated else None
    return rows


CSV_COLUMNS = ["task", "variant", "ablations", "seeds", "history_rule"]
CSV_COLUMNS += [c for m in METRICS for c in (m, f"{m}_std")] + ["recall@10_vs_ANT_pct"]


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """A row per task and metric, a column per variant (bold = best on the row), the Recall@10 change row, and
    the paper's numbers as "paper" rows for a task it has."""
    columns = sorted({r["variant"]: r["ablations"] for r in rows}.items(), key=lambda c: _order(_split(c[1])))
    titles = [title for title, _ in columns]
    lines = ["| Task | Metric | " + " | ".join(titles) + " |", "|---|---|" + "---:|" * len(titles)]
    for task in dict.fromkeys(r["task"] for r in rows):
        cell = {r["variant"]: r for r in rows if r["task"] == task}
        for m in METRICS:
            best = max(r[m] for r in cell.values())
            texts = [cell_text(cell[t][m], cell[t][f"{m}_std"]) if t in cell else "–" for t in titles]
            texts = [f"**{x}**" if t in cell and cell[t][m] == best else x for t, x in zip(titles, texts, strict=True)]
            lines.append(f"| {task} | {HEADERS[m]} | " + " | ".join(texts) + " |")
            if task in TABLE_IV:
                paper = [f"{TABLE_IV[task][t][m]:.4f}" if t in TABLE_IV[task] else "–" for t in titles]
                lines.append(f"| {task} | {HEADERS[m]} paper | " + " | ".join(paper) + " |")
        changes = [cell.get(t, {}).get("recall@10_vs_ANT_pct") for t in titles]
        texts = ["–" if c is None else f"{c:+.1f} %" for c in changes]
        lines.append(f"| {task} | R@10 vs ANT | " + " | ".join(texts) + " |")
    seeds = seeds_text(r["seeds"] for r in rows)
    note = (
        f"\nTest metrics (full ranking over all items of the task, {RULE_NAMES[rows[0]['history_rule']]}) of ANT "
        "re-learnt (R) on each target from the one pre-trained ANT, without the named part; ANT = the full model "
        f"(ANT-R of Table III). Mean over {seeds} seed(s), ± sample std where there are several; bold = best on "
        "the row; 'R@10 vs ANT' = Recall@10 change against ANT in %; – = not run."
        + (" Rows 'paper': the paper's Table IV." if any(r["task"] in TABLE_IV for r in rows) else "")
        + "\n"
    )
    return "\n".join(lines) + "\n" + note


def _split(ablations: str) -> tuple[str, ...]:
    return tuple(ablations.split("+")) if ablations else ()
