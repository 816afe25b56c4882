"""NPE (spec baselines.md section 3): shapes, candidates, the padding switch, all positions = prefix rows,
trimming, and one run of `python -m ant train-baseline`."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from ant.baselines.base import TaskShape
from ant.baselines.npe import Model, Settings
from ant.data.split import Sequences, split
from ant.methods import METHODS
from ant.model.transformer import last_position
from ant.train.batches import Batch, TrainRows
from ant.train.hparams import parse_hparams
from tests.train_helpers import hparams, make_world, run_cli

N_ITEMS, N_USERS, L = 12, 5, 6


def model(sum_padding=True, hidden=8, max_history=L, seed=0):
    torch.manual_seed(seed)
    task = TaskShape(n_items=N_ITEMS, n_users=N_USERS, max_history=max_history, features={})
    return Model(Settings(hidden_size=hidden, sum_padding=sum_padding), task).eval()


HISTORY = torch.tensor([[3, 0, 7, -1, -1], [11, 4, 4, 2, 9], [5, -1, -1, -1, -1]])  # item_idx, PAD = -1
LENGTH = torch.tensor([3, 5, 1])
USER = torch.tensor([4, 0, 2])


def test_shapes_settings_and_registry():
    m = model(hidden=8)
    assert m.encode(HISTORY, LENGTH, USER).shape == (3, 5, 8)
    assert m.candidates().shape == (N_ITEMS, 8) and m.scores(HISTORY, LENGTH, USER).shape == (3, N_ITEMS)
    assert m.items.weight.shape == (N_ITEMS + 1, 8) and m.users.weight.shape == (N_USERS, 8)
    assert m.items.padding_idx is None  # upstream has no padding index: E[0] trains (spec section 3)
    assert Model.exact_all_positions
    hp = parse_hparams("{}", METHODS["npe"].preset, Settings)
    assert hp.model == Settings() and (hp.model.hidden_size, hp.model.dropout, hp.model.sum_padding) == (256, 0.3, True)
    assert dict(METHODS["npe"].switches) == {"sum_padding": True}
    assert METHODS["npe"].variant_of({"sum_padding": False}) == "sum_padding-false"


def test_xavier_normal_init_on_every_embedding():
    torch.manual_seed(0)
    m = Model(Settings(hidden_size=64), TaskShape(n_items=3000, n_users=2000, max_history=50, features={}))
    for table in (m.items.weight, m.users.weight):
        rows, d = table.shape
        assert table.std().item() == pytest.approx((2 / (rows + d)) ** 0.5, rel=0.02)
        assert table.mean().abs().item() < 0.01


def test_padding_is_never_a_candidate():
    m = model()
    torch.testing.assert_close(m.candidates(), F.relu(m.items.weight[1:]))
    assert (m.candidates() >= 0).all()  # candidate vectors are non-negative (spec section 3)
    with torch.no_grad():
        m.items.weight[0] += 100.0  # the padding row moves the states (the length term), never a candidate column
    torch.testing.assert_close(m.candidates(), F.relu(m.items.weight[1:]))


@pytest.mark.parametrize("sum_padding", [True, False])
def test_states_are_computed_by_hand(sum_padding):
    m = model(sum_padding)
    U, E = m.users.weight.detach(), m.items.weight.detach()
    scores = m.scores(HISTORY, LENGTH, USER)
    # the scorer's whole-history sum is the running sum of `encode` at the last real position
    torch.testing.assert_close(scores, m.logits(last_position(m.encode(HISTORY, LENGTH, USER), LENGTH)))
    for r in range(3):
        n = int(LENGTH[r])
        ids = [int(i) + 1 for i in HISTORY[r, :n]]
        if sum_padding:
            ids += [0] * (L - n)  # RecBole pads the history to L columns and sums them all
        bag = E[ids].sum(0)
        state = F.relu(U[USER[r]]) + F.relu(bag)
        torch.testing.assert_close(scores[r], state @ F.relu(E[1:]).T)
        if sum_padding:
            torch.testing.assert_close(bag, E[[i + 1 for i in HISTORY[r, :n].tolist()]].sum(0) + (L - n) * E[0])


def test_the_padding_term_is_a_length_feature():
    on, off = model(True), model(False)
    # one item, two lengths: the bag sums differ by one (L - len) step of E[0] only when the padding is summed
    history = torch.tensor([[2, 2, -1], [2, -1, -1]])
    user = torch.tensor([1, 1])
    length = torch.tensor([2, 1])
    for m, extra in ((on, on.items.weight[0]), (off, 0.0)):
        with torch.no_grad():
            m.users.weight.zero_()
            m.items.weight.abs_()  # all positive: ReLU is the identity on the bags
            state = m.encode(history, length, user)
        torch.testing.assert_close(state[0, 1] - state[1, 0], m.items.weight[3] - extra)


sequences = st.lists(st.lists(st.integers(0, N_ITEMS - 1), min_size=4, max_size=12), min_size=1, max_size=N_USERS)


@given(sequences, st.integers(1, 8), st.booleans())
def test_all_positions_equal_the_prefix_rows(lists, max_history, sum_padding):
    m = model(sum_padding, max_history=max_history, seed=len(lists))
    train = split(Sequences.from_lists(lists), max_history)["train"]

    def every_pair(layout):
        rows = TrainRows.build(train, layout)
        batch = next(rows.batches(len(rows) * max_history, torch.device("cpu")))
        states, _, _ = batch.select(m.encode(batch.history, batch.length, batch.user))
        # (user, history, target) of each state; a repeated key is the same state, as the model is in eval mode
        keys = [(int(batch.user[r]), tuple(batch.history[r, : j + 1].tolist()), t) for r, j, t in _positions(batch)]
        return dict(zip(keys, states, strict=True)), m.loss(batch)

    prefixes, prefix_loss = every_pair("prefixes")
    positions, positions_loss = every_pair("all_positions")
    assert positions.keys() == prefixes.keys()
    for key, state in prefixes.items():
        torch.testing.assert_close(positions[key], state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(positions_loss, prefix_loss, rtol=1e-5, atol=1e-5)


def _positions(batch: Batch) -> list[tuple[int, int, int]]:
    """(row, position, target) of every target of a batch, in `Batch.select`'s order."""
    if batch.target.dim() == 1:
        return [(r, int(batch.length[r]) - 1, int(t)) for r, t in enumerate(batch.target)]
    return [(int(r), int(j), int(batch.target[r, j])) for r, j in (batch.target != -1).nonzero().tolist()]


@pytest.mark.parametrize("sum_padding", [True, False])
def test_trimming_trailing_padding_changes_nothing(sum_padding):
    m = model(sum_padding)
    full = F.pad(HISTORY, (0, L - HISTORY.shape[1]), value=-1)  # padded to all L columns, as RecBole does
    torch.testing.assert_close(m.encode(full, LENGTH, USER)[:, :5], m.encode(HISTORY, LENGTH, USER))
    torch.testing.assert_close(m.scores(full, LENGTH, USER), m.scores(HISTORY, LENGTH, USER))
    short = HISTORY[2:, :1]  # the one-item row cut to one column
    torch.testing.assert_close(m.scores(short, LENGTH[2:], USER[2:]), m.scores(HISTORY, LENGTH, USER)[2:])
    with pytest.raises(ValueError, match="longer than max_history"):
        m.encode(F.pad(full, (0, 1), value=-1), LENGTH, USER)


def test_training_draws_dropout_and_the_loss_reaches_every_table():
    m = model().train()
    batch = Batch(HISTORY, LENGTH, torch.tensor([1, 2, 3]), USER)
    assert not torch.equal(m.encode(HISTORY, LENGTH, USER), m.encode(HISTORY, LENGTH, USER))
    m.loss(batch).backward()
    assert m.items.weight.grad[0].abs().sum() > 0  # the padding row learns through the length term
    assert m.users.weight.grad[USER].abs().sum() > 0 and m.users.weight.grad[[1, 3]].abs().sum() == 0


@pytest.mark.parametrize(("rows", "sum_padding"), [("prefixes", True), ("all_positions", False)])
def test_train_baseline_end_to_end(tmp_path, rows, sum_padding):
    world = make_world(tmp_path, {"Target": (160, 48)})
    data, _ = world.tasks["Target"]
    out = tmp_path / "npe"
    flags = ["--sequences", f"Target={data / 'sequences.parquet'}", "--items", f"Target={data / 'items.parquet'}"]
    hp = json.loads(hparams(epochs=12, batch_size=128, lr=0.01))
    hp["model"] = {"hidden_size": 32, "dropout": 0.1, "sum_padding": sum_padding}
    hp["train"]["rows"] = rows  # all_positions is exact for NPE, so the trainer uses it
    argv = ["train-baseline", "--method", "npe", *flags, "--out-dir", str(out), "--no-progress"]
    assert run_cli(*argv, "--hparams", json.dumps(hp)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ranks = pq.read_table(out / "ranks.parquet")
    assert sorted(ranks.column("user_idx").to_pylist()) == list(range(160))
    assert np.isfinite(ranks.column("rank_history_kept").to_numpy()).all()
    variant = "default" if sum_padding else "sum_padding-false"
    assert (metrics["method"], metrics["variant"], metrics["rows"]) == ("npe", variant, rows)
    recall = metrics["test_history_kept"]["recall@10"]
    popular = metrics["reference_test"]["most_popular_history_kept"]["recall@10"]
    assert recall > popular, (recall, popular)
