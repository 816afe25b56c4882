"""`python -m ant bench train`: ANT's training steps/s and rows/s, evaluation users/s, and what 300 epochs of the
paper's pre-training would take on this device.

For each setting (a synthetic task, ant.train.synthetic, and a model size) it times, after warm-up steps:
  adapt        full-softmax steps over all items of the task (adaptation / training from scratch): prefixes with
               every batch padded to max_history (no trimming), prefixes trimmed to the batch's longest history,
               and all_positions, each as one padded pass and with train.length_groups (ant.train.batches);
  pretrain     in-batch softmax + text-image alignment steps, the pre-training objective's own batches (its
               distinct items found on the host), prefixes and all_positions, one pass and length groups;
  (both, on the CPU, also with length groups and train.dropout_rng sfc64: the same distribution of masks, drawn
  several times faster than torch's generator does);
  evaluate     full ranking of test users over all items (item encoding included), users/s.
`--only` picks some of the three. Settings: `demo` (a demo-sized task, the demo's model), `large` (100k users x
20k items, the demo's model), `paper` (100k users x 20k items, the paper's model: hidden 256, BERT/Swin/price
feature sizes, batch 2048) and `paper-cpu`, the paper's model and batch scaled down to a CPU (20k users x 50k
items: as in the auxiliary corpus, a batch's distinct items are mostly different items) with Amazon-like
sequence lengths (AMAZON_LENGTHS: a heavy tail with the corpus's 9.3 interactions per user, so that most mixed
batches hold a 50-item history, as in the real pre-training, while most histories are short). On CUDA the
steps run under bf16 autocast as in training. Rows/s counts training targets; rows/s, steps/s and ms/step are
medians over the timed steps, the variants of adapt (and those of pretrain) timed step by step in turn, so that
a shared machine's changing load does not favour one of them. The allocator is set as in training
(ant.train.runs.keep_freed_memory; --malloc-default: as glibc leaves it, to see what that does).

The projection: 300 epochs of the auxiliary corpus of the paper's Table I (its training targets,
interactions - 3 x users, and every epoch's validation of all its users, each over its task's items) at the
measured rates: training targets / rows/s, plus validation score cells (users x items per task) at the measured
evaluation's cells/s. On several GPUs (train.gpus) divide the training part by at most their number.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from ant.analysis.datasets_table import PUBLISHED
from ant.data.split import Sequences, split
from ant.device import autocast, resolve_device
from ant.model.ant import ANT, ANTConfig
from ant.train.batches import Batch, TrainRows
from ant.train.data import ItemTable
from ant.train.evaluate import EvalRows
from ant.train.hparams import Hparams, ModelHparams, OptimHparams, TrainHparams
from ant.train.objectives import AdaptObjective, PretrainObjective, evaluate_task
from ant.train.runs import keep_freed_memory
from ant.train.synthetic import SyntheticTask, synthetic_task

AUXILIARY = ("Food", "Movies", "Home", "Clothing")  # the paper's auxiliary tasks (Table I: users, items, interactions)
EPOCHS = 300
# Amazon-like lengths: 5 + floor(Lomax(shape 2, scale 4.84)), at most 200: 9.3 interactions per user (the auxiliary
# corpus: 21,420,242 / 2,293,714 = 9.34), median user 6, median training history 4, 6.5% of histories 50 long
AMAZON_LENGTHS = (2.0, 4.84, 200)


@dataclass(frozen=True)
class Setting:
    users: int
    items: int
    hidden: int
    batch_size: int
    dims: dict[str, int]
    lengths: str = "synthetic"  # synthetic_task's own lengths, or "amazon" (AMAZON_LENGTHS)


PAPER_DIMS = {"text": 768, "image": 1024, "price": 64}
SETTINGS = {
    "demo": Setting(2_000, 800, 64, 512, {"text": 64, "image": 64, "price": 64}),
    "large": Setting(100_000, 20_000, 64, 512, {"text": 64, "image": 64, "price": 64}),
    "paper": Setting(100_000, 20_000, 256, 2048, PAPER_DIMS),
    "paper-cpu": Setting(20_000, 50_000, 256, 2048, PAPER_DIMS, "amazon"),
}
MEASUREMENTS = ("adapt", "pretrain", "evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=None,
        help="default: demo large on CPU, large paper on CUDA",
    )
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS), help="what to time")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--eval-users", type=int, default=20_000, help="test users ranked in the evaluation timing")
    parser.add_argument(
        "--malloc-default",
        action="store_true",
        help="leave glibc's allocator as it is (training commands keep freed memory: ant.train.runs)",
    )


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if not args.malloc_default:
        keep_freed_memory()  # as the training commands do
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.settings or (["large", "paper"] if device.type == "cuda" else ["demo", "large"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"ANT training benchmark on {device} ({where}), torch {torch.__version__}")
    print(f"{'setting':<9} {'measurement':<46} {'rows/s or users/s':>18} {'steps/s':>8} {'ms/step':>9} {'peak MB':>9}")
    for name in names:
        bench_setting(name, SETTINGS[name], device, args)
    return 0


def bench_setting(name: str, s: Setting, device: torch.device, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    task = _task(s)
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
    history = parts["train"].length
    print(
        f"{name:<9} {s.users:,} users x {s.items:,} items, {len(history):,} training rows (history median "
        f"{np.median(history):.0f}, {np.mean(history == 50):.1%} at 50), hidden {s.hidden}, batch {s.batch_size} "
        f"(data {time.perf_counter() - started:.1f}s)"
    )
    layouts = {"prefixes": TrainRows.build(parts["train"], "prefixes")}
    layouts["all_positions"] = TrainRows.build(parts["train"], "all_positions")
    grouping = {"one pass": (False, "torch"), "length groups": (True, "torch")}
    if device.type == "cpu":  # sfc64 draws differ from torch's on the CPU only
        grouping["length groups, sfc64"] = (True, "sfc64")
    rates: dict[str, float] = {}

    def objective_hp(how: tuple[bool, str]) -> Hparams:
        return replace(hp, train=replace(hp.train, length_groups=how[0], dropout_rng=how[1]))

    if "adapt" in args.only:
        prefixes = layouts["prefixes"]
        adapt = AdaptObjective(model, table, prefixes, valid, hp, device)
        runs = {"adapt, prefixes, padded to 50": (adapt.loss, _padded(prefixes.batches(s.batch_size, device, _gen())))}
        for layout, rows in layouts.items():
            for how, variant in grouping.items():
                adapt = AdaptObjective(model, table, rows, valid, objective_hp(variant), device)
                runs[f"adapt, {layout}, {how}"] = (adapt.loss, adapt.batches(_gen()))
        for what, result in _interleaved(model, runs, device, args).items():
            _line(name, what, result)

    if "pretrain" in args.only:
        runs = {}
        for layout, rows in layouts.items():
            for how, variant in grouping.items():
                pre = PretrainObjective(model, table, ["synthetic"], rows, {}, objective_hp(variant), device)
                runs[f"pretrain, {layout}, {how}"] = (lambda b, pre=pre: pre.loss(b)["loss"], pre.batches(_gen()))
        for what, result in _interleaved(model, runs, device, args).items():
            _line(name, what, result)
            rates[what] = result[0]

    cells = None
    if "evaluate" in args.only:
        users = min(args.eval_users, s.users)
        test = EvalRows.build(parts["test"]).head(users)
        _sync(device)
        _reset_peak(device)
        start = time.perf_counter()
        with torch.no_grad(), autocast(device):
            evaluate_task(model, table, 0, test, hp, device)
        _sync(device)
        seconds = time.perf_counter() - start
        _line(name, f"evaluate {users:,} users", (users / seconds, float("nan"), _peak(device)))
        cells = users * s.items / seconds
    _project(name, rates, cells)


def _project(name: str, rates: dict[str, float], cells_per_s: float | None) -> None:
    """Hours for EPOCHS epochs of the paper's auxiliary corpus (Table I) at the measured rates."""
    if not rates:
        return
    targets = sum(PUBLISHED[t][2] - 3 * PUBLISHED[t][0] for t in AUXILIARY)
    cells = sum(PUBLISHED[t][0] * PUBLISHED[t][1] for t in AUXILIARY)
    users = sum(PUBLISHED[t][0] for t in AUXILIARY)
    valid = EPOCHS * cells / cells_per_s / 3600 if cells_per_s else None
    print(
        f"{name:<9} projection: {EPOCHS} epochs of the paper's auxiliary corpus (Table I: {targets:,} training "
        f"targets per epoch; validation {users:,} users x their task's items = {cells:.3g} score cells per epoch"
        + (f", {valid:,.1f} h in all at {cells_per_s:.3g} cells/s)" if valid is not None else ", not timed)")
    )
    for what, rate in rates.items():
        train = EPOCHS * targets / rate / 3600
        total = f" + validation = {train + valid:,.1f} h" if valid is not None else ""
        print(f"{name:<9}   {what:<44} {train:10,.1f} h training{total}", flush=True)


def _task(s: Setting) -> SyntheticTask:
    clusters = max(20, s.items // 50)
    if s.lengths == "synthetic":
        return synthetic_task(s.users, s.items, seed=0, clusters=clusters, dims=s.dims)
    shape, scale, cap = AMAZON_LENGTHS
    walks = synthetic_task(s.users, s.items, seed=0, clusters=clusters, dims=s.dims, mean_length=1e12, max_length=cap)
    u = np.random.default_rng(1).random(s.users)
    length = np.minimum(5 + np.floor(scale * ((1 - u) ** (-1 / shape) - 1)), cap).astype(np.int64)
    steps = walks.sequences.items.reshape(s.users, cap)  # every walk is `cap` long: keep its first `length`
    offsets = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    kept = steps[np.arange(cap)[None, :] < length[:, None]]
    return replace(walks, sequences=Sequences(kept, offsets, walks.sequences.user_idx))


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
    """(training targets/s, ms/step, peak MB): medians over `args.steps` optimiser steps after `args.warmup`."""
    return _interleaved(model, {"": (loss_fn, batches)}, device, args)[""]


def _interleaved(
    model: ANT,
    runs: dict[str, tuple[Callable[[Batch], torch.Tensor], Iterator[Batch]]],
    device: torch.device,
    args: argparse.Namespace,
) -> dict[str, tuple[float, float, float]]:
    """_measure of several variants at once, one step of each in turn: on a shared machine a change of load
    slows all of them alike, and medians keep a step slowed by another process from skewing them. The peak
    memory is the largest of all."""
    model.train()
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name in runs}
    iterators = {name: iter(batches) for name, (_, batches) in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            _reset_peak(device)
        for name, (loss_fn, _) in runs.items():
            batch = next(iterators[name], None)
            if batch is None:  # an epoch shorter than the steps asked for
                continue
            start = time.perf_counter()
            optimizers[name].zero_grad(set_to_none=True)
            with autocast(device):
                loss = loss_fn(batch)
            loss.backward()
            optimizers[name].step()
            _sync(device)
            if step >= args.warmup:
                seconds[name].append(time.perf_counter() - start)
                targets = int((batch.target != -1).sum()) if batch.target.dim() == 2 else len(batch)
                rates[name].append(targets / seconds[name][-1])
    peak = _peak(device)
    return {n: (statistics.median(rates[n]), 1000 * statistics.median(seconds[n]), peak) for n in runs}


def _line(name: str, what: str, result: tuple[float, float, float]) -> None:
    rate, ms, peak = result
    timing = f"{1000 / ms:8.2f} {ms:9.1f}" if ms == ms else f"{'':8} {'':9}"
    print(f"{name:<9} {what:<46} {rate:18,.0f} {timing} {peak:9,.0f}", flush=True)


def _report(name: str, what: str, result: tuple[float, float, float]) -> None:
    """bench baselines' line (its own columns)."""
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
