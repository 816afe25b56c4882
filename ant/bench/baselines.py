"""`python -m ant bench baselines`: training rows/s and full-ranking evaluation users/s of every baseline.

For each setting (a synthetic task, ant.train.synthetic) and each registered baseline it times, after warm-up
steps, the training steps the trainer would run (all_positions rows where the model makes them exact, prefix
rows otherwise; S3-Rec's pre-training steps as well) and the evaluation of test users over all items. Settings:
`demo` (2k users x 800 items, hidden 64, batch 512) and `paper` (100k users x 20k items, hidden 256, batch 2048),
both with the paper's feature sizes (768-d text, 1024-d image, 64-d price). Rows/s counts training targets
(BERT4Rec's: its prefix rows); the medians over the timed steps, as `bench train` measures ANT.

Two projections at the paper setting:
  - CARCA, the most expensive baseline (cross-attention of every item over each history), is timed again with
    Office's item count (the paper's largest target) and its epoch projected from Office's training rows;
  - a baseline that pre-trains on the auxiliary tasks (registry `pretrain == "auxiliary"`: UniSRec) has its
    `pretrain_loss` timed on prefix batches of `Settings.pretrain_batch_size` and one epoch of the auxiliary
    corpus projected.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from ant.baselines.base import TaskShape
from ant.bench.train import _gen, _measure, _peak, _report, _reset_peak, _sync
from ant.data.split import split
from ant.device import autocast, resolve_device
from ant.methods import METHODS
from ant.train.batches import TrainRows
from ant.train.evaluate import EvalRows, evaluate
from ant.train.synthetic import synthetic_task


@dataclass(frozen=True)
class Setting:
    users: int
    items: int
    hidden: int
    batch_size: int


SETTINGS = {"demo": Setting(2_000, 800, 64, 512), "paper": Setting(100_000, 20_000, 256, 2048)}
DIMS = {"text": 768, "image": 1024, "price": 64}  # BERT, Swin, price features (the multi-modal methods read all)
# Office, the paper's largest target (Table I; docs/ANT-method.md): 87,346 users, 25,986 items, 684,837
# interactions, so 684,837 - 3 x 87,346 = 422,799 training rows (one per prefix, ant.data.split)
OFFICE_ITEMS, OFFICE_ROWS = 25_986, 684_837 - 3 * 87_346
AUXILIARY_ROWS = 14_500_000  # the auxiliary corpus's prefix rows (spec baselines.md section 8, UniSRec)
PROJECT_ON_OFFICE = ("carca",)  # timed with Office's item count: their cost per row grows with N x history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["demo", "paper"])
    parser.add_argument("--methods", nargs="+", choices=[m.name for m in METHODS.values() if m.is_baseline])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each measurement")
    parser.add_argument("--eval-users", type=int, default=5_000, help="test users ranked in the evaluation timing")


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods or [m.name for m in METHODS.values() if m.is_baseline]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"baselines benchmark on {device} ({where}), torch {torch.__version__}")
    print(f"{'setting':<8} {'measurement':<28} {'rows/s or users/s':>18} {'ms/step':>9} {'peak MB':>9}")
    if device.type == "cpu":
        print("(on the CPU 'peak MB' is the process's peak RSS so far: pass one --methods for a method's own peak)")
    for name in args.settings:
        s = SETTINGS[name]
        started = time.perf_counter()
        task = synthetic_task(s.users, s.items, seed=0, clusters=max(20, s.items // 50), dims=DIMS)
        parts = split(task.sequences, 50)
        print(
            f"{name:<8} {s.users:,} users x {s.items:,} items, {len(parts['train']):,} training rows, "
            f"hidden {s.hidden}, batch {s.batch_size} (data {time.perf_counter() - started:.1f}s)"
        )
        for method in methods:
            bench_method(name, s, method, task, parts, device, args)
    return 0


def bench_method(name, s: Setting, method_name: str, task, parts, device: torch.device, args) -> None:
    method = METHODS[method_name]
    try:
        module = importlib.import_module(method.module)
    except ImportError as err:  # a baseline whose module is still being written
        print(f"{name:<8} {method_name}: skipped, {method.module} cannot be imported ({err})", flush=True)
        return
    fields = {f.name for f in dataclasses.fields(module.Settings)}
    settings = module.Settings(**{k: v for k, v in {"hidden_size": s.hidden}.items() if k in fields})
    features = {m: task.features[m][0] for m in method.modalities}
    if method.pretrain == "auxiliary" and hasattr(settings, "pretrain_modalities"):
        # stores only pre-training reads (UniSRec's word-dropped text): the synthetic text stands in, same size
        features |= {m: task.features.get(m, task.features["text"])[0] for m in settings.pretrain_modalities()}
    shape = TaskShape(s.items, len(task.sequences.user_idx), 50, features)
    torch.manual_seed(0)
    model = module.Model(settings, shape).to(device)
    layout = "all_positions" if model.exact_all_positions else "prefixes"
    rows = TrainRows.build(parts["train"], layout)
    batches = rows.batches(s.batch_size, device, _gen())
    train = _measure(model, lambda b: _total(model.loss(b)), batches, device, args)
    _report(name, f"{method_name} train, {layout}", train)
    if method.pretrain == "target":
        prefixes = TrainRows.build(parts["train"], "prefixes").batches(s.batch_size, device, _gen())
        pretext = _measure(model, lambda b: _total(model.pretrain_loss(b)), prefixes, device, args)
        _report(name, f"{method_name} pretrain", pretext)
    if method.pretrain == "auxiliary":
        size = settings.pretrain_batch_size
        prefixes = TrainRows.build(parts["train"], "prefixes").batches(size, device, _gen())
        pretrain = _measure(model, lambda b: _total(model.pretrain_loss(b)), prefixes, device, args)
        _report(name, f"{method_name} pretrain, batch {size:,}", pretrain)
        hours = AUXILIARY_ROWS / pretrain[0] / 3600
        print(f"{name:<8} {method_name} pretrain: {hours:.2f} h per epoch of the auxiliary corpus (14.5 M rows)")
    if name == "paper" and method_name in PROJECT_ON_OFFICE:
        bench_office(name, s, method_name, module, settings, task, rows, device, args)
    test = EvalRows.build(parts["test"])
    users = min(args.eval_users, len(test))
    test = test.head(users)
    model.eval()
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device):
        evaluate(model.scores, test, s.items, device=device)
    _sync(device)
    _report(
        name,
        f"{method_name} evaluate {users:,} users",
        (users / (time.perf_counter() - start), float("nan"), _peak(device)),
    )


def _total(out):
    return out["loss"] if isinstance(out, dict) else out


def bench_office(
    name: str, s: Setting, method_name: str, module, settings, task, rows: TrainRows, device: torch.device, args
) -> None:
    """The same training steps for a model of Office's item count (the synthetic rows' items are a subset of its
    ids; feature rows repeat), and the time of one epoch of Office's training rows at this batch size."""
    cycle = np.arange(OFFICE_ITEMS) % s.items
    features = {m: task.features[m][0][cycle] for m in METHODS[method_name].modalities}
    torch.manual_seed(0)
    model = module.Model(settings, TaskShape(OFFICE_ITEMS, len(task.sequences.user_idx), 50, features)).to(device)
    batches = rows.batches(s.batch_size, device, _gen())
    rate, ms, peak = _measure(model, lambda b: _total(model.loss(b)), batches, device, args)
    what = f"{method_name} train, N {OFFICE_ITEMS:,}"
    _report(name, what, (rate, ms, peak))
    minutes = OFFICE_ROWS / rate / 60
    print(f"{name:<8} {what}: {minutes:,.1f} min per Office epoch ({OFFICE_ROWS:,} rows, batch {s.batch_size})")
