"""The feature store: shards + manifest, resumable, and a reader that refuses stale features."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ant.errors import UserError
from ant.features.store import FeatureStore, load_features


def write_items(path, ids):
    pq.write_table(pa.table({"item_idx": pa.array(range(len(ids)), pa.int32()), "item_id": ids}), path)


def build(out_dir, ids, values, present, digest="inputs-v1", shard_rows=3):
    store = FeatureStore(
        out_dir,
        task="T",
        modality="text",
        encoder={"name": "enc"},
        dim=values.shape[1],
        item_ids=ids,
        inputs_digest=digest,
        shard_rows=shard_rows,
    )
    for shard in store.shards():
        store.write_shard(shard, values[shard.start : shard.stop], present[shard.start : shard.stop])
    store.write_manifest()
    return store


@pytest.fixture
def items(tmp_path):
    ids = [f"item{i}" for i in range(8)]
    write_items(tmp_path / "items.parquet", ids)
    return ids


def test_round_trip(tmp_path, items):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(8, 5)).astype(np.float32)
    present = rng.random(8) > 0.3
    build(tmp_path / "store", items, values, present)
    features = load_features(tmp_path / "store" / "manifest.json", tmp_path / "items.parquet")
    np.testing.assert_array_equal(features.values, values)
    np.testing.assert_array_equal(features.present, present)
    assert features.manifest["present"] == int(present.sum())
    assert [s["file"] for s in features.manifest["shards"]] == [f"part-0000{i}.parquet" for i in range(3)]


def test_resume_skips_only_matching_shards(tmp_path, items):
    values = np.ones((8, 2), np.float32)
    store = build(tmp_path / "s", items, values, np.ones(8, bool))
    assert all(store.is_done(s) for s in store.shards())
    changed = FeatureStore(
        tmp_path / "s",
        task="T",
        modality="text",
        encoder={"name": "enc"},
        dim=2,
        item_ids=items,
        inputs_digest="inputs-v2",
        shard_rows=3,
    )
    assert not any(changed.is_done(s) for s in changed.shards())  # new inputs: nothing reused
    (tmp_path / "s" / "part-00001.parquet").write_bytes(b"garbage")
    assert [store.is_done(s) for s in store.shards()] == [True, False, True]
    with pytest.raises(RuntimeError, match="missing or stale"):
        store.write_manifest()


def test_partitions_cover_every_shard_once(tmp_path, items):
    store = FeatureStore(
        tmp_path, task="T", modality="m", encoder={}, dim=1, item_ids=items * 3, inputs_digest="", shard_rows=2
    )
    numbers = sorted(s.number for p in range(3) for s in store.shards(p, 3))
    assert numbers == [s.number for s in store.shards()] == list(range(12))


def test_reader_refuses_other_items(tmp_path, items):
    build(tmp_path / "store", items, np.zeros((8, 2), np.float32), np.zeros(8, bool))
    manifest = tmp_path / "store" / "manifest.json"
    write_items(tmp_path / "fewer.parquet", items[:-1])
    with pytest.raises(UserError, match="holds 8 items"):
        load_features(manifest, tmp_path / "fewer.parquet")
    write_items(tmp_path / "reordered.parquet", items[::-1])
    with pytest.raises(UserError, match="item order differs"):
        load_features(manifest, tmp_path / "reordered.parquet")


def test_reader_detects_changed_shard_and_missing_manifest(tmp_path, items):
    build(tmp_path / "store", items, np.zeros((8, 2), np.float32), np.zeros(8, bool))
    build(tmp_path / "other", items, np.ones((8, 2), np.float32), np.zeros(8, bool))
    (tmp_path / "store" / "part-00000.parquet").write_bytes((tmp_path / "other" / "part-00000.parquet").read_bytes())
    with pytest.raises(UserError, match="checksum"):
        load_features(tmp_path / "store" / "manifest.json")
    with pytest.raises(UserError, match="not found"):
        load_features(tmp_path / "nowhere" / "manifest.json")


def test_write_shard_checks_shape_and_values(tmp_path, items):
    store = FeatureStore(tmp_path, task="T", modality="m", encoder={}, dim=2, item_ids=items, inputs_digest="")
    shard = store.shards()[0]
    with pytest.raises(ValueError, match="expected"):
        store.write_shard(shard, np.zeros((3, 2)), np.zeros(3, bool))
    bad = np.zeros((8, 2))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        store.write_shard(shard, bad, np.zeros(8, bool))
    assert not list(tmp_path.glob("part-*"))
    assert json.loads(json.dumps(store.encoder)) == {}


def test_partitions_merge_into_the_manifest_of_one_job(tmp_path, items):
    from ant.features.store import fill_store, merge_partitions

    values = np.arange(16, dtype=np.float32).reshape(8, 2)

    def store(out, digest="inputs-v1", encoder=None):
        return FeatureStore(
            out,
            task="T",
            modality="text",
            encoder=encoder or {"name": "enc"},
            dim=2,
            item_ids=items,
            inputs_digest=digest,
            shard_rows=3,
        )

    def compute(shard, progress):
        progress.update(shard.stop - shard.start)
        return values[shard.start : shard.stop], np.ones(shard.stop - shard.start, bool)

    computed = fill_store(store(tmp_path / "one"), compute)
    assert [s.number for s in computed] == [0, 1, 2]
    assert fill_store(store(tmp_path / "one"), compute) == []  # finished: nothing recomputed

    assert [s.number for s in fill_store(store(tmp_path / "p"), compute, partition=1, partitions=2)] == [1]
    with pytest.raises(UserError, match="0-of-2.json is missing"):
        merge_partitions(tmp_path / "p", items, 2)
    fill_store(store(tmp_path / "p", encoder={"name": "other"}), compute, partition=0, partitions=2)
    with pytest.raises(UserError, match="different encoders"):
        merge_partitions(tmp_path / "p", items, 2)
    fill_store(store(tmp_path / "p"), compute, partition=0, partitions=2)
    with pytest.raises(UserError, match="another item list"):
        merge_partitions(tmp_path / "p", items[::-1], 2)
    merged = merge_partitions(tmp_path / "p", items, 2)
    assert merged == json.loads((tmp_path / "one" / "manifest.json").read_text())
    np.testing.assert_array_equal(load_features(tmp_path / "p" / "manifest.json").values, values)


def test_read_items_explains_what_is_wrong(tmp_path):
    from ant.data.items import read_items

    with pytest.raises(UserError, match="not found"):
        read_items(tmp_path / "nowhere.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        read_items(tmp_path / "junk.parquet")
    write_items(tmp_path / "items.parquet", ["a", "b"])
    with pytest.raises(UserError, match=r"lacks column\(s\) \['text'\]"):
        read_items(tmp_path / "items.parquet", ["text"])
    pq.write_table(pa.table({"item_idx": pa.array([1, 0], pa.int32()), "item_id": ["a", "b"]}), tmp_path / "o.parquet")
    with pytest.raises(UserError, match="not 0..N-1"):
        read_items(tmp_path / "o.parquet")


def test_the_merge_command_needs_no_torch():
    """merge-features runs where Snakemake runs, once per store: it must not pay for importing torch."""
    code = "import sys, ant.cli, ant.features.merge; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
