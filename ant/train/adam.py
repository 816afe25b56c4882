"""Adam with a per-epoch exponential learning-rate decay: torch.optim.Adam + ExponentialLR, step for step.

Why not torch.optim: its first `add_param_group` and `step` import torch._dynamo (torch wraps them in
`torch._disable_dynamo`), 1.5 s of start-up in every training process. The demo runs about 60 of them on
2 cores, so that import alone was about 45 s of its wall time. The update is torch's own (its non-capturable
path, `torch.optim.adam._single_tensor_adam` and `_multi_tensor_adam`: the same tensor operations in the same
order, the bias corrections as Python floats), and tests check the parameters equal torch.optim.Adam's bit for
bit over many steps and an lr decay:

    m = lerp(m, g, 1 - beta1)                      v = v * beta2 + (1 - beta2) g^2
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

No weight decay, amsgrad or maximize: the trainer uses none. On CUDA the moments are updated with torch's
`_foreach_*` kernels (a handful of launches per step instead of several per parameter), as torch.optim does there
(`foreach=` forces either form; both are tested against torch's).
"""

from __future__ import annotations

import torch


class Adam:
    """Adam over `params` (tensors that require grad); `decay()` multiplies the learning rate by `gamma`."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float,
        gamma: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        foreach: bool | None = None,
    ) -> None:
        if not params:
            raise ValueError("Adam needs at least one parameter")
        self.params, self.lr, self.gamma, self.betas, self.eps = list(params), lr, gamma, betas, eps
        self.foreach = params[0].device.type == "cuda" if foreach is None else foreach  # torch's choice
        self.steps = [0] * len(self.params)  # per parameter, as torch counts them: one without a gradient waits
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (as torch.optim, one without is left alone)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        beta1, beta2 = self.betas
        for i in live:
            self.steps[i] += 1
        step_size = [-(self.lr / (1 - beta1 ** self.steps[i])) for i in live]  # torch's float arithmetic
        correction2_sqrt = [(1 - beta2 ** self.steps[i]) ** 0.5 for i in live]
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        if self.foreach:
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, correction2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avg, denom, step_size)
            return
        for p, g, m, v, size, c2 in zip(params, grads, exp_avg, exp_avg_sq, step_size, correction2_sqrt, strict=True):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / c2).add_(self.eps), value=size)

    def decay(self) -> None:
        """The end of an epoch: lr x gamma (ExponentialLR's step)."""
        self.lr *= self.gamma

    def state_dict(self) -> dict:
        return {"steps": self.steps, "lr": self.lr, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        if len(state["exp_avg"]) != len(self.params):
            raise ValueError(
                f"optimizer state for {len(state['exp_avg'])} parameters, the model has {len(self.params)}"
            )
        self.steps, self.lr = [int(t) for t in state["steps"]], float(state["lr"])
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"], strict=True):
            mine.copy_(saved)
