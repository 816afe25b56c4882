"""`python -m ant adapt`: train ANT on one target task with an adaptation strategy (spec section 6).

The strategies are ANT's variants in the method registry (ant/methods.py), which says for each what is loaded,
re-initialised and frozen:

    strategy     label   pre-trained weights      re-initialised              frozen        trained
    scratch      G       none                     (everything is new)         nothing       everything
    finetune     F       all loaded               nothing                     Transformer   item encoder, P, input LN
    relearn      R       all loaded               item encoder, P             Transformer   item encoder, P, input LN
    relearn_id   ANT+ID  all loaded               item encoder, P; + item IDs Transformer   as R + item-ID embedding

"Transformer" = the SASRec layers (attention, feed-forward and their LayerNorms); P = position embeddings; input LN
= the LayerNorm applied to v + P. Re-initialised parts get the fresh initialisation of a new model built with the
run's seed; frozen parameters get no gradient and are not in the optimiser, so they stay bit-identical to the
checkpoint. Frozen layers still apply their dropout in training (they are frozen, not switched to eval mode).
Ablations (`--ablation no_text ...`, Table IV) change the model settings of the same modules (hparams.py).

Outputs in --out-dir: metrics.json (validation and test metrics under the configured history rule and under
both, ties and repeated targets), ranks.parquet (user_idx, the test target's rank under each history rule),
model.safetensors, history.csv; `resume.pt` lives there while the run is unfinished.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path

from ant.device import autocast, resolve_device
from ant.errors import UserError
from ant.io import write_json
from ant.methods import Variant, method
from ant.model.ant import ANT, ANTConfig, load_model, part_of, save_model
from ant.train.batches import TrainRows
from ant.train.data import ItemTable, load_tasks
from ant.train.evaluate import EvalRows
from ant.train.hparams import ABLATIONS, Hparams, ModelHparams, apply_ablations, parse_hparams
from ant.train.objectives import AdaptObjective, evaluate_task
from ant.train.runs import (
    add_common_arguments,
    fingerprint,
    make_trainer,
    parameter_counts,
    run_record,
    seed_everything,
    write_ranks,
)
from ant.train.strategy import apply_variant
from ant.train.trainer import write_history

log = logging.getLogger(__name__)

# the user-encoder settings a pre-trained checkpoint must share with the adapted model
USER_ENCODER_KEYS = ("hidden_size", "layers", "attention_heads", "inner_size", "max_history")


METHOD = method("ant")
STRATEGIES: dict[str, Variant] = {v.name: v for v in METHOD.variants}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, choices=list(STRATEGIES), help="adaptation strategy")
    add_common_arguments(parser)
    parser.add_argument("--pretrained", type=Path, help="pre-trained model.safetensors (all strategies but scratch)")
    parser.add_argument(
        "--ablation", nargs="*", default=[], choices=ABLATIONS, help="Table IV switches, e.g. --ablation no_text"
    )
    parser.add_argument("--variant", help="name of this variant in metrics.json (default: strategy[+ablations])")


def build_model(
    strategy: Variant,
    model_hp: ModelHparams,
    dims: dict[str, int],
    max_history: int,
    n_items: int,
    pretrained: Path | None,
) -> ANT:
    """The model a strategy starts from: fresh, then (unless scratch) the pre-trained parts loaded and frozen."""
    config = ANTConfig(
        dims=dims, max_history=max_history, id_items=n_items if strategy.item_ids else 0, **asdict(model_hp)
    )
    model = ANT(config)
    source = None
    if strategy.load:
        if pretrained is None:
            raise UserError(f"strategy {strategy.name} needs --pretrained MODEL.safetensors")
        source, _ = load_model(pretrained)
        _check_compatible(source.config, config, strategy, pretrained)
    elif pretrained is not None:
        log.warning("strategy scratch ignores --pretrained %s", pretrained)
    apply_variant(model, strategy, part_of, source.state_dict() if source else None, pretrained)
    return model


def _check_compatible(source: ANTConfig, target: ANTConfig, strategy: Variant, path: Path) -> None:
    wrong = [
        f"{k} {getattr(source, k)} vs {getattr(target, k)}"
        for k in USER_ENCODER_KEYS
        if getattr(source, k) != getattr(target, k)
    ]
    if "item_encoder" not in strategy.reinit:
        if source.dims != target.dims:
            wrong.append(f"feature dims {source.dims} vs {target.dims}")
        if source.experts != target.experts:
            wrong.append(f"experts {source.experts} vs {target.experts}")
    if wrong:
        raise UserError(f"{path} (pre-trained) and the adaptation settings differ: {'; '.join(wrong)}")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    strategy = STRATEGIES[args.strategy]
    hp = parse_hparams(args.hparams, "adapt")
    hp = Hparams(apply_ablations(hp.model, args.ablation), hp.optim, hp.train, hp.eval, hp.max_history)
    variant = args.variant or "+".join([strategy.name, *args.ablation])
    tasks = load_tasks(args.sequences, args.items, args.features, hp.max_history)
    if len(tasks) != 1:
        raise UserError(f"adapt trains on one target task; got {len(tasks)} tasks")
    task = tasks[0]
    device = resolve_device(hp.train.device)
    seed_everything(args.seed, args.threads or hp.train.threads)
    pretrained = args.pretrained if strategy.load else None

    model = build_model(strategy, hp.model, task.dims, hp.max_history, task.n_items, pretrained).to(device)
    table = ItemTable.from_tasks([task], device)
    valid, test = EvalRows.build(task.splits["valid"]), EvalRows.build(task.splits["test"])
    objective = AdaptObjective(model, table, TrainRows.build(task.splits["train"], hp.train.rows), valid, hp, device)
    settings = {"strategy": strategy.name, "variant": variant, "seed": args.seed, "hparams": hp.to_dict()}
    run_fingerprint = fingerprint("adapt", settings, tasks, [pretrained] if pretrained else [])
    trainer = make_trainer(objective, hp, args.seed, args.out_dir, run_fingerprint, args.progress)
    log.info(
        "adapt %s to %s on %s: %s parameters",
        variant,
        task.name,
        device,
        ", ".join(f"{k} {v:,}" for k, v in parameter_counts(model).items()),
    )
    result = trainer.fit()
    with autocast(device):
        test_eval = evaluate_task(model, table, 0, test, hp, device)
    out = args.out_dir
    write_ranks(test.user_idx, test_eval, out / "ranks.parquet")
    save_model(model, out / "model.safetensors", {"task": task.name, "strategy": strategy.name, "variant": variant})
    write_history(result.history, out / "history.csv")
    metrics = {
        "task": task.name,
        "method": METHOD.name,
        "strategy": strategy.name,
        "label": strategy.label,
        "variant": variant,
        "ablations": list(args.ablation),
        "seed": args.seed,
        **run_record(task, result, test, test_eval, hp, model, pretrained, device, time.perf_counter() - start),
    }
    write_json(metrics, out / "metrics.json")
    trainer.finish()
    log.info("%s %s test %s", task.name, variant, " ".join(f"{k} {v:.4f}" for k, v in test_eval.metrics.items()))
    return 0
