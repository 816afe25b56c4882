"""Where torch work runs and at what precision: one home for the encoders, training and evaluation alike.

- `resolve_device("auto" | "cpu" | "cuda" | "cuda:N")`: CUDA when present for "auto" (with several GPUs, one
  per partition, or the freest); asking for CUDA on a machine without it is a UserError, not a torch crash.
- `resolve_precision(device, "auto" | "fp32" | "bf16" | "fp16")` and `autocast(device, precision)`: "auto" is
  bf16 autocast on CUDA and plain float32 on the CPU (spec section 7). Outputs that are stored (features,
  metrics) are always float32.
- `set_threads(n)`: torch's intra-op threads (a Snakemake job gets `threads`, not the whole machine).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ant.errors import UserError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, partition: int | None = None) -> torch.device:
    """ "auto": the CPU without CUDA; with several GPUs, partition i takes GPU i mod count (so P partition jobs
    on one workstation spread over its GPUs) and an unpartitioned job the GPU with the most free memory.
    Where a scheduler sets CUDA_VISIBLE_DEVICES (SLURM), the job sees only its own GPU, which is then used."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        if count == 1:
            return torch.device("cuda", 0)
        if partition is not None:
            return torch.device("cuda", partition % count)
        return torch.device("cuda", max(range(count), key=lambda i: torch.cuda.mem_get_info(i)[0]))
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but torch sees no CUDA GPU here: use device auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise UserError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The autocast precision actually used: "auto" = bf16 on CUDA, fp32 on the CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "auto") -> Iterator[None]:
    """Mixed precision for the block: bf16 on CUDA under "auto" (training and every evaluation), none on the CPU."""
    dtype = PRECISIONS[resolve_precision(device, precision)]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
