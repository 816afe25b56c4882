"""Training rows and batches: every target once per epoch, trimmed histories, and all_positions = prefixes."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from ant.data.split import PAD, Sequences, split
from ant.model.transformer import SequenceEncoder
from ant.train.batches import TrainRows

sequences = st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=14), min_size=1, max_size=12)


def pairs_of(rows: TrainRows) -> list[tuple[tuple[int, ...], int]]:
    """Every (history, target) pair the rows train on, written out the slow way."""
    out = []
    for r in range(len(rows)):
        hist = rows.history[r, : rows.length[r]].tolist()
        if rows.target.dim() == 1:
            out.append((tuple(hist), int(rows.target[r])))
        else:
            for j in range(rows.history.shape[1]):
                if rows.target[r, j] != PAD:
                    out.append((tuple(hist[: j + 1]), int(rows.target[r, j])))
    return sorted(out)


@given(sequences, st.integers(1, 6))
def test_all_positions_rows_train_on_exactly_the_prefix_pairs(lists, max_history):
    train = split(Sequences.from_lists(lists), max_history)["train"]
    prefixes = TrainRows.build(train, "prefixes")
    positions = TrainRows.build(train, "all_positions")
    assert positions.n_targets == prefixes.n_targets == len(train)
    assert pairs_of(positions) == pairs_of(prefixes)
    assert len(positions) <= len(prefixes)


@given(sequences, st.integers(1, 6))
def test_every_layout_keeps_the_position_of_the_target_after_the_last_history_item(lists, max_history):
    train = split(Sequences.from_lists(lists), max_history)["train"]
    for layout in ("prefixes", "all_positions"):
        rows = TrainRows.build(train, layout)
        if len(rows) == 0:
            continue
        (batch,) = rows.batches(10**6, torch.device("cpu"))
        # the target predicted from the whole history (for all_positions, that of the last history column)
        last = batch.target if batch.target.dim() == 1 else batch.target[torch.arange(len(batch)), batch.length - 1]
        for u, h, n, t, pos in zip(batch.user, batch.history, batch.length, last, batch.position, strict=True):
            assert h[:n].tolist() == lists[u][pos - n : pos] and lists[u][pos] == t


@given(sequences, st.integers(1, 64), st.integers(0, 5))
def test_an_epoch_yields_every_row_once_cut_to_its_longest_history(lists, batch_size, seed):
    train = split(Sequences.from_lists(lists), 6)["train"]
    rows = TrainRows.build(train, "prefixes", offset=100)
    seen = []
    batches = list(rows.batches(batch_size, torch.device("cpu"), torch.Generator().manual_seed(seed)))
    assert len(batches) == rows.steps(batch_size)
    for batch in batches:
        assert batch.history.shape[1] == int(batch.length.max())
        assert (batch.history[:, -1][batch.length == batch.history.shape[1]] != PAD).all()
        seen += [(tuple(h[h != PAD].tolist()), int(t)) for h, t in zip(batch.history, batch.target, strict=True)]
    expected = [(tuple(h[h != PAD] + 100), int(t) + 100) for h, t in zip(train.history, train.target, strict=True)]
    assert sorted(seen) == sorted(expected)


def test_shuffling_follows_the_generator():
    train = split(Sequences.from_lists([list(range(i, i + 9)) for i in range(20)]), 5)["train"]
    rows = TrainRows.build(train)

    def order(seed):
        return torch.cat([b.target for b in rows.batches(16, torch.device("cpu"), torch.Generator().manual_seed(seed))])

    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    in_order = torch.cat([b.target for b in rows.batches(16, torch.device("cpu"))])
    assert torch.equal(in_order, torch.from_numpy(train.target.astype(np.int64)))


def test_all_positions_gives_the_prefix_outputs_in_one_pass():
    torch.manual_seed(0)
    lists = [list(np.random.default_rng(i).integers(0, 20, size=n)) for i, n in enumerate([3, 4, 9, 12, 5])]
    train = split(Sequences.from_lists(lists), 6)["train"]
    encoder = SequenceEncoder(8, max_length=6, layers=2, heads=2, inner_size=8, dropout=0.5).eval()
    table = torch.randn(20, 8)

    def outputs(layout):
        """(history, target) -> the encoder's state that predicts it."""
        (batch,) = TrainRows.build(train, layout).batches(10_000, torch.device("cpu"))
        states, _, _ = batch.select(encoder(table[batch.history.clamp(min=0)], batch.length))
        if batch.target.dim() == 1:
            keys = [
                (tuple(h[:n].tolist()), int(t))
                for h, n, t in zip(batch.history, batch.length, batch.target, strict=True)
            ]
        else:
            rows, cols = torch.nonzero(batch.target != PAD, as_tuple=True)  # the order select() uses
            keys = [
                (tuple(batch.history[r, : c + 1].tolist()), int(batch.target[r, c]))
                for r, c in zip(rows, cols, strict=True)
            ]
        return dict(zip(keys, states, strict=True))

    prefixes, positions = outputs("prefixes"), outputs("all_positions")
    assert prefixes.keys() == positions.keys() and len(prefixes) == len(train)
    for key, state in prefixes.items():
        torch.testing.assert_close(positions[key], state, rtol=1e-5, atol=1e-5)


def test_batch_size_counts_targets_in_both_layouts():
    lists = [list(range(i, i + 12)) for i in range(40)]
    train = split(Sequences.from_lists(lists), 50)["train"]
    prefixes, positions = TrainRows.build(train), TrainRows.build(train, "all_positions")
    assert len(positions) == 40 and positions.n_targets == len(prefixes) == 40 * 9
    assert prefixes.steps(90) == positions.steps(90) == 4
