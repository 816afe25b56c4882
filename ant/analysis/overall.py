"""Table II, the overall comparison: every method on every target task, ANT's improvement and its significance.

    python -m ant table overall results/runs/*/*/*/seed*/metrics.json --rule as_published --csv OUT --md OUT

Columns are ant.methods.OVERALL_COLUMNS (the paper's order): a run is a column's when its method and strategy
are the column's (UniSRec = unisrec finetune, ANT = ant relearn, ...) and it has no ablations; every other run
given is ignored (logged). Each cell is the mean ± sample std over the column's seeds of one test metric, taken
from the metric set of the chosen history rule (--rule):
  configured        each run's own history_rule (the runs must agree)
  history_kept      every method with history items kept as candidates
  history_excluded  every method with history items excluded
  as_published      each method under its source's rule, Method.published_rule (spec baselines.md 2.5): the one
                    form comparable with the paper cell by cell; a task named as in the paper gets its numbers.
Per task and metric: the best column (bold), the best baseline (any method but ANT; underlined), imprv =
100 · (best ANT variant − best baseline) / best baseline, and `*` when imprv > 0 and a paired t-test between
those two columns gives p < alpha (default 0.1, the paper's 90 % confidence).

Seed pooling for the test: each column's per-user metric (recall@K = hit, ndcg@K = 1/log2(rank+1) within the top
K, from the ranks.parquet beside each metrics.json, under the cell's rule) is averaged over the column's seeds
user by user, then scipy's ttest_rel pairs the two columns over users. Every seed of both columns must have ranked
the same users; anything else is refused, never a silent subset.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ant.analysis.html import add_html_argument, write_markdown
from ant.analysis.published import TABLE_II, TABLE_II_IMPRV
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
from ant.analysis.significance import per_user_metric, read_ranks
from ant.errors import UserError
from ant.io import write_text
from ant.methods import METHODS, OVERALL_COLUMNS
from ant.train.history_rules import HISTORY_RULES

log = logging.getLogger(__name__)

RULES = ("configured", *HISTORY_RULES, "as_published")
TITLES = tuple(title for _, _, title in OVERALL_COLUMNS)
COLUMN_OF = {(method, strategy): title for method, strategy, title in OVERALL_COLUMNS}
METHOD_OF = {title: method for method, _, title in OVERALL_COLUMNS}
ANT_TITLES = tuple(t for t in TITLES if METHOD_OF[t] == "ant")
BASELINE_TITLES = tuple(t for t in TITLES if METHOD_OF[t] != "ant")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "metrics", nargs="+", type=Path, help="metrics.json of the runs (runs of no Table II column are ignored)"
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="configured",
        help="history rule of the metrics shown (default: configured, each run's own)",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.1, help="significance level of the paired t-test (default 0.1)"
    )
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")
    add_html_argument(parser)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha {args.alpha}: must lie between 0 and 1")
    rows = summarise([read_run(p) for p in args.metrics], args.rule, args.alpha)
    write_text(csv_text(rows, csv_columns()), args.csv)
    write_markdown(to_markdown(rows, args.rule, args.alpha), args.md, args.html, f"Table II ({args.rule})")
    return 0


def column_of(run: Run) -> str | None:
    """The Table II column a run belongs to, or None (another strategy, or an ablation)."""
    return None if run.get("ablations") else COLUMN_OF.get((run["method"], run["strategy"]))


def rule_of(method: str, rule: str, configured: str) -> str:
    """The history rule a method's cells use under --rule."""
    if rule == "configured":
        return configured
    return METHODS[method].published_rule if rule == "as_published" else rule


def metric_set(run: Run, rule: str) -> dict[str, float]:
    """The run's test metrics under `rule` (its `test` set is the one of its own history_rule)."""
    found = run.get(f"test_{rule}") or (run["test"] if rule == run["history_rule"] else None)
    if found is None or any(m not in found for m in METRICS):
        raise UserError(f"{run['path']}: no test metrics under {rule} (test_{rule}); rerun it with this version")
    return found


def improvement(ant: float | None, baseline: float | None) -> float | None:
    """imprv in %: 100 · (ant − baseline) / baseline; None when a side is missing or the baseline is 0."""
    if ant is None or baseline is None or baseline == 0:
        return None
    return 100.0 * (ant - baseline) / baseline


def pool_seeds(users: Sequence[np.ndarray], values: Sequence[np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values averaged over seeds: (users sorted (U,), mean over seeds (U,)); the seeds must have
    ranked the same users."""
    orders = [np.argsort(u, kind="stable") for u in users]
    reference = users[0][orders[0]]
    if any(not np.array_equal(u[o], reference) for u, o in zip(users, orders, strict=True)):
        raise UserError(f"{what}: the seeds ranked different users; the paired test needs the same users")
    stacked = np.stack([v[o] for v, o in zip(values, orders, strict=True)])  # (seeds, U)
    return reference, stacked.mean(axis=0)


def paired_p(users_a: np.ndarray, a: np.ndarray, users_b: np.ndarray, b: np.ndarray, what: str) -> float | None:
    """Two-sided p of scipy's paired t-test over users (both sorted by user); None with fewer than 2 users."""
    if not np.array_equal(users_a, users_b):
        raise UserError(f"{what}: the two ranked different users; the paired test needs the same users")
    diff = a - b  # (U,)
    if len(diff) < 2:
        return None
    if np.ptp(diff) == 0:  # scipy: nan for no difference, a warning and p 0 for a constant one
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def summarise(runs: list[Run], rule: str = "configured", alpha: float = 0.1) -> list[dict[str, Any]]:
    """One row per (task, metric) in input task order: each column's mean and std, best, best baseline, best ANT
    variant, imprv, p and its mark."""
    if rule not in RULES:
        raise UserError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    chosen = [r for r in runs if column_of(r)]
    if ignored := len(runs) - len(chosen):
        log.info("ignored %d run(s) that are not a Table II column (other strategies, ablations)", ignored)
    if not chosen:
        raise UserError("none of the runs is a Table II column (see ant.methods.OVERALL_COLUMNS)")
    configured = one_rule(chosen) if rule == "configured" else ""
    by_folder = group_runs(chosen, lambda r: (r["task"], column_of(r), r["variant"]))
    groups: dict[tuple[str, str], list[Run]] = {}
    for (task, title, _), members in by_folder.items():
        if (task, title) in groups:  # e.g. BERT4Rec's "default" and "variant-fixed": one column, two models
            folders = sorted(f for t, c, f in by_folder if (t, c) == (task, title))
            raise UserError(f"{task} {title}: runs of different variants {folders}; pass one variant's runs")
        groups[(task, title)] = members
    ranks: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # (metrics path, rule) -> (users, ranks)

    def per_user(task: str, title: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        cell_rule = rule_of(METHOD_OF[title], rule, configured)
        users, values = [], []
        for member in groups[(task, title)]:
            key = (member["path"], cell_rule)
            if key not in ranks:
                path = Path(member["path"]).with_name("ranks.parquet")
                if not path.exists():
                    raise UserError(f"{path}: not found (the significance test reads each run's ranks)")
                ranks[key] = read_ranks(path, cell_rule)
            users.append(ranks[key][0])
            values.append(per_user_metric(ranks[key][1], metric))
        return pool_seeds(users, values, f"{task} {title}")

    rows = []
    for task in dict.fromkeys(r["task"] for r in chosen):
        present = [t for t in TITLES if (task, t) in groups]
        for metric in METRICS:
            row: dict[str, Any] = {"task": task, "metric": metric}
            for title in present:
                members = groups[(task, title)]
                cell_rule = rule_of(METHOD_OF[title], rule, configured)
                row[title], row[f"{title}_std"] = mean_std([metric_set(m, cell_rule)[metric] for m in members])
            row["best"] = _best(row, present, TITLES)
            row["best_baseline"] = base = _best(row, present, BASELINE_TITLES)
            row["best_ant"] = ant = _best(row, present, ANT_TITLES)
            row["imprv_pct"] = improvement(row.get(ant), row.get(base))
            row["p_value"] = None
            if ant and base:
                row["p_value"] = paired_p(
                    *per_user(task, ant, metric), *per_user(task, base, metric), f"{task}, {ant} vs {base}"
                )
            row["significant"] = (
                None if row["p_value"] is None else bool(row["p_value"] < alpha and (row["imprv_pct"] or 0) > 0)
            )
            row["seeds"] = seeds_text(len(groups[(task, t)]) for t in present)
            row["rule"] = configured or rule
            rows.append(row)
    return rows


def _best(row: dict[str, Any], present: list[str], among: tuple[str, ...]) -> str | None:
    """The column with the highest mean among `among` (the first in the paper's order on a tie), or None."""
    candidates = [t for t in present if t in among]
    return max(candidates, key=lambda t: row[t]) if candidates else None


def csv_columns() -> list[str]:
    columns = ["task", "metric"] + [c for t in TITLES for c in (t, f"{t}_std")]
    return columns + ["best", "best_baseline", "best_ant", "imprv_pct", "p_value", "significant", "seeds", "rule"]


def _rule_text(rule: str, rows: list[dict[str, Any]]) -> str:
    if rule == "as_published":
        by_rule = {r: [t for t in TITLES if METHODS[METHOD_OF[t]].published_rule == r] for r in HISTORY_RULES}
        return "as published, each method under its source's rule: " + "; ".join(
            f"{RULE_NAMES[r]} for {', '.join(names)}" for r, names in by_rule.items() if names
        )
    return f"{RULE_NAMES[rows[0]['rule']]} for every method" + (
        " (the configured rule)" if rule == "configured" else ""
    )


KIND_NAMES = {"interaction": "interaction-based", "text": "text-based", "multi-modal": "multi-modal"}


def to_markdown(rows: list[dict[str, Any]], rule: str, alpha: float) -> str:
    """The paper's layout: a row per task and metric, the columns in the paper's order, then imprv; under
    as_published a "paper" row after each row of a task the paper has."""
    groups = {name: [t for t in TITLES if METHODS[METHOD_OF[t]].kind == kind] for kind, name in KIND_NAMES.items()}
    lines = ["Columns: " + "; ".join(f"{name}: {', '.join(titles)}" for name, titles in groups.items()), ""]
    lines += ["| Task | Metric | " + " | ".join(TITLES) + " | imprv |", "|---|---|" + "---:|" * (len(TITLES) + 1)]
    with_paper = rule == "as_published" and any(r["task"] in TABLE_II for r in rows)
    for row in rows:
        cells = []
        for title in TITLES:
            if title not in row:
                cells.append("–")
                continue
            text = cell_text(row[title], row[f"{title}_std"])
            best_baseline = title in BASELINE_TITLES and row[title] == row[row["best_baseline"]]
            text = f"<u>{text}</u>" if best_baseline else text
            cells.append(f"**{text}**" if row[title] == row[row["best"]] else text)
        imprv = "–" if row["imprv_pct"] is None else f"{row['imprv_pct']:.1f}" + ("*" if row["significant"] else "")
        lines.append(f"| {row['task']} | {HEADERS[row['metric']]} | " + " | ".join(cells) + f" | {imprv} |")
        if with_paper and row["task"] in TABLE_II:
            published = TABLE_II[row["task"]]  # a method the paper did not run (a new registry entry) gets "–"
            paper = [f"{published[t][row['metric']]:.4f}" if t in published else "–" for t in TITLES]
            paper.append(f"{TABLE_II_IMPRV[row['task']][row['metric']]:.1f}")
            lines.append(f"| {row['task']} | {HEADERS[row['metric']]} paper | " + " | ".join(paper) + " |")
    seeds = seeds_text(int(n) for r in rows for n in r["seeds"].split("/"))
    note = (
        f"\nTest metrics (full ranking over all items of the task), {_rule_text(rule, rows)}. "
        f"Mean over {seeds} seed(s), ± sample std where there are several; bold = best on the row, underlined = "
        "best baseline; imprv = 100 · (best ANT variant − best baseline) / best baseline, in %; "
        f"* = imprv > 0 and p < {alpha:g} in a paired t-test (scipy ttest_rel) of the best ANT variant against the "
        "best baseline over users, each user's metric first averaged over the seeds of its column; – = not run."
        + (" Rows 'paper': the paper's Table II." if with_paper else "")
        + "\n"
    )
    return "\n".join(lines) + "\n" + note
