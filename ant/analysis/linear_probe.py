"""Probes that tell two item sets apart, many pairs trained at once: Figure 2's classifier (spec baselines.md
section 13).

A pair is two sets of rows of one embedding matrix: the target's items (label 1) and the auxiliary's (label 0).
`make_probe_set` balances them (one auxiliary item per target item, drawn without replacement) and splits each
side 70 / 10 / 20 % into train / validation / test. `train_probes` trains one classifier per pair (Linear(d, 1),
or d -> 256 -> ReLU -> 1), BCE with logits, Adam, accuracy at threshold 0.5 (logit > 0), and reports the test
accuracy of the epoch with the best validation accuracy (ties: the earliest).

All pairs of a call train together: their parameters are stacked on a leading pair axis [P, ...], each step takes
every pair's next mini-batch (x [P, B, d], one batched matmul) and `PairAdam` moves only the pairs that still have
rows in this epoch. P pairs thus cost about one pass over the largest pair instead of P passes, and each pair's
numbers are those of training it alone with torch.optim.Adam, drawing from its own generator (tests check both).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ant.errors import UserError

SPLITS = ("train", "valid", "test")
MODELS = ("linear", "mlp")
MIN_PER_SIDE = 10  # fewer balanced items per side leave a validation and test set too small to mean anything
EVAL_ELEMENTS = 1 << 24  # pairs x rows x d gathered at once in evaluation: 64 MB of float32 whatever the sizes


@dataclass(frozen=True)
class ProbeSettings:
    model: str = "linear"  # "linear": Linear(d, 1); "mlp": Linear(d, hidden) -> ReLU -> Linear(hidden, 1)
    epochs: int = 100  # passes over each pair's training rows; the best on validation is reported
    batch_size: int = 1024  # training rows of one pair per Adam step (the last batch of an epoch is smaller)
    lr: float = 1e-3  # Adam's learning rate (betas 0.9 / 0.999, eps 1e-8: torch's defaults)
    hidden: int = 256  # width of the MLP's hidden layer

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown probe model {self.model!r}: use {' or '.join(MODELS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.hidden < 1 or not self.lr > 0:
            raise UserError("probe epochs, batch size and hidden width must be >= 1 and the learning rate > 0")


@dataclass(frozen=True)
class ProbeSet:
    """One pair's balanced split, as rows of the embedding matrix and labels."""

    rows: dict[str, torch.Tensor]  # split -> int64 [n_split]: the target's rows first, then the auxiliary's
    labels: dict[str, torch.Tensor]  # split -> float32 [n_split]: 1 = target item, 0 = auxiliary item
    per_side: int  # items of each side after balancing

    def size(self, split: str) -> int:
        return len(self.rows[split])


@dataclass(frozen=True)
class ProbeResult:
    best_epoch: int  # 1-based epoch with the best validation accuracy (ties: the earliest)
    valid_accuracy: float  # at best_epoch
    test_accuracy: float  # at best_epoch


@dataclass
class FittedProbes:
    params: list[torch.Tensor]  # per layer: weight [P, d_in, d_out], then bias [P, 1, d_out]
    valid_correct: torch.Tensor  # int64 [epochs, P]: correctly classified validation rows after each epoch
    test_correct: torch.Tensor  # int64 [epochs, P]: the same on the test rows


def balance(n_target: int, n_auxiliary: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle both sides and pair them up: positions [n] into each side, n = the smaller side, no repeats."""
    n = min(n_target, n_auxiliary)
    target = torch.randperm(n_target, generator=generator)[:n]
    auxiliary = torch.randperm(n_auxiliary, generator=generator)[:n]
    return target, auxiliary


def split_sizes(n: int) -> tuple[int, int, int]:
    """Train / validation / test sizes of n items: floor(70 %), floor(10 %), the rest (so test gets >= 20 %)."""
    train, valid = n * 7 // 10, n // 10
    return train, valid, n - train - valid


def make_probe_set(target_rows: torch.Tensor, auxiliary_rows: torch.Tensor, generator: torch.Generator) -> ProbeSet:
    """Balance two sides given as rows of the embedding matrix, split each 70 / 10 / 20 and concatenate."""
    t, a = balance(len(target_rows), len(auxiliary_rows), generator)
    target, auxiliary = target_rows[t], auxiliary_rows[a]
    bounds = np.cumsum([0, *split_sizes(len(t))]).tolist()
    rows, labels = {}, {}
    for split, (lo, hi) in zip(SPLITS, itertools.pairwise(bounds), strict=True):
        rows[split] = torch.cat([target[lo:hi], auxiliary[lo:hi]])
        labels[split] = torch.cat([torch.ones(hi - lo), torch.zeros(hi - lo)])
    return ProbeSet(rows, labels, len(t))


def init_params(settings: ProbeSettings, dim: int, generators: list[torch.Generator]) -> list[torch.Tensor]:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, drawn per
    pair from its own generator and stacked: [W_1 [P, d, h], b_1 [P, 1, h], ...]."""
    widths = [dim, settings.hidden, 1] if settings.model == "mlp" else [dim, 1]
    per_pair = []
    for g in generators:
        layers = []
        for fan_in, fan_out in itertools.pairwise(widths):
            bound = 1.0 / math.sqrt(fan_in)
            layers.append(torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g))
            layers.append(torch.empty(1, fan_out).uniform_(-bound, bound, generator=g))
        per_pair.append(layers)
    return [torch.stack(tensors) for tensors in zip(*per_pair, strict=True)]


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits [P, B] of every pair's classifier on its own rows x [P, B, d]."""
    h = x
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1], h, params[i])  # [P, B, d_out]
        if i + 2 < len(params):
            h = torch.relu(h)
    return h.squeeze(-1)


class PairAdam:
    """torch.optim.Adam (no weight decay) for parameters stacked over P independent models. Each pair counts its
    own steps, and a pair that is not active in a step keeps its parameters and moments (under Adam a zero
    gradient would still move it)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.lr, self.betas, self.eps = lr, betas, 1e-8
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], dtype=torch.float64, device=params[0].device)  # [P]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: tuple[torch.Tensor, ...], active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += active
        t = self.steps.clamp(min=1)  # bias corrections in float64, as torch computes them (Python floats)
        step_size = (self.lr / (1 - b1**t)).float()  # [P]
        correction2 = (1 - b2**t).sqrt().float()  # [P]
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            m.copy_(torch.where(on, m.lerp(g, 1 - b1), m))
            v.copy_(torch.where(on, v * b2 + g * g * (1 - b2), v))
            denom = v.sqrt() / correction2.view(shape) + self.eps
            p.sub_(torch.where(on, m / denom * step_size.view(shape), 0.0))


def _stack(
    sets: list[ProbeSet], split: str, remap: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One split of every pair, right-padded: rows [P, M] of the device's table (padding row 0), labels [P, M],
    sizes [P]."""
    sizes = torch.tensor([s.size(split) for s in sets])
    rows = torch.zeros(len(sets), max(int(sizes.max()), 1), dtype=torch.long)
    labels = torch.zeros(rows.shape)
    for p, s in enumerate(sets):
        rows[p, : sizes[p]] = remap[s.rows[split]]
        labels[p, : sizes[p]] = s.labels[split]
    return rows.to(device), labels.to(device), sizes.to(device)


@torch.no_grad()
def _correct(
    params: list[torch.Tensor], table: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, sizes: torch.Tensor
) -> torch.Tensor:
    """Correctly classified rows per pair [P] (int64), in chunks of rows so that [P, chunk, d] stays bounded."""
    pairs, width = rows.shape
    chunk = max(1, EVAL_ELEMENTS // (pairs * table.shape[1]))
    real = torch.arange(width, device=rows.device).unsqueeze(0) < sizes.unsqueeze(1)  # [P, M]
    correct = torch.zeros(pairs, dtype=torch.long, device=rows.device)
    for lo in range(0, width, chunk):
        logits = forward(params, table[rows[:, lo : lo + chunk]])  # [P, chunk]
        hit = (logits > 0) == (labels[:, lo : lo + chunk] > 0.5)
        correct += (hit & real[:, lo : lo + chunk]).sum(1)
    return correct


def fit_probes(
    embeddings: torch.Tensor,
    sets: list[ProbeSet],
    generators: list[torch.Generator],
    settings: ProbeSettings,
    device: torch.device | None = None,
) -> FittedProbes:
    """Train one classifier per pair on rows of `embeddings` [N, d]; each pair's initialisation and epoch orders
    come from its own (CPU) generator. Only the rows some pair reads go to `device` (default: the embeddings')."""
    device = embeddings.device if device is None else torch.device(device)
    batch = settings.batch_size
    used = torch.unique(torch.cat([r for s in sets for r in s.rows.values()]))  # sorted rows that any pair reads
    remap = torch.full((len(embeddings),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    table = embeddings[used.to(embeddings.device)].to(device)  # [n_used, d]
    params = [p.to(device).requires_grad_() for p in init_params(settings, embeddings.shape[1], generators)]
    adam = PairAdam(params, settings.lr)
    evaluation = {split: _stack(sets, split, remap, device) for split in ("valid", "test")}
    rows, labels, sizes = _stack(sets, "train", remap, device)
    steps = -(-int(sizes.max()) // batch)
    columns = torch.arange(batch, device=device)
    correct = {split: torch.zeros(settings.epochs, len(sets), dtype=torch.long) for split in evaluation}
    for epoch in range(settings.epochs):
        order = torch.zeros(len(sets), steps * batch, dtype=torch.long)  # [P, steps * B] positions, padded with 0
        for p, (s, g) in enumerate(zip(sets, generators, strict=True)):
            order[p, : s.size("train")] = torch.randperm(s.size("train"), generator=g)
        order = order.to(device)
        for step in range(steps):
            positions = order[:, step * batch : (step + 1) * batch]  # [P, B]
            real = (step * batch + columns).unsqueeze(0) < sizes.unsqueeze(1)  # [P, B]
            logits = forward(params, table[rows.gather(1, positions)])  # [P, B, d] -> [P, B]
            bce = F.binary_cross_entropy_with_logits(logits, labels.gather(1, positions), reduction="none")
            # each pair's mean over its own batch; the sum keeps the pairs' gradients apart
            loss = ((bce * real).sum(1) / real.sum(1).clamp(min=1)).sum()
            adam.step(params, torch.autograd.grad(loss, params), active=real[:, 0])
        for split, tensors in evaluation.items():
            correct[split][epoch] = _correct(params, table, *tensors).cpu()
    return FittedProbes([p.detach() for p in params], correct["valid"], correct["test"])


def train_probes(
    embeddings: torch.Tensor,
    sets: list[ProbeSet],
    generators: list[torch.Generator],
    settings: ProbeSettings,
    device: torch.device | None = None,
) -> list[ProbeResult]:
    """Each pair's best epoch on validation accuracy (the earliest of equals) and its accuracies there."""
    if not sets:
        return []
    fitted = fit_probes(embeddings, sets, generators, settings, device)
    results = []
    for p, s in enumerate(sets):
        best = int(np.argmax(fitted.valid_correct[:, p].numpy()))  # numpy's argmax returns the first maximum
        results.append(
            ProbeResult(
                best_epoch=best + 1,
                valid_accuracy=int(fitted.valid_correct[best, p]) / s.size("valid"),
                test_accuracy=int(fitted.test_correct[best, p]) / s.size("test"),
            )
        )
    return results
