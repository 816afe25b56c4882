"""`python -m ant merge-features`: the manifest of a feature store whose partitions separate jobs computed.

    python -m ant merge-features --items results/data/T/items.parquet --out-dir results/features/T/text/bert \\
        --partitions 4

Checks that each of the P partitions wrote its marker (partitions/<i>-of-<P>.json) with one fingerprint and that
every shard is there, then writes manifest.json, the file later rules depend on. It needs neither the encoder nor
a GPU, nor torch: a merge is seconds of work, for any modality.
"""

from __future__ import annotations

import argparse

from ant.data.items import read_item_ids
from ant.errors import UserError
from ant.features.store import merge_partitions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", required=True, help="the task's items.parquet")
    parser.add_argument("--out-dir", required=True, help="the store folder (its partitions/ and shards)")
    parser.add_argument("--partitions", type=int, required=True, help="how many partition jobs filled the store")


def run(args: argparse.Namespace) -> int:
    if args.partitions < 1:
        raise UserError("--partitions must be at least 1")
    merge_partitions(args.out_dir, read_item_ids(args.items), args.partitions)
    return 0
