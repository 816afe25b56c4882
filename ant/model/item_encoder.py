"""ANT's item representation (spec section 3): one mixture-of-experts adaptor per modality, then the fusion.

For modality m with frozen raw features x_m [n, d_m] and K projection heads:

    text, image   h_k = W_k (dropout_k(x_m) - b_k)          parametric whitening (UniSRec's PWLayer)
    price         h_k = W_k dropout_k(x_m) + c_k            linear heads
    routing       g = softmax(x_m W_gate + eps * (softplus(x_m W_noise) + 0.01)),  eps ~ N(0, I) in training only
    e_m           = sum_k g_k h_k
    v             = e_text + e_image + e_price + beta * (e_image * e_text)

Every head draws its own dropout mask, as UniSRec's experts do (one nn.Dropout each); the routing reads the raw
x_m. Initialisation: W ~ N(0, 0.02), b = c = 0, W_gate = W_noise = 0 (uniform routing at the start). Computed
projection first (`MoEAdaptor.forward`): the shift enters as the K x d constant W_k b_k, so the heads' K x n x d_m
input is never shifted and, the features being frozen, gets no gradient.

The ablations of Table IV are configuration of these same modules, never copies:
  - a modality missing from `modalities` has e_m = 0, so it leaves the sum and the fusion term (the authors'
    `finetune.py --mode NoText` ...; spec baselines.md section 14). Its adaptor still exists, so a full
    checkpoint loads, but it is never called. Zeroing the raw feature instead would differ: a zero input gets
    uniform gates and whitening heads would add the constant -(1/K) sum_k W_k b_k.
  - `experts=1` is "no MoE": one projection per modality (softmax over one head is the constant 1),
  - `fusion_beta=0` is "no fusion".
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ant.model.dropout import sfc64_copies

MODALITIES = ("text", "image", "price")
WHITENED = frozenset({"text", "image"})  # price uses plain linear heads (the paper found them better)
INIT_STD = 0.02


class MoEAdaptor(nn.Module):
    """K projection heads of one modality, mixed by Gaussian routing."""

    def __init__(self, in_dim: int, out_dim: int, experts: int, dropout: float, whitening: bool) -> None:
        super().__init__()
        self.dropout = dropout
        self.weight = nn.Parameter(torch.empty(experts, in_dim, out_dim))  # head k maps x -> x @ weight[k]
        # whitening heads subtract a learned shift before projecting; linear heads add a bias after it
        self.shift = nn.Parameter(torch.empty(experts, in_dim)) if whitening else None
        self.bias = None if whitening else nn.Parameter(torch.empty(experts, out_dim))
        self.gate = nn.Parameter(torch.empty(in_dim, experts))
        self.noise = nn.Parameter(torch.empty(in_dim, experts))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, 0.0, INIT_STD)
        for zero in (self.shift, self.bias, self.gate, self.noise):
            if zero is not None:
                nn.init.zeros_(zero)

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.gate
        if self.training:
            std = F.softplus(x @ self.noise) + 0.01
            logits = logits + torch.randn_like(logits) * std
        return torch.softmax(logits, dim=-1)  # [n, K]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """e = sum_k g_k h_k of x [n, d_m] -> [n, d], computed projection first: W_k (x' - b_k) = W_k x' - W_k b_k
        (x' = dropout_k(x)) and sum_k g_k (W_k x' + c_k) = sum_k g_k W_k x' + g c, so the K x n x d_m heads' input
        is never shifted and needs no gradient (the features are frozen), and without dropout all heads share one
        GEMM. The same function as shifting first, up to float rounding (tests/test_item_encoder_exact.py)."""
        experts, in_dim, out_dim = self.weight.shape
        if self.training and self.dropout > 0.0:
            projected = torch.bmm(dropped_copies(x, experts, self.dropout), self.weight)  # [K, n, d]
            equation = "nk,knd->nd"
        else:  # every head reads the same x: one [n, d_m] x [d_m, K d] product
            projected = (x @ self.weight.transpose(0, 1).reshape(in_dim, experts * out_dim)).view(-1, experts, out_dim)
            equation = "nk,nkd->nd"
        offset = self.bias if self.shift is None else -torch.einsum("ki,kid->kd", self.shift, self.weight)  # [K, d]
        gates = self.routing(x).to(projected.dtype)
        return torch.einsum(equation, gates, projected) + gates @ offset.to(projected.dtype)


def dropped_copies(x: torch.Tensor, copies: int, p: float) -> torch.Tensor:
    """`copies` independent dropouts of x [n, d_m] -> [copies, n, d_m]: under torch's draws the very numbers of
    ant.model.dropout.dropout(x.expand(copies, n, d_m), p, True) (one uniform draw over the expanded shape, an
    element kept where it is >= p, scaled by 1 / (1 - p)), in one buffer instead of four; under sfc64 the masks of
    ant.model.dropout.sfc64_copies."""
    if p >= 1.0:
        return x.new_zeros(copies, *x.shape)
    fast = sfc64_copies(x, copies, p)  # train.dropout_rng sfc64 (ant.model.dropout)
    if fast is not None:
        return fast.to(x.dtype)
    keep = torch.rand_like(x.expand(copies, *x.shape), dtype=torch.float32).ge_(p)  # 1.0 kept, 0.0 dropped
    return keep.to(x.dtype).mul_(x * (1.0 / (1.0 - p)))


class ItemEncoder(nn.Module):
    """Raw modality features of n items -> their d-dimensional representations v (and the per-modality e_m)."""

    def __init__(
        self,
        dims: Mapping[str, int],
        hidden_size: int,
        experts: int,
        dropout: float,
        fusion_beta: float,
        modalities: tuple[str, ...] = MODALITIES,
    ) -> None:
        super().__init__()
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
        if not modalities:
            raise ValueError("an item encoder needs at least one modality")
        self.modalities = tuple(modalities)
        self.fusion_beta = fusion_beta
        self.adaptors = nn.ModuleDict(
            {m: MoEAdaptor(dims[m], hidden_size, experts, dropout, whitening=m in WHITENED) for m in MODALITIES}
        )

    def reset_parameters(self) -> None:
        for adaptor in self.adaptors.values():
            adaptor.reset_parameters()

    def forward(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {m: self.adaptors[m](features[m]) for m in self.modalities}
        zero = torch.zeros_like(next(iter(parts.values())))  # [n, d] for a modality left out (an ablation)
        parts = {m: parts.get(m, zero) for m in MODALITIES}
        v = parts["text"] + parts["image"] + parts["price"]
        if self.fusion_beta:
            v = v + self.fusion_beta * parts["image"] * parts["text"]
        return v, parts
