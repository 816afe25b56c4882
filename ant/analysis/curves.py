"""Training curves: each run's training loss and validation metric per epoch, one small panel per run.

    python -m ant figure training-curves --history "sasrec/default seed0=results/runs/Office/sasrec/default/seed0/\
history.csv" [--history NAME=PATH ...] [PATH ...] --out OUT.png [--title TEXT] [--metric recall@10]

Reads the runs' history.csv (one row per epoch, as the trainer writes it: epoch, lr, loss, the loss's parts,
train_seconds, valid_<metric> under the configured history rule, both rules' and, in pre-training, every task's
valid_* columns, valid_seconds, best). Each panel shows the mean training loss (left axis; logarithmic when it
spans more than a factor of 30, as S3-Rec's pre-training losses do) and valid_<metric> (right axis), and marks the
kept epoch: the last one whose `best` is True, i.e. the epoch whose weights the run saved. A history without
validation columns (S3-Rec's and UniSRec's pre-training, which run a fixed budget and keep the last epoch) gets a
loss-only panel.

A panel's title is NAME for `--history NAME=PATH` (NAME may not contain "="), else derived from the run folder
as the workflow names them: results/runs/<task>/<method>/<variant>/seed<k>/ -> "<method>/<variant> seed<k>",
results/pretrain/<method>/[<task or corpus>/]seed<k>/ -> "<method> [<task or corpus> ]pre-training seed<k>" (the
workflow names its pre-trainings' panels with --history, a corpus left to the figure's title), any other path -> its
folder. Panels follow the order of the --history options, then the positional paths. The figure is WIDTH_IN
inches wide at DPI (1600 px), COLUMNS panels a row, ROW_IN inches a row plus a HEADER_IN header.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ant.errors import UserError
from ant.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLUMNS = 4  # panels per row
WIDTH_IN = 16.0  # figure width in inches, whatever the number of panels
DPI = 100
ROW_IN = 3.0  # height of one row of panels, titles and tick labels included
HEADER_IN = 0.95  # the figure title, the key and the first row's panel titles
BOTTOM_IN = 0.45  # room for the last row's x tick labels
LOG_SPAN = 30.0  # a loss spanning more than this factor is drawn on a log axis (else its tail is a flat line)


@dataclass
class Curve:
    label: str  # the panel's title
    path: Path  # the history.csv it was read from
    epoch: np.ndarray  # (E,) epoch numbers, 1-based
    loss: np.ndarray  # (E,) mean training loss of each epoch
    metric: np.ndarray | None  # (E,) valid_<metric> per epoch, NaN where not validated; None: no validation at all
    kept: int | None  # the epoch whose weights the run kept (last `best` True); None without a `best` column


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, help="history.csv files, panels titled from their run folder")
    parser.add_argument(
        "--history", action="append", default=[], metavar="NAME=PATH", help="a panel titled NAME (repeatable)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output PNG")
    parser.add_argument("--title", default="Training curves", help="the figure's title")
    parser.add_argument("--metric", default="recall@10", help="validation metric: the history's valid_<metric> column")


def run(args: argparse.Namespace) -> int:
    panels = [_named(item) for item in args.history] + [(label_from_path(p), p) for p in args.paths]
    if not panels:
        raise UserError("no history.csv given: pass --history NAME=PATH or paths")
    labels = [label for label, _ in panels]
    if dupes := sorted({label for label in labels if labels.count(label) > 1}):
        raise UserError(f"two panels titled {dupes[0]!r}: name them apart with --history NAME=PATH")
    curves = [read_history(path, label, args.metric) for label, path in panels]
    draw(curves, args.out, args.title, args.metric)
    return 0


def _named(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise UserError(f"--history {item!r}: expected NAME=path/to/history.csv")
    return name, Path(path)


def label_from_path(path: Path) -> str:
    """A panel title from the run folder (the workflow's curve_label does the same for its --history names)."""
    parts = path.parent.parts
    for i in range(len(parts) - 1, -1, -1):
        rest = parts[i + 1 :]
        if parts[i] == "runs" and len(rest) == 4:  # runs/<task>/<method>/<variant>/seed<k>
            return f"{rest[1]}/{rest[2]} {rest[3]}"
        if parts[i] == "pretrain" and len(rest) in (2, 3):  # pretrain/<method>/[<task>/]seed<k>
            return " ".join([*rest[:-1], "pre-training", rest[-1]])
    return str(path.parent)


def read_history(path: Path, label: str, metric: str) -> Curve:
    if not path.is_file():
        raise UserError(f"{path}: not found (the history.csv of {label!r})")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    missing = [c for c in ("epoch", "loss") if c not in header]
    if missing:
        raise UserError(f"{path}: not a history.csv (no {' or '.join(missing)} column)")
    if not body:
        raise UserError(f"{path}: no epochs in this history.csv")
    if any(len(row) != len(header) for row in body):
        raise UserError(f"{path}: rows with a different number of fields than the header; the file is damaged")
    cells = np.array(body, dtype=object)  # (E, columns) strings

    def column(name: str) -> np.ndarray:
        values = cells[:, header.index(name)]
        values[values == ""] = "nan"  # an epoch without this value (the trainer writes a blank)
        try:
            return values.astype(float)
        except ValueError:
            raise UserError(f"{path}: column {name!r} holds a value that is not a number") from None

    valid = [c for c in header if c.startswith("valid_") and c != "valid_seconds"]
    if valid and f"valid_{metric}" not in header:
        known = sorted(c.removeprefix("valid_") for c in valid if "/" not in c)
        raise UserError(f"{path}: no column valid_{metric}; its validation metrics are {', '.join(known)}")
    epoch, loss = column("epoch"), column("loss")
    kept = None
    if "best" in header:
        best = cells[:, header.index("best")] == "True"  # (E,) epochs that improved the kept model
        kept = int(epoch[np.flatnonzero(best)[-1]]) if best.any() else None
    return Curve(label, path, epoch, loss, column(f"valid_{metric}") if valid else None, kept)


def figure_size(panels: int) -> tuple[float, float]:
    """(width, height) in inches: a fixed width, one ROW_IN per row of COLUMNS panels."""
    return WIDTH_IN, HEADER_IN + BOTTOM_IN + math.ceil(panels / COLUMNS) * ROW_IN


def draw(curves: list[Curve], out: Path, title: str, metric: str) -> None:
    # matplotlib only here: `python -m ant figure --help` and the table commands never import it
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    width, height = figure_size(len(curves))
    rows = math.ceil(len(curves) / COLUMNS)
    with matplotlib.rc_context({"font.size": 7, "axes.titlesize": 7.5}):
        fig = Figure(figsize=(width, height), dpi=DPI)
        fig.suptitle(title, x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=11, fontweight="bold")
        key = f"blue: training loss (left axis)   orange: validation {metric} (right axis)   dashed line: kept epoch"
        fig.text(0.01, 1 - 0.42 / height, key, ha="left", va="top", fontsize=8, color="0.3")
        grid = fig.add_gridspec(
            rows,
            COLUMNS,
            left=0.035,
            right=0.965,
            top=1 - HEADER_IN / height,
            bottom=BOTTOM_IN / height,
            wspace=0.42,
            hspace=0.62,
        )
        for i, curve in enumerate(curves):
            _panel(fig.add_subplot(grid[i // COLUMNS, i % COLUMNS]), curve, metric)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)


def _panel(ax: Axes, curve: Curve, metric: str) -> None:
    ax.plot(curve.epoch, curve.loss, color="C0", lw=1.2)
    ax.locator_params(axis="x", nbins=5, integer=True)  # few ticks: small panels, and each tick is a costly artist
    ax.locator_params(axis="y", nbins=5)
    ax.set_ylabel("loss", color="C0")
    ax.tick_params(axis="y", colors="C0")
    ax.set_xlabel("epoch", labelpad=1)
    finite = curve.loss[np.isfinite(curve.loss)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > LOG_SPAN:
        ax.set_yscale("log")
    if curve.kept is not None:
        ax.axvline(curve.kept, color="0.45", ls="--", lw=0.8)
    note = f"{len(curve.epoch)} epochs, no validation" + (f", epoch {curve.kept} kept" if curve.kept else "")
    if curve.metric is not None:
        twin = ax.twinx()
        shown = np.isfinite(curve.metric)
        twin.plot(curve.epoch[shown], curve.metric[shown], color="C1", lw=1.2, marker=".", ms=3)
        twin.set_ylabel(f"valid {metric}", color="C1")
        twin.locator_params(axis="y", nbins=5)
        twin.tick_params(axis="y", colors="C1")
        if curve.kept is not None:
            at = curve.metric[curve.epoch == curve.kept]  # (1,) the kept epoch's value
            twin.plot([curve.kept], at, color="C3", marker="*", ms=9, ls="none")
            note = f"kept epoch {curve.kept}/{len(curve.epoch)}: {metric} {at[0]:.4f}"
        else:
            note = f"{len(curve.epoch)} epochs, best {metric} {np.nanmax(curve.metric):.4f}"
    # a fixed title height (y): matplotlib would otherwise measure every twin axis to place it, half the drawing time
    ax.set_title(f"{curve.label}\n{note}", loc="left", y=1.01)
