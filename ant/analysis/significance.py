"""Paired significance test between two runs on the same users (spec section 7: ranks are saved for this).

`paired_ttest` reads two runs' per-user test ranks under one history rule (ranks.parquet: user_idx and
rank_history_kept / rank_history_excluded), turns them into a per-user metric (recall@K = hit, ndcg@K =
1/log2(rank+1) within the top K; an inf rank, a target excluded with its history, is a miss) and runs scipy's
paired t-test on the users of the two runs. Two runs on different user sets are an error, never a silent subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy import stats

from ant.errors import UserError
from ant.io import read_parquet
from ant.train.history_rules import EXCLUDED, HISTORY_RULES


@dataclass(frozen=True)
class PairedTest:
    metric: str
    users: int
    mean_a: float
    mean_b: float
    statistic: float
    p_value: float


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    name, _, k_text = metric.partition("@")
    if name not in ("recall", "ndcg") or not k_text.isdigit():
        raise UserError(f"unknown metric {metric!r}: use recall@K or ndcg@K")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= int(k_text)
    if name == "recall":
        return hit.astype(np.float64)
    gain = np.zeros_like(ranks)
    gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
    return gain


def read_ranks(path: str | Path, rule: str = EXCLUDED) -> tuple[np.ndarray, np.ndarray]:
    if rule not in HISTORY_RULES:
        raise UserError(f"unknown history rule {rule!r}; known: {', '.join(HISTORY_RULES)}")
    column = f"rank_{rule}"
    if column not in pq.read_schema(path).names:
        raise UserError(f"{path}: no column {column} (not a ranks.parquet of this version; rerun the run)")
    table = read_parquet(path, columns=["user_idx", column])
    return table.column("user_idx").to_numpy(), table.column(column).to_numpy()


def paired_ttest_ranks(
    users_a: np.ndarray, ranks_a: np.ndarray, users_b: np.ndarray, ranks_b: np.ndarray, metric: str = "ndcg@10"
) -> PairedTest:
    order_a, order_b = np.argsort(users_a), np.argsort(users_b)
    if not np.array_equal(users_a[order_a], users_b[order_b]):
        raise UserError("the two runs ranked different users; a paired test needs the same users")
    a = per_user_metric(ranks_a[order_a], metric)
    b = per_user_metric(ranks_b[order_b], metric)
    if np.array_equal(a, b):  # scipy returns nan for identical samples; no difference at all
        return PairedTest(metric, len(a), float(a.mean()), float(b.mean()), 0.0, 1.0)
    result = stats.ttest_rel(a, b)
    return PairedTest(metric, len(a), float(a.mean()), float(b.mean()), float(result.statistic), float(result.pvalue))


def paired_ttest(ranks_a: str | Path, ranks_b: str | Path, metric: str = "ndcg@10", rule: str = EXCLUDED) -> PairedTest:
    """Paired t-test of `metric` between two ranks.parquet files under one history rule (a positive statistic:
    run a is better)."""
    return paired_ttest_ranks(*read_ranks(ranks_a, rule), *read_ranks(ranks_b, rule), metric=metric)
