"""`python -m ant <command>`: one sub-command per workflow step.

Each command lives in its own module, which defines ``add_arguments(parser)`` and ``run(args) -> int``; a
command with sub-commands (`table <name>`, `figure <name>`, `bench <name>`) is a module with a ``SUBCOMMANDS``
registry of the same shape instead. Modules are imported only when their command runs, so `--help` is instant
and the data stages never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ant.errors import UserError

# command -> (module, one-line help). Order = order in `--help`, roughly the order of the workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("ant.data.demo", "generate the embedded mini-Amazon demo in the raw 2018 formats"),
    "download": ("ant.data.download", "download (or copy) one raw file from an ordered list of mirrors"),
    "ingest": ("ant.data.ingest", "raw ratings + meta files -> interactions.parquet, items_raw.parquet"),
    "kcore": ("ant.data.kcore", "dedupe, drop items without meta, iterative k-core -> sequences, items, stats"),
    "export-recbole": ("ant.data.export", "write RecBole/UniSRec atomic files from our splits"),
    "tiny-models": ("ant.features.tiny_models", "build tiny BERT and Swin models from configs (offline demo/tests)"),
    "fetch-images": ("ant.images", "fetch, verify and resize item images into Parquet shards"),
    "embed-text": ("ant.features.text", "BERT [CLS] text features -> feature store"),
    "embed-image": ("ant.features.image", "Swin pooled image features -> feature store"),
    "embed-price": ("ant.features.price", "sinusoidal price features -> feature store"),
    "merge-features": ("ant.features.merge", "write a feature store's manifest once its partition jobs are done"),
    "pretrain": ("ant.train.pretrain", "pre-train ANT on the auxiliary tasks"),
    "adapt": ("ant.train.adapt", "adapt ANT to a target task (scratch / finetune / relearn / relearn+ID)"),
    "pretrain-baseline": ("ant.train.baseline_pretrain", "a baseline's own pre-training on a target task (S3-Rec)"),
    "train-baseline": ("ant.train.baseline", "train a baseline (NPE, SASRec, ...) on a target task"),
    "table": ("ant.analysis.tables", "render a result table (csv + md)"),
    "figure": ("ant.analysis.figures", "draw a figure (png) and the table of its numbers"),
    "bench": ("ant.bench", "benchmarks: data, features, train, baselines, precision"),
}


Registry = dict[str, tuple[str, str]]


def _add_commands(
    parser: argparse.ArgumentParser, registry: Registry, argv: list[str], dest: str, level: int = 0
) -> None:
    """One sub-parser per entry; only the chosen entry's module is imported (and asked for its arguments)."""
    metavar = "command" if level == 0 else "{" + ",".join(registry) + "}"
    sub = parser.add_subparsers(dest=dest, metavar=metavar, required=level > 0)
    chosen = next((a for a in argv if a in registry), None)
    for name, (module_name, text) in registry.items():
        p = sub.add_parser(name, help=text, description=text)
        if name != chosen:
            continue
        module = importlib.import_module(module_name)
        nested = getattr(module, "SUBCOMMANDS", None)
        if nested is None:
            module.add_arguments(p)
        else:
            rest = argv[argv.index(name) + 1 :]
            _add_commands(p, nested, rest, f"{dest}_{level + 1}", level + 1)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ant",
        description="ANT workflow steps. Each step is also a Snakemake rule; run `snakemake --cores 8 all`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_commands(parser, COMMANDS, argv or [], "command")
    return parser


def _chosen_module(args: argparse.Namespace) -> object:
    """The module of the (innermost) command that was chosen."""
    registry, dest, level = COMMANDS, "command", 0
    while True:
        module = importlib.import_module(registry[getattr(args, dest)][0])
        nested = getattr(module, "SUBCOMMANDS", None)
        if nested is None:
            return module
        registry, level = nested, level + 1
        dest = f"command_{level}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = _chosen_module(args)
    try:
        return int(module.run(args) or 0)
    except UserError as err:  # a clear, expected failure: no traceback
        logging.getLogger("ant").error("%s", err)
        return 1
