"""BERT4Rec (spec baselines.md section 5): shapes, candidates, the inference mask, bidirectionality, RecBole
v1.1.1's cloze masking and loss slots against a transcription of upstream, the `fixed` variant, and one run of
`python -m ant train-baseline` per variant."""

import json
import random
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from ant.baselines.base import TaskShape
from ant.baselines.bert4rec import Model, Settings
from ant.errors import UserError
from ant.methods import METHODS
from ant.model.transformer import right_padded
from ant.train.batches import Batch
from ant.train.hparams import parse_hparams
from tests.train_helpers import hparams, make_world, run_cli

N_ITEMS, L = 15, 50


def model(variant="recbole111", seed=0, **kw):
    torch.manual_seed(seed)
    settings = Settings(hidden_size=16, inner_size=16, variant=variant, **kw)
    return Model(settings, TaskShape(n_items=N_ITEMS, n_users=4, max_history=L, features={})).eval()


HISTORY = torch.tensor([[3, 0, 7, -1, -1], [11, 4, 4, 2, 9], [5, -1, -1, -1, -1]])  # item_idx, PAD = -1
LENGTH = torch.tensor([3, 5, 1])
USER = torch.tensor([0, 1, 2])


def test_shapes_settings_and_registry():
    m = model()
    assert m.items.weight.shape == (N_ITEMS + 2, 16) and m.mask_token == N_ITEMS + 1
    assert m.encoder.position.weight.shape == (L + 1, 16)  # 51 positions (spec section 5)
    assert m.encode(HISTORY, LENGTH, USER).shape == (3, 6, 16)  # one column appended for the mask
    assert m.candidates().shape == (N_ITEMS, 16) and m.scores(HISTORY, LENGTH, USER).shape == (3, N_ITEMS)
    assert not Model.exact_all_positions and m.slots == 10
    hp = parse_hparams("{}", METHODS["bert4rec"].preset, Settings)
    assert asdict(hp.model) == {  # RecBole v1.1.1's values, the paper's d (spec section 5)
        "hidden_size": 256,
        "layers": 2,
        "attention_heads": 2,
        "inner_size": 256,
        "dropout": 0.5,
        "attn_dropout": 0.5,
        "mask_ratio": 0.2,
        "variant": "recbole111",
    }
    assert METHODS["bert4rec"].variant_of({"variant": "fixed"}) == "variant-fixed"
    assert Settings().problems() == [] and Settings(variant="fixed").problems() == []


@pytest.mark.parametrize(
    ("model_hparams", "message"),
    [
        ({"variant": "recbole12"}, "model.variant must be one of recbole111, fixed"),
        ({"mask_ratio": 0.0}, r"model.mask_ratio must be in \(0, 1\)"),
        ({"mask_ratio": 1.0}, r"model.mask_ratio must be in \(0, 1\)"),
    ],
)
def test_bad_settings_are_a_user_error(model_hparams, message):
    with pytest.raises(UserError, match=message):
        parse_hparams(json.dumps({"model": model_hparams}), "recbole", Settings)


def test_too_few_loss_slots_is_a_user_error():
    with pytest.raises(UserError, match="0 loss slots"):
        Model(Settings(hidden_size=16), TaskShape(n_items=5, n_users=1, max_history=4, features={}))
    Model(Settings(hidden_size=16, variant="fixed"), TaskShape(n_items=5, n_users=1, max_history=4, features={}))


def test_neither_padding_nor_the_mask_token_is_a_candidate():
    m = model()
    torch.testing.assert_close(m.candidates(), m.items.weight[1 : N_ITEMS + 1])
    before = m.scores(HISTORY, LENGTH, USER)
    with torch.no_grad():
        m.items.weight[0] += 1.0  # padding is never looked up (padding_idx 0 in RecBole too) nor scored
    torch.testing.assert_close(m.scores(HISTORY, LENGTH, USER), before)
    with torch.no_grad():
        m.items.weight[N_ITEMS + 1] += 1.0  # the mask token is read as input at len, never scored
    torch.testing.assert_close(m.candidates(), m.items.weight[1 : N_ITEMS + 1])
    assert not torch.allclose(m.scores(HISTORY, LENGTH, USER), before)


def test_inference_puts_the_mask_at_len_and_reads_the_output_there():
    m = model()
    tokens = m.with_mask(HISTORY + 1, LENGTH)
    assert tokens.tolist() == [[4, 1, 8, 16, 0, 0], [12, 5, 5, 3, 10, 16], [6, 16, 0, 0, 0, 0]]
    hidden = m.hidden(tokens, LENGTH + 1)
    expected = hidden[[0, 1, 2], [3, 5, 1]] @ m.items.weight[1 : N_ITEMS + 1].T
    torch.testing.assert_close(m.scores(HISTORY, LENGTH, USER), expected)


def test_a_full_history_puts_the_mask_at_position_50():
    m = model()
    history = torch.full((2, L), -1)
    history[0] = torch.arange(L) % N_ITEMS
    history[1, :7] = torch.arange(7)
    length = torch.tensor([L, 7])
    before = m.scores(history, length, USER[:2])
    with torch.no_grad():
        m.encoder.position.weight[L] += 1.0  # P[50]: read only by the mask of a 50-item history (pitfall (b))
    after = m.scores(history, length, USER[:2])
    assert not torch.allclose(after[0], before[0])
    torch.testing.assert_close(after[1], before[1])


def test_outputs_are_bidirectional_and_ignore_padding():
    m = model()
    hidden = m.encode(HISTORY, LENGTH, USER)
    later = HISTORY.clone()
    later[1, 4] = 13  # a later item changes the outputs before it (a causal model would not)
    changed = m.encode(later, LENGTH, USER)
    assert not torch.allclose(changed[1, 0], hidden[1, 0])
    torch.testing.assert_close(changed[[0, 2]], hidden[[0, 2]])
    # trailing padding, up to all 50 columns, changes nothing: the appended mask sits at len either way
    full = F.pad(HISTORY, (0, L - HISTORY.shape[1]), value=-1)
    torch.testing.assert_close(m.scores(full, LENGTH, USER), m.scores(HISTORY, LENGTH, USER))
    torch.testing.assert_close(m.encode(full, LENGTH, USER)[:, :6], hidden)


def test_masking_statistics():
    m = model()
    length = torch.randint(1, L + 1, (4000,), generator=torch.Generator().manual_seed(1))
    real = right_padded(length, L)
    masked, predicted = m.cloze(length, L)
    assert not (masked & ~real).any()  # padding is never masked
    share = masked.sum().item() / real.sum().item()
    assert share == pytest.approx(0.2, abs=0.005)  # each real position with p = mask_ratio
    assert masked[:, 0].float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert not predicted[:, 0].any()  # recbole111: "index > 0", so position 0 never enters the loss
    assert predicted.sum(1).max().item() == 10  # at most int(0.2 * 50) = 10 slots per row
    assert (predicted <= masked).all()
    # exactly the last 10 masked positions of a row, bar position 0
    for r in range(200):
        listed = masked[r].nonzero().flatten().tolist()[-10:]
        assert predicted[r].nonzero().flatten().tolist() == [i for i in listed if i > 0]

    fixed = model("fixed")
    masked, predicted = fixed.cloze(length, L)
    assert torch.equal(masked, predicted)  # every mask counts, position 0 too, no 10-slot cap
    assert predicted[:, 0].any() and predicted.sum(1).max().item() > 10


def test_masks_come_from_torchs_seeded_generator():
    m = model().train()
    batch = Batch(HISTORY, LENGTH, torch.tensor([1, 2, 3]), USER)
    losses = []
    for python_seed in (1, 2):
        random.seed(python_seed)  # upstream draws from Python's `random`; here it has no say
        torch.manual_seed(7)
        losses.append(m.loss(batch))
    torch.testing.assert_close(losses[0], losses[1])


def upstream_loss(m, batch, masked):
    """RecBole v1.1.1, transcribed: MaskItemSequence's per-row lists (left-padded into int(0.2 * 50) slots) and
    BERT4Rec.calculate_loss (multi-hot gather, CE weighted by masked_index > 0), with the candidates of spec 2.3."""
    history = (batch.history + 1).tolist()
    n_slots = int(m.settings.mask_ratio * L)
    sequences, pos_items, masked_index = [], [], []
    for r, instance in enumerate(history):
        seq, pos, index = list(instance), [], []
        for index_id, item in enumerate(instance):
            if item == 0:
                break
            if masked[r, index_id]:
                pos.append(item)
                seq[index_id] = m.mask_token
                index.append(index_id)
        sequences.append(seq)
        pos_items.append(([0] * (n_slots - len(pos)) + pos)[-n_slots:])
        masked_index.append(([0] * (n_slots - len(index)) + index)[-n_slots:])
    seq, pos, index = torch.tensor(sequences), torch.tensor(pos_items), torch.tensor(masked_index)
    output = m.hidden(seq, batch.length)  # [B, T, d]
    multi_hot = F.one_hot(index, seq.shape[1]).float()  # [B, slots, T]
    states = torch.bmm(multi_hot, output)  # [B, slots, d]
    logits = states @ m.items.weight[1 : N_ITEMS + 1].T  # ids 1..N (RecBole: rows 0..N)
    valid = (index > 0).float().flatten()
    ce = F.cross_entropy(logits.flatten(0, 1), (pos - 1).clamp(min=0).flatten(), reduction="none")
    return (ce * valid).sum() / valid.sum()


@given(st.lists(st.integers(1, L), min_size=1, max_size=12), st.integers(0, 10_000))
def test_recbole111_loss_matches_the_upstream_transcription(lengths, seed):
    m = model()  # eval mode: no dropout, so the one random draw is the mask
    length = torch.tensor(lengths)
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(0, N_ITEMS, (len(lengths), max(lengths)), generator=g)
    history = history.masked_fill(~right_padded(length, history.shape[1]), -1)
    target = torch.randint(0, N_ITEMS, (len(lengths),), generator=g)
    batch = Batch(history, length, target, torch.zeros(len(lengths), dtype=torch.int64))
    torch.manual_seed(seed)
    loss = m.loss(batch)
    torch.manual_seed(seed)
    masked, predicted = m.cloze(length, history.shape[1])  # the same draw
    if predicted.any():
        torch.testing.assert_close(loss, upstream_loss(m, batch, masked))
    else:
        assert loss.item() == 0.0  # upstream: 0 / 0 (NaN)
    # the row target is never used (spec section 5)
    other = Batch(history, length, (batch.target + 1) % N_ITEMS, batch.user)
    torch.manual_seed(seed)
    torch.testing.assert_close(m.loss(other), loss)


def test_rows_of_one_item_never_train_under_recbole111():
    batch = Batch(torch.tensor([[4], [2]]), torch.tensor([1, 1]), torch.tensor([5, 6]), USER[:2])
    m = model().train()
    for seed in range(20):
        torch.manual_seed(seed)
        loss = m.loss(batch)
        assert loss.item() == 0.0
    loss.backward()  # a zero loss with a graph: the trainer's step works and changes nothing
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())
    fixed = model("fixed").train()
    torch.manual_seed(0)
    assert fixed.loss(batch).item() > 0  # the appended mask predicts the row target


def test_fixed_trains_the_appended_slot_with_the_row_target():
    m = model("fixed")
    batch = Batch(HISTORY, LENGTH, torch.tensor([1, 2, 3]), USER)
    torch.manual_seed(3)
    loss = m.loss(batch)
    torch.manual_seed(3)
    masked, _ = m.cloze(LENGTH, HISTORY.shape[1])
    # by hand: the history's masks (position 0 counts) and the mask token appended at len, labelled with the target
    tokens = m.with_mask((HISTORY + 1).masked_fill(masked, m.mask_token), LENGTH)  # [B, T + 1]
    hidden = m.hidden(tokens, LENGTH + 1)
    rows, cols = masked.nonzero(as_tuple=True)
    states = torch.cat([hidden[rows, cols], hidden[[0, 1, 2], LENGTH]])
    labels = torch.cat([HISTORY[rows, cols], batch.target])
    torch.testing.assert_close(loss, F.cross_entropy(states @ m.candidates().T, labels))
    torch.manual_seed(3)
    assert not torch.allclose(m.loss(Batch(HISTORY, LENGTH, torch.tensor([4, 5, 6]), USER)), loss)
    # a 50-item training row reaches P[50], as inference does
    full = Batch(torch.arange(L).unsqueeze(0) % N_ITEMS, torch.tensor([L]), torch.tensor([1]), USER[:1])
    m.loss(full).backward()
    assert m.encoder.position.weight.grad[L].abs().sum() > 0


@pytest.mark.parametrize("variant", ["recbole111", "fixed"])
def test_trimming_trailing_padding_leaves_the_loss_unchanged(variant, monkeypatch):
    m = model(variant)
    batch = Batch(HISTORY, LENGTH, torch.tensor([1, 2, 3]), USER)
    torch.manual_seed(5)
    masked, predicted = m.cloze(LENGTH, HISTORY.shape[1])
    pad = L - HISTORY.shape[1]
    monkeypatch.setattr(m, "cloze", lambda length, steps: (masked, predicted))
    trimmed = m.loss(batch)
    monkeypatch.setattr(m, "cloze", lambda length, steps: (F.pad(masked, (0, pad)), F.pad(predicted, (0, pad))))
    full = m.loss(Batch(F.pad(HISTORY, (0, pad), value=-1), LENGTH, batch.target, USER))
    torch.testing.assert_close(full, trimmed)


@pytest.mark.parametrize("variant", ["recbole111", "fixed"])
def test_train_baseline_end_to_end(tmp_path, variant):
    world = make_world(tmp_path, {"Target": (160, 48)})
    data, _ = world.tasks["Target"]
    out = tmp_path / "bert4rec"
    flags = ["--sequences", f"Target={data / 'sequences.parquet'}", "--items", f"Target={data / 'items.parquet'}"]
    model_hp = {"hidden_size": 32, "inner_size": 32, "dropout": 0.1, "attn_dropout": 0.1, "variant": variant}
    hp = json.loads(hparams(epochs=15, batch_size=128, model=model_hp, lr=0.003))
    hp["train"]["rows"] = "all_positions"  # not exact for BERT4Rec: the trainer gives it prefix rows
    argv = ["train-baseline", "--method", "bert4rec", *flags, "--out-dir", str(out), "--no-progress"]
    assert run_cli(*argv, "--hparams", json.dumps(hp)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ranks = pq.read_table(out / "ranks.parquet")
    assert sorted(ranks.column("user_idx").to_pylist()) == list(range(160))
    assert np.isfinite(ranks.column("rank_history_kept").to_numpy()).all()
    name = "default" if variant == "recbole111" else "variant-fixed"
    assert (metrics["method"], metrics["variant"], metrics["rows"]) == ("bert4rec", name, "prefixes")
    recall = metrics["test_history_kept"]["recall@10"]
    popular = metrics["reference_test"]["most_popular_history_kept"]["recall@10"]
    assert recall > popular, (recall, popular)


def test_two_runs_with_one_seed_train_the_same_weights(tmp_path):
    """Masks and dropout come from the generators the trainer seeds (and saves for a resume)."""
    world = make_world(tmp_path, {"Target": (60, 24)})
    data, _ = world.tasks["Target"]
    flags = ["--sequences", f"Target={data / 'sequences.parquet'}", "--items", f"Target={data / 'items.parquet'}"]
    model_hp = {"hidden_size": 16, "inner_size": 16, "layers": 1}
    weights = []
    for name in ("one", "two"):
        argv = ["train-baseline", "--method", "bert4rec", *flags, "--out-dir", str(tmp_path / name), "--no-progress"]
        assert run_cli(*argv, "--hparams", hparams(epochs=2, batch_size=32, model=model_hp), "--seed", "3") == 0
        weights.append(load_file(str(tmp_path / name / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())
