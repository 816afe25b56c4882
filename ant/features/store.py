"""The feature store: per task x modality x encoder, Parquet shards plus a manifest.

    results/features/<task>/<modality>/<encoder>/
        part-00000.parquet   item_idx i32, vector fixed_size_list<f32>[d], present bool
        manifest.json        written last: encoder, dim, items, shards + checksums

A shard covers a contiguous item_idx range and is written atomically, with a fingerprint of everything its
vectors depend on (encoder identity, item order, inputs) in its Parquet metadata: a rerun skips the shards
whose fingerprint matches and recomputes the rest, so an interrupted job resumes where it stopped and a
changed model or changed items never reuse stale vectors. Downstream rules depend on the manifest only.
`load_features` is the one reader every later stage uses.

Partitions let several GPUs or nodes share one task: `fill_store(..., partition=i, partitions=P)` computes
only the shards of partition i (round-robin) and writes `partitions/<i>-of-<P>.json` (the output of one
Snakemake job per partition); `merge_partitions` then checks that every partition was computed with the
same fingerprint and writes the manifest. With one partition a single call computes everything and writes
the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ant.data.items import items_digest, read_item_ids
from ant.errors import UserError
from ant.io import read_json, read_parquet, sha256_file, write_json, write_parquet
from ant.resumable import FINGERPRINT_KEY, load_manifest, shard_metadata

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTITIONS_DIR = "partitions"


@dataclass(frozen=True)
class Shard:
    number: int
    start: int  # first item_idx
    stop: int  # one past the last item_idx

    @property
    def file(self) -> str:
        return f"part-{self.number:05d}.parquet"


class FeatureStore:
    """Writes one feature store. `inputs_digest` must change whenever the vectors would change."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        task: str,
        modality: str,
        encoder: dict[str, Any],
        dim: int,
        item_ids: Sequence[str],
        inputs_digest: str,
        shard_rows: int = 50_000,
    ) -> None:
        if dim < 1 or shard_rows < 1:
            raise ValueError("dim and shard_rows must be positive")
        self.out_dir = Path(out_dir)
        self.task, self.modality, self.encoder, self.dim = task, modality, dict(encoder), dim
        self.n_items = len(item_ids)
        self.items_sha256 = items_digest(item_ids)
        self.shard_rows = shard_rows
        self.inputs_digest = inputs_digest
        self.fingerprint = hashlib.sha256(
            json.dumps(
                [FORMAT_VERSION, modality, self.encoder, dim, self.items_sha256, inputs_digest, shard_rows],
                sort_keys=True,
            ).encode()
        ).hexdigest()

    def shards(self, partition: int = 0, partitions: int = 1) -> list[Shard]:
        """The shards of one partition (round-robin over shard numbers so partitions stay balanced)."""
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
        count = -(-self.n_items // self.shard_rows)
        return [
            Shard(n, n * self.shard_rows, min((n + 1) * self.shard_rows, self.n_items))
            for n in range(count)
            if n % partitions == partition
        ]

    def is_done(self, shard: Shard) -> bool:
        meta = shard_metadata(self.out_dir / shard.file)
        return meta is not None and meta.get(FINGERPRINT_KEY) == self.fingerprint.encode()

    def write_shard(self, shard: Shard, values: np.ndarray, present: np.ndarray) -> None:
        n = shard.stop - shard.start
        values = np.ascontiguousarray(values, dtype=np.float32)
        present = np.asarray(present, dtype=bool)
        if values.shape != (n, self.dim) or present.shape != (n,):
            raise ValueError(f"shard {shard.number}: expected ({n}, {self.dim}) vectors and ({n},) flags")
        if not np.isfinite(values).all():
            raise ValueError(f"shard {shard.number}: non-finite feature values")
        table = pa.table(
            {
                "item_idx": pa.array(np.arange(shard.start, shard.stop, dtype=np.int32)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), self.dim),
                "present": pa.array(present),
            }
        ).replace_schema_metadata({FINGERPRINT_KEY: self.fingerprint.encode()})
        write_parquet(table, self.out_dir / shard.file)

    def pending(self, partition: int = 0, partitions: int = 1) -> list[Shard]:
        return [s for s in self.shards(partition, partitions) if not self.is_done(s)]

    def write_partition_marker(self, partition: int, partitions: int, extra: dict[str, Any] | None = None) -> Path:
        """Record that partition `partition` of `partitions` is complete, with what `merge_partitions` needs
        (`extra`: the command's additions to the manifest, the same in every partition)."""
        missing = [s.file for s in self.pending(partition, partitions)]
        if missing:
            raise RuntimeError(f"{self.out_dir}: partition {partition}: {len(missing)} shard(s) missing: {missing[:5]}")
        path = partition_marker(self.out_dir, partition, partitions)
        marker = {
            "partition": partition,
            "partitions": partitions,
            "fingerprint": self.fingerprint,
            "task": self.task,
            "modality": self.modality,
            "encoder": self.encoder,
            "dim": self.dim,
            "inputs_digest": self.inputs_digest,
            "shard_rows": self.shard_rows,
            "shards": [s.file for s in self.shards(partition, partitions)],
            "extra": extra or {},
        }
        write_json(marker, path)
        return path

    def write_manifest(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check that every shard is done and write the manifest (the output other rules depend on)."""
        shards = self.shards()
        missing = [s.file for s in shards if not self.is_done(s)]
        if missing:
            raise RuntimeError(f"{self.out_dir}: {len(missing)} shard(s) missing or stale: {missing[:5]}")
        present = 0
        entries = []
        for shard in shards:
            path = self.out_dir / shard.file
            present += int(read_parquet(path, columns=["present"]).column("present").to_numpy().sum())
            entries.append({"file": shard.file, "start": shard.start, "stop": shard.stop, "sha256": sha256_file(path)})
        manifest = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "modality": self.modality,
            "encoder": self.encoder,
            "dim": self.dim,
            "items": self.n_items,
            "items_sha256": self.items_sha256,
            "present": present,
            "fingerprint": self.fingerprint,
            "shards": entries,
            **(extra or {}),
        }
        write_json(manifest, self.out_dir / MANIFEST)
        return manifest


def partition_marker(out_dir: str | Path, partition: int, partitions: int) -> Path:
    return Path(out_dir) / PARTITIONS_DIR / f"{partition}-of-{partitions}.json"


def merge_partitions(out_dir: str | Path, item_ids: Sequence[str], partitions: int) -> dict[str, Any]:
    """Write the manifest of a store whose partitions were computed by separate jobs.

    The store's settings and the manifest's extra fields come from the partition markers (the merge job may run
    on another machine, without the model or a GPU), and all markers must agree on the fingerprint: partitions
    computed with another model, precision or item list are refused.
    """
    markers = []
    for partition in range(partitions):
        path = partition_marker(out_dir, partition, partitions)
        if not path.exists():
            raise UserError(f"{path} is missing: run partition {partition} of {partitions} first")
        markers.append(read_json(path))
    fingerprints = {m["fingerprint"] for m in markers}
    if len(fingerprints) != 1:
        raise UserError(
            f"{out_dir}: the {partitions} partitions were computed with different encoders, precisions or "
            "inputs; rerun them with one configuration"
        )
    first = markers[0]
    store = FeatureStore(
        out_dir,
        task=first["task"],
        modality=first["modality"],
        encoder=first["encoder"],
        dim=first["dim"],
        item_ids=item_ids,
        inputs_digest=first["inputs_digest"],
        shard_rows=first["shard_rows"],
    )
    if store.fingerprint != first["fingerprint"]:
        raise UserError(f"{out_dir}: the partitions were computed for another item list; rerun them")
    try:
        manifest = store.write_manifest(first.get("extra"))
    except RuntimeError as err:
        raise UserError(f"{err}; rerun the partition jobs") from err
    log.info(
        "%s: %d partitions merged, %d shards, %d items", out_dir, partitions, len(manifest["shards"]), store.n_items
    )
    return manifest


ComputeShard = Callable[[Shard, Any], tuple[np.ndarray, np.ndarray]]


def fill_store(
    store: FeatureStore,
    compute: ComputeShard,
    *,
    partition: int | None = None,
    partitions: int = 1,
    extra: dict[str, Any] | None = None,
    label: str = "items",
) -> list[Shard]:
    """Compute the store's missing shards and finish it; returns the shards computed by this call.

    `compute(shard, progress)` returns (values [n, d], present [n]) for the shard's items and advances the
    tqdm bar `progress` by the items it has done. With `partition=None` every shard is computed and the
    manifest written; with a partition number only that partition's shards, then its marker.
    """
    from tqdm import tqdm

    own = store.shards() if partition is None else store.shards(partition, partitions)
    todo = [s for s in own if not store.is_done(s)]
    log.info(
        "%s/%s: %d of %d shard(s) already done, %d to compute",
        store.task,
        store.modality,
        len(own) - len(todo),
        len(own),
        len(todo),
    )
    if todo:
        with tqdm(
            total=sum(s.stop - s.start for s in todo),
            unit=" " + label,
            file=sys.stderr,
            desc=f"{store.task} {store.modality}",
            mininterval=0.5 if sys.stderr.isatty() else 15,
        ) as progress:
            for shard in todo:
                values, present = compute(shard, progress)
                store.write_shard(shard, values, present)
    if partition is None:
        store.write_manifest(extra)
    else:
        store.write_partition_marker(partition, partitions, extra)
    return todo


@dataclass(frozen=True)
class Features:
    values: np.ndarray  # float32 [N, d], row i = item_idx i; zero rows where not present
    present: np.ndarray  # bool [N]
    manifest: dict[str, Any]

    @property
    def dim(self) -> int:
        return self.values.shape[1]


def load_features(manifest_path: str | Path, items_path: str | Path | None = None, verify: bool = True) -> Features:
    """Read a feature store into an [N, d] float32 matrix aligned to item_idx, plus the presence mask.

    With `items_path`, refuses a store built for another item list (count or order). With `verify`, checks
    every shard's checksum against the manifest.
    """
    manifest_path = Path(manifest_path)
    manifest = load_manifest(manifest_path, FORMAT_VERSION, "feature", "feature rule")
    n, dim = int(manifest["items"]), int(manifest["dim"])
    if items_path is not None:
        item_ids = read_item_ids(items_path)
        if len(item_ids) != n:
            raise UserError(
                f"{manifest_path} holds {n} items but {items_path} has {len(item_ids)}: "
                "the features are stale, rerun the feature rule"
            )
        if items_digest(item_ids) != manifest["items_sha256"]:
            raise UserError(
                f"{manifest_path}: item order differs from {items_path}; the features are stale, rerun the feature rule"
            )
    values = np.zeros((n, dim), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=bool)
    for entry in manifest["shards"]:
        path = manifest_path.parent / entry["file"]
        if verify and sha256_file(path) != entry["sha256"]:
            raise UserError(f"{path}: checksum differs from {manifest_path}; rerun the feature rule")
        table = read_parquet(path)
        idx = table.column("item_idx").to_numpy()
        if len(idx) and (idx.min() < 0 or idx.max() >= n or seen[idx].any()):
            raise UserError(f"{path}: item_idx outside 0..{n - 1} or repeated")
        vec = table.column("vector").combine_chunks()
        values[idx] = vec.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        present[idx] = table.column("present").to_numpy(zero_copy_only=False)
        seen[idx] = True
    if not seen.all():
        raise UserError(f"{manifest_path}: {int((~seen).sum())} item(s) have no vector")
    return Features(values=values, present=present, manifest=manifest)
