"""The one evaluator: ranks against a brute-force reference (ties included), metrics, exclusion, chunking, t-test."""

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ant.data.split import Sequences, split
from ant.errors import UserError
from ant.io import write_parquet
from ant.train.evaluate import EvalRows, evaluate, metrics_from_ranks, ranks_from_scores, reference_metrics
from ant.train.stats import paired_ttest, paired_ttest_ranks, per_user_metric


def brute_force_rank(scores: list[float], target: int) -> int:
    """Pessimistic: 1 + the number of other items scoring at least as high as the target."""
    return 1 + sum(1 for j, s in enumerate(scores) if j != target and s >= scores[target])


@given(st.data(), st.integers(1, 6), st.integers(1, 12), st.sampled_from([2, 4, 1000]))
def test_ranks_equal_the_brute_force_reference_with_ties(data, users, items, levels):
    # few distinct score levels -> many ties
    scores = data.draw(
        st.lists(st.lists(st.integers(0, levels - 1), min_size=items, max_size=items), min_size=users, max_size=users)
    )
    target = data.draw(st.lists(st.integers(0, items - 1), min_size=users, max_size=users))
    got = ranks_from_scores(torch.tensor(scores, dtype=torch.float32), torch.tensor(target))
    assert got.tolist() == [brute_force_rank(s, t) for s, t in zip(scores, target, strict=True)]


def test_all_equal_scores_rank_last_not_first():
    assert ranks_from_scores(torch.zeros(2, 50), torch.tensor([0, 49])).tolist() == [50, 50]


@given(st.lists(st.integers(1, 200), min_size=1, max_size=50))
def test_recall_is_the_hit_rate_and_ndcg_the_discounted_gain(ranks):
    metrics = metrics_from_ranks(np.array(ranks), ks=(10, 50))
    for k in (10, 50):
        assert metrics[f"recall@{k}"] == pytest.approx(sum(r <= k for r in ranks) / len(ranks))
        assert metrics[f"ndcg@{k}"] == pytest.approx(sum(1 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks))
    assert metrics_from_ranks(np.array([1]))["ndcg@10"] == 1.0


def rows_of(lists, which="test", max_history=50):
    seqs = Sequences.from_lists(lists)
    return EvalRows.build(seqs, split(seqs, max_history)[which], which)


@given(st.data())
def test_evaluate_in_small_chunks_equals_ranking_everything_at_once(data):
    n_items = data.draw(st.integers(2, 15))
    lists = data.draw(st.lists(st.lists(st.integers(0, n_items - 1), min_size=3, max_size=8), min_size=1, max_size=9))
    lists = [[10_000 + u, *s] for u, s in enumerate(lists)]  # a unique first history item keys each user
    rows = rows_of(lists)
    scores = torch.randint(0, 3, (len(rows), n_items)).float()
    first = {int(h[0]): u for u, h in enumerate(rows.history)}

    def scorer(history, length):
        return scores[[first[int(h)] for h in history[:, 0]]]

    whole = evaluate(scorer, rows, n_items, ks=(1, 3))
    chunked = evaluate(scorer, rows, n_items, ks=(1, 3), batch_size=2, score_budget=n_items)
    reference = [brute_force_rank(scores[u].tolist(), int(rows.target[u])) for u in range(len(rows))]
    assert whole.ranks.tolist() == chunked.ranks.tolist() == reference
    assert whole.metrics == metrics_from_ranks(np.array(reference), (1, 3))


def test_exclude_history_removes_every_earlier_item_but_the_target():
    # user 0: 0 1 2 3 4 then target 2 (a repeat); user 1: 5 6 7 then target 8. max_history 2 keeps only the
    # last two items in the model's history: exclusion must still cover all earlier items.
    lists = [[0, 1, 2, 3, 4, 2], [5, 6, 7, 8]]
    rows = rows_of(lists, max_history=2)
    scores = torch.tensor([[9.0, 8, 1, 7, 6, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9, 8, 7, 1, 0.5]])
    order = {int(h[-1]): u for u, h in enumerate(rows.history[:, :1])}

    def scorer(history, length):
        return scores[[order[int(h)] for h in history[:, 0]]]

    kept = evaluate(scorer, rows, 10, ks=(1,))
    excluded = evaluate(scorer, rows, 10, ks=(1,), exclude_history=True)
    assert kept.ranks.tolist() == [5, 4]
    assert excluded.ranks.tolist() == [1, 1]  # 0 1 3 4 removed, target 2 kept; 5 6 7 removed


def test_evaluate_rejects_nan_scores_and_wrong_shapes():
    rows = rows_of([[0, 1, 2, 3]])
    with pytest.raises(FloatingPointError):
        evaluate(lambda h, n: torch.full((len(h), 4), float("nan")), rows, 4)
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda h, n: torch.zeros(len(h), 3), rows, 4)


def test_reference_metrics_most_popular_and_random():
    lists = [[0, 0, 0, 1], [0, 0, 2, 0], [1, 0, 0, 3]]
    seqs = Sequences.from_lists(lists)
    parts = split(seqs)
    test = EvalRows.build(seqs, parts["test"], "test")
    ref = reference_metrics(parts["train"].target, test, 5, ks=(1, 5))
    # training targets: item 0 (x2) -> most popular ranks 0 first; test targets 1, 0, 3
    assert ref["most_popular"]["recall@1"] == pytest.approx(1 / 3)
    assert ref["random"]["recall@1"] == pytest.approx(1 / 5) and ref["random"]["recall@5"] == 1.0
    assert ref["random"]["ndcg@5"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 6)) / 5)


def test_paired_ttest_matches_scipy_on_per_user_metrics(tmp_path):
    rng = np.random.default_rng(0)
    users = np.arange(200)
    ranks_a, ranks_b = rng.integers(1, 40, 200), rng.integers(1, 80, 200)
    for name, ranks, order in (("a", ranks_a, users), ("b", ranks_b, users[::-1])):
        write_parquet(
            pa.table({"user_idx": order.astype(np.int32), "rank": ranks[order].astype(np.int32)}),
            tmp_path / f"{name}.parquet",
        )
    result = paired_ttest(tmp_path / "a.parquet", tmp_path / "b.parquet", "ndcg@10")
    a, b = per_user_metric(ranks_a, "ndcg@10"), per_user_metric(ranks_b, "ndcg@10")
    expected = stats.ttest_rel(a, b)
    assert result.users == 200 and result.mean_a == pytest.approx(a.mean())
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)
    same = paired_ttest_ranks(users, ranks_a, users, ranks_a, "recall@10")
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    with pytest.raises(UserError, match="different users"):
        paired_ttest_ranks(users, ranks_a, users + 1, ranks_b)
    with pytest.raises(UserError, match="unknown metric"):
        per_user_metric(ranks_a, "mrr")
