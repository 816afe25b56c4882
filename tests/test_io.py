"""Atomic output: all or nothing at the output path, with ordinary permissions."""

import os
import stat

import pyarrow as pa
import pytest

from ant.io import atomic_path, read_json, read_parquet, write_json, write_parquet


def test_success_renames_into_place_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "sub" / "x.json")
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "x.json"
    assert read_json(path) == {"a": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.parquet"
    write_parquet(pa.table({"a": [1]}), path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_read_parquet_reads_the_columns_asked_and_refuses_a_missing_one(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(pa.table({"a": [1, 2], "b": ["x", "y"]}), path)
    assert read_parquet(path).column_names == ["a", "b"]
    assert read_parquet(path, ["b"]).to_pydict() == {"b": ["x", "y"]}
    with pytest.raises(pa.ArrowInvalid, match=r"has no column\(s\) \['c'\]"):
        read_parquet(path, ["a", "c"])
