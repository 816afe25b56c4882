"""ANT's item representation (spec section 3): one mixture-of-experts adaptor per modality, then the fusion.

For modality m with frozen raw features x_m [n, d_m] and K projection heads:

    text, image   h_k = W_k (dropout_k(x_m) - b_k)          parametric whitening (UniSRec's PWLayer)
    price         h_k = W_k dropout_k(x_m) + c_k            linear heads
    routing       g = softmax(x_m W_gate + eps * (softplus(x_m W_noise) + 0.01)),  eps ~ N(0, I) in training only
    e_m           = sum_k g_k h_k
    v             = e_text + e_image + e_price + beta * (e_image * e_text)

Every head draws its own dropout mask, as UniSRec's experts do (one nn.Dropout each); the routing reads the raw
x_m. Initialisation: W ~ N(0, 0.02), b = c = 0, W_gate = W_noise = 0 (uniform routing at the start).

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

from ant.model.dropout import dropout

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
        experts = self.weight.shape[0]
        heads = dropout(x.unsqueeze(0).expand(experts, -1, -1), self.dropout, self.training)  # [K, n, d_m]
        if self.shift is not None:
            heads = heads - self.shift.unsqueeze(1)
        projected = torch.bmm(heads, self.weight)  # [K, n, d]
        if self.bias is not None:
            projected = projected + self.bias.unsqueeze(1)
        return torch.einsum("nk,knd->nd", self.routing(x).to(projected.dtype), projected)


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
