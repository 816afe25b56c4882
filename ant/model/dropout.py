"""Dropout from a uniform draw: the same distribution as torch's, about 3x faster on the CPU.

torch's CPU dropout draws its mask with `bernoulli_`, which costs several times a `rand_like` of the same size;
with dropout 0.5 on every hidden state, the attention weights and each expert's input, that was a third of a CPU
training step. Keep an element with probability 1 - p and scale it by 1 / (1 - p), as F.dropout does.

Where the masks come from (`draws`, config train.dropout_rng):
  "torch"  (default) torch's generator: a uniform U = k / 2^24 per element (mt19937, one draw after another on
           one core), kept where U >= p. Every mask is the one earlier versions drew.
  "sfc64"  on the CPU, numpy's SFC64 generator seeded per call from torch's generator (so a seeded run and its
           resume.pt stay reproducible), 32 random bits per element over the job's threads: an element is kept
           where its bits >= ceil(float32(p) 2^24) 2^8, which is exactly torch's keep probability (its uniform is
           the high 24 bits' fraction). The same distribution, other masks, several times cheaper: a paper-sized
           pre-training step draws 230 M mask elements, which torch's serial generator spent a fifth of the step
           on. On CUDA masks always come from torch (its generator is fast there).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

DRAWS = ("torch", "sfc64")
_draws = "torch"
CHUNK = 1 << 18  # mask elements per generator call (1 MB of random bits: stays in the core's cache)
PARALLEL = 1 << 21  # masks from this many elements up are drawn over all threads
_pools: dict[int, ThreadPoolExecutor] = {}


@contextlib.contextmanager
def draws(kind: str) -> Iterator[None]:
    """Masks drawn as `kind` says (DRAWS) inside the block."""
    global _draws
    if kind not in DRAWS:
        raise ValueError(f"unknown dropout draws {kind!r}; known: {', '.join(DRAWS)}")
    before, _draws = _draws, kind
    try:
        yield
    finally:
        _draws = before


def keep_threshold(p: float) -> int:
    """The 32-bit draws kept under "sfc64": torch keeps U = k / 2^24 where U >= float32(p) (its comparison with a
    Python float runs in float32), i.e. k >= ceil(float32(p) 2^24); k is the high 24 bits of 32."""
    return math.ceil(float(np.float32(p)) * 2**24) << 8


def keep_mask(
    shape: tuple[int, ...], p: float, device: torch.device, dtype: torch.dtype = torch.bool
) -> torch.Tensor | None:
    """[shape] of `dtype` (bool, or float32 1.0 / 0.0), kept with probability 1 - p, under the "sfc64" draws on the
    CPU; None: draw with torch."""
    if _draws == "torch" or device.type != "cpu":
        return None
    out = np.empty(math.prod(shape), dtype=np.float32 if dtype == torch.float32 else np.bool_)
    _draw(out, p)
    return torch.from_numpy(out).view(shape)


def sfc64_copies(x: torch.Tensor, copies: int, p: float) -> torch.Tensor | None:
    """Under the "sfc64" draws on the CPU, `copies` independent dropouts of x [n, d] (no gradient) ->
    [copies, n, d]: each copy's keep mask drawn and applied in one pass, chunk by chunk in the cores' caches;
    None: draw with torch."""
    if _draws == "torch" or x.device.type != "cpu":
        return None
    scaled = (x * (1.0 / (1.0 - p))).to(torch.float32)
    if x.requires_grad:  # numpy would cut the graph: mask, then multiply in torch
        return keep_mask((copies, *x.shape), p, x.device, torch.float32) * scaled
    out = np.empty((copies, *x.shape), dtype=np.float32)
    _draw(out.reshape(-1), p, scaled.contiguous().numpy().reshape(-1))
    return torch.from_numpy(out)


def _draw(out: np.ndarray, p: float, times: np.ndarray | None = None) -> None:
    """out [N] = the keep mask (as out's dtype), or the mask times `times` repeated along it (len(times) divides
    N), from SFC64 streams seeded by torch's generator, over the job's threads."""
    threshold = keep_threshold(p)
    seed = int(torch.randint(0, 2**62, (1,)))  # torch's generator seeds the draw: runs stay reproducible
    n = len(out)
    period = len(times) if times is not None else n
    workers = max(1, min(torch.get_num_threads(), n // PARALLEL))
    bounds = [n * i // workers for i in range(workers + 1)]
    streams = np.random.SeedSequence(seed).spawn(workers)

    def fill(i: int) -> None:
        bits = np.random.SFC64(streams[i])
        lo = bounds[i]
        while lo < bounds[i + 1]:
            hi = min(lo + CHUNK, bounds[i + 1], (lo // period + 1) * period)  # within one repetition of `times`
            words = bits.random_raw((hi - lo + 1) // 2).view(np.uint32)[: hi - lo]  # numpy releases the GIL here
            if times is None:
                np.greater_equal(words, threshold, out=out[lo:hi], casting="unsafe")  # a float32 mask: 1.0 / 0.0
            else:
                start = lo % period
                np.multiply(words >= threshold, times[start : start + hi - lo], out=out[lo:hi])
            lo = hi

    if workers == 1:
        fill(0)
    else:
        pool = _pools.get(workers) or _pools.setdefault(workers, ThreadPoolExecutor(workers))
        list(pool.map(fill, range(workers)))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    keep = keep_mask(tuple(x.shape), p, x.device, torch.float32)  # 1.0 / 0.0: x * 1.0 is x, as with a bool mask
    if keep is None:
        keep = torch.rand_like(x, dtype=torch.float32) >= p
    return x * keep * (1.0 / (1.0 - p))


def dropout_part(
    x: torch.Tensor, p: float, training: bool, shape: tuple[int, ...], pick: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The part x = pick(full) of a dropout over a tensor `full` of `shape` that is not computed whole: under
    torch's draws the mask is drawn over `shape`, as dropout(full) draws it, and picked (the same numbers at the
    same places, the generator where dropout(full) leaves it); under sfc64 it is drawn for x alone."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    keep = keep_mask(tuple(x.shape), p, x.device, torch.float32)
    if keep is None:
        keep = pick(torch.rand(shape, device=x.device, dtype=torch.float32) >= p)
    return x * keep * (1.0 / (1.0 - p))
