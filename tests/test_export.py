"""RecBole/UniSRec export: the files parse, and their rows are exactly our split's."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ant.cli import main
from ant.data.export import export
from ant.data.split import read_sequences, split
from ant.errors import UserError


def write_task(folder, lists, texts=None):
    """sequences.parquet and items.parquet as `kcore` writes them."""
    n_items = 1 + max((i for s in lists for i in s), default=0)
    item_ids = [f"B{i:03d}" for i in range(n_items)]
    user_ids = [f"U{u:03d}" for u in range(len(lists))]
    seqs = pa.table(
        {
            "user_idx": pa.array(range(len(lists)), pa.int32()),
            "user_id": user_ids,
            "item_idx": pa.array(lists, pa.list_(pa.int32())),
            "item_id": pa.array([[item_ids[i] for i in s] for s in lists], pa.list_(pa.string())),
            "timestamp": pa.array([list(range(len(s))) for s in lists], pa.list_(pa.int64())),
        }
    )
    items = pa.table(
        {
            "item_idx": pa.array(range(n_items), pa.int32()),
            "item_id": item_ids,
            "text": texts or [f"Item {i}." for i in range(n_items)],
        }
    )
    pq.write_table(seqs, folder / "sequences.parquet")
    pq.write_table(items, folder / "items.parquet")
    return folder / "sequences.parquet", folder / "items.parquet"


def read_inter(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id_list:token_seq\titem_id:token"
    rows = []
    for line in lines[1:]:
        user, history, target = line.split("\t")
        rows.append((int(user), [int(i) for i in history.split(" ")], int(target)))
    return rows


def test_hand_example(tmp_path):
    seqs, items = write_task(tmp_path, [[0, 1, 2, 3], [2, 0, 1]], texts=["Red\tshirt.", "Socks.", "Hat.", ""])
    out = tmp_path / "recbole" / "Demo"
    export("Demo", seqs, items, max_history=2, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "Demo.item2index", "Demo.test.inter", "Demo.text", "Demo.train.inter", "Demo.user2index", "Demo.valid.inter",
    ]  # fmt: skip
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    assert (out / "Demo.train.inter").read_text() == header + "0\t0\t1\n"
    assert (out / "Demo.valid.inter").read_text() == header + "0\t0 1\t2\n1\t2\t0\n"
    assert (out / "Demo.test.inter").read_text() == header + "0\t1 2\t3\n1\t2 0\t1\n"  # the 2 most recent
    assert (out / "Demo.text").read_text() == (
        "item_id:token\ttext:token_seq\nB000\tRed shirt.\nB001\tSocks.\nB002\tHat.\nB003\t\n"
    )
    assert (out / "Demo.item2index").read_text() == "B000\t0\nB001\t1\nB002\t2\nB003\t3\n"
    assert (out / "Demo.user2index").read_text() == "U000\t0\nU001\t1\n"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25)
@given(st.lists(st.lists(st.integers(0, 20), min_size=3, max_size=30), min_size=1, max_size=8), st.integers(1, 6))
def test_files_equal_our_split(tmp_path_factory, lists, max_history):
    folder = tmp_path_factory.mktemp("export")
    seqs, items = write_task(folder, lists)
    export("T", seqs, items, max_history, folder / "out")
    ours = split(read_sequences(seqs), max_history=max_history)
    for name in ("train", "valid", "test"):
        rows = ours[name]
        columns = zip(rows.user_idx, rows.history, rows.length, rows.target, strict=True)
        expected = [(int(u), h[:n].tolist(), int(t)) for u, h, n, t in columns]
        assert read_inter(folder / "out" / f"T.{name}.inter") == expected


def test_existing_output_is_replaced_whole(tmp_path):
    seqs, items = write_task(tmp_path, [[0, 1, 2]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.inter").write_text("old")
    export("T", seqs, items, 50, out)
    assert not (out / "stale.inter").exists() and (out / "T.test.inter").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_bad_inputs(tmp_path):
    seqs, items = write_task(tmp_path, [[0, 1]])
    with pytest.raises(UserError, match="fewer than 3"):
        export("T", seqs, items, 50, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    seqs, _ = write_task(tmp_path, [[0, 1, 5]])
    (tmp_path / "small").mkdir()
    _, items = write_task(tmp_path / "small", [[0, 1, 2]])  # 3 items, but the sequences use item 5
    with pytest.raises(UserError, match="same `kcore` run"):
        export("T", seqs, items, 50, tmp_path / "out")


def test_cli(tmp_path):
    seqs, items = write_task(tmp_path, [list(np.arange(6) % 4)])
    out = tmp_path / "out"
    argv = ["export-recbole", "--task", "T", "--sequences", str(seqs), "--items", str(items),
            "--max-history", "50", "--out-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert read_inter(out / "T.test.inter") == [(0, [0, 1, 2, 3, 0], 1)]
