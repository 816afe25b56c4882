"""The one split: leave-one-out, every training prefix, the max_history most recent items."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ant.data.split import PAD, Sequences, read_sequences, split


def reference(lists, max_history):
    """Row by row, straight from the spec."""
    rows = {"train": [], "valid": [], "test": []}
    for user, seq in enumerate(lists):
        n = len(seq)
        for t in range(1, n - 2):
            rows["train"].append((user, seq[max(0, t - max_history) : t], seq[t]))
        rows["valid"].append((user, seq[max(0, n - 2 - max_history) : n - 2], seq[n - 2]))
        rows["test"].append((user, seq[max(0, n - 1 - max_history) : n - 1], seq[n - 1]))
    return rows


def as_tuples(rows):
    return [
        (int(u), [int(i) for i in h[:n]], int(t))
        for u, h, n, t in zip(rows.user_idx, rows.history, rows.length, rows.target, strict=True)
    ]


def test_hand_example():
    out = split(Sequences.from_lists([[10, 11, 12, 13, 14, 15]]), max_history=3)
    assert as_tuples(out["train"]) == [(0, [10], 11), (0, [10, 11], 12), (0, [10, 11, 12], 13)]
    assert as_tuples(out["valid"]) == [(0, [11, 12, 13], 14)]
    assert as_tuples(out["test"]) == [(0, [12, 13, 14], 15)]
    # left-aligned, right-padded
    assert out["train"].history[0].tolist() == [10, PAD, PAD]


@given(
    st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=20), min_size=1, max_size=12),
    st.integers(1, 8),
)
def test_matches_reference(lists, max_history):
    out = split(Sequences.from_lists(lists), max_history=max_history)
    ref = reference(lists, max_history)
    for name in ("train", "valid", "test"):
        assert as_tuples(out[name]) == ref[name]
        rows = out[name]
        assert rows.history.dtype == np.int32 and rows.history.shape[1] == max_history
        padded = np.arange(max_history)[None, :] >= rows.length[:, None]
        assert (rows.history[padded] == PAD).all()
    assert len(out["train"]) == sum(map(len, lists)) - 3 * len(lists)


@given(
    st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=20), min_size=1, max_size=12),
    st.integers(1, 8),
)
def test_a_rows_position_places_its_target_and_history_in_the_users_sequence(lists, max_history):
    """position = the target's index in the user's sequence; history column j sits at position - length + j."""
    for rows in split(Sequences.from_lists(lists), max_history=max_history).values():
        for u, h, n, t, pos in zip(rows.user_idx, rows.history, rows.length, rows.target, rows.position, strict=True):
            seq = lists[u]
            assert seq[pos] == t and list(h[:n]) == seq[pos - n : pos]


def test_too_short_user_is_an_error():
    with pytest.raises(ValueError, match="fewer than 3"):
        split(Sequences.from_lists([[1, 2, 3], [4, 5]]))


def test_read_sequences_from_parquet(tmp_path):
    lists = [[3, 1, 2, 5], [0, 4, 4]]
    table = pa.table({"user_idx": pa.array([7, 9], pa.int32()), "item_idx": pa.array(lists, pa.list_(pa.int32()))})
    path = tmp_path / "sequences.parquet"
    pq.write_table(table, path)
    seqs = read_sequences(path)
    assert seqs.items.tolist() == [3, 1, 2, 5, 0, 4, 4]
    assert seqs.offsets.tolist() == [0, 4, 7]
    assert seqs.user_idx.tolist() == [7, 9]
    out = split(seqs)
    assert out["test"].user_idx.tolist() == [7, 9]
    assert out["test"].target.tolist() == [5, 4]
