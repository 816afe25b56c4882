"""Table I: users, items, interactions, interactions per user and per item of every task.

    python -m ant table datasets Scientific=results/data/Scientific/stats.json [...] --csv OUT.csv --md OUT.md

Reads each task's stats.json (written by `kcore`); rows in the order of the command line. The Markdown
also shows, for a task named as in the paper, the paper's published counts and whether ours equal them
(spec §1: on the real Amazon 2018 files they must).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from ant.analysis.html import add_html_argument, write_markdown
from ant.errors import UserError
from ant.io import read_json, write_text

COLUMNS = ("task", "users", "items", "interactions", "interactions/user", "interactions/item")
# the paper's Table I (users, items, interactions)
PUBLISHED: dict[str, tuple[int, int, int]] = {
    "Scientific": (8_442, 4_385, 59_427),
    "Pantry": (13_101, 4_898, 126_962),
    "Instruments": (24_962, 9_964, 208_926),
    "Arts": (45_486, 21_019, 395_150),
    "Office": (87_346, 25_986, 684_837),
    "Food": (115_349, 39_670, 1_027_413),
    "Movies": (281_700, 59_203, 3_226_731),
    "Home": (731_913, 185_552, 6_451_926),
    "Clothing": (1_164_752, 372_593, 10_714_172),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stats", nargs="+", metavar="TASK=STATS_JSON", help="a task's name and its stats.json")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")
    add_html_argument(parser)


def run(args: argparse.Namespace) -> int:
    rows = [read_task(item) for item in args.stats]
    names = [row["task"] for row in rows]
    if len(set(names)) != len(names):
        raise UserError(f"a task is listed twice: {names}")
    write_text(to_csv(rows), args.csv)
    write_markdown(to_markdown(rows), args.md, args.html, "Table I: the tasks")
    return 0


def read_task(item: str) -> dict[str, Any]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise UserError(f"{item!r}: expected TASK=path/to/stats.json")
    if not Path(path).is_file():
        raise UserError(f"{path}: not found (the stats.json of task {name})")
    stats = read_json(path)
    missing = [key for key in ("users", "items", "interactions") if not isinstance(stats.get(key), int)]
    if missing:
        raise UserError(f"{path}: not a stats.json written by `kcore` (missing {', '.join(missing)})")
    if min(stats["users"], stats["items"]) <= 0:
        raise UserError(f"{path}: task {name} has no users or no items")
    return {
        "task": name,
        "users": stats["users"],
        "items": stats["items"],
        "interactions": stats["interactions"],
        "interactions/user": stats["interactions"] / stats["users"],
        "interactions/item": stats["interactions"] / stats["items"],
    }


def _cells(row: dict[str, Any], thousands: bool) -> list[str]:
    counts = [f"{row[c]:,}" if thousands else str(row[c]) for c in ("users", "items", "interactions")]
    return [row["task"], *counts, f"{row['interactions/user']:.2f}", f"{row['interactions/item']:.2f}"]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(row, thousands=False) for row in rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    compare = any(row["task"] in PUBLISHED for row in rows)
    header = ["task", "#users", "#items", "#intrns", "#intrns/u", "#intrns/i"]
    if compare:
        header.append("paper (users / items / intrns)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in rows:
        cells = _cells(row, thousands=True)
        if compare:
            cells.append(_paper_cell(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paper_cell(row: dict[str, Any]) -> str:
    published = PUBLISHED.get(row["task"])
    if published is None:
        return ""
    ours = (row["users"], row["items"], row["interactions"])
    mark = "equal" if ours == published else "**differs**"
    return " / ".join(f"{n:,}" for n in published) + f" ({mark})"
