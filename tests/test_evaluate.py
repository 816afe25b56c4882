"""The one evaluator: ranks against a brute-force reference (ties included), metrics, exclusion, chunking, t-test."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ant.data.split import PAD, Sequences, split
from ant.train.evaluate import TIE_RULES, EvalRows, evaluate, metrics_from_ranks, reference_metrics


def brute_force_rank(scores, target, history=(), ties="pessimistic"):
    """The rule as written: candidates are all items, or (history given) all items not in the history; a target
    that is not a candidate is a miss (inf); ties count fully (pessimistic) or half (expected)."""
    if target in set(history):
        return math.inf
    candidates = [j for j in range(len(scores)) if j != target and j not in set(history)]
    above = sum(1 for j in candidates if scores[j] > scores[target])
    equal = sum(1 for j in candidates if scores[j] == scores[target])
    return 1 + above + (equal if ties == "pessimistic" else equal / 2)


def table_scorer(scores, rows):
    """A scorer that looks a row up by its history (each row's history is made unique by its first item)."""
    first = {int(h[0]): r for r, h in enumerate(rows.history)}
    return lambda history, length, user, position: scores[[first[int(h)] for h in history[:, 0]]].clone()


@st.composite
def ranked_rows(draw):
    """Rows with few score levels (many ties), histories with repeats that may contain the target."""
    n_items = draw(st.integers(2, 12))
    n_rows = draw(st.integers(1, 7))
    levels = draw(st.sampled_from([1, 2, 3, 1000]))
    scores = [draw(st.lists(st.integers(0, levels - 1), min_size=n_items, max_size=n_items)) for _ in range(n_rows)]
    targets = [draw(st.integers(0, n_items - 1)) for _ in range(n_rows)]
    histories = [draw(st.lists(st.integers(0, n_items - 1), min_size=0, max_size=5)) for _ in range(n_rows)]
    # a unique first item keys each row's scores (it is not one of the task's items: column n_items + r)
    histories = [[n_items + r, *h] for r, h in enumerate(histories)]
    width = max(map(len, histories))
    rows = EvalRows(
        user_idx=np.arange(n_rows, dtype=np.int32),
        history=torch.tensor([h + [PAD] * (width - len(h)) for h in histories], dtype=torch.int32),
        length=torch.tensor([len(h) for h in histories], dtype=torch.int32),
        target=torch.tensor(targets),
        position=torch.tensor([len(h) for h in histories]),
    )
    # the key column scores below everything, so it never changes a rank
    full = torch.tensor([row + [-1.0] * n_rows for row in scores], dtype=torch.float32)
    return rows, full, [list(h[1:]) for h in histories]


@given(ranked_rows(), st.sampled_from(TIE_RULES))
def test_both_history_rules_and_both_tie_rules_equal_the_brute_force_reference(case, ties):
    rows, scores, histories = case
    n = scores.shape[1]
    result = evaluate(table_scorer(scores, rows), rows, n, ks=(1, 3), ties=ties, batch_size=2, score_budget=2 * n)
    for r, history in enumerate(histories):
        row, target = scores[r].tolist(), int(rows.target[r])
        assert result.rules["history_kept"].ranks[r] == brute_force_rank(row, target, (), ties)
        assert result.rules["history_excluded"].ranks[r] == brute_force_rank(row, target, history, ties)
    repeated = [int(rows.target[r]) in h for r, h in enumerate(histories)]
    assert result.repeated_targets == sum(repeated)
    tied_kept = [row.count(row[int(t)]) > 1 for row, t in zip(scores.tolist(), rows.target, strict=True)]
    assert result.rules["history_kept"].tied_targets == sum(tied_kept)
    for rule in ("history_kept", "history_excluded"):
        assert result.rules[rule].metrics == metrics_from_ranks(result.rules[rule].ranks, (1, 3))


def test_all_equal_scores_rank_last_pessimistically_and_in_the_middle_expectedly():
    rows = EvalRows(
        np.arange(2, dtype=np.int32),
        torch.tensor([[3], [4]], dtype=torch.int32),
        torch.tensor([1, 1], dtype=torch.int32),
        torch.tensor([0, 49]),
        torch.tensor([1, 1]),
    )
    flat = lambda h, n, u, p: torch.zeros(len(h), 50)  # noqa: E731
    assert evaluate(flat, rows, 50, exclude_history=False).ranks.tolist() == [50, 50]
    assert evaluate(flat, rows, 50, exclude_history=False, ties="expected").ranks.tolist() == [25.5, 25.5]
    excluded = evaluate(flat, rows, 50, exclude_history=True)
    assert excluded.ranks.tolist() == [49, 49] and excluded.rules["history_excluded"].tied_targets == 2


@given(st.lists(st.floats(1, 200) | st.just(math.inf), min_size=1, max_size=50))
def test_recall_is_the_hit_rate_and_ndcg_the_discounted_gain(ranks):
    metrics = metrics_from_ranks(np.array(ranks), ks=(10, 50))
    for k in (10, 50):
        assert metrics[f"recall@{k}"] == pytest.approx(sum(r <= k for r in ranks) / len(ranks))
        assert metrics[f"ndcg@{k}"] == pytest.approx(sum(1 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks))
    assert metrics_from_ranks(np.array([1]))["ndcg@10"] == 1.0


def rows_of(lists, which="test", max_history=50):
    return EvalRows.build(split(Sequences.from_lists(lists), max_history)[which])


def test_excluded_rule_removes_the_input_history_and_misses_a_repeated_target():
    # user 0: 0 1 2 3 4 then target 2, a repeat; max_history 2 keeps only 3 4 in its input history, so 2 is a
    # candidate after all (the authors mask the input history, not the whole past). User 1: 5 6 7 then target 7,
    # a repeat inside its input history: a miss. User 2: 5 6 then target 9: 5 and 6 leave the ranking.
    lists = [[0, 1, 2, 3, 4, 2], [5, 6, 7, 7], [5, 6, 9]]
    rows = rows_of(lists, max_history=2)
    scores = torch.tensor(
        [
            [9.0, 8, 1, 7, 6, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 9, 8, 7, 1, 0.5],
            [0, 0, 0, 0, 0, 9, 8, 0, 0, 7],
        ]
    )
    by_last = {4: 0, 7: 1, 6: 2}  # each row's last history item identifies it

    def scorer(history, length, user, position):
        return scores[[by_last[int(h[n - 1])] for h, n in zip(history, length, strict=True)]].clone()

    result = evaluate(scorer, rows, 10, ks=(1,))
    assert result.rule == "history_excluded"
    assert result.rules["history_kept"].ranks.tolist() == [5, 3, 3]
    assert result.rules["history_excluded"].ranks.tolist() == [3, math.inf, 1]  # 3 and 4 removed for user 0
    assert result.repeated_targets == 1
    assert result.metrics == {"recall@1": pytest.approx(1 / 3), "ndcg@1": pytest.approx(1 / 3)}
    assert evaluate(scorer, rows, 10, ks=(1,), exclude_history=False).metrics["recall@1"] == 0.0


def test_infinite_scores_keep_their_order_and_ties():
    rows = EvalRows(
        np.arange(1, dtype=np.int32),
        torch.tensor([[4]], dtype=torch.int32),
        torch.tensor([1], dtype=torch.int32),
        torch.tensor([1]),
        torch.tensor([1]),
    )
    scores = torch.tensor([[math.inf, 2.0, -math.inf, 2.0, -math.inf]])
    result = evaluate(lambda h, n, u, p: scores.clone(), rows, 5, exclude_history=False)
    assert result.ranks.tolist() == [3] and result.rules["history_kept"].tied_targets == 1
    bottom = evaluate(
        lambda h, n, u, p: scores.clone(),
        EvalRows(rows.user_idx, rows.history, rows.length, torch.tensor([2]), rows.position),
        5,
        exclude_history=False,
        ties="expected",
    )
    assert bottom.ranks.tolist() == [4.5]


def test_evaluate_rejects_nan_scores_and_wrong_shapes():
    rows = rows_of([[0, 1, 2, 3]])
    with pytest.raises(FloatingPointError):
        evaluate(lambda h, n, u, p: torch.full((len(h), 4), float("nan")), rows, 4)
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda h, n, u, p: torch.zeros(len(h), 3), rows, 4)


def test_reference_metrics_most_popular_and_random():
    lists = [[0, 0, 0, 1], [0, 0, 2, 0], [1, 0, 0, 3]]
    seqs = Sequences.from_lists(lists)
    parts = split(seqs)
    test = EvalRows.build(parts["test"])
    ref = reference_metrics(parts["train"].target, test, 5, ks=(1, 5))
    # training targets: item 0 (x2) -> most popular ranks 0 first; test targets 1, 0, 3; only user 1's target 0
    # repeats its history (0 0 2), so with history excluded it is a miss and nobody hits at 1
    assert ref["most_popular_history_kept"]["recall@1"] == pytest.approx(1 / 3)
    assert ref["most_popular_history_excluded"]["recall@1"] == 0.0
    assert ref["random"]["recall@1"] == pytest.approx(1 / 5) and ref["random"]["recall@5"] == 1.0
    assert ref["random"]["ndcg@5"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(1, 6)) / 5)


def test_batch_rows_gives_the_scorer_fixed_batches_in_row_order_and_the_rows_positions():
    """A scorer whose scores depend on the batch gets batches of exactly batch_rows rows, in row order."""
    lists = [[1, 2, 3, 4, 5, 6, 7], [2, 3, 4], [3, 4, 5, 6], [4, 5, 6, 7, 8], [5, 6, 7]]
    rows = rows_of(lists, max_history=50)
    seen = []

    def scorer(history, length, user, position):
        seen.append((user.tolist(), position.tolist()))
        return torch.zeros(len(user), 10)

    evaluate(scorer, rows, 10, batch_rows=2)
    assert seen == [([0, 1], [6, 2]), ([2, 3], [3, 4]), ([4], [2])]
    seen.clear()
    evaluate(scorer, rows, 10)  # the evaluator's own batches: sorted by history length
    assert [u for batch, _ in seen for u in batch] == [1, 4, 2, 3, 0]
