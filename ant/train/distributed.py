"""Data-parallel pre-training: N processes (one per GPU; gloo processes on the CPU) share every global batch.

    python -m ant pretrain ... --hparams '{"train": {"gpus": 4}, ...}'      starts itself under torchrun, or
    torchrun --standalone --nproc-per-node 4 -m ant pretrain ...          (train.gpus is then the process count)

What makes N processes train as one does on the whole global batch (ant.train.batches `part`):
  - data order: every process shuffles with the same seeded generator, so all see the same global batches, and
    each takes its consecutive share of the rows (sizes differ by at most one);
  - the loss: each process's loss is its share of the global batch's mean, sum over its rows / all the batch's
    targets, and gradients are summed over the processes (`all_reduce_gradients`): the gradient of the global
    mean, whatever the split;
  - in-batch negatives: the candidates (target vectors, and the text/image parts of the alignment loss) of all
    shares are gathered with an autograd-aware all_gather (`gather_columns`), so a row's softmax runs over the
    global batch's targets, and the gradient that another process's rows send to a candidate flows back to the
    process that encoded it;
  - validation and test: each process ranks a consecutive shard of the users and the ranks are gathered in order
    (`gather_evaluation`), so every process computes the same metrics and takes the same decisions;
  - only rank 0 writes outputs and resume.pt; resume.pt holds every rank's RNG state, so a killed run resumes
    exactly as on one process; the process count is part of the run's settings (train.gpus).
What differs from one process: the random draws. Each rank draws its own dropout and gate noise, and an item
that occurs in two shares is encoded by both (two draws where one process makes one), so a run's numbers agree
with one process's in distribution; a model without randomness (dropout 0, one expert) gives the same losses up
to float rounding (tests/test_distributed.py). Single node only (torchrun --standalone).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from ant.data.split import PAD
from ant.errors import UserError
from ant.train.evaluate import EvalRows, Evaluation, pooled

log = logging.getLogger(__name__)
RANK_SEED_STRIDE = 1_000_003  # rank r > 0 reseeds its dropout with seed + r * stride (rank 0 keeps the seed's)


@dataclass(frozen=True)
class Group:
    rank: int  # this process, 0..size-1; rank 0 writes the outputs
    size: int  # processes
    device: torch.device  # this process's device (cuda:LOCAL_RANK, or the CPU under gloo)

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Started by torchrun (which sets WORLD_SIZE): run as one of its processes, never launch again."""
    return "WORLD_SIZE" in os.environ


def launch(argv: list[str], processes: int) -> int:
    """Run `python -m ant <argv>` as `processes` processes under torchrun on this node; their exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    log.info(
        "starting %d processes: torchrun --standalone --nproc-per-node %d -m ant %s", processes, processes, argv[0]
    )
    return subprocess.run([*command, "-m", "ant", *argv], check=False).returncode


def from_env(device_name: str) -> Group | None:
    """Join the torchrun job this process belongs to (None for a single process): NCCL with GPU LOCAL_RANK when
    the device is a GPU, gloo on the CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    _die_with_parent()
    local = int(os.environ["LOCAL_RANK"])
    if device_name == "cpu" or not torch.cuda.is_available():
        if device_name not in ("cpu", "auto"):
            raise UserError(f"train.device {device_name!r} asked for, but torch sees no CUDA GPU here")
        device, backend = torch.device("cpu"), "gloo"
    else:
        if local >= torch.cuda.device_count():
            raise UserError(f"{size} processes on this node, but only {torch.cuda.device_count()} GPU(s)")
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    group = Group(dist.get_rank(), size, device)
    if not group.main:  # one log: the other ranks say only what goes wrong
        logging.getLogger("ant").setLevel(logging.WARNING)
    return group


def _die_with_parent() -> None:
    """torchrun starts each process in a session of its own, so a job killed with SIGKILL (a scheduler's, a
    user's kill of the process group) would leave them training on: have the kernel kill this one with torchrun."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not Linux: the processes outlive a SIGKILL of torchrun there
        return
    pr_set_pdeathsig = 1  # <sys/prctl.h>
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def close(group: Group | None) -> None:
    if group is not None:
        dist.barrier()
        dist.destroy_process_group()


def seed_rank(seed: int, group: Group | None) -> None:
    """After the model is built (the same weights everywhere): each rank its own dropout and gate-noise stream."""
    if group is not None and group.rank:
        torch.manual_seed(seed + group.rank * RANK_SEED_STRIDE)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients over the processes in one flat all-reduce (each loss is a share of the global mean).
    A parameter without a gradient on every process keeps none, as it would on one process (Adam skips it)."""
    device = params[0].device
    has = [p.grad is not None for p in params]
    flat = torch.cat(
        [torch.tensor(has, dtype=torch.float32, device=device)]
        + [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in params]
    )
    dist.all_reduce(flat)
    offset, anywhere = len(params), flat[: len(params)].tolist()
    for p, used in zip(params, anywhere, strict=True):
        p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.dtype) if used else None
        offset += p.numel()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    out = values.clone()
    dist.all_reduce(out)
    return out


def gather_columns(
    vectors: torch.Tensor, meta: torch.Tensor, share_targets: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """All shares' candidate columns, rank after rank, each padded to the largest share:
    vectors [M_r, k] (autograd flows back to the rank that made them) and meta int64 [M_r, c] (meta[:, 0] is the
    item, PAD in padding columns) -> [size * max M_r, k], [size * max M_r, c]."""
    width = max(share_targets)
    pad = width - vectors.shape[0]
    vectors = torch.nn.functional.pad(vectors, (0, 0, 0, pad))
    meta = torch.cat([meta, meta.new_full((pad, meta.shape[1]), PAD)])
    gathered_meta = [torch.empty_like(meta) for _ in share_targets]
    dist.all_gather(gathered_meta, meta.contiguous())
    return torch.cat(dist_nn.all_gather(vectors)), torch.cat(gathered_meta)


def gather_objects(obj: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_rows(rows: EvalRows, group: Group | None) -> EvalRows:
    """This rank's consecutive shard of evaluation rows (all of them on one process)."""
    if group is None:
        return rows
    n = len(rows)
    lo, hi = n * group.rank // group.size, n * (group.rank + 1) // group.size
    return EvalRows(*(getattr(rows, f.name)[lo:hi] for f in fields(rows)))


def gather_evaluation(evaluation: Evaluation, group: Group | None, ks: tuple[int, ...]) -> Evaluation:
    """The shards' evaluations joined in rank order: the ranks, ties and repeats of the whole rows."""
    return evaluation if group is None else pooled(gather_objects(evaluation), ks)
