"""`python -m ant bench baselines`: training rows/s and full-ranking evaluation users/s of every baseline.

For each setting (a synthetic task, ant.train.synthetic) and each registered baseline it times, after warm-up
steps, the training steps the trainer would run (all_positions rows where the model makes them exact, prefix
rows otherwise; S3-Rec's pre-training steps as well) and the evaluation of test users over all items. Settings:
`demo` (2k users x 800 items, hidden 64, batch 512) and `paper` (100k users x 20k items, hidden 256, batch 2048,
768-d text). Rows/s counts training targets (BERT4Rec's: its prefix rows); the medians over the timed steps,
as `bench train` measures ANT.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
from dataclasses import dataclass

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
    for name in args.settings:
        s = SETTINGS[name]
        started = time.perf_counter()
        task = synthetic_task(s.users, s.items, seed=0, clusters=max(20, s.items // 50), dims={"text": 768})
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
    module = importlib.import_module(method.module)
    fields = {f.name for f in dataclasses.fields(module.Settings)}
    settings = module.Settings(**{k: v for k, v in {"hidden_size": s.hidden}.items() if k in fields})
    features = {m: task.features[m][0] for m in method.modalities}
    shape = TaskShape(s.items, len(task.sequences.user_idx), 50, features)
    torch.manual_seed(0)
    model = module.Model(settings, shape).to(device)
    layout = "all_positions" if model.exact_all_positions else "prefixes"
    rows = TrainRows.build(parts["train"], layout)
    batches = rows.batches(s.batch_size, device, _gen())
    _report(
        name, f"{method_name} train, {layout}", _measure(model, lambda b: _total(model.loss(b)), batches, device, args)
    )
    if method.pretrain == "target":
        prefixes = TrainRows.build(parts["train"], "prefixes").batches(s.batch_size, device, _gen())
        pretext = _measure(model, lambda b: _total(model.pretrain_loss(b)), prefixes, device, args)
        _report(name, f"{method_name} pretrain", pretext)
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
