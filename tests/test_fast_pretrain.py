"""The exact speed-ups of ANT's training: length groups give one pass's losses and gradients, a batch's distinct
items come from the host, and the shares of a global batch (data-parallel) add up to it, rows and losses."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ant.data.split import PAD, Sequences, split
from ant.model.ant import ANT, ANTConfig
from ant.train.batches import TrainRows
from ant.train.data import ItemTable
from ant.train.hparams import parse_hparams
from ant.train.losses import Columns, alignment_loss, in_batch_softmax_loss
from ant.train.objectives import AdaptObjective, PretrainObjective
from ant.train.synthetic import synthetic_task
from tests.train_helpers import perturb_

CPU = torch.device("cpu")
DIMS = {"text": 12, "image": 10, "price": 4}
sequences = st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=20), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def task():
    """Long-tailed histories (up to 50), so that a batch's lengths fall in several groups."""
    t = synthetic_task(160, 60, seed=3, clusters=6, dims=DIMS, mean_length=14, max_length=70)
    table = ItemTable(
        features={m: torch.from_numpy(v) for m, (v, _) in t.features.items()},
        present={m: torch.from_numpy(p) for m, (_, p) in t.features.items()},
        offsets=[0, t.n_items],
    )
    return split(t.sequences, 50)["train"], table


def gradients(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layout", ["prefixes", "all_positions"])
@pytest.mark.parametrize("stage", ["pretrain", "adapt"])
def test_length_groups_give_the_one_pass_losses_and_gradients(task, layout, stage):
    """The same batch encoded in length groups or in one padded pass: equal losses and gradients (eval mode: no
    dropout or gate noise, so that both compute the same function; in training only the draws differ)."""
    train, table = task
    rows = TrainRows.build(train, layout)
    torch.manual_seed(0)
    model = perturb_(ANT(ANTConfig(dims=DIMS, hidden_size=16, inner_size=16, experts=2)), std=0.2).eval()
    hp = parse_hparams('{"optim": {"batch_size": 400}}', stage)
    if stage == "pretrain":
        objective = PretrainObjective(model, table, ["T"], rows, {}, hp, CPU)
    else:
        objective = AdaptObjective(model, table, rows, None, hp, CPU)

    def loss(batch):
        out = objective.loss(batch)
        return out["loss"] if isinstance(out, dict) else out

    one_pass = rows.batches(400, CPU, torch.Generator().manual_seed(1), distinct=True)
    grouped = rows.batches(400, CPU, torch.Generator().manual_seed(1), distinct=True, by_length=0)
    for a, b in zip(one_pass, grouped, strict=True):
        assert a.groups is None and len(b.groups) >= 3  # several groups: the test has teeth
        expected, got = loss(a), loss(b)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
        want, have = gradients(model, expected), gradients(model, got)
        assert want.keys() == have.keys()
        for name, grad in want.items():
            torch.testing.assert_close(have[name], grad, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_a_batch_left_with_one_group_is_the_one_pass_batch(task):
    """Merging groups that save too little ends in one pass in the shuffled order: small batches (the demo's)
    are exactly the batches without length groups."""
    rows = TrainRows.build(task[0], "all_positions")
    plain = rows.batches(64, CPU, torch.Generator().manual_seed(2))
    merged = rows.batches(64, CPU, torch.Generator().manual_seed(2), by_length=10**9)
    for a, b in zip(plain, merged, strict=True):
        assert b.groups is None
        for name in ("history", "length", "target", "user", "position"):
            assert torch.equal(getattr(a, name), getattr(b, name))


@given(sequences, st.integers(1, 40), st.integers(0, 30))
def test_groups_sort_each_batch_into_runs_of_its_rows(lists, batch_size, min_saved):
    train = split(Sequences.from_lists(lists), 6)["train"]
    rows = TrainRows.build(train, "prefixes")
    pairs = []
    for batch in rows.batches(batch_size, CPU, torch.Generator().manual_seed(0), by_length=min_saved):
        groups = batch.groups or ((0, len(batch), batch.history.shape[1]),)
        assert [g[0] for g in groups[1:]] == [g[1] for g in groups[:-1]] and groups[-1][1] == len(batch)
        for lo, hi, steps in groups:
            assert steps == int(batch.length[lo:hi].max()) and lo < hi
        if batch.groups is not None:
            assert torch.equal(batch.length, batch.length.sort().values)
        pairs += [(tuple(h[h != PAD].tolist()), int(t)) for h, t in zip(batch.history, batch.target, strict=True)]
    expected = [(tuple(h[h != PAD].tolist()), int(t)) for h, t in zip(train.history, train.target, strict=True)]
    assert sorted(pairs) == sorted(expected)


def test_distinct_items_are_those_of_the_histories_and_targets(task):
    rows = TrainRows.build(task[0], "all_positions", offset=7)
    for batch in rows.batches(300, CPU, torch.Generator().manual_seed(0), distinct=True, by_length=0):
        seen = set(batch.history[batch.history != PAD].tolist()) | set(batch.target[batch.target != PAD].tolist())
        padding = {0} if (batch.history == PAD).any() or (batch.target == PAD).any() else set()  # looks up row 0
        assert batch.items.tolist() == sorted(seen | padding) and 0 not in seen


@given(sequences, st.integers(1, 30), st.integers(2, 4), st.sampled_from(["prefixes", "all_positions"]))
def test_the_shares_of_every_global_batch_are_its_rows(lists, batch_size, world, layout):
    rows = TrainRows.build(split(Sequences.from_lists(lists), 6)["train"], layout)
    whole = list(rows.batches(batch_size, CPU, torch.Generator().manual_seed(0)))
    shares = [
        list(rows.batches(batch_size, CPU, torch.Generator().manual_seed(0), part=(r, world))) for r in range(world)
    ]
    for step, batch in enumerate(whole):
        parts = [s[step] for s in shares]
        assert [p.first_row for p in parts] == np.cumsum([0] + [len(p) for p in parts[:-1]]).tolist()
        assert all(p.share_targets == parts[0].share_targets for p in parts)
        counts = [len(p) if p.target.dim() == 1 else int((p.target != PAD).sum()) for p in parts]
        assert list(parts[0].share_targets) == counts and sum(counts) == int((batch.target != PAD).sum())
        width = batch.history.shape[1]
        joined = torch.cat(
            [torch.nn.functional.pad(p.history, (0, width - p.history.shape[1]), value=PAD) for p in parts]
        )
        assert torch.equal(joined, batch.history)


def share_columns(values, pad, shares, width):
    """`values` [M, ...] of the whole batch laid out as gather_columns does: shares rank after rank, each padded to
    `width` with `pad`."""
    out = []
    for lo, hi in shares:
        part = values[lo:hi]
        out.append(torch.cat([part, torch.full((width - len(part), *values.shape[1:]), pad, dtype=values.dtype)]))
    return torch.cat(out)


@given(st.data(), st.integers(1, 9), st.integers(2, 4))
def test_the_shares_losses_add_up_to_the_whole_batchs(data, m, world):
    """Each share's rows against all shares' columns (padding columns with huge logits, which must not count):
    the shares' losses and gradients sum to the one-process loss of the whole batch."""
    items = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=m, max_size=m)))  # duplicates
    rows = torch.tensor(sorted(data.draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))))  # all_positions
    keep = torch.tensor(data.draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    logits = torch.randn(m, m, dtype=torch.float64, requires_grad=True)
    bounds = np.array_split(np.arange(m), world)
    shares = [(int(b[0]), int(b[-1]) + 1) if len(b) else (0, 0) for b in bounds]
    width = max(hi - lo for lo, hi in shares)
    column_of = share_columns(torch.arange(m), -1, shares, width)  # the whole batch's column of each gathered one
    padded = torch.where(column_of >= 0, 0.0, 1e3).double()
    columns_items, columns_rows = share_columns(items, PAD, shares, width), share_columns(rows, PAD, shares, width)
    columns_keep = share_columns(keep, False, shares, width)
    rec, align = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for r, (lo, hi) in enumerate(shares):
        share_logits = logits[lo:hi][:, column_of.clamp(min=0)] + padded  # padding columns: logit 1000
        own = r * width + torch.arange(hi - lo)
        columns = Columns(columns_items, columns_rows, own, columns_keep, m)
        rec = rec + in_batch_softmax_loss(share_logits, items[lo:hi], rows[lo:hi], columns)
        align = align + alignment_loss(share_logits, items[lo:hi], keep[lo:hi], rows[lo:hi], columns)
    whole_rec = in_batch_softmax_loss(logits, items, rows)
    whole_align = alignment_loss(logits, items, keep, rows)
    assert rec.item() == pytest.approx(whole_rec.item(), rel=1e-9)
    assert align.item() == pytest.approx(whole_align.item(), rel=1e-9, abs=1e-12)
    (want,) = torch.autograd.grad(whole_rec + whole_align, logits)
    (got,) = torch.autograd.grad(rec + align, logits)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
