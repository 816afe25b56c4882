"""UniSRec (spec baselines.md section 8): the adaptor against UniSRec's MoEAdaptorLayer transcribed, the user vector
and scores against its forward / full_sort_predict, L_SI and L_SS against its exp/sum formula (same-target entries
at logit 0), the two augmentations, the state dict that moves between tasks, the parts, and +ID."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ant.baselines import unisrec
from ant.baselines.base import TaskShape
from ant.data.split import PAD
from ant.methods import METHODS
from ant.model.transformer import last_position
from ant.train.batches import Batch
from tests.train_helpers import perturb_

N, TEXT, L, D, K = 30, 24, 8, 16, 4
SMALL = unisrec.Settings(hidden_size=D, layers=2, attention_heads=2, inner_size=16, experts=K)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task(n_items: int = N, seed: int = 0, worddrop: bool = False) -> TaskShape:
    rng = np.random.default_rng(seed)
    features = {"text": rng.normal(size=(n_items, TEXT)).astype(np.float32)}
    if worddrop:
        features["text_worddrop"] = rng.normal(size=(n_items, TEXT)).astype(np.float32)
    return TaskShape(n_items=n_items, n_users=4, max_history=L, features=features)


def perturbed(
    model_settings: unisrec.Settings = SMALL, shape: TaskShape | None = None, item_ids: bool = False, seed: int = 0
) -> unisrec.Model:
    """A UniSRec in eval mode whose every parameter matters (shifts, gates, LayerNorm gains and biases too)."""
    torch.manual_seed(seed)
    model = unisrec.Model(model_settings, shape or task(seed=seed), item_ids=item_ids)
    return perturb_(model, 0.5, {"adaptor.": 0.3}).eval()


def padded(rows: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """item_idx rows, right-padded with PAD to `width` (default: the longest)."""
    width = width or max(map(len, rows))
    return torch.tensor([row + [PAD] * (width - len(row)) for row in rows]), torch.tensor([len(r) for r in rows])


def random_batch(lengths: list[int], steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(0, N, (len(lengths), steps), generator=g)
    length = torch.tensor(lengths)
    history[torch.arange(steps).unsqueeze(0) >= length.unsqueeze(1)] = PAD
    return history, length


# ---------------------------------------------------------------------------------------------------------------
# UniSRec's code, transcribed (unisrec.py: PWLayer, MoEAdaptorLayer, UniSRec.forward, full_sort_predict, pretrain)


class PWLayer(nn.Module):
    def __init__(self, input_size: int, output_size: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))
        self.lin = nn.Linear(input_size, output_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptorLayer(nn.Module):
    def __init__(self, n_exps: int, layers: list[int], dropout: float) -> None:
        super().__init__()
        self.experts = nn.ModuleList([PWLayer(layers[0], layers[1], dropout) for _ in range(n_exps)])
        self.w_gate = nn.Parameter(torch.zeros(layers[0], n_exps))
        self.w_noise = nn.Parameter(torch.zeros(layers[0], n_exps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.w_gate
        if self.training:
            logits = logits + torch.randn_like(logits) * (F.softplus(x @ self.w_noise) + 1e-2)
        gates = F.softmax(logits, dim=-1)
        expert_outputs = torch.cat([e(x).unsqueeze(-2) for e in self.experts], dim=-2)
        return (gates.unsqueeze(-1) * expert_outputs).sum(dim=-2)


def upstream_adaptor(model: unisrec.Model) -> MoEAdaptorLayer:
    adaptor = model.adaptor
    upstream = MoEAdaptorLayer(K, [TEXT, D], adaptor.dropout)
    with torch.no_grad():
        for k, expert in enumerate(upstream.experts):
            expert.lin.weight.copy_(adaptor.weight[k].T)
            expert.bias.copy_(adaptor.shift[k])
        upstream.w_gate.copy_(adaptor.gate)
        upstream.w_noise.copy_(adaptor.noise)
    return upstream.train(model.training)


def upstream_user(model: unisrec.Model, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """UniSRec.forward (eval): the MoE over the whole padded [B, T, 768] history, + E_id (transductive), + P, LN,
    the Transformer, the output at len - 1."""
    item_seq = history + 1
    item_emb = upstream_adaptor(model)(model.text[item_seq])
    if model.item_ids is not None:
        item_emb = item_emb + model.item_ids(item_seq)  # added before the LayerNorm, with P inside the encoder
    return last_position(model.encoder(item_emb, length), length)


def upstream_scores(model: unisrec.Model, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """full_sort_predict / temperature without the padding column 0."""
    items = upstream_adaptor(model)(model.text)
    if model.item_ids is not None:
        items = items + model.item_ids.weight
    u = F.normalize(upstream_user(model, history, length), dim=-1)
    return (u @ F.normalize(items, dim=-1).T)[:, 1:] / model.settings.temperature


def upstream_contrastive(u: torch.Tensor, keys: torch.Tensor, pos_id: torch.Tensor, tau: float) -> torch.Tensor:
    """seq_item_contrastive_task / seq_seq_contrastive_task: exp/sum, same-target entries replaced by logit 0."""
    same_pos_id = (pos_id.unsqueeze(1) == pos_id.unsqueeze(0)) ^ torch.eye(len(pos_id), dtype=torch.bool)
    pos_logits = torch.exp((u * keys).sum(dim=1) / tau)
    neg_logits = torch.matmul(u, keys.T) / tau
    neg_logits = torch.where(same_pos_id, torch.tensor([0.0]), neg_logits)
    return (-torch.log(pos_logits / torch.exp(neg_logits).sum(dim=1))).mean()


# ---------------------------------------------------------------------------------------------------------------
# the item and user encoders, the scores


def test_the_adaptor_is_upstream_moe_adaptor_layer():
    model = perturbed()
    x = model.text[1:]
    upstream = upstream_adaptor(model)
    with torch.no_grad():
        torch.testing.assert_close(model.adaptor(x), upstream(x), rtol=1e-5, atol=1e-5)  # evaluation
        # training: the same routing noise after the same seed (dropout 0 here, which then draws nothing)
        model.adaptor.dropout = 0.0
        for expert in upstream.experts:
            expert.dropout.p = 0.0
        model.train()
        upstream.train()
        torch.manual_seed(7)
        ours = model.adaptor(x)
        torch.manual_seed(7)
        torch.testing.assert_close(ours, upstream(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(ours, model.eval().adaptor(x), atol=1e-3)  # the noise did something


def test_initialisation_is_recbole_and_the_adaptor_its_own():
    torch.manual_seed(0)
    model = unisrec.Model(unisrec.Settings(), task(), item_ids=True)  # paper size: d 300
    adaptor = model.adaptor
    assert adaptor.weight.shape == (8, TEXT, 300) and abs(adaptor.weight.std().item() - 0.02) < 0.002
    assert not adaptor.shift.any() and not adaptor.gate.any() and not adaptor.noise.any()
    assert adaptor.dropout == 0.2 and adaptor.bias is None  # whitening heads: no output bias
    for weight in (model.item_ids.weight, model.encoder.position.weight, model.encoder.layers[0].qkv.weight):
        assert abs(weight.std().item() - 0.02) < 0.002
    assert not model.encoder.layers[0].qkv.bias.any() and torch.equal(model.encoder.input_norm.weight, torch.ones(300))
    assert model.encoder.input_norm.eps == 1e-12 and model.encoder.causal


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, L), min_size=1, max_size=5), st.booleans(), st.integers(0, 3))
def test_scores_are_upstream_cosine_over_the_n_items(lengths, item_ids, seed):
    model = perturbed(item_ids=item_ids, seed=seed)
    history, length = random_batch(lengths, max(lengths), seed)
    with torch.no_grad():
        scores = model.scores(history, length, None)
        torch.testing.assert_close(scores, upstream_scores(model, history, length), rtol=1e-4, atol=1e-4)
    assert scores.shape == (len(lengths), N) and scores.abs().max() <= 1 / SMALL.temperature + 1e-4


def test_scores_are_causal_and_padding_invariant():
    model = perturbed()
    history, length = random_batch([6, 3, 5], 6)
    with torch.no_grad():
        before = model.encode(history, length, None)
        later = history.clone()
        later[0, 4] = (later[0, 4] + 1) % N
        after = model.encode(later, length, None)
        torch.testing.assert_close(after[:, :4], before[:, :4])
        assert not torch.allclose(after[0, 4], before[0, 4])
        wide = torch.cat([history, torch.full((3, 2), PAD)], dim=1)  # two more padding columns, T = 8 = L
        torch.testing.assert_close(model.scores(wide, length, None), model.scores(history, length, None))
        short = model.scores(history[1:2, :3], length[1:2], None)  # row 1 alone, trimmed to its 3 items
        torch.testing.assert_close(short, model.scores(history, length, None)[1:2], rtol=1e-5, atol=1e-5)
    assert before.shape == (3, 6, D) and not before[1, 3:].any()  # padded positions are zero
    with pytest.raises(ValueError, match="longer than max_history"):
        model.encode(torch.zeros(1, L + 1, dtype=torch.long), torch.tensor([L + 1]), None)


def test_logits_are_float32_under_autocast_and_the_candidates_train():
    model = perturbed().train()
    history, length = random_batch([4, 2], 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.logits(last_position(model.encode(history, length, None), length))
    assert logits.dtype == torch.float32 and logits.shape == (2, N)
    logits.sum().backward()
    assert model.adaptor.weight.grad.abs().sum() > 0 and model.adaptor.gate.grad.abs().sum() > 0
    first, second = model.candidates(), model.candidates()
    assert not torch.equal(first, second)  # recomputed per call: fresh dropout in training


def test_item_ids_enter_the_history_input_and_the_candidates_only_with_the_id_table():
    text = task().features["text"].copy()
    text[7] = text[3]  # items 3 and 7 have the same text
    twins = TaskShape(N, 4, L, {"text": text})
    history, length = padded([[1, 3, 5], [3, 2]])
    swapped = torch.where(history == 3, 7, history)
    plain, with_ids = perturbed(shape=twins), perturbed(shape=twins, item_ids=True)
    with torch.no_grad():
        c = plain.candidates()
        torch.testing.assert_close(c[3], c[7])  # text only: the same text is the same item
        torch.testing.assert_close(plain.scores(swapped, length, None), plain.scores(history, length, None))
        c = with_ids.candidates()
        assert not torch.allclose(c[3], c[7])
        scores = with_ids.scores(history, length, None)
        assert not torch.allclose(with_ids.scores(swapped, length, None), scores)
        # E_id[i] moves candidate i and the states of histories holding i (from its position on), nothing else
        states = with_ids.encode(history, length, None)
        with_ids.item_ids.weight[5 + 1] += torch.randn(D)  # not a constant shift, which the LayerNorm removes
        moved, after = with_ids.candidates(), with_ids.encode(history, length, None)
    others = torch.arange(N) != 5
    assert not torch.allclose(moved[5], c[5]) and torch.equal(moved[others], c[others])
    assert not torch.allclose(after[0, 2], states[0, 2])  # row 0 holds item 5 at position 2
    torch.testing.assert_close(after[0, :2], states[0, :2])
    torch.testing.assert_close(after[1], states[1])  # row 1 does not hold it


# ---------------------------------------------------------------------------------------------------------------
# the state dict, the parts


def test_the_state_dict_moves_between_tasks_and_holds_no_task_sized_tensor():
    small, large = task(25, seed=1), task(40, seed=2)
    large.features["text"][:25] = small.features["text"]  # the first 25 items are the same
    source = perturbed(shape=small)
    target = perturbed(shape=large, seed=5)
    state = source.state_dict()
    assert not any({25, 26} & set(t.shape) for t in state.values())
    assert "text" not in state and "text_worddrop" not in state
    target.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(target.candidates()[:25], source.candidates())
    with_ids = perturbed(shape=small, item_ids=True).state_dict()
    assert [k for k, t in with_ids.items() if {25, 26} & set(t.shape)] == ["item_ids.weight"]
    assert with_ids["item_ids.weight"].shape == (26, D)


def test_every_parameter_is_in_exactly_one_part_and_the_variants_name_parts():
    model = perturbed(item_ids=True)
    parts = set()
    for name, _ in model.named_parameters():
        owners = [part for prefix, part in unisrec.PARTS.items() if name.startswith(prefix)]
        assert len(owners) == 1, name
        parts |= set(owners)
    assert parts == set(unisrec.PARTS.values()) == {"adaptor", "id_embedding", "position", "input_norm", "transformer"}
    for variant in METHODS["unisrec"].variants:
        assert variant.reinit | variant.frozen <= parts, variant.name
    assert not any(name.startswith("item_ids.") for name, _ in perturbed().named_parameters())


# ---------------------------------------------------------------------------------------------------------------
# the augmentations


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, L), min_size=1, max_size=6),
    st.sampled_from([0.0, 0.3, 0.8, 1.0]),
    st.integers(0, 2**16),
)
def test_item_drop_keeps_order_and_the_first_item_and_compacts(lengths, keep_prob, seed):
    steps = max(lengths)
    rng = np.random.default_rng(seed)
    rows = [list(rng.permutation(N)[:n]) for n in lengths]  # distinct items: which were kept is unambiguous
    history, length = padded(rows, steps)
    torch.manual_seed(seed)
    out, new_length = unisrec.item_drop(history, length, keep_prob)
    assert out.shape == history.shape and new_length.dtype == torch.int64
    for row, new, n in zip(rows, out.tolist(), new_length.tolist(), strict=True):
        kept = new[:n]
        assert 1 <= n <= len(row) and new[n:] == [PAD] * (steps - n)  # compacted, PAD after
        assert PAD not in kept and kept[0] == row[0]  # the first item always stays
        positions = [row.index(item) for item in kept]
        assert positions == sorted(positions) and len(set(positions)) == n  # a subsequence, in order
        if keep_prob == 1.0:
            assert kept == row
        if keep_prob == 0.0:
            assert kept == row[:1]


def test_item_drop_keeps_each_later_item_with_the_keep_probability():
    rows = 4000
    history = torch.arange(L).repeat(rows, 1)  # item t at position t
    torch.manual_seed(0)
    out, new_length = unisrec.item_drop(history, torch.full((rows,), L), 0.8)
    kept = torch.zeros(rows, L + 1, dtype=torch.long).scatter_(1, out.clamp(min=-1) + 1, 1)[:, 1:]  # [rows, L]
    rate = kept[:, 1:].float().mean(0)  # positions 1..L-1
    assert ((rate - 0.8).abs() < 0.03).all(), rate
    assert kept[:, 0].all() and torch.equal(new_length, kept.sum(1))


def test_word_drop_replaces_real_positions_by_the_dropped_rows():
    table = torch.cat([torch.zeros(1, TEXT), torch.randn(N, TEXT)])
    dropped = torch.cat([torch.zeros(1, TEXT), torch.randn(N, TEXT)])
    history, length = random_batch([8, 3, 5, 1] * 500, L)
    torch.manual_seed(0)
    out = unisrec.word_drop_vectors(history, length, table, dropped, 0.2)
    tokens = history + 1
    real = torch.arange(L).unsqueeze(0) < length.unsqueeze(1)
    original = (out == table[tokens]).all(-1)
    replaced = (out == dropped[tokens]).all(-1)
    assert (original[~real]).all() and not out[~real].any()  # padding reads the zero row, never a dropped one
    assert (original ^ replaced)[real].all()  # each real position: one table or the other
    assert abs(replaced[real].float().mean().item() - 0.2) < 0.02
    assert torch.equal(unisrec.word_drop_vectors(history, length, table, dropped, 0.0), table[tokens])
    all_dropped = unisrec.word_drop_vectors(history, length, table, dropped, 1.0)
    assert torch.equal(all_dropped[real], dropped[tokens][real])


# ---------------------------------------------------------------------------------------------------------------
# the pre-training losses

ROWS = [[1, 2, 3, 4], [5], [2, 7, 2, 9, 11, 3], [4, 6, 8], [10, 12], [13, 14, 15, 16, 17]]
REPEATED = torch.tensor([3, 5, 3, 7, 5, 3])  # rows 0, 2, 5 share a target, and rows 1, 4
DISTINCT = torch.tensor([3, 5, 8, 7, 20, 21])


def rows_batch(target: torch.Tensor) -> Batch:
    history, length = padded(ROWS)
    return Batch(history, length, target, torch.arange(len(ROWS)))


def test_same_target_logits_zero_the_repeated_off_diagonal_entries():
    logits = torch.randn(6, 6) + 3.0
    out = unisrec.same_target_logits(logits, REPEATED)
    same = REPEATED.unsqueeze(0) == REPEATED.unsqueeze(1)
    off = same & ~torch.eye(6, dtype=torch.bool)
    assert off.sum() == 8 and (out[off] == 0).all()
    assert torch.equal(out[~off], logits[~off])  # the diagonal and the other targets' entries stay


@pytest.mark.parametrize("view", ["item_drop", "word_drop"])
def test_si_and_ss_are_the_upstream_formula(view):
    """Evaluation mode and an augmentation made deterministic by its rates: item drop at ratio 1 keeps only the
    first item; word drop at ratio 1 replaces every position. The test computes u, the targets and u' from the
    model's public pieces (and a twin model reading the dropped table) and applies upstream's exp/sum formula."""
    coefficient = 1.0 if view == "item_drop" else 0.0
    model_settings = replace(SMALL, item_drop_ratio=1.0, item_drop_coefficient=coefficient)
    shape = task(worddrop=True)
    model = perturbed(model_settings, shape)
    for target in (REPEATED, DISTINCT):
        batch = rows_batch(target)
        with torch.no_grad():
            out = model.pretrain_loss(batch)
            u = F.normalize(last_position(model.encode(batch.history, batch.length, None), batch.length), dim=-1)
            keys = F.normalize(model.candidates()[target], dim=-1)
            if view == "item_drop":
                first = batch.history[:, :1]
                u_aug = F.normalize(model.encode(first, torch.ones(len(ROWS), dtype=torch.long), None)[:, 0], dim=-1)
            else:
                twin_shape = TaskShape(N, 4, L, {"text": shape.features["text_worddrop"]})
                twin = unisrec.Model(model_settings, twin_shape)
                twin.load_state_dict(model.state_dict())
                twin.eval()
                u_aug = F.normalize(last_position(twin.encode(batch.history, batch.length, None), batch.length), dim=-1)
            tau = model_settings.temperature
            si, ss = upstream_contrastive(u, keys, target, tau), upstream_contrastive(u, u_aug, target, tau)
        torch.testing.assert_close(out["si"], si, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["ss"], ss, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["loss"], si + 1e-3 * ss)
        # removing the same-target entries (ANT's rule) is another loss, wherever targets repeat
        same = (target.unsqueeze(0) == target.unsqueeze(1)) & ~torch.eye(len(target), dtype=torch.bool)
        removed = F.cross_entropy((u @ keys.T / tau).masked_fill(same, float("-inf")), torch.arange(len(target)))
        if target is REPEATED:
            assert (removed - out["si"]).abs() > 1e-2
        else:
            torch.testing.assert_close(removed, out["si"], rtol=1e-5, atol=1e-5)


def test_one_augmentation_per_batch_item_drop_with_its_coefficient():
    """With ratio 1 both views are deterministic and give different L_SS: the draw per batch is countable."""
    base = replace(SMALL, layers=1, item_drop_ratio=1.0)
    model = perturbed(replace(base, item_drop_coefficient=1.0), task(worddrop=True))
    batch = rows_batch(REPEATED)
    with torch.no_grad():
        item_view = model.pretrain_loss(batch)["ss"]
        model.settings = replace(base, item_drop_coefficient=0.0)
        word_view = model.pretrain_loss(batch)["ss"]
        assert (item_view - word_view).abs() > 1e-3
        model.settings = replace(base, item_drop_coefficient=0.9)
        torch.manual_seed(0)
        draws = [model.pretrain_loss(batch)["ss"] for _ in range(300)]
        assert all(torch.equal(d, item_view) or torch.equal(d, word_view) for d in draws)
        assert 0.85 < sum(torch.equal(d, item_view) for d in draws) / 300 < 0.95
        # no word-dropped table, or word_drop off: always item drop
        model.settings = replace(base, item_drop_coefficient=0.0, word_drop=False)
        assert torch.equal(model.pretrain_loss(batch)["ss"], item_view)
        model.settings = replace(base, item_drop_coefficient=0.0)
        model.text_worddrop = None
        assert torch.equal(model.pretrain_loss(batch)["ss"], item_view)


def test_pretrain_loss_trains_the_adaptor_and_the_transformer_and_is_seeded():
    torch.manual_seed(0)
    model = unisrec.Model(SMALL, task(worddrop=True)).train()
    batch = rows_batch(REPEATED)
    torch.manual_seed(3)
    out = model.pretrain_loss(batch)
    torch.manual_seed(3)
    again = model.pretrain_loss(batch)
    assert set(out) == {"loss", "si", "ss"} and all(torch.isfinite(v) for v in out.values())
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert not torch.equal(out["loss"], model.pretrain_loss(batch)["loss"])  # fresh draws without the seed
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    multi = Batch(batch.history, batch.length, torch.full_like(batch.history, PAD), batch.user)
    with pytest.raises(ValueError, match="prefix rows"):
        model.pretrain_loss(multi)


def test_settings_defaults_and_problems():
    assert unisrec.Settings() == unisrec.Settings(
        hidden_size=300, layers=2, attention_heads=2, inner_size=256, dropout=0.5, attn_dropout=0.5,
        adaptor_dropout=0.2, experts=8, temperature=0.07, sequence_loss_weight=1e-3, item_drop_ratio=0.2,
        item_drop_coefficient=0.9, word_drop=True, word_drop_rate=0.15, pretrain_epochs=300, pretrain_lr=None,
        pretrain_batch_size=8192,
    )  # fmt: skip
    assert unisrec.Settings().problems() == [] and unisrec.Model.exact_all_positions
    bad = unisrec.Settings(
        adaptor_dropout=1.0, experts=0, temperature=0.0, sequence_loss_weight=-1.0, item_drop_ratio=1.5,
        item_drop_coefficient=-0.1, word_drop_rate=1.0, pretrain_epochs=0, pretrain_lr=0.0, pretrain_batch_size=0,
    )  # fmt: skip
    assert len(bad.problems()) == 10
    with pytest.raises(ValueError, match="text_worddrop has shape"):
        wrong = task(worddrop=True)
        wrong.features["text_worddrop"] = wrong.features["text_worddrop"][:-1]
        unisrec.Model(SMALL, wrong)
