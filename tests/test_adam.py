"""ant.train.adam.Adam against torch.optim.Adam + ExponentialLR: the same parameters, bit for bit."""

from __future__ import annotations

import pytest
import torch

from ant.train.adam import Adam


def _params(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    return [torch.randn(s, generator=g).requires_grad_() for s in shapes]


def _grads(step: int, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(1000 + step)
    grads = [torch.randn(p.shape, generator=g) * 10 ** (i - 2) for i, p in enumerate(params)]
    if step % 3 == 1:  # a parameter without a gradient in some steps: torch leaves it and its step count alone
        grads[2] = None
    return grads


def _run_torch(steps: int, lr: float, gamma: float, foreach: bool) -> list[torch.Tensor]:
    params = _params(0)
    opt = torch.optim.Adam(params, lr=lr, foreach=foreach)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    for step in range(steps):
        for p, grad in zip(params, _grads(step, params), strict=True):
            p.grad = grad
        opt.step()
        if step % 4 == 3:  # an "epoch" of 4 steps
            sched.step()
    return params


def _run_ours(steps: int, lr: float, gamma: float, foreach: bool, stop_at: int | None = None) -> list[torch.Tensor]:
    params = _params(0)
    opt = Adam(params, lr=lr, gamma=gamma, foreach=foreach)
    for step in range(steps):
        if step == stop_at:  # resume: a new optimiser from the saved state, as the trainer does
            state = {k: [t.clone() for t in v] if k.startswith("exp") else v for k, v in opt.state_dict().items()}
            opt = Adam(params, lr=123.0, gamma=gamma, foreach=foreach)
            opt.load_state_dict(state)
        for p, grad in zip(params, _grads(step, params), strict=True):
            p.grad = grad
        opt.step()
        if step % 4 == 3:
            opt.decay()
    return params


@pytest.mark.parametrize("foreach", [False, True])
def test_the_same_parameters_as_torch_bit_for_bit(foreach):
    theirs = _run_torch(40, 3e-3, 0.9, foreach)
    ours = _run_ours(40, 3e-3, 0.9, foreach)
    assert not torch.equal(ours[0], _params(0)[0])  # it moved
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_a_restored_state_continues_exactly():
    whole = _run_ours(20, 1e-2, 0.5, foreach=False)
    resumed = _run_ours(20, 1e-2, 0.5, foreach=False, stop_at=9)
    for a, b in zip(whole, resumed, strict=True):
        assert torch.equal(a, b)


def test_decay_and_zero_grad():
    params = _params(1)
    opt = Adam(params, lr=0.1, gamma=0.5)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = [p.clone() for p in params]
    opt.step()  # no gradient at all: nothing moves, no step counted
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True)) and opt.steps == [0] * 4
    opt.decay()
    opt.decay()
    assert opt.lr == pytest.approx(0.025)


def test_a_state_of_another_model_is_a_clear_error():
    opt = Adam(_params(0), lr=0.1)
    with pytest.raises(ValueError, match="optimizer state for 3 parameters, the model has 4"):
        opt.load_state_dict(
            {"steps": [0] * 3, "lr": 0.1, "exp_avg": [torch.zeros(1)] * 3, "exp_avg_sq": [torch.zeros(1)] * 3}
        )
    with pytest.raises(ValueError, match="at least one parameter"):
        Adam([], lr=0.1)
