"""Pre-training losses: duplicate targets leave the denominator for real; rows without an image leave alignment."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ant.data.split import Sequences, split
from ant.model.ant import ANT, ANTConfig
from ant.train.batches import TrainRows
from ant.train.data import ItemTable
from ant.train.hparams import parse_hparams
from ant.train.losses import alignment_loss, in_batch_logits, in_batch_softmax_loss, negatives_mask
from ant.train.objectives import PretrainObjective


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


def reference_in_batch(logits, items, rows=None, keep=None) -> float:
    """Mean over (kept) rows of -log softmax; row i's denominator sums over j = i and every column whose item
    differs from row i's and (rows given) that is not another target of row i's own batch row."""
    rows = list(range(len(items))) if rows is None else list(rows)
    losses = []
    for i in range(len(items)):
        if keep is not None and not keep[i]:
            continue
        columns = [j for j in range(len(items)) if j == i or (items[j] != items[i] and rows[j] != rows[i])]
        denominator = sum(math.exp(logits[i][j]) for j in columns)
        losses.append(-(logits[i][i] - math.log(denominator)))
    return sum(losses) / len(losses)


@given(st.data(), st.integers(1, 8))
def test_in_batch_softmax_removes_duplicates_and_the_rows_own_targets_from_the_denominator(data, m):
    items = data.draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))  # many duplicates
    rows = data.draw(st.lists(st.integers(0, 2), min_size=m, max_size=m))  # several targets per row
    logits = torch.randn(m, m, dtype=torch.float64)
    got = in_batch_softmax_loss(logits, torch.tensor(items), torch.tensor(rows))
    assert got.item() == approx(reference_in_batch(logits.tolist(), items, rows))
    alone = in_batch_softmax_loss(logits, torch.tensor(items))  # prefixes: one target per row
    assert alone.item() == approx(reference_in_batch(logits.tolist(), items))


def test_removed_columns_are_a_true_minus_infinity_in_the_logits():
    # rows 0 and 1 share item 7 (a duplicate); rows 2 and 3 are two targets of one user's batch row (5)
    logits = torch.tensor(
        [[0.0, 50.0, 1.0, 2.0], [50.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 3.0], [1.0, 1.0, 3.0, 0.0]], dtype=torch.float64
    )
    items, rows = torch.tensor([7, 7, 8, 9]), torch.tensor([0, 1, 5, 5])
    removed = [
        [False, True, False, False],
        [True, False, False, False],
        [False] * 3 + [True],
        [False] * 2 + [True, False],
    ]
    assert negatives_mask(items, rows).tolist() == removed
    masked = in_batch_logits(logits, items, rows)
    assert torch.isneginf(masked[torch.tensor(removed)]).all()  # not -1e4, not 0: really -inf
    assert torch.equal(masked[~torch.tensor(removed)], logits[~torch.tensor(removed)])
    # with the duplicate removed, each of rows 0/1 is a softmax over the remaining distinct items only: a
    # large-negative or zero logit (UniSRec) would leave a trace in the loss and in the gradient
    expected = reference_in_batch(logits.tolist(), [7, 7, 8, 9], [0, 1, 5, 5])
    assert in_batch_softmax_loss(logits, items, rows).item() == approx(expected)
    grad_logits = logits.clone().requires_grad_()
    in_batch_softmax_loss(grad_logits, items, rows).backward()
    assert grad_logits.grad[torch.tensor(removed)].eq(0).all()


@given(st.data(), st.integers(1, 7))
def test_alignment_averages_only_over_rows_with_an_image(data, m):
    items = data.draw(st.lists(st.integers(0, 4), min_size=m, max_size=m))
    keep = data.draw(st.lists(st.booleans(), min_size=m, max_size=m))
    logits = torch.randn(m, m, dtype=torch.float64, requires_grad=True)
    got = alignment_loss(logits, torch.tensor(items), torch.tensor(keep))
    rows = [i for i in range(m) if keep[i]]
    if not rows:
        assert got.item() == 0.0
        return
    assert got.item() == approx(reference_in_batch(logits.tolist(), items, keep=keep))
    got.backward()
    dropped = [i for i in range(m) if not keep[i]]
    assert not logits.grad[dropped].any()  # rows without an image get no gradient at all


def test_pretraining_on_all_positions_never_makes_a_users_own_targets_its_negatives():
    """End to end: with train.rows = all_positions a batch row carries all of one user's targets; the in-batch
    loss of each target must leave the user's other targets out of its denominator (and keep everyone else's)."""
    torch.manual_seed(0)
    dims, n = {"text": 6, "image": 5, "price": 3}, 30
    lists = [[(7 * u + 3 * k) % n for k in range(6)] for u in range(8)]  # distinct items within each user
    train = split(Sequences.from_lists(lists), 50)["train"]
    rows = TrainRows.build(train, "all_positions")
    table = ItemTable(
        features={m: torch.randn(n, d) for m, d in dims.items()},
        present={m: torch.ones(n, dtype=torch.bool) for m in dims},
        offsets=[0, n],
    )
    hp = parse_hparams('{"optim": {"batch_size": 1000, "align_weight": 0}}', "pretrain")
    model = ANT(ANTConfig(dims=dims, hidden_size=8, inner_size=8, experts=2, max_history=50)).eval()
    objective = PretrainObjective(model, table, ["T"], rows, {}, hp, torch.device("cpu"))
    (batch,) = rows.batches(1000, torch.device("cpu"))
    got = objective.loss(batch)["rec"].item()

    v, _ = model.item_vectors(table.features)
    states, target, row = batch.select(model.user_states(v[batch.history.clamp(min=0)], batch.length))
    for r in range(len(batch)):  # each batch row holds exactly one user's training targets
        user = int(train.user_idx[np.flatnonzero(train.history[:, 0] == int(batch.history[r, 0]))[0]])
        assert sorted(target[row == r].tolist()) == sorted(train.target[train.user_idx == user].tolist())
    logits = model.logits(states, v[target]).tolist()
    assert got == pytest.approx(reference_in_batch(logits, target.tolist(), row.tolist()), rel=1e-5)
    # the rule has teeth here: counting a user's own targets as negatives gives another loss
    assert got != pytest.approx(reference_in_batch(logits, target.tolist()), rel=1e-3)


def test_pretraining_alignment_ignores_items_without_an_image():
    """End to end: the alignment part is 0 when no batch item has an image, and does not depend on the image
    features of items flagged as missing."""
    torch.manual_seed(0)
    dims = {"text": 6, "image": 5, "price": 3}
    n = 12
    lists = [[(3 * u + k) % n for k in range(6)] for u in range(10)]
    rows = TrainRows.build(split(Sequences.from_lists(lists), 50)["train"])
    hp = parse_hparams('{"optim": {"batch_size": 1000, "align_weight": 0.5}}', "pretrain")
    model = ANT(ANTConfig(dims=dims, hidden_size=8, inner_size=8, experts=2, max_history=50)).eval()

    def align(present_image: np.ndarray, image: torch.Tensor) -> float:
        table = ItemTable(
            features={
                "text": torch.randn(n, 6, generator=torch.Generator().manual_seed(1)),
                "image": image,
                "price": torch.zeros(n, 3),
            },
            present={
                "text": torch.ones(n, dtype=torch.bool),
                "image": torch.from_numpy(present_image),
                "price": torch.zeros(n, dtype=torch.bool),
            },
            offsets=[0, n],
        )
        objective = PretrainObjective(model, table, ["T"], rows, {}, hp, torch.device("cpu"))
        (batch,) = rows.batches(1000, torch.device("cpu"))
        return objective.loss(batch)["align"].item()

    image = torch.randn(n, 5)
    assert align(np.zeros(n, bool), image) == 0.0
    half = np.arange(n) % 2 == 0
    changed = image.clone()
    changed[~torch.from_numpy(half)] = torch.randn(int((~half).sum()), 5) * 10  # items flagged without image
    assert align(half, image) > 0
    # rows of imageless items are out; their image features can only matter as text columns' partners: they don't
    assert align(half, image) == align(half, changed)


def test_both_objectives_run_under_bf16_autocast():
    """The CUDA path trains under bf16 autocast; CPU autocast exercises the same dtype mixing end to end."""
    from ant.train.objectives import AdaptObjective

    torch.manual_seed(0)
    dims, n = {"text": 6, "image": 5, "price": 3}, 12
    lists = [[(3 * u + k) % n for k in range(6)] for u in range(10)]
    rows = TrainRows.build(split(Sequences.from_lists(lists), 50)["train"], "all_positions")
    table = ItemTable(
        features={m: torch.randn(n, d) for m, d in dims.items()},
        present={m: torch.ones(n, dtype=torch.bool) for m in dims},
        offsets=[0, n],
    )
    hp = parse_hparams('{"optim": {"batch_size": 16}}', "pretrain")
    model = ANT(ANTConfig(dims=dims, hidden_size=8, inner_size=8, experts=2, max_history=50, id_items=n))
    for objective in (
        AdaptObjective(model, table, rows, None, hp, torch.device("cpu")),
        PretrainObjective(
            ANT(ANTConfig(dims=dims, hidden_size=8, inner_size=8, experts=2)),
            table,
            ["T"],
            rows,
            {},
            hp,
            torch.device("cpu"),
        ),
    ):
        batch = next(iter(rows.batches(16, torch.device("cpu"))))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = objective.loss(batch)
        loss = out["loss"] if isinstance(out, dict) else out
        loss.backward()
        assert math.isfinite(loss.item())
