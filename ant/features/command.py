"""What the feature commands (embed-text, embed-image, embed-price) share: their store's flags, and filling it.

`add_store_arguments` gives a command the flags of its store (task, items, folder, shard size, partitioning),
`check_store_arguments` refuses impossible values, and `fill_store_from_arguments` fills the store those
flags name with the command's `compute`: every shard and the manifest, or one partition and its marker (whose
manifest the `merge-features` command writes once every partition is done).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ant.errors import UserError
from ant.features.store import ComputeShard, FeatureStore, Shard, fill_store


def add_store_arguments(parser: argparse.ArgumentParser, shard_items: int) -> None:
    """The flags every feature command shares: where the store goes, its shard size and partitioning."""
    parser.add_argument("--task", required=True, help="task name (recorded in the manifest)")
    parser.add_argument("--items", required=True, help="the task's items.parquet")
    parser.add_argument("--out-dir", required=True, help="store folder: shards, partition markers, manifest.json")
    parser.add_argument("--shard-items", type=int, default=shard_items, help="items per shard (resume unit)")
    parser.add_argument("--partitions", type=int, default=1, help="how many jobs share this task's shards")
    parser.add_argument(
        "--partition",
        type=int,
        default=None,
        help="compute only this partition (0-based) and write its marker (then: merge-features); without it: "
        "everything and the manifest",
    )


def check_store_arguments(args: argparse.Namespace) -> None:
    if args.shard_items < 1 or args.partitions < 1:
        raise UserError("--shard-items and --partitions must be at least 1")
    if args.partition is not None and not 0 <= args.partition < args.partitions:
        raise UserError(f"--partition {args.partition} is not in 0..{args.partitions - 1}")


def fill_store_from_arguments(
    args: argparse.Namespace,
    modality: str,
    compute: ComputeShard,
    *,
    encoder: dict[str, Any],
    dim: int,
    item_ids: Sequence[str],
    inputs_digest: str,
    extra: dict[str, Any] | None = None,
) -> list[Shard]:
    """`fill_store` on the `modality` store and partition the command's flags name; returns the shards computed."""
    store = FeatureStore(
        args.out_dir,
        task=args.task,
        modality=modality,
        encoder=encoder,
        dim=dim,
        item_ids=item_ids,
        inputs_digest=inputs_digest,
        shard_rows=args.shard_items,
    )
    return fill_store(store, compute, partition=args.partition, partitions=args.partitions, extra=extra)
