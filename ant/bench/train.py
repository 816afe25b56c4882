"""`python -m ant bench train`: training rows/s and full-ranking evaluation users/s of ANT.

For each setting (a synthetic task, ant.train.synthetic, and a model size) it times, after warm-up steps:
  adapt        full-softmax steps over all items of the task (adaptation / training from scratch), in
               three row layouts: prefixes with every batch padded to max_history (no trimming), prefixes
               trimmed to the batch's longest history (what the trainer does), and all_positions;
  pretrain     in-batch softmax + text-image alignment steps on the same rows (trimmed prefixes);
  evaluate     full ranking of test users over all items (item encoding included), users/s.
Settings: `demo` (a demo-sized task, the demo's model), `large` (100k users x 20k items, the demo's model) and
`paper` (100k users x 20k items, the paper's model: hidden 256, BERT/Swin/price feature sizes, batch 2048).
On CUDA the steps run under bf16 autocast as in training. Rows/s counts training targets; rows/s and ms/step
are medians over the timed steps.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from ant.data.split import split
from ant.device import autocast, resolve_device
from ant.model.ant import ANT, ANTConfig
from ant.train.batches import Batch, TrainRows
from ant.train.data import ItemTable
from ant.train.evaluate import EvalRows
from ant.train.hparams import Hparams, ModelHparams, OptimHparams, TrainHparams
from ant.train.objectives import AdaptObjective, PretrainObjective, evaluate_task
from ant.train.synthetic import synthetic_task


@dataclass(frozen=True)
class Setting:
    users: int
    items: int
    hidden: int
    batch_size: int
    dims: dict[str, int]


SETTINGS = {
    "demo": Setting(2_000, 800, 64, 512, {"text": 64, "image": 64, "price": 64}),
    "large": Setting(100_000, 20_000, 64, 512, {"text": 64, "image": 64, "price": 64}),
    "paper": Setting(100_000, 20_000, 256, 2048, {"text": 768, "image": 1024, "price": 64}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=None,
        help="default: demo large on CPU, large paper on CUDA",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--eval-users", type=int, default=20_000, help="test users ranked in the evaluation timing")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.settings or (["large", "paper"] if device.type == "cuda" else ["demo", "large"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ANT training benchmark on {device} ({where}), torch {torch.__version__}")
    print(f"{'setting':<8} {'measurement':<28} {'rows/s or users/s':>18} {'ms/step':>9} {'peak MB':>9}")
    for name in names:
        bench_setting(name, SETTINGS[name], device, args)
    return 0


def bench_setting(name: str, s: Setting, device: torch.device, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    task = synthetic_task(s.users, s.items, seed=0, clusters=max(20, s.items // 50), dims=s.dims)
    parts = split(task.sequences, 50)
    table = ItemTable(
        features={m: torch.from_numpy(v).to(device) for m, (v, _) in task.features.items()},
        present={m: torch.from_numpy(p).to(device) for m, (_, p) in task.features.items()},
        offsets=[0, s.items],
    )
    hp = Hparams(
        model=ModelHparams(hidden_size=s.hidden, inner_size=s.hidden),
        optim=OptimHparams(epochs=1, lr_decay=1.0, batch_size=s.batch_size),
        train=TrainHparams(device=str(device)),
    )
    torch.manual_seed(0)
    model = ANT(ANTConfig(dims=s.dims, max_history=50, **hp.model.__dict__)).to(device)
    valid = EvalRows.build(parts["valid"])
    print(
        f"{name:<8} {s.users:,} users x {s.items:,} items, {len(parts['train']):,} training rows, "
        f"hidden {s.hidden}, batch {s.batch_size} (data {time.perf_counter() - started:.1f}s)"
    )

    prefixes = TrainRows.build(parts["train"], "prefixes")
    adapt = AdaptObjective(model, table, prefixes, valid, hp, device)
    padded = _measure(model, adapt.loss, _padded(prefixes.batches(s.batch_size, device, _gen())), device, args)
    _report(name, "adapt, prefixes, padded", padded)
    _report(
        name,
        "adapt, prefixes, trimmed",
        _measure(model, adapt.loss, prefixes.batches(s.batch_size, device, _gen()), device, args),
    )
    positions = TrainRows.build(parts["train"], "all_positions")
    _report(
        name,
        "adapt, all_positions",
        _measure(model, adapt.loss, positions.batches(s.batch_size, device, _gen()), device, args),
    )

    for layout, rows in (("prefixes", prefixes), ("all_positions", positions)):
        pre = PretrainObjective(model, table, ["synthetic"], rows, {}, hp, device)
        _report(
            name,
            f"pretrain, {layout}",
            _measure(
                model, lambda b, pre=pre: pre.loss(b)["loss"], rows.batches(s.batch_size, device, _gen()), device, args
            ),
        )

    users = min(args.eval_users, s.users)
    test = EvalRows.build(parts["test"])
    test = test.head(users)
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device):
        evaluate_task(model, table, 0, test, hp, device)
    _sync(device)
    seconds = time.perf_counter() - start
    _report(name, f"evaluate {users:,} users", (users / seconds, float("nan"), _peak(device)))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _padded(batches: Iterator[Batch], width: int = 50) -> Iterator[Batch]:
    """The same batches padded back to max_history: what training costs without the trimming."""
    for b in batches:
        pad = width - b.history.shape[1]
        yield replace(b, history=torch.nn.functional.pad(b.history, (0, pad), value=-1))


def _measure(
    model: ANT,
    loss_fn: Callable[[Batch], torch.Tensor],
    batches: Iterator[Batch],
    device: torch.device,
    args: argparse.Namespace,
) -> tuple[float, float, float]:
    """(training targets/s, ms/step, peak MB): medians over `args.steps` optimiser steps after `args.warmup`.

    Medians, so that a step slowed by another process on a shared machine does not skew the numbers.
    """
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    seconds, rates = [], []
    for step, batch in enumerate(batches):
        if step == args.warmup:
            _sync(device)
            _reset_peak(device)
        if step >= args.warmup + args.steps:
            break
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_fn(batch)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
            targets = int((batch.target != -1).sum()) if batch.target.dim() == 2 else len(batch)
            rates.append(targets / seconds[-1])
    return statistics.median(rates), 1000 * statistics.median(seconds), _peak(device)


def _report(name: str, what: str, result: tuple[float, float, float]) -> None:
    rate, ms, peak = result
    ms_text = "" if ms != ms else f"{ms:9.1f}"
    print(f"{name:<8} {what:<28} {rate:18,.0f} {ms_text:>9} {peak:9,.0f}", flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)
