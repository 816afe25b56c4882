"""The one registry of methods: every method the workflow runs, its variants, inputs, pre-training and preset.

A method is one entry here plus its model code. The entry says
  - its name (run folders results/runs/<task>/<name>/<variant>/seed<k>/, the CLI) and its title in the tables;
  - its variants: for ANT and UniSRec the adaptation strategies, each with its table label and its
    policy over the model's parameter groups ("parts"): start from the pre-trained checkpoint or not, which
    parts start fresh instead, which are frozen, whether an item-ID embedding is added;
  - the inputs it needs (item ids, user ids, text, image, price, timestamps, auxiliary tasks);
  - whether it pre-trains, and on what (the auxiliary tasks, or the target task itself);
  - its training preset (spec baselines.md section 2.4);
  - for a baseline, its model module (a `Settings` dataclass and a `Model`, ant/baselines/base.py) and the config
    switches that name its variant when set away from their defaults (results/runs/<task>/<method>/<variant>/:
    "default", or e.g. "variant-fixed").
The workflow's wildcard constraints, the CLI's choices and the tables' labels derive from it; the config schema's
enums are tested against it (tests/test_methods.py). Plain Python without torch: Snakemake imports it while it
parses the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

INPUTS = ("item_ids", "user_ids", "text", "image", "price", "timestamps", "auxiliary")
MODALITIES = ("text", "image", "price")  # the frozen feature stores a method may read
PRESETS = ("ant", "recbole")


@dataclass(frozen=True)
class Variant:
    name: str  # run folder and `strategy`/`variant` wildcard value
    label: str  # its label in the tables
    load: bool = False  # start from the method's pre-trained checkpoint
    reinit: frozenset[str] = frozenset()  # parts that keep a fresh initialisation instead of the checkpoint's
    frozen: frozenset[str] = frozenset()  # parts that are not trained
    item_ids: bool = False  # add an item-ID embedding (trained from scratch)


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    kind: Literal["interaction", "text", "multi-modal"]  # the groups of the paper's Table II
    inputs: frozenset[str]
    preset: Literal["ant", "recbole"]
    pretrain: Literal["auxiliary", "target"] | None  # pre-training stage and its data, or none
    variants: tuple[Variant, ...] = field(default=())
    module: str | None = None  # a baseline's model module (trained by `train-baseline`); None: ANT (`adapt`)
    switches: tuple[tuple[str, object], ...] = ()  # (config key, default) pairs that name the variant
    # the history rule its source code evaluated under (spec baselines.md 2.5): Table II "as published" uses it
    published_rule: Literal["history_kept", "history_excluded"] = "history_kept"

    def __post_init__(self) -> None:
        if unknown := self.inputs - set(INPUTS):
            raise ValueError(f"method {self.name}: unknown inputs {sorted(unknown)}")
        if self.preset not in PRESETS:
            raise ValueError(f"method {self.name}: unknown preset {self.preset!r}")
        if any(v.load for v in self.variants) and self.pretrain is None:
            raise ValueError(f"method {self.name}: a variant loads a checkpoint but the method does not pre-train")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.inputs)

    @property
    def is_baseline(self) -> bool:
        return self.module is not None

    def variant_of(self, settings: dict[str, object]) -> str:
        """The run folder of a baseline's settings: "default", or its non-default switches, e.g. "variant-fixed"."""
        changed = [f"{key}-{str(settings[key]).lower()}" for key, default in self.switches if settings[key] != default]
        return "+".join(changed) or "default"

    def folder(self, variant: str, settings: dict[str, object]) -> str:
        """A run's folder under results/runs/<task>/<method>/: the variant ("default" for a one-variant baseline)
        named by its non-default switches, e.g. "variant-fixed", or "finetune" (UniSRec's F)."""
        switched = self.variant_of(settings)
        if variant == "default":
            return switched
        return variant if switched == "default" else f"{variant}+{switched}"

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"method {self.name} has no variant {name!r}; known: {', '.join(self.variant_names)}")

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)


_ANT_RELEARNT = frozenset({"item_encoder", "position"})  # ant.model.ant.PARTS
_ANT_FROZEN = frozenset({"transformer"})
# UniSRec (ant.baselines.unisrec.PARTS, spec baselines.md section 8): F freezes the positions and the Transformer
# (UniSRec's `fix_enc`); R, by analogy with ANT's, re-learns the MoE adaptor and the positions
_UNISREC_FROZEN = frozenset({"position", "transformer"})


def _baseline(
    name: str,
    title: str,
    kind: Literal["interaction", "text", "multi-modal"],
    inputs: set[str],
    *,
    preset: Literal["ant", "recbole"] = "recbole",
    pretrain: Literal["auxiliary", "target"] | None = None,
    switches: tuple[tuple[str, object], ...] = (),
    published_rule: Literal["history_kept", "history_excluded"] = "history_kept",
) -> Method:
    """A baseline: its module is ant/baselines/<name>.py; one variant, whose folder the switches name."""
    variants = (Variant("default", title, load=pretrain is not None),)
    module = f"ant.baselines.{name}"
    return Method(name, title, kind, frozenset(inputs), preset, pretrain, variants, module, switches, published_rule)


# in the paper's order (Table II columns), which is also the order of the rows of every table
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        _baseline("npe", "NPE", "interaction", {"item_ids", "user_ids"}, switches=(("sum_padding", True),)),
        _baseline("sasrec", "SASRec", "interaction", {"item_ids"}),
        _baseline("bert4rec", "BERT4Rec", "interaction", {"item_ids"}, switches=(("variant", "recbole111"),)),
        _baseline("fdsa", "FDSA", "text", {"item_ids", "text"}, switches=(("text_table", "upstream"),)),
        _baseline(
            "s3rec",
            "S3-Rec",
            "text",
            {"item_ids", "text"},
            pretrain="target",
            switches=(("label_alignment", "upstream"), ("text_table", "upstream")),
        ),
        Method(
            name="unisrec",
            title="UniSRec",
            kind="text",
            inputs=frozenset({"item_ids", "text", "auxiliary"}),
            preset="recbole",
            pretrain="auxiliary",
            variants=(
                Variant("scratch", "G"),
                Variant("finetune", "F", load=True, frozen=_UNISREC_FROZEN),
                Variant("relearn", "R", load=True, reinit=frozenset({"adaptor", "position"}), frozen=_ANT_FROZEN),
                Variant("finetune_id", "UniSRec+ID", load=True, frozen=_UNISREC_FROZEN, item_ids=True),
            ),
            module="ant.baselines.unisrec",
        ),
        _baseline(
            "nova",
            "NOVA",
            "multi-modal",
            {"item_ids", "text", "image", "price"},
            preset="ant",
            switches=(("mask_layout", "upstream"),),
            published_rule="history_excluded",
        ),
        _baseline(
            "carca",
            "CARCA",
            "multi-modal",
            {"item_ids", "text", "image", "price", "timestamps"},
            preset="ant",
            switches=(("context", "none"),),
            published_rule="history_excluded",
        ),
        Method(
            name="ant",
            title="ANT",
            kind="multi-modal",
            inputs=frozenset({"text", "image", "price", "auxiliary"}),
            preset="ant",
            pretrain="auxiliary",
            variants=(
                Variant("scratch", "G"),
                Variant("finetune", "F", load=True, frozen=_ANT_FROZEN),
                Variant("relearn", "R", load=True, reinit=_ANT_RELEARNT, frozen=_ANT_FROZEN),
                Variant("relearn_id", "ANT+ID", load=True, reinit=_ANT_RELEARNT, frozen=_ANT_FROZEN, item_ids=True),
            ),
            published_rule="history_excluded",
        ),
    )
}


# Table II's columns in the paper's order, (method, variant, title): a baseline's one variant; of UniSRec its F
# (the paper's UniSRec column equals UniSRec-F of Table III) and +ID, of ANT its R and +ID
_OVERALL_VARIANTS = {
    "unisrec": (("finetune", "UniSRec"), ("finetune_id", "UniSRec+ID")),
    "ant": (("relearn", "ANT"), ("relearn_id", "ANT+ID")),
}
OVERALL_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (m.name, variant, title)
    for m in METHODS.values()
    for variant, title in _OVERALL_VARIANTS.get(m.name, (("default", m.title),))
)


# Table IV: every ablation is a re-learning of the one pre-trained ANT (spec baselines.md section 14); its run
# folder is this variant's name plus the ablations, e.g. "relearn+no_text"
ABLATED_VARIANT = "relearn"


def method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
