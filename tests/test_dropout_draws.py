"""train.dropout_rng (ant.model.dropout): "sfc64" masks keep an element with torch's own probability, are drawn
anew each call, are reproducible from torch's seed, and reach every dropout of ANT; "torch" changes nothing."""

import math

import pytest
import torch

from ant.data.split import split
from ant.errors import UserError
from ant.model.ant import ANT, ANTConfig
from ant.model.dropout import DRAWS, draws, dropout, keep_mask, keep_threshold
from ant.model.item_encoder import dropped_copies
from ant.train.batches import TrainRows
from ant.train.data import ItemTable
from ant.train.hparams import parse_hparams
from ant.train.objectives import PretrainObjective
from ant.train.synthetic import synthetic_task

CPU = torch.device("cpu")
DIMS = {"text": 12, "image": 10, "price": 4}


@pytest.mark.parametrize("p", [0.2, 0.5, 0.1, 0.3, 1 / 3, 0.05, 0.7, 1e-9])
def test_the_threshold_is_torchs_keep_probability(p):
    """torch keeps a uniform U = k / 2^24 where U >= p (compared in float32), so it keeps k >= c for the c where
    that flips; sfc64 keeps 32 random bits >= keep_threshold(p) = c * 2^8, i.e. high 24 bits >= c: the same
    Bernoulli."""
    c, low = divmod(keep_threshold(p), 2**8)
    assert low == 0 and c >= 1
    fractions = torch.tensor([c - 1, c], dtype=torch.float64).div(2**24).float()  # exact: k < 2^24
    assert (fractions >= p).tolist() == [False, True]


def test_sfc64_masks_keep_one_minus_p_and_differ_per_call():
    torch.manual_seed(0)
    with draws("sfc64"):
        first = keep_mask((2_000, 1_500), 0.2, CPU)  # over several threads' streams when torch has them
        second = keep_mask((2_000, 1_500), 0.2, CPU)
        floats = keep_mask((7, 3), 0.2, CPU, torch.float32)
    n = first.numel()
    assert abs(first.float().mean().item() - 0.8) < 5 * math.sqrt(0.16 / n)
    assert not torch.equal(first, second) and abs((first == second).float().mean().item() - 0.68) < 0.01
    assert floats.dtype == torch.float32 and set(floats.flatten().tolist()) <= {0.0, 1.0}
    torch.manual_seed(0)
    with draws("sfc64"):
        assert torch.equal(keep_mask((2_000, 1_500), 0.2, CPU), first)  # torch's seed decides the draw
    assert keep_mask((3, 3), 0.2, CPU) is None  # outside the block: torch draws


def test_sfc64_dropout_scales_the_kept_values_and_its_gradient():
    torch.manual_seed(1)
    x = torch.randn(300, 50, requires_grad=True)
    with draws("sfc64"):
        out = dropout(x, 0.4, training=True)
        copies = dropped_copies(x.detach(), 3, 0.4)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * (1 / 0.6), rtol=0, atol=0)  # as F.dropout scales
    assert abs(kept.float().mean().item() - 0.6) < 0.02
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() * (1 / 0.6), rtol=0, atol=0)
    kept_copies = copies != 0
    assert torch.equal(copies[kept_copies], (x.detach() * (1 / 0.6)).expand_as(copies)[kept_copies])
    assert not torch.equal(kept_copies[0], kept_copies[1])  # each copy (head) its own mask


def test_sfc64_copies_over_threads_and_chunks_keep_the_values_of_each_copy():
    """Big enough for two threads and many chunks, a row length that no chunk boundary respects: every kept
    element is its own x / (1 - p), and each thread's share of the mask keeps 1 - p."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(3_001, 701)
        with draws("sfc64"):
            copies = dropped_copies(x, 3, 0.25)
    finally:
        torch.set_num_threads(threads)
    kept = copies != 0
    assert torch.equal(copies[kept], (x * (1 / 0.75)).expand_as(copies)[kept])
    for half in kept.flatten().chunk(2):
        assert abs(half.float().mean().item() - 0.75) < 0.002


def test_torch_draws_are_the_masks_of_torchs_generator():
    x = torch.randn(64, 33)
    torch.manual_seed(3)
    want = x * (torch.rand_like(x) >= 0.25) * (1 / 0.75)
    torch.manual_seed(3)
    with draws("torch"):
        assert torch.equal(dropout(x, 0.25, training=True), want)


def test_a_pretraining_step_under_sfc64_is_reproducible_and_differs_from_torchs():
    """The objective applies train.dropout_rng: from one torch seed the same loss and gradients (what resume.pt
    relies on), other masks than torch's draws (so another loss), and every parameter still learns."""
    t = synthetic_task(60, 40, seed=1, clusters=4, dims=DIMS, mean_length=8, max_length=30)
    table = ItemTable(
        features={m: torch.from_numpy(v) for m, (v, _) in t.features.items()},
        present={m: torch.from_numpy(p) for m, (_, p) in t.features.items()},
        offsets=[0, t.n_items],
    )
    rows = TrainRows.build(split(t.sequences, 50)["train"], "prefixes")
    torch.manual_seed(0)
    model = ANT(ANTConfig(dims=DIMS, hidden_size=16, inner_size=16, experts=2)).train()
    batch = next(rows.batches(200, CPU, torch.Generator().manual_seed(0), distinct=True))

    def step(rng: str, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
        hp = parse_hparams(f'{{"train": {{"dropout_rng": "{rng}"}}}}', "pretrain")
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss = PretrainObjective(model, table, ["T"], rows, {}, hp, CPU).loss(batch)["loss"]
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    first, grads = step("sfc64", 5)
    again, grads_again = step("sfc64", 5)
    assert first == again and all(torch.equal(grads[k], grads_again[k]) for k in grads)
    assert step("torch", 5)[0] != first and step("sfc64", 6)[0] != first
    still = {k for k, _ in model.named_parameters()} - {k for k, g in grads.items() if g.abs().sum() > 0}
    assert all(k.endswith(("gate", "noise")) for k in still)  # at most the zero-initialised routing


def test_the_setting_is_checked():
    assert DRAWS == ("torch", "sfc64") and parse_hparams(None, "pretrain").train.dropout_rng == "torch"
    assert parse_hparams('{"train": {"dropout_rng": "sfc64"}}', "pretrain").train.dropout_rng == "sfc64"
    with pytest.raises(UserError, match="train.dropout_rng"):
        parse_hparams('{"train": {"dropout_rng": "mt"}}', "pretrain")
    with pytest.raises(ValueError, match="unknown dropout draws"):
        with draws("philox"):
            pass
