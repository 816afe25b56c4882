"""The paired t-test between two runs: scipy's on per-user metrics, under either history rule, clear refusals."""

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from ant.analysis.significance import paired_ttest, paired_ttest_ranks, per_user_metric
from ant.errors import UserError
from ant.io import write_parquet


def test_paired_ttest_matches_scipy_on_per_user_metrics(tmp_path):
    rng = np.random.default_rng(0)
    users = np.arange(200)
    ranks_a, ranks_b = rng.integers(1, 40, 200), rng.integers(1, 80, 200)
    for name, ranks, order in (("a", ranks_a, users), ("b", ranks_b, users[::-1])):
        excluded = np.where(np.arange(200) % 7 == 0, np.inf, ranks)[order]  # every 7th user: a repeated target
        columns = {"user_idx": order.astype(np.int32), "rank_history_kept": ranks[order].astype(np.float64)}
        write_parquet(pa.table(columns | {"rank_history_excluded": excluded}), tmp_path / f"{name}.parquet")
    missed = np.arange(200) % 7 == 0
    for rule, a_ranks, b_ranks in (
        ("history_kept", ranks_a, ranks_b),
        ("history_excluded", np.where(missed, np.inf, ranks_a), np.where(missed, np.inf, ranks_b)),
    ):
        result = paired_ttest(tmp_path / "a.parquet", tmp_path / "b.parquet", "ndcg@10", rule=rule)
        a, b = per_user_metric(a_ranks, "ndcg@10"), per_user_metric(b_ranks, "ndcg@10")
        expected = stats.ttest_rel(a, b)
        assert result.users == 200 and result.mean_a == pytest.approx(a.mean())
        assert result.statistic == pytest.approx(expected.statistic)
        assert result.p_value == pytest.approx(expected.pvalue)
    same = paired_ttest_ranks(users, ranks_a, users, ranks_a, "recall@10")
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    with pytest.raises(UserError, match="different users"):
        paired_ttest_ranks(users, ranks_a, users + 1, ranks_b)
    with pytest.raises(UserError, match="unknown metric"):
        per_user_metric(ranks_a, "mrr")


def test_the_rule_picks_the_ranks_and_an_excluded_target_is_a_miss(tmp_path):
    ranks = pa.table(
        {
            "user_idx": np.arange(3, dtype=np.int32),
            "rank_history_kept": [1.0, 2.0, 30.0],
            "rank_history_excluded": [1.0, math.inf, 29.0],
        }
    )
    write_parquet(ranks, tmp_path / "a.parquet")
    write_parquet(ranks.set_column(1, "rank_history_kept", pa.array([5.0, 5.0, 5.0])), tmp_path / "b.parquet")
    kept = paired_ttest(tmp_path / "a.parquet", tmp_path / "b.parquet", "recall@10", rule="history_kept")
    excluded = paired_ttest(tmp_path / "a.parquet", tmp_path / "b.parquet", "recall@10", rule="history_excluded")
    assert (kept.mean_a, kept.mean_b) == (pytest.approx(2 / 3), 1.0)
    assert (excluded.mean_a, excluded.mean_b) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert per_user_metric(np.array([1.0, math.inf]), "ndcg@10").tolist() == [1.0, 0.0]
    with pytest.raises(UserError, match="unknown history rule"):
        paired_ttest(tmp_path / "a.parquet", tmp_path / "b.parquet", rule="kept")
    write_parquet(pa.table({"user_idx": [0], "rank": [1]}), tmp_path / "old.parquet")
    with pytest.raises(UserError, match="no column rank_history_excluded"):
        paired_ttest(tmp_path / "old.parquet", tmp_path / "a.parquet")
