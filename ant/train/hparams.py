"""The `--hparams` JSON of the training commands, parsed into typed, checked settings.

    {"model": {...}, "optim": {...}, "train": {...}, "eval": {...}, "max_history": 50}

is what workflow/rules/common.smk writes from the config (sections model, pretrain|adapt, train, eval; for a
baseline its own entry of `baselines`). The model section is the model's own settings dataclass (ANTSettings, or
a baseline module's `Settings`); the optimisation starts from a preset (PRESETS: the paper's values, spec
ANT-method section 7 and baselines.md section 2.4). Missing keys take those defaults (the same as
workflow/schemas/config.schema.yaml; a test keeps the two in step); unknown keys and out-of-range values are a
UserError naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ant.errors import UserError
from ant.model.ant import ANTSettings
from ant.model.dropout import DRAWS
from ant.model.item_encoder import MODALITIES
from ant.train.evaluate import TIE_RULES

ABLATIONS = ("no_text", "no_image", "no_price", "no_moe", "no_fusion")


ModelHparams = ANTSettings  # the model section is the model's own settings dataclass


@dataclass(frozen=True)
class OptimHparams:
    epochs: int
    lr_decay: float
    batch_size: int = 2048
    lr: float = 1e-3
    patience: int | None = None  # epochs without a better validation `select` before stopping; None = never
    align_weight: float = 1e-3  # ANT's pre-training only: weight of the text-image alignment loss
    select: str | None = "recall@10"  # validation metric that picks the kept epoch; None: no validation, keep the last


# the paper's optimisation presets: ANT's pre-training; "ant" (ANT's adaptation, NOVA, CARCA: a fixed epoch budget,
# best validation Recall@10); "recbole" (RecBole with UniSRec's finetune.yaml: no decay, early stop on NDCG@10)
PRESETS: dict[str, OptimHparams] = {
    "pretrain": OptimHparams(epochs=300, lr_decay=0.995),
    "ant": OptimHparams(epochs=100, lr_decay=0.99),
    "recbole": OptimHparams(epochs=300, lr_decay=1.0, patience=10, select="ndcg@10"),
}


@dataclass(frozen=True)
class TrainHparams:
    device: str = "auto"
    threads: int = 2  # CPU threads (the command's --threads overrides)
    rows: Literal["prefixes", "all_positions"] = "prefixes"
    eval_batch_size: int = 1024
    # ANT: encode a batch's users in groups of similar history length (ant.train.batches); False: one padded pass
    length_groups: bool = True
    gpus: int = 1  # processes of a pre-training (one per GPU; gloo on the CPU): ant.train.distributed
    # ANT: where CPU dropout masks come from: torch's generator, or numpy's SFC64 (the same distribution, other
    # masks, several times cheaper; ant.model.dropout)
    dropout_rng: Literal["torch", "sfc64"] = "torch"


@dataclass(frozen=True)
class EvalHparams:
    ks: tuple[int, ...] = (10, 50)
    exclude_history: bool = True  # the authors' rule; both rules are always recorded (ant.train.evaluate)
    ties: Literal["pessimistic", "expected"] = "pessimistic"


@dataclass(frozen=True)
class Hparams:
    model: Any = field(default_factory=ANTSettings)  # a settings dataclass
    optim: OptimHparams = field(default_factory=lambda: PRESETS["ant"])
    train: TrainHparams = field(default_factory=TrainHparams)
    eval: EvalHparams = field(default_factory=EvalHparams)
    max_history: int = 50

    def to_dict(self) -> dict[str, Any]:
        def plain(obj: Any) -> dict[str, Any]:
            return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v) for f in fields(obj)}

        return {
            "model": plain(self.model),
            "optim": plain(self.optim),
            "train": plain(self.train),
            "eval": plain(self.eval),
            "max_history": self.max_history,
        }


def stage_optim(stage: str) -> OptimHparams:
    """The paper's optimisation settings of ANT's stages: "pretrain", "adapt" (the "ant" preset)."""
    return PRESETS["ant" if stage == "adapt" else stage]


def parse_hparams(text: str | None, stage: str, model: type = ANTSettings) -> Hparams:
    """`stage`: ANT's "pretrain" or "adapt", or a preset name; `model`: the settings dataclass of the model."""
    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise UserError(f"--hparams is not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise UserError("--hparams must be a JSON object")
    known = {"model", "optim", "train", "eval", "max_history"}
    if unknown := set(raw) - known:
        raise UserError(f"--hparams: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")
    if stage not in PRESETS and stage != "adapt":
        raise UserError(f"unknown preset {stage!r}; known: {', '.join(p for p in PRESETS if p != 'pretrain')}")
    base = Hparams(model=model(), optim=stage_optim(stage))
    hp = Hparams(
        model=_section(base.model, raw.get("model"), "model"),
        optim=_section(base.optim, raw.get("optim"), "optim"),
        train=_section(base.train, raw.get("train"), "train"),
        eval=_section(base.eval, raw.get("eval"), "eval"),
        max_history=int(raw.get("max_history", base.max_history)),
    )
    _check(hp)
    return hp


def apply_ablations(model: ModelHparams, ablations: list[str] | tuple[str, ...]) -> ModelHparams:
    """Table IV's switches as model settings: no_<modality> drops it, no_moe = one head, no_fusion = beta 0."""
    for name in ablations:
        if name not in ABLATIONS:
            raise UserError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
        if name == "no_moe":
            model = replace(model, experts=1)
        elif name == "no_fusion":
            model = replace(model, fusion_beta=0.0)
        else:
            dropped = name.removeprefix("no_")
            model = replace(model, modalities=tuple(m for m in model.modalities if m != dropped))
    return model


def _section(default: Any, raw: dict[str, Any] | None, name: str) -> Any:
    raw = dict(raw or {})
    names = {f.name for f in fields(default)}
    if unknown := set(raw) - names:
        raise UserError(f"--hparams {name}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    for key in ("modalities", "ks"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return replace(default, **raw)


def _check(hp: Hparams) -> None:
    problems = []
    m, o = hp.model, hp.optim
    present = {f.name for f in fields(m)}
    for key in sorted({"hidden_size", "experts", "layers", "attention_heads", "inner_size"} & present):
        if not isinstance(getattr(m, key), int) or getattr(m, key) < 1:
            problems.append(f"model.{key} must be a positive integer")
    if {"hidden_size", "attention_heads"} <= present and not problems:
        if m.hidden_size % m.attention_heads:
            problems.append("model.hidden_size must be a multiple of model.attention_heads")
    for key in sorted(k for k in present if k.endswith("dropout")):
        if not 0 <= getattr(m, key) < 1:
            problems.append(f"model.{key} must be in [0, 1)")
    if "temperature" in present and m.temperature <= 0:
        problems.append("model.temperature must be > 0")
    if "modalities" in present and (bad := set(m.modalities) - set(MODALITIES)):
        problems.append(f"model.modalities: unknown {sorted(bad)}; known: {list(MODALITIES)}")
    problems += [f"model.{p}" for p in getattr(m, "problems", list)()]  # a model's own checks
    if not isinstance(o.epochs, int) or o.epochs < 1:
        problems.append("optim.epochs must be a positive integer")
    if not isinstance(o.batch_size, int) or o.batch_size < 2:
        problems.append("optim.batch_size must be an integer >= 2")
    if o.lr <= 0 or not 0 < o.lr_decay <= 1:
        problems.append("optim.lr must be > 0 and optim.lr_decay in (0, 1]")
    if o.patience is not None and (not isinstance(o.patience, int) or o.patience < 1):
        problems.append("optim.patience must be null or a positive integer")
    if o.align_weight < 0:
        problems.append("optim.align_weight must be >= 0")
    metrics = {f"{name}@{k}" for name in ("recall", "ndcg") for k in hp.eval.ks}
    if o.select is not None and o.select not in metrics:
        problems.append(f"optim.select must be null or one of {', '.join(sorted(metrics))}")
    if hp.train.rows not in ("prefixes", "all_positions"):
        problems.append("train.rows must be 'prefixes' or 'all_positions'")
    if not isinstance(hp.train.threads, int) or hp.train.threads < 1:
        problems.append("train.threads must be a positive integer")
    if not isinstance(hp.train.length_groups, bool):
        problems.append("train.length_groups must be true or false")
    if not isinstance(hp.train.gpus, int) or isinstance(hp.train.gpus, bool) or hp.train.gpus < 1:
        problems.append("train.gpus must be a positive integer")
    if hp.train.dropout_rng not in DRAWS:
        problems.append(f"train.dropout_rng must be one of {', '.join(DRAWS)}")
    if hp.train.eval_batch_size < 1:
        problems.append("train.eval_batch_size must be >= 1")
    if hp.eval.ties not in TIE_RULES:
        problems.append(f"eval.ties must be one of {', '.join(TIE_RULES)}")
    if not hp.eval.ks or any(not isinstance(k, int) or k < 1 for k in hp.eval.ks):
        problems.append("eval.ks must be a non-empty list of positive integers")
    if hp.max_history < 1:
        problems.append("max_history must be >= 1")
    if problems:
        raise UserError("--hparams: " + "; ".join(problems))
