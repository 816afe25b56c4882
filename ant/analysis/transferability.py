"""Figure 2, transferability (spec baselines.md section 13, paper section 6.3): how well a classifier tells a
target task's items from an auxiliary task's, per modality. Higher accuracy = more separable = less transferable.

    python -m ant figure transferability --items Scientific=.../items.parquet --features Scientific.text=... \
        (--items / --features for every task, text, image and price) --targets Scientific Office \
        --auxiliary Food Movies Home Clothing \
        --pretrained results/pretrain/ant/Food+Movies+Home+Clothing/seed0/model.safetensors \
        --csv results/tables/paper/transferability.csv --md results/tables/paper/transferability.md \
        --figure text=results/figures/paper/transferability_text.png --figure image=... --figure price=...

Features (--features-kind): `pretrained` = the transformed embeddings e_text, e_image, e_price of the pre-trained
ANT's item encoder in eval mode (g = softmax(mu), no dropout), each task's items embedded once; `raw` = the frozen
features as stored. Text keeps every item; image and price drop the items whose feature is absent. Each (target,
auxiliary) pair of a modality gets its own generator (seeded by --seed and the pair, so its numbers do not depend
on the other pairs), its own balanced 70/10/20 split and classifier (ant.analysis.linear_probe: all pairs of a
modality train together). A pair with fewer than MIN_PER_SIDE items on a side is skipped: its row says why.

Outputs: the CSV (a row per modality, target and auxiliary: items with the feature on each side, split sizes, best
epoch, validation and test accuracy), the Markdown (a target x auxiliary grid per modality) and, per --figure, a
heat-map PNG of the test accuracies (colour range 0.5-1.0 in every figure), always 840 x 600 pixels.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ant.analysis.html import add_html_argument, write_markdown
from ant.analysis.linear_probe import MIN_PER_SIDE, MODELS, ProbeSettings, make_probe_set, train_probes
from ant.device import resolve_device, set_threads
from ant.errors import UserError
from ant.features.store import load_features
from ant.io import atomic_path, write_text
from ant.model.ant import load_model
from ant.model.item_encoder import MODALITIES

log = logging.getLogger(__name__)

FEATURE_KINDS = ("pretrained", "raw")
COLUMNS = (
    "modality", "target", "auxiliary", "n_target", "n_auxiliary", "n_train", "n_valid", "n_test",
    "best_epoch", "valid_accuracy", "test_accuracy", "features_kind", "model", "note",
)  # fmt: skip
FIGSIZE, DPI = (7.0, 5.0), 120  # inches and dots per inch: 840 x 600 pixels, the same for every figure
COLOUR_RANGE = (0.5, 1.0)  # chance level to perfect separation, fixed so that the three figures compare
EMBED_BATCH = 4096  # items per forward pass of the item encoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", action="append", default=[], metavar="NAME=PATH", help="a task's items.parquet")
    parser.add_argument(
        "--features", action="append", default=[], metavar="NAME.MODALITY=MANIFEST", help="text, image, price"
    )
    parser.add_argument("--targets", nargs="+", required=True, help="target tasks (the heat-maps' rows)")
    parser.add_argument("--auxiliary", nargs="+", required=True, help="auxiliary tasks (the heat-maps' columns)")
    parser.add_argument("--pretrained", type=Path, help="the pre-trained ANT model.safetensors (features pretrained)")
    parser.add_argument("--features-kind", choices=FEATURE_KINDS, default="pretrained", help="default: pretrained")
    parser.add_argument("--model", choices=MODELS, default="linear", help="linear or mlp (d->256->ReLU->1)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per classifier (default 100)")
    parser.add_argument("--batch-size", type=int, default=1024, help="training rows per step (default 1024)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of balancing, splits, initialisation and order")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV")
    parser.add_argument("--md", required=True, type=Path, help="output Markdown")
    add_html_argument(parser)
    parser.add_argument("--figure", action="append", default=[], metavar="MODALITY=PNG", help="a heat-map to draw")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    settings = ProbeSettings(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    figures = parse_named(args.figure, "--figure", "text=results/figures/paper/transferability_text.png", MODALITIES)
    targets, auxiliary = _task_lists(args.targets, args.auxiliary)
    files = parse_inputs(args.items, args.features, targets + auxiliary)
    if args.features_kind == "pretrained" and args.pretrained is None:
        raise UserError("--features-kind pretrained needs --pretrained MODEL.safetensors (or use --features-kind raw)")
    if args.features_kind == "raw" and args.pretrained is not None:
        log.warning("--features-kind raw: --pretrained %s is not read", args.pretrained)
    set_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.pretrained)[0] if args.features_kind == "pretrained" else None
    embeddings = {name: load_embeddings(name, *files[name], model, device) for name in files}
    rows = []
    for modality in MODALITIES:
        rows += probe_modality(modality, embeddings, targets, auxiliary, settings, args.seed, device)
    for row in rows:
        row.update(features_kind=args.features_kind, model=args.model)
    write_text(to_csv(rows), args.csv)
    markdown = to_markdown(rows, targets, auxiliary, args.features_kind, args.model)
    write_markdown(markdown, args.md, args.html, "Figure 2: transferability")
    for modality, path in figures.items():
        draw_heatmap([r for r in rows if r["modality"] == modality], targets, auxiliary, path)
    log.info("transferability: %d pairs x %d modalities in %.1f s", len(rows) // 3, 3, time.perf_counter() - start)
    return 0


def parse_named(specs: list[str], flag: str, example: str, keys: tuple[str, ...] | None = None) -> dict[str, Path]:
    """NAME=PATH flags -> {NAME: PATH}, each name once (and one of `keys` where given)."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{flag} {spec!r}: expected NAME=PATH, e.g. {flag} {example}")
        if keys is not None and name not in keys:
            raise UserError(f"{flag} {spec!r}: {name!r} is not one of {', '.join(keys)}")
        if name in out:
            raise UserError(f"{flag}: {name!r} given twice")
        out[name] = Path(path)
    return out


def _task_lists(targets: list[str], auxiliary: list[str]) -> tuple[list[str], list[str]]:
    for flag, names in (("--targets", targets), ("--auxiliary", auxiliary)):
        if len(set(names)) != len(names):
            raise UserError(f"{flag}: a task is named twice in {' '.join(names)}")
    if both := sorted(set(targets) & set(auxiliary)):
        raise UserError(f"{', '.join(both)}: a task cannot be both a target and an auxiliary task here")
    return list(targets), list(auxiliary)


def parse_inputs(items: list[str], features: list[str], tasks: list[str]) -> dict[str, tuple[Path, dict[str, Path]]]:
    """--items NAME=PATH and --features NAME.MODALITY=MANIFEST -> {task: (items, {modality: manifest})}, for
    exactly the tasks named in --targets and --auxiliary, each with all three modalities."""
    item_paths = parse_named(items, "--items", "Scientific=results/data/Scientific/items.parquet")
    manifests: dict[str, dict[str, Path]] = {name: {} for name in tasks}
    for key, path in parse_named(features, "--features", "Scientific.text=.../manifest.json").items():
        name, _, modality = key.rpartition(".")
        if modality not in MODALITIES:
            raise UserError(f"--features {key}={path}: expected NAME.MODALITY with MODALITY one of {MODALITIES}")
        manifests.setdefault(name, {})[modality] = path
    if extra := sorted((set(item_paths) | set(manifests)) - set(tasks)):
        raise UserError(f"--items / --features for {', '.join(extra)}, which is in neither --targets nor --auxiliary")
    for name in tasks:
        if name not in item_paths:
            raise UserError(f"task {name!r}: no --items {name}=PATH")
        if missing := [m for m in MODALITIES if m not in manifests[name]]:
            raise UserError(f"task {name!r}: no --features for {', '.join(missing)}")
    return {name: (item_paths[name], manifests[name]) for name in tasks}


def load_embeddings(
    name: str, items: Path, manifests: dict[str, Path], model: torch.nn.Module | None, device: torch.device
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """modality -> (vectors [N, d] on the CPU, kept [N] bool) of one task: the pre-trained item encoder's e_m of
    every item (model given) or the stored features; text keeps every item, image and price the present ones."""
    features = {m: load_features(path, items) for m, path in manifests.items()}
    kept = {m: torch.from_numpy(f.present) for m, f in features.items()}
    kept["text"] = torch.ones(len(kept["text"]), dtype=torch.bool)  # text keeps every item (spec section 13)
    if model is None:
        return {m: (torch.from_numpy(f.values), kept[m]) for m, f in features.items()}
    if wrong := [
        f"{m} {f.dim} vs {model.config.dims[m]}" for m, f in features.items() if f.dim != model.config.dims[m]
    ]:
        raise UserError(f"task {name}: feature dimensions differ from the pre-trained model's: {'; '.join(wrong)}")
    encoder = model.items.to(device).eval()  # eval: softmax(mu) routing, no dropout
    n = len(kept["text"])
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in MODALITIES}
    with torch.no_grad():
        for lo in range(0, n, EMBED_BATCH):
            batch = {m: torch.from_numpy(f.values[lo : lo + EMBED_BATCH]).to(device) for m, f in features.items()}
            for m, e in encoder(batch)[1].items():  # parts: modality -> e_m [batch, d]
                parts[m].append(e.float().cpu())
    return {m: (torch.cat(parts[m]), kept[m]) for m in MODALITIES}


def pair_seed(seed: int, modality: str, target: str, auxiliary: str) -> int:
    """A pair's own seed, so that its numbers do not change with the other tasks given."""
    digest = hashlib.sha256(json.dumps([seed, modality, target, auxiliary]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def probe_modality(
    modality: str,
    embeddings: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]],
    targets: list[str],
    auxiliary: list[str],
    settings: ProbeSettings,
    seed: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    """A row per (target, auxiliary) pair of one modality, all pairs' classifiers trained in one call."""
    start = time.perf_counter()
    names = list(dict.fromkeys(targets + auxiliary))
    dims = {name: embeddings[name][modality][0].shape[1] for name in names}
    if len(set(dims.values())) > 1:
        raise UserError(f"{modality}: feature dimensions differ between tasks {dims}: use the same encoder everywhere")
    sizes = np.cumsum([0] + [len(embeddings[name][modality][1]) for name in names]).tolist()
    # the kept items of each task as rows of one matrix of every task's vectors
    kept = {name: sizes[i] + torch.nonzero(embeddings[name][modality][1]).squeeze(1) for i, name in enumerate(names)}
    rows, sets, generators = [], [], []
    for target in targets:
        for aux in auxiliary:
            row: dict[str, Any] = {"modality": modality, "target": target, "auxiliary": aux}
            row.update(n_target=len(kept[target]), n_auxiliary=len(kept[aux]), note="")
            rows.append(row)
            if min(len(kept[target]), len(kept[aux])) < MIN_PER_SIDE:
                row["note"] = f"skipped: fewer than {MIN_PER_SIDE} items with a {modality} feature on one side"
                log.warning("%s %s vs %s: %s", modality, target, aux, row["note"])
                continue
            generators.append(torch.Generator().manual_seed(pair_seed(seed, modality, target, aux)))
            sets.append((row, make_probe_set(kept[target], kept[aux], generators[-1])))
    everything = torch.cat([embeddings[name][modality][0] for name in names])  # [N_all, d] on the CPU
    results = train_probes(everything, [s for _, s in sets], generators, settings, device)
    for (row, s), result in zip(sets, results, strict=True):
        row.update(n_train=s.size("train"), n_valid=s.size("valid"), n_test=s.size("test"))
        row.update(best_epoch=result.best_epoch, valid_accuracy=result.valid_accuracy)
        row.update(test_accuracy=result.test_accuracy)
    skipped = len(rows) - len(sets)
    log.info("%s: %d pairs trained, %d skipped, %.1f s", modality, len(sets), skipped, time.perf_counter() - start)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: f"{v:.6f}" if isinstance(v := row.get(c, ""), float) else v for c in COLUMNS})
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]], targets: list[str], auxiliary: list[str], kind: str, model: str) -> str:
    """Per modality a grid of test accuracies, rows targets and columns auxiliary tasks, as the heat-maps."""
    cell = {(r["modality"], r["target"], r["auxiliary"]): r for r in rows}
    lines = []
    for modality in MODALITIES:
        lines += [f"## {modality}", "", "| Target \\ Auxiliary | " + " | ".join(auxiliary) + " |"]
        lines.append("|---|" + "---:|" * len(auxiliary))
        for target in targets:
            values = [cell[(modality, target, aux)].get("test_accuracy") for aux in auxiliary]
            lines.append(f"| {target} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
        lines.append("")
    skipped = sum(1 for r in rows if r["note"])
    lines.append(
        f"Test accuracy of the {model} classifier separating the target's items from the auxiliary's ({kind} "
        "features; balanced, 70/10/20 split, epoch chosen on validation accuracy). Higher = more separable = less "
        f"transferable; 0.5 = chance. – = skipped ({skipped} pair(s); see the CSV's note)."
    )
    return "\n".join(lines) + "\n"


def draw_heatmap(rows: list[dict[str, Any]], targets: list[str], auxiliary: list[str], path: Path) -> None:
    """One modality's heat-map of test accuracy (rows targets, columns auxiliary tasks), FIGSIZE at DPI."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cell = {(r["target"], r["auxiliary"]): r.get("test_accuracy", math.nan) for r in rows}
    grid = np.array([[cell[(t, a)] for a in auxiliary] for t in targets], dtype=float)  # [targets, auxiliary]
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    try:
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=COLOUR_RANGE[0], vmax=COLOUR_RANGE[1])
        for (i, j), value in np.ndenumerate(grid):
            text = "–" if math.isnan(value) else f"{value:.2f}"
            dark = not math.isnan(value) and value < 0.8  # viridis is dark below the middle of the range
            ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black", fontsize=11)
        ax.set_xticks(range(len(auxiliary)), auxiliary, rotation=30, ha="right")
        ax.set_yticks(range(len(targets)), targets)
        ax.set_xlabel("auxiliary task")
        ax.set_ylabel("target task")
        first = rows[0]
        ax.set_title(f"Separability of {first['modality']} ({first['features_kind']} features, {first['model']})")
        fig.colorbar(image, ax=ax, label="test accuracy")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
