"""The one evaluator: leave-one-out full ranking over all items of a task, under both history rules at once.

Every model plugs in a *scorer*: (history [B, T], length [B], user [B], position [B]) -> scores [B, N] over the N
real items of the task (padding and any mask token are never columns), on the device, as a new tensor that the
evaluator may overwrite. History holds task-local item_idx (PAD = -1 after `length`), user the rows' task-local
user_idx, position the target's position in the user's sequence (ant.data.split.Rows; per-interaction context).
The evaluator feeds it rows sorted by history length (so each batch is cut short, an exact saving), in user
batches small enough that a [B, N] score block fits the budget, and keeps only each row's ranks. A model whose
scores depend on which rows share a batch (NOVA's upstream mask layout) asks for `batch_rows`: batches of exactly
that many rows in row order, as its reference evaluated them.

History rules (spec ANT-method section 7, baselines section 2.5), both from the same score row in one pass:
  history_kept      every item is a candidate (RecBole's rule);
  history_excluded  the items of the row's input history (its at most max_history most recent items) are not
                    candidates, exactly as the authors' code masks them; a target that repeats one of them is then
                    excluded too, and the row counts as a miss (rank = inf).
`exclude_history` chooses the rule whose metrics are "the" metrics (model selection, tables); both are recorded.

Tie rules, for a target whose score equals that of other candidates:
  pessimistic  rank = 1 + #{candidates other than the target scoring >= the target}: ties can only hurt, and a
               model that scores everything alike gets rank N, never 1 (the default);
  expected     rank = 1 + #{scoring >} + #{other candidates scoring ==} / 2: the mean rank under a uniformly
               random order of the tied items, an unbiased choice.
With continuous scores ties are rare; they arise without ID embeddings when two items have identical features,
so every evaluation counts `tied_targets` (rows whose target shares its exact score with another candidate).
Recall@K = share of rows with rank <= K (= hit rate: one target per row); NDCG@K = mean of 1/log2(rank + 1) over
rows with rank <= K (0 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch

from ant.data.split import Rows
from ant.train.history_rules import EXCLUDED, HISTORY_RULES, KEPT, history_rule

Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
TieRule = Literal["pessimistic", "expected"]
TIE_RULES = ("pessimistic", "expected")
# floats in one [B, N] score block: small on the CPU (16 MiB blocks stay in the allocator's reused memory and
# near the caches; a fresh large block pays page faults on every allocation), large on a GPU (fewer launches)
SCORE_BUDGET = {"cpu": 1 << 22, "cuda": 1 << 27}


@dataclass(frozen=True)
class EvalRows:
    """Validation or test rows of one task (one per user): the input history of each row and its target."""

    user_idx: np.ndarray  # int32 [n]
    history: torch.Tensor  # int32 [n, L], item_idx of the task, oldest first, PAD = -1 after `length`
    length: torch.Tensor  # int32 [n], 1..L
    target: torch.Tensor  # int64 [n]
    position: torch.Tensor  # int64 [n], the target's position in its user's sequence

    def __len__(self) -> int:
        return len(self.user_idx)

    def head(self, n: int) -> EvalRows:
        """The first n rows (benchmarks time a part of a task)."""
        return EvalRows(*(getattr(self, f.name)[:n] for f in fields(self)))

    @classmethod
    def build(cls, rows: Rows) -> EvalRows:
        """From the "valid" or "test" rows of ant.data.split."""
        return cls(
            user_idx=rows.user_idx,
            history=torch.from_numpy(rows.history),
            length=torch.from_numpy(rows.length),
            target=torch.from_numpy(rows.target.astype(np.int64)),
            position=torch.from_numpy(rows.position.astype(np.int64)),
        )


@dataclass(frozen=True)
class RuleResult:
    ranks: np.ndarray  # float64 [n] in row order; inf = the target was not a candidate (a miss)
    metrics: dict[str, float]
    tied_targets: int  # rows whose target shares its exact score with at least one other candidate


@dataclass(frozen=True)
class Evaluation:
    rule: str  # the history rule whose results `metrics` and `ranks` are
    rules: dict[str, RuleResult]  # both history rules
    repeated_targets: int  # rows whose target repeats an item of their input history

    @property
    def metrics(self) -> dict[str, float]:
        return self.rules[self.rule].metrics

    @property
    def ranks(self) -> np.ndarray:
        return self.rules[self.rule].ranks

    def flat_metrics(self) -> dict[str, float]:
        """The chosen rule's metrics, then both rules' as "history_kept/recall@10" etc. (history.csv columns)."""
        out = dict(self.metrics)
        for rule, result in self.rules.items():
            out |= {f"{rule}/{k}": v for k, v in result.metrics.items()}
        return out


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] | list[int] = (10, 50)) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float((ranks <= k).mean()) if len(ranks) else 0.0
    for k in ks:
        gain = np.zeros_like(ranks)
        hit = ranks <= k
        gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
        out[f"ndcg@{k}"] = float(gain.mean()) if len(ranks) else 0.0
    return out


def _ranks(above: torch.Tensor, equal: torch.Tensor, ties: TieRule) -> torch.Tensor:
    """Rank from the number of other candidates scoring above and equal to the target."""
    return 1.0 + above + (equal if ties == "pessimistic" else equal / 2.0)


def rank_targets(
    scores: torch.Tensor, target: torch.Tensor, history: torch.Tensor, length: torch.Tensor, ties: TieRule
) -> dict[str, torch.Tensor]:
    """Each row's target rank under both history rules, ties and repeats, in one pass over `scores` [B, N].

    Overwrites `scores`. Returns float64 ranks "history_kept" / "history_excluded" [B] (inf where the target is
    in the history), bool "tied_kept" / "tied_excluded" [B] and bool "repeated" [B].
    """
    n_items = scores.shape[1]
    # the history's distinct items, found on the small [B, T] block before `scores` is overwritten
    real = torch.arange(history.shape[1], device=history.device).unsqueeze(0) < length.unsqueeze(1)
    items, _ = torch.where(real, history, n_items).sort(dim=1)  # padding sorts last as the sentinel n_items
    distinct = (items < n_items) & torch.cat(
        [torch.ones_like(items[:, :1], dtype=torch.bool), items[:, 1:] != items[:, :-1]], 1
    )
    item_scores = scores.gather(1, items.clamp(max=n_items - 1))
    target_score = scores.gather(1, target.unsqueeze(1))  # [B, 1]
    repeated = (distinct & (items == target.unsqueeze(1))).any(dim=1)
    others = distinct & (items != target.unsqueeze(1))
    history_above = (others & (item_scores > target_score)).sum(dim=1)
    history_equal = (others & (item_scores == target_score)).sum(dim=1)

    # over all N items: sign(s_j - s_target) is +1 above, 0 level, -1 below (x - y == 0 iff x == y in IEEE
    # floats); its sum is above - below and the sum of its absolute values above + below. In place and in
    # float (exact for counts below 2^24), several times faster than summing fresh boolean [B, N] masks.
    # An infinite score (a scorer's masked column) compares right with a finite target; only an infinite target
    # (inf - inf) needs the infinities made the largest finite floats first, which keeps order and ties.
    if not bool(torch.isfinite(target_score).all()):
        big = torch.finfo(scores.dtype).max
        scores.nan_to_num_(posinf=big, neginf=-big)
        target_score = target_score.nan_to_num(posinf=big, neginf=-big)
    scores.sub_(target_score).sign_()
    signed = scores.sum(dim=1)
    unsigned = scores.abs_().sum(dim=1)
    above = ((signed + unsigned) / 2).round().long()
    equal = n_items - 1 - unsigned.round().long()  # level items other than the target itself

    above_ex, equal_ex = above - history_above, equal - history_equal
    excluded = torch.where(repeated, torch.inf, _ranks(above_ex, equal_ex, ties).double())
    return {
        KEPT: _ranks(above, equal, ties).double(),
        EXCLUDED: excluded,
        "tied_kept": equal > 0,
        "tied_excluded": ~repeated & (equal_ex > 0),
        "repeated": repeated,
    }


@torch.no_grad()
def evaluate(
    scorer: Scorer,
    rows: EvalRows,
    n_items: int,
    *,
    ks: tuple[int, ...] | list[int] = (10, 50),
    exclude_history: bool = True,
    ties: TieRule = "pessimistic",
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    score_budget: int | None = None,
    batch_rows: int | None = None,
) -> Evaluation:
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; known: {', '.join(TIE_RULES)}")
    device = torch.device(device)
    score_budget = score_budget or SCORE_BUDGET.get(device.type, SCORE_BUDGET["cpu"])
    n = len(rows)
    if batch_rows is None:
        per_batch = max(1, min(batch_size, score_budget // max(n_items, 1)))
        order = torch.argsort(rows.length, stable=True)
    else:  # the scorer's outputs depend on the batch: its reference's batches, whatever the budget
        per_batch, order = batch_rows, torch.arange(n)
    out = {
        KEPT: torch.empty(n, dtype=torch.float64),
        EXCLUDED: torch.empty(n, dtype=torch.float64),
        "tied_kept": torch.empty(n, dtype=torch.bool),
        "tied_excluded": torch.empty(n, dtype=torch.bool),
        "repeated": torch.empty(n, dtype=torch.bool),
    }
    for lo in range(0, n, per_batch):
        idx = order[lo : lo + per_batch]
        length = rows.length[idx].to(device, torch.int64)
        history = rows.history[idx, : int(rows.length[idx].max())].to(device, torch.int64)
        target = rows.target[idx].to(device)
        user = torch.from_numpy(rows.user_idx[idx.numpy()].astype(np.int64)).to(device)
        scores = scorer(history, length, user, rows.position[idx].to(device)).float()
        if scores.shape != (len(idx), n_items):
            raise ValueError(f"scorer returned {tuple(scores.shape)}, expected ({len(idx)}, {n_items})")
        # one pass, no [B, N] mask: a NaN anywhere makes its row sum NaN (so does inf - inf: then look closer)
        if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
            raise FloatingPointError("the model produced NaN scores; training has diverged")
        for key, value in rank_targets(scores, target, history, length, ties).items():
            out[key][idx] = value.cpu()
    rules = {
        rule: RuleResult(
            ranks=out[rule].numpy(),
            metrics=metrics_from_ranks(out[rule].numpy(), ks),
            tied_targets=int(out["tied_kept" if rule == KEPT else "tied_excluded"].sum()),
        )
        for rule in HISTORY_RULES
    }
    return Evaluation(history_rule(exclude_history), rules, int(out["repeated"].sum()))


def pooled(evaluations: list[Evaluation], ks: tuple[int, ...] | list[int] = (10, 50)) -> Evaluation:
    """Several tasks' evaluations as one (a micro-average: every row weighs the same, whatever its task)."""
    rules = {
        rule: RuleResult(
            ranks=(ranks := np.concatenate([e.rules[rule].ranks for e in evaluations])),
            metrics=metrics_from_ranks(ranks, ks),
            tied_targets=sum(e.rules[rule].tied_targets for e in evaluations),
        )
        for rule in HISTORY_RULES
    }
    return Evaluation(evaluations[0].rule, rules, sum(e.repeated_targets for e in evaluations))


def popularity_scores(train_targets: np.ndarray, n_items: int) -> torch.Tensor:
    """Most-popular reference: every user scores item i by how often i is a training target."""
    return torch.from_numpy(np.bincount(train_targets, minlength=n_items).astype(np.float32))


def reference_metrics(
    train_targets: np.ndarray, rows: EvalRows, n_items: int, ks: tuple[int, ...] | list[int] = (10, 50)
) -> dict[str, dict[str, float]]:
    """Most-popular under both history rules (this evaluator, pessimistic ties), and the expectation of a random
    ranking of all N items (history kept)."""
    popular = popularity_scores(train_targets, n_items)
    pop = evaluate(lambda h, *_: popular.repeat(h.shape[0], 1), rows, n_items, ks=ks)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)  # a random ranking puts the target at each rank alike
    random = {f"recall@{k}": min(k, n_items) / n_items for k in ks}
    random |= {f"ndcg@{k}": float((1.0 / np.log2(ranks[:k] + 1.0)).sum() / n_items) for k in ks}
    return {f"most_popular_{rule}": result.metrics for rule, result in pop.rules.items()} | {"random": random}
