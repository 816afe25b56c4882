"""S3-Rec (spec baselines.md section 7): the four pretext losses against UniSRec's code transcribed, the label
alignment switch, left padding that keeps absolute positions, the random draws, the chunked attribute heads, the
causal fine-tuning model, and `pretrain-baseline` then `train-baseline --pretrained` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from torch import nn

from ant.baselines import s3rec
from ant.baselines import s3rec_pretext as pretext
from ant.baselines.base import TaskShape
from ant.errors import UserError
from ant.methods import METHODS
from ant.model.transformer import last_position
from ant.train.batches import Batch
from ant.train.hparams import parse_hparams
from tests.train_helpers import make_world, perturb_, run_cli

N, TEXT, L, D = 7, 12, 8, 8
MASK = N + 1
SMALL = s3rec.Settings(hidden_size=D, layers=1, attention_heads=2, inner_size=8, text_table="features")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task(n_items: int = N, max_history: int = L, seed: int = 0) -> TaskShape:
    text = np.random.default_rng(seed).normal(size=(n_items, TEXT)).astype(np.float32)
    return TaskShape(n_items=n_items, n_users=4, max_history=max_history, features={"text": text})


def perturbed(model_settings: s3rec.Settings = SMALL, seed: int = 0) -> s3rec.Model:
    """An S3-Rec in eval mode whose every parameter matters, with scores far from 0 (so labels matter)."""
    torch.manual_seed(seed)
    model = s3rec.Model(model_settings, task(seed=seed))
    return perturb_(model, 0.4).eval()


# ---------------------------------------------------------------------------------------------------------------
# a hand-made batch: RecBole ids, the choices upstream takes from `random` written per row (item numbers, 0 = oldest)

ROWS = [[1, 2, 3, 4, 5], [6], [2, 7, 2, 3, 1, 6], [4, 5, 6]]  # T = 6 < L = 8: the batch is trimmed
MASKED = [{1: 7, 4: 6}, {}, {0: 4, 3: 5}, {2: 1}]  # masked item number -> its MIP negative
SEGMENTS = [(2, 1, 3), None, (3, 2, 10), (1, 0, 14)]  # (length k, start, start in the concatenation); None: < 2
POOL = [item for row in ROWS for item in row]  # upstream's `long_sequence`, 15 items


def right_padded(rows: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([row + [0] * (width - len(row)) for row in rows])


def hand_made(width: int) -> tuple[torch.Tensor, torch.Tensor, pretext.Draws]:
    """The batch (ids [B, width], right-padded), its lengths and the draws above in the left-padded layout."""
    masked = torch.zeros(len(ROWS), width, dtype=torch.bool)
    negative = torch.zeros(len(ROWS), width, dtype=torch.long)
    for b, (row, chosen) in enumerate(zip(ROWS, MASKED, strict=True)):
        for i, neg in chosen.items():
            masked[b, width - len(row) + i], negative[b, width - len(row) + i] = True, neg
    k, start, neg_start = (torch.tensor([s[j] if s else 0 for s in SEGMENTS]) for j in range(3))
    draws = pretext.Draws(masked, negative, k, start, neg_start)
    return right_padded(ROWS, width), torch.tensor([len(r) for r in ROWS]), draws


def upstream_inputs(alignment: str) -> dict[str, torch.Tensor]:
    """UniSRec's `reconstruct_pretrain_data` transcribed, with the choices above: every tensor L columns wide."""

    def pad_left(seq):
        return [0] * (L - len(seq)) + seq

    out = {k: [] for k in ("masked_item_sequence", "pos_items", "neg_items", "masked_seg", "pos_seg", "neg_seg")}
    for row, chosen, segment in zip(ROWS, MASKED, SEGMENTS, strict=True):
        masked = [MASK if i in chosen else item for i, item in enumerate(row)]
        neg = [chosen.get(i, item) for i, item in enumerate(row)]
        out["masked_item_sequence"].append(pad_left(masked))
        out["pos_items"].append(pad_left(row))
        out["neg_items"].append(pad_left(neg))
        if segment is None:  # len < 2: the instance itself, three times
            masked_seg = pos_seg = neg_seg = row
        else:
            k, start, neg_start = segment
            masked_seg = row[:start] + [MASK] * k + row[start + k :]
            pos_seg = [MASK] * start + row[start : start + k] + [MASK] * (len(row) - start - k)
            neg_seg = [MASK] * start + POOL[neg_start : neg_start + k] + [MASK] * (len(row) - start - k)
        out["masked_seg"].append(pad_left(masked_seg))
        out["pos_seg"].append(pad_left(pos_seg))
        out["neg_seg"].append(pad_left(neg_seg))
    out = {k: torch.tensor(v) for k, v in out.items()}
    # `associated_features`: the one-hot of the RIGHT-padded item_seq (L wide, as RecBole pads it) per index
    labels = right_padded(ROWS, L) if alignment == "upstream" else out["pos_items"]
    out["features"] = torch.nn.functional.one_hot(labels, N + 1).float()  # [B, L, N + 1]
    return out


def upstream_losses(model: s3rec.Model, alignment: str) -> dict[str, torch.Tensor]:
    """UniSRec's `S3Rec.pretrain` transcribed: nn.BCELoss on sigmoids, sums, masks on the full L columns."""
    x = upstream_inputs(alignment)
    bce = nn.BCELoss(reduction="none")

    def forward(seq):  # bidirectional, mask `sequence > 0`, positions 0..L-1
        return model.run(seq, seq > 0, 0, causal=False)

    seq_out = forward(x["masked_item_sequence"])  # [B, L, d]
    features = model.adapter(model.text)  # [N + 1, d]
    flat = x["features"].view(-1, N + 1)
    mis = x["masked_item_sequence"].flatten()
    aap_score = torch.sigmoid(model.aap(seq_out).view(-1, D) @ features.T)  # [B L, N + 1]
    aap = torch.sum(bce(aap_score, flat) * ((mis != MASK) & (mis != 0)).float().unsqueeze(-1))
    mip_out = model.mip(seq_out.view(-1, D))
    pos_score = torch.sigmoid((mip_out * model.items(x["pos_items"]).view(-1, D)).sum(-1))
    neg_score = torch.sigmoid((mip_out * model.items(x["neg_items"]).view(-1, D)).sum(-1))
    distance = torch.sigmoid(pos_score - neg_score)
    mip = torch.sum(bce(distance, torch.ones_like(distance)) * (mis == MASK).float())
    map_score = torch.sigmoid(model.map(seq_out).view(-1, D) @ features.T)
    map_ = torch.sum(bce(map_score, flat) * (mis == MASK).float().unsqueeze(-1))
    context = forward(x["masked_seg"])[:, -1]
    pos_seg, neg_seg = forward(x["pos_seg"])[:, -1], forward(x["neg_seg"])[:, -1]
    sp_pos = torch.sigmoid((model.sp(context) * pos_seg).sum(-1))
    sp_neg = torch.sigmoid((model.sp(context) * neg_seg).sum(-1))
    sp_distance = torch.sigmoid(sp_pos - sp_neg)
    sp = torch.sum(bce(sp_distance, torch.ones_like(sp_distance)))
    s = model.settings
    total = s.aap_weight * aap + s.mip_weight * mip + s.map_weight * map_ + s.sp_weight * sp
    return {"loss": total, "aap": aap, "mip": mip, "map": map_, "sp": sp}


def model_losses(model: s3rec.Model, width: int) -> dict[str, torch.Tensor]:
    history, length, draws = hand_made(width)
    built = pretext.build(history, length, L, N, model.settings.label_alignment, 0.2, draws)
    return model.pretext_losses(built)


@pytest.mark.parametrize("alignment", ["upstream", "fixed"])
def test_the_four_losses_are_upstream_pretrain(alignment):
    model = perturbed(s3rec.Settings(**{**vars(SMALL), "label_alignment": alignment}))
    with torch.no_grad():
        got, expected = model_losses(model, 6), upstream_losses(model, alignment)
        other = upstream_losses(model, "fixed" if alignment == "upstream" else "upstream")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-4, msg=key)
    # the test can tell the two alignments apart: only the attribute losses depend on the labels
    assert not torch.isclose(got["aap"], other["aap"]) and not torch.isclose(got["map"], other["map"])
    torch.testing.assert_close(got["mip"], other["mip"])


def test_losses_are_sums_weighted_as_the_settings_say():
    weights = {"aap_weight": 0.3, "mip_weight": 2.0, "map_weight": 0.7, "sp_weight": 1.5}
    model = perturbed(s3rec.Settings(**{**vars(SMALL), **weights}))
    with torch.no_grad():
        got = model_losses(model, 6)
    parts = {key: got[key.removesuffix("_weight")] for key in weights}
    torch.testing.assert_close(got["loss"], sum(w * parts[k] for k, w in weights.items()))
    # summed, not averaged: SP adds one term per row (all four rows, the 1-item row included) of at least
    # -log σ(1) and at most -log σ(-1)
    assert 4 * 0.313 < float(got["sp"]) < 4 * 1.314


def test_left_padding_keeps_absolute_positions_when_trimmed():
    model = perturbed()
    with torch.no_grad():
        trimmed, full = model_losses(model, 6), model_losses(model, L)  # T = 6 (first position 2) and T = L
        history, length, draws = hand_made(6)
        built = pretext.build(history, length, L, N, "upstream", 0.2, draws)
    assert built.first_position == L - 6
    for key in full:
        torch.testing.assert_close(trimmed[key], full[key], rtol=1e-5, atol=1e-4, msg=key)
    # positions counted from the left would not match: the same rows at positions 0..5
    with torch.no_grad():
        shifted = model.pretext_losses(pretext.Pretext(**{**vars(built), "first_position": 0}))
    assert not torch.isclose(shifted["sp"], full["sp"])


def test_segment_inputs_of_one_row():
    history, length, draws = hand_made(6)
    built = pretext.build(history, length, L, N, "upstream", 0.2, draws)
    m = MASK
    # row 0: items 1..5, segment k = 2 from item 1; negative slice POOL[3:5] = [4, 5]
    assert built.items[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert built.segment_masked[0].tolist() == [0, 1, m, m, 4, 5]
    assert built.segment_positive[0].tolist() == [0, m, 2, 3, m, m]
    assert built.segment_negative[0].tolist() == [0, m, 4, 5, m, m]
    # row 1: one item, no segment: the row itself in all three inputs
    for tokens in (built.segment_masked, built.segment_positive, built.segment_negative):
        assert tokens[1].tolist() == [0, 0, 0, 0, 0, 6]
    # row 2: a slice of the concatenation that crosses into row 3 (POOL[10:13] = [1, 6, 4])
    assert built.segment_negative[2].tolist() == [m, m, 1, 6, 4, m]
    assert built.masked_items[2].tolist() == [m, 7, 2, m, 1, 6]


def test_label_alignment_upstream_and_fixed():
    # upstream: the right-padded sequence (L = 50 wide) read at the left-padded input's absolute positions
    for steps in (25, 50):  # trimmed to the longest history or padded to L: the same labels
        row = list(range(1, 26))  # len 25 <= L / 2
        right = right_padded([row], steps)
        left, real = pretext.left_pad(right, torch.tensor([25]))
        labels = pretext.attribute_labels(right, left, 50 - steps, "upstream")
        assert labels[real].tolist() == [0] * 25  # every real position gets the padding item's attribute
        assert pretext.attribute_labels(right, left, 50 - steps, "fixed")[real].tolist() == row
    row = list(range(1, 31))  # len 30: positions 20..49, of which 20..29 read s_20..s_29 (item ids 21..30)
    right = right_padded([row], 30)
    left, real = pretext.left_pad(right, torch.tensor([30]))
    assert pretext.attribute_labels(right, left, 20, "upstream")[real].tolist() == list(range(21, 31)) + [0] * 20
    full = right_padded([row], 50)
    left50, real50 = pretext.left_pad(full, torch.tensor([30]))
    assert pretext.attribute_labels(full, left50, 0, "upstream")[real50].tolist() == list(range(21, 31)) + [0] * 20
    # a full window (len = L) has no padding: both rules agree
    row = list(range(1, 51))
    right = right_padded([row], 50)
    left, _ = pretext.left_pad(right, torch.tensor([50]))
    assert pretext.attribute_labels(right, left, 0, "upstream").tolist() == [row]


def test_the_model_uses_the_configured_alignment():
    history, length, draws = hand_made(6)
    for alignment in ("upstream", "fixed"):
        built = pretext.build(history, length, L, N, alignment, 0.2, draws)
        # row 3 has 3 items at absolute positions 5..7 of L = 8; upstream reads right-padded index 5..7: padding
        expected = [0, 0, 0] if alignment == "upstream" else [4, 5, 6]
        assert built.labels[3][built.real[3]].tolist() == expected
        # row 0 has 5 items at positions 3..7: upstream labels them s_3, s_4 (ids 4, 5), then padding
        expected = [4, 5, 0, 0, 0] if alignment == "upstream" else [1, 2, 3, 4, 5]
        assert built.labels[0][built.real[0]].tolist() == expected


def test_pretrain_loss_draws_from_the_seeded_generator_and_trains_every_pretext_part():
    model = s3rec.Model(SMALL, task()).train()
    history = torch.tensor([[0, 1, 2, 3, 4, 5], [5, -1, -1, -1, -1, -1], [6, 2, 3, -1, -1, -1]])  # item_idx
    rows = Batch(history, torch.tensor([6, 1, 3]), torch.tensor([1, 2, 3]), torch.arange(3))
    torch.manual_seed(3)
    out = model.pretrain_loss(rows)
    torch.manual_seed(3)
    again = model.pretrain_loss(rows)
    assert set(out) == {"loss", "aap", "mip", "map", "sp"}
    for key in out:
        assert torch.equal(out[key], again[key]) and torch.isfinite(out[key]), key
    out["loss"].backward()
    for name in ("aap", "mip", "map", "sp", "adapter"):  # every head and the attribute adapter learn
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters()), name
    grad = model.items.weight.grad
    assert grad[MASK].abs().sum() > 0 and not grad[0].any()  # the mask token trains, the padding row never
    assert model.encoder.position.weight.grad[L - 1].abs().sum() > 0  # left-padded: the last item at L - 1


# ---------------------------------------------------------------------------------------------------------------
# the random draws


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 9), min_size=1, max_size=9), min_size=1, max_size=5), st.integers(0, 99))
def test_negatives_are_the_ranked_non_members(rows, seed):
    n_items = 9
    width = max(map(len, rows))
    items = right_padded(rows, width)
    uniform = torch.rand(items.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    got = pretext.negatives(items, n_items, uniform)
    for b, row in enumerate(rows):
        free = sorted(set(range(1, n_items + 1)) - set(row))
        for t in range(width):
            expected = free[int(uniform[b, t] * len(free))] if free else n_items + 1  # all N in the row: the mask id
            assert int(got[b, t]) == expected


def test_draws_follow_the_spec():
    rng = np.random.default_rng(0)
    n_items, width = 30, 12
    rows = [list(rng.integers(1, n_items + 1, size=int(rng.integers(1, width + 1)))) for _ in range(400)]
    length = torch.tensor([len(r) for r in rows])
    left, real = pretext.left_pad(right_padded(rows, width), length)
    torch.manual_seed(5)
    draws = pretext.draw(left, real, length, n_items, 0.2)
    torch.manual_seed(5)
    again = pretext.draw(left, real, length, n_items, 0.2)
    for field in vars(draws):  # torch's global generator, seeded by the trainer: reproducible
        assert torch.equal(getattr(draws, field), getattr(again, field))
    assert not (draws.masked & ~real).any()
    assert abs(float(draws.masked.sum()) / float(real.sum()) - 0.2) < 0.03
    for b, row in enumerate(rows):
        negatives = draws.negative[b][real[b]].tolist()
        assert all(1 <= neg <= n_items and neg not in row for neg in negatives)
    k, start, neg_start = draws.segment_length, draws.segment_start, draws.negative_start
    short = length < 2
    assert (k[short] == 0).all() and (k[~short] >= 1).all() and (k <= length // 2).all()
    assert (start >= 0).all() and (start + k <= length).all()
    assert (neg_start >= 0).all() and (neg_start + k <= length.sum()).all()
    assert set(k[length == 12].tolist()) == set(range(1, 7))  # every length 1..len // 2 occurs


def test_negatives_are_uniform_over_the_non_members():
    items = torch.tensor([[2, 3, 2, 0]])  # N = 6: the non-members are 1, 4, 5, 6
    torch.manual_seed(0)
    draws = torch.cat([pretext.negatives(items, 6, torch.rand(1, 4, dtype=torch.float64)) for _ in range(3000)])
    counts = torch.bincount(draws.flatten(), minlength=8).tolist()
    assert counts[0] == counts[2] == counts[3] == counts[7] == 0
    assert all(abs(c / 12000 - 0.25) < 0.02 for c in (counts[1], counts[4], counts[5], counts[6]))


# ---------------------------------------------------------------------------------------------------------------
# memory: the attribute heads score only the positions that count, in chunks


def test_attribute_heads_are_chunked_and_exact(monkeypatch):
    torch.manual_seed(0)
    queries = torch.randn(23, D, requires_grad=True)
    features = torch.randn(N + 1, D, requires_grad=True)
    labels = torch.randint(0, N + 1, (23,))
    dense = torch.nn.functional.binary_cross_entropy(
        torch.sigmoid(queries @ features.T), torch.nn.functional.one_hot(labels, N + 1).float(), reduction="sum"
    )
    dense_grads = torch.autograd.grad(dense, (queries, features))
    chunks = []
    original = pretext._softplus_sum
    monkeypatch.setattr(pretext, "_softplus_sum", lambda q, f: chunks.append(q.shape[0] * f.shape[0]) or original(q, f))
    monkeypatch.setattr(pretext, "ATTRIBUTE_CHUNK", 5 * (N + 1))  # 5 positions per chunk
    chunked = pretext.attribute_bce(queries, features, labels)
    grads = torch.autograd.grad(chunked, (queries, features))
    torch.testing.assert_close(chunked, dense)
    for got, expected in zip(grads, dense_grads, strict=True):
        torch.testing.assert_close(got, expected)
    forward = chunks[:5]  # 23 positions: chunks of 5, 5, 5, 5, 3 (then recomputed once each in the backward)
    assert forward == [5 * (N + 1)] * 4 + [3 * (N + 1)] and len(chunks) == 10
    assert max(chunks) <= pretext.ATTRIBUTE_CHUNK


def test_pretraining_scores_only_the_positions_that_count(monkeypatch):
    model = perturbed()
    rows = []
    original = pretext._softplus_sum
    monkeypatch.setattr(pretext, "_softplus_sum", lambda q, f: rows.append(q.shape[0]) or original(q, f))
    with torch.no_grad():
        model_losses(model, 6)
    history, length, draws = hand_made(6)
    n_masked = int(draws.masked.sum())
    assert rows == [int(length.sum()) - n_masked, n_masked]  # AAP: real unmasked; MAP: masked; never B x L


# ---------------------------------------------------------------------------------------------------------------
# fine-tuning and evaluation


def test_fine_tuning_is_causal_right_padded_and_text_free():
    assert s3rec.Model.exact_all_positions
    model = perturbed()
    history = torch.tensor([[0, 3, 5, 2, 6, 1], [4, 4, 1, -1, -1, -1]])  # item_idx, PAD = -1
    length = torch.tensor([6, 3])
    with torch.no_grad():
        hidden = model.encode(history, length, None)
        for row in range(2):  # every position = its prefix row (the inherited all-positions loss is exact)
            for j in range(int(length[row])):
                prefix = last_position(
                    model.encode(history[row : row + 1, : j + 1], torch.tensor([j + 1]), None), torch.tensor([j + 1])
                )
                torch.testing.assert_close(hidden[row, j], prefix[0], rtol=1e-5, atol=1e-5)
        scores = model.scores(history, length, None)
        model.text += 3.0  # the text enters only through pre-training
        model.items.weight[0] = 50.0  # padding row
        model.items.weight[MASK] = 50.0  # the mask token: never a candidate
        torch.testing.assert_close(model.scores(history, length, None), scores)
    assert scores.shape == (2, N) and model.candidates().shape == (N, D)
    assert model.items.num_embeddings == N + 2 and model.encoder.position.num_embeddings == L


def test_settings_defaults_and_problems():
    s = s3rec.Settings()
    assert (s.hidden_size, s.layers, s.attention_heads, s.inner_size, s.dropout, s.attn_dropout) == (
        256,
        2,
        2,
        256,
        0.5,
        0.5,
    )
    assert (s.mask_ratio, s.aap_weight, s.mip_weight, s.map_weight, s.sp_weight) == (0.2, 1.0, 0.2, 1.0, 0.5)
    assert (s.pretrain_epochs, s.pretrain_lr, s.label_alignment) == (300, None, "upstream") and s.problems() == []
    assert dict(METHODS["s3rec"].switches) == {"label_alignment": "upstream", "text_table": "upstream"}
    assert s.text_table == "upstream" and SMALL.text_table == "features"  # the tests of the text path read text
    assert METHODS["s3rec"].variant_of(vars(s3rec.Settings(label_alignment="fixed"))) == "label_alignment-fixed"
    bad = s3rec.Settings(
        mask_ratio=1.0, sp_weight=-1, pretrain_epochs=0, pretrain_lr=0.0, label_alignment="left", text_table="bert"
    )
    assert len(bad.problems()) == 6
    with pytest.raises(UserError, match="model.label_alignment must be one of upstream, fixed"):
        parse_hparams(json.dumps({"model": {"label_alignment": "left"}}), "recbole", s3rec.Settings)
    with pytest.raises(UserError, match="model.mask_ratio must be in"):
        parse_hparams(json.dumps({"model": {"mask_ratio": 0}}), "recbole", s3rec.Settings)


# ---------------------------------------------------------------------------------------------------------------
# end to end: pretrain-baseline, then train-baseline --pretrained


def test_fine_tuning_starts_from_the_pretrained_checkpoint(tmp_path, caplog):
    world = make_world(tmp_path, {"Target": (60, 40)})
    data, manifests = world.tasks["Target"]
    flags = ["--sequences", f"Target={data / 'sequences.parquet'}", "--items", f"Target={data / 'items.parquet'}"]
    flags += ["--features", f"Target.text={manifests['text']}"]  # S3-Rec reads ids and text only
    model = {"hidden_size": 16, "inner_size": 16, "layers": 1, "pretrain_epochs": 2, "label_alignment": "fixed"}
    train = {"device": "cpu", "eval_batch_size": 128, "threads": 1}
    hp = json.dumps({"model": model, "optim": {"epochs": 2, "batch_size": 64}, "train": train})
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    common = ["--method", "s3rec", *flags, "--hparams", hp, "--no-progress"]
    assert run_cli("pretrain-baseline", *common, "--out-dir", str(pre)) == 0
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and set(metrics["last_epoch_losses"]) == {"loss", "aap", "mip", "map", "sp"}
    assert run_cli("train-baseline", *common, "--out-dir", str(fine / "none")) == 1
    assert "pass --pretrained" in caplog.text
    assert (
        run_cli("train-baseline", *common, "--pretrained", str(pre / "model.safetensors"), "--out-dir", str(fine)) == 0
    )
    before, after = load_file(str(pre / "model.safetensors")), load_file(str(fine / "model.safetensors"))
    assert before.keys() == after.keys() and "text" not in before
    # what fine-tuning never touches (pretext heads, the attribute adapter) is the checkpoint's, bit for bit;
    # what it trains has moved away from it
    for name in before:
        if name.split(".")[0] in ("aap", "mip", "map", "sp", "adapter"):
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["items.weight"], after["items.weight"])
    result = json.loads((fine / "metrics.json").read_text())
    assert result["method"] == "s3rec" and result["variant"] == "label_alignment-fixed"
    assert 0 <= result["test_history_kept"]["recall@10"] <= 1
