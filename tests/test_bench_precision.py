"""`bench precision`: its metrics on hand-made vectors with known answers, and the command end to end."""

import json
import math

import numpy as np
import pytest
from features_helpers import write_items
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ant.bench.precision import (
    cosine_summary,
    neighbour_metrics,
    overlap,
    pairwise_cosine,
    ranks,
    row_cosine,
    similarities,
    top_k,
    unit,
)
from ant.cli import main
from ant.features.tiny_models import build_bert, demo_words


def circle(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_row_cosine_and_its_summary():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])  # a zero row has cosine 0 with anything
    cos = row_cosine(a, b)
    np.testing.assert_allclose(cos, [1.0, 1 / math.sqrt(2), 1.0, 0.0])
    summary = cosine_summary(cos)
    assert summary["mean"] == pytest.approx((2 + 1 / math.sqrt(2)) / 4)
    assert summary["min"] == 0.0
    assert summary["p1"] == pytest.approx(np.percentile(cos, 1))
    assert summary["min"] <= summary["p1"] <= summary["mean"]


def test_pairwise_cosine_of_known_sets():
    assert pairwise_cosine(np.array([[1.0, 0.0], [0.0, 5.0]])) == {"mean": 0.0, "std": 0.0}
    # pairs: (0, 1) cos 1, (0, 2) and (1, 2) cos 0 -> mean 1/3, std sqrt(2)/3
    got = pairwise_cosine(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
    assert got["mean"] == pytest.approx(1 / 3)
    assert got["std"] == pytest.approx(math.sqrt(2) / 3)
    alike = pairwise_cosine(np.array([[1.0, 0.01], [1.0, -0.01], [1.0, 0.0]]))  # [CLS]-like: all alike
    assert alike["mean"] > 0.9999


def test_neighbours_change_when_an_item_moves():
    # fp32: items at 0, 10 and 25 degrees -> nearest of 0 is 1, of 1 is 0, of 2 is 1.
    # other: item 2 moves to -5 degrees -> nearest of 0 is 2, of 1 is 0, of 2 is 0.
    ref, other = circle([0, 10, 25]), circle([0, 10, -5])
    np.testing.assert_array_equal(top_k(similarities(unit(ref), np.arange(3)), 1)[:, 0], [1, 0, 1])
    np.testing.assert_array_equal(top_k(similarities(unit(other), np.arange(3)), 1)[:, 0], [2, 0, 0])
    m = neighbour_metrics(ref, other, ks=[1])[1]
    assert m["overlap_mean"] == pytest.approx(1 / 3)
    assert m["share_all_equal"] == pytest.approx(1 / 3)
    assert m["share_low"] == pytest.approx(2 / 3)  # overlap 0 of 1 is <= 70%
    assert m["share_top1_equal"] == pytest.approx(1 / 3)
    # ref's nearest of item 0 (item 1) and of item 2 (item 1) are second under `other`; item 1's stays first
    assert m["rank_shift_mean"] == pytest.approx(2 / 3)
    assert m["rank_shift_max"] == 1
    # ref's gap between the 1st and 2nd neighbour: 10 vs 25 degrees, 10 vs 15, 15 vs 25
    gaps = [math.cos(math.radians(a)) - math.cos(math.radians(b)) for a, b in [(10, 25), (10, 15), (15, 25)]]
    assert m["gap_median"] == pytest.approx(np.median(gaps))


def test_overlap_counts_shared_members_not_order():
    a = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    b = np.array([[4, 3, 2, 1], [1, 2, 7, 8]])
    np.testing.assert_allclose(overlap(a, b), [1.0, 0.5])
    m = neighbour_metrics(circle([0, 10, 25, 60]), circle([0, 10, 25, 60]), ks=[10])  # k capped at N - 1 = 3
    assert list(m) == [3]
    assert m[3]["overlap_mean"] == 1.0 and m[3]["rank_shift_max"] == 0


def test_top_k_breaks_ties_by_index_and_ranks_count_strictly_larger():
    sims = np.array([[-np.inf, 0.5, 0.9, 0.5, 0.1]])
    np.testing.assert_array_equal(top_k(sims, 3), [[2, 1, 3]])
    np.testing.assert_array_equal(ranks(sims, np.array([[2, 1, 3, 4]])), [[1, 2, 2, 4]])


def test_fifty_nearest_use_the_seventy_percent_threshold():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(80, 8))
    m = neighbour_metrics(ref, ref + rng.normal(scale=0.3, size=ref.shape), ks=[10, 50])
    assert m[10]["low_threshold"] == 7 and m[50]["low_threshold"] == 35
    for k in (10, 50):
        assert 0 < m[k]["overlap_mean"] < 1
        assert 0 <= m[k]["share_all_equal"] <= m[k]["overlap_mean"] <= 1
        assert m[k]["rank_shift_mean"] > 0


vectors = st.integers(3, 12).flatmap(
    lambda n: arrays(np.float64, (n, 3), elements=st.integers(-4, 4).map(float)).filter(
        lambda x: bool(np.all(np.abs(x).sum(axis=1) > 0))
    )
)


@given(vectors)
def test_a_set_agrees_with_itself(x):
    for m in neighbour_metrics(x, x.copy(), ks=[1, 2, 10]).values():
        assert m["overlap_mean"] == 1.0
        assert m["share_all_equal"] == 1.0 and m["share_low"] == 0.0
        assert m["pair_change_median"] == 0.0


@given(vectors, st.data())
def test_overlap_is_symmetric(x, data):
    other = x + data.draw(arrays(np.float64, x.shape, elements=st.integers(-2, 2).map(float)))
    rows = np.arange(len(x))
    for k in (1, 2, len(x) - 1):
        a, b = top_k(similarities(unit(x), rows), k), top_k(similarities(unit(other), rows), k)
        np.testing.assert_array_equal(overlap(a, b), overlap(b, a))
        assert np.all((overlap(a, b) >= 0) & (overlap(a, b) <= 1))
    assert neighbour_metrics(x, other)[len(x) - 1]["overlap_mean"] == 1.0  # all the others are neighbours


@given(vectors)
def test_pairwise_cosine_matches_all_pairs(x):
    u = unit(x)
    cos = (u @ u.T)[~np.eye(len(x), dtype=bool)]
    got = pairwise_cosine(x)
    assert got["mean"] == pytest.approx(cos.mean(), abs=1e-12)
    assert got["std"] == pytest.approx(cos.std(), abs=1e-6)


@given(vectors)
def test_top_k_is_a_stable_sort(x):
    sims = similarities(unit(x), np.arange(len(x)))
    expected = np.argsort(-sims, axis=1, kind="stable")[:, : len(x) - 1]
    np.testing.assert_array_equal(top_k(sims, len(x) - 1), expected)


def test_command_end_to_end_on_a_tiny_bert(tmp_path, capsys):
    words = demo_words()
    bert = build_bert(tmp_path / "tiny-bert", 0, words)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) + "." for _ in range(50)]
    items = write_items(tmp_path / "items.parquet", texts + texts[:5] + [""])  # duplicates and a blank go
    out = tmp_path / "precision.json"
    argv = ["bench", "precision", "--model", str(bert), "--items", str(items), "--device", "cpu"]
    argv += ["--threads", "1", "--batch-size", "16", "--modes", "bf16", "bf16-cast", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "first Linear layer outputs torch.bfloat16 - applied" in printed
    result = json.loads(out.read_text())
    assert result["texts"] == 50 and result["dim"] == 32
    assert -1 <= result["spread"]["mean"] <= 1
    for mode in ("bf16", "bf16-cast"):
        entry = result["modes"][mode]
        assert entry["applied"] and entry["seconds"] > 0
        assert 0.9 < entry["cosine"]["min"] <= entry["cosine"]["mean"] < 1  # changed, but not much
        for space in ("raw", "centered"):
            assert set(entry["neighbours"][space]) == {"10", "49"}  # k = 50 capped at N - 1
            assert 0 <= entry["neighbours"][space]["10"]["overlap_mean"] <= 1
            assert entry["neighbours"][space]["49"]["overlap_mean"] == 1.0


def test_demo_texts_are_the_pipelines_item_texts(tmp_path):
    from ant.bench.precision import generated_demo_texts

    texts, scale = generated_demo_texts(2023, ["Scientific"], 10)
    assert scale == 1.0 and len(texts) > 100
    assert all(t.endswith(".") for t in texts if t)
    assert any(". " in t for t in texts)  # title, categories and brand joined
