"""The MoE adaptor computed projection first (ant.model.item_encoder) is the shift-first form it replaced: the same
outputs and gradients, in training (the same dropout masks and routing noise from the same seed) and in eval."""

import pytest
import torch

from ant.model.dropout import dropout
from ant.model.item_encoder import MoEAdaptor, dropped_copies


def shift_first(adaptor: MoEAdaptor, x: torch.Tensor) -> torch.Tensor:
    """MoEAdaptor.forward as it was (commit c422fe5): each head's input dropped out, shifted, then projected."""
    experts = adaptor.weight.shape[0]
    heads = dropout(x.unsqueeze(0).expand(experts, -1, -1), adaptor.dropout, adaptor.training)
    if adaptor.shift is not None:
        heads = heads - adaptor.shift.unsqueeze(1)
    projected = torch.bmm(heads, adaptor.weight)
    if adaptor.bias is not None:
        projected = projected + adaptor.bias.unsqueeze(1)
    return torch.einsum("nk,knd->nd", adaptor.routing(x).to(projected.dtype), projected)


def run(adaptor: MoEAdaptor, forward, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    adaptor.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = forward(x)
    (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in adaptor.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("whitening", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_projection_first_is_the_shift_first_adaptor(whitening, training, dtype, tol):
    """float64 shows the algebra is the same (1e-12); float32 is what training runs (relative 2e-5: sums of 40
    products in another order)."""
    torch.manual_seed(0)
    adaptor = MoEAdaptor(40, 12, experts=5, dropout=0.3, whitening=whitening).to(dtype).train(training)
    for p in adaptor.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)  # non-zero shift, bias and gates, noisy routing
    x = torch.randn(30, 40, dtype=dtype)
    for seed in range(3):
        want, want_grads = run(adaptor, lambda x: shift_first(adaptor, x), x, seed)
        got, got_grads = run(adaptor, adaptor, x, seed)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        assert got_grads.keys() == want_grads.keys()  # eval mode: the noise weights get none in either
        for name, grad in want_grads.items():
            torch.testing.assert_close(got_grads[name], grad, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
    if training:  # the masks are really drawn: another seed gives other outputs
        assert not torch.allclose(run(adaptor, adaptor, x, 7)[0], got)


@pytest.mark.parametrize("p", [0.0, 0.2, 1.0])
def test_dropped_copies_are_the_dropout_of_the_expanded_input(p):
    x = torch.randn(50, 33)
    torch.manual_seed(1)
    want = dropout(x.unsqueeze(0).expand(4, -1, -1), p, True)
    torch.manual_seed(1)
    got = dropped_copies(x, 4, p)
    assert torch.equal(got, want)  # bit for bit: the same uniform draw, the same products
    if 0 < p < 1:
        assert 0.7 < (got != 0).float().mean() < 0.9 and not torch.equal(got[0], got[1])
