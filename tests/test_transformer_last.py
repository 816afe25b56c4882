"""The user vector with the last layer computed at the last positions alone (SequenceEncoder.last, ANT's prefixes
rows) is the full encoder's output there: the same outputs, gradients and dropout masks (torch's generator ends
in the same state), in training and in eval, causal or not."""

import pytest
import torch

from ant.model.ant import ANT, ANTConfig
from ant.model.transformer import SequenceEncoder, last_position
from ant.train.batches import TrainRows
from ant.train.objectives import user_states
from tests.train_helpers import perturb_

TOL = {"rtol": 1e-5, "atol": 1e-6}
# float64 shows the two compute the same function; float32, as trained, rounds sums of other lengths otherwise (a
# near-zero LayerNorm weight gradient, a sum over every token, then differs by 1e-6 absolute)
TOLERANCES = [(torch.float64, {"rtol": 1e-10, "atol": 1e-12}), (torch.float32, {"rtol": 1e-4, "atol": 1e-5})]


def run(encoder, forward, items, length, seed):
    encoder.zero_grad(set_to_none=True)
    items = items.detach().requires_grad_()
    torch.manual_seed(seed)
    out = forward(items, length)
    state = torch.get_rng_state()
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = {k: p.grad for k, p in encoder.named_parameters() if p.grad is not None}
    return out.detach(), items.grad, grads, state


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("dtype", "tol"), TOLERANCES)
def test_last_is_the_full_output_at_the_last_positions(layers, causal, training, dtype, tol):
    torch.manual_seed(0)
    encoder = SequenceEncoder(16, 9, layers, 2, 24, dropout=0.3, causal=causal, eps=1e-8)
    perturb_(encoder, std=0.3).to(dtype).train(training)
    length = torch.tensor([9, 1, 4, 7, 2, 9, 5])
    items = torch.randn(len(length), 9, 16, dtype=dtype)
    for seed in range(3):
        want = run(encoder, lambda i, n: last_position(encoder(i, n), n), items, length, seed)
        got = run(encoder, encoder.last, items, length, seed)
        torch.testing.assert_close(got[0], want[0], **tol)
        torch.testing.assert_close(got[1], want[1], **tol)
        assert got[2].keys() == want[2].keys()
        for name, grad in want[2].items():
            torch.testing.assert_close(got[2][name], grad, **tol, msg=lambda m, n=name: f"{n}: {m}")
        assert torch.equal(got[3], want[3])  # the generator drew the same numbers
    if training:  # dropout is really drawn: another seed, other outputs
        assert not torch.allclose(run(encoder, encoder.last, items, length, 9)[0], got[0])


def test_prefixes_rows_read_the_last_states_of_their_groups():
    """ANT's user_states on a prefixes batch in length groups: the full encoder's states at each row's last
    position, the same targets and rows (training mode, the same seed)."""
    torch.manual_seed(0)
    model = perturb_(ANT(ANTConfig(dims={"text": 4, "image": 4, "price": 4}, hidden_size=8, inner_size=8)), std=0.2)
    history = torch.tensor([[3, 1, 2, -1, -1], [4, -1, -1, -1, -1], [0, 2, 4, 1, 3], [1, 2, -1, -1, -1]] * 3)
    length = (history >= 0).sum(1)
    rows = TrainRows(history.int(), length.int(), torch.arange(12).int() % 5, torch.arange(12), length.int())
    batch = next(rows.batches(12, torch.device("cpu"), by_length=0))
    assert batch.groups is not None and len(batch.groups) >= 2
    vectors = torch.randn(5, 8)
    at = batch.history.clamp(min=0)
    torch.manual_seed(1)
    got = user_states(model, batch, vectors, at)
    torch.manual_seed(1)
    want = batch.states(lambda r, steps: model.user_states(vectors[at[r, :steps]], batch.length[r]))
    torch.testing.assert_close(got[0], want[0], **TOL)
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
