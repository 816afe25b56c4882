"""Applying a method's variant to a freshly built model: what comes from the checkpoint, what is frozen.

One code path for ANT's strategies and UniSRec's (and S3-Rec's "load all, train all"): a variant of the registry
(ant/methods.py) names parts of the model, and a model's `PARTS` maps parameter-name prefixes to those parts.

    load     the checkpoint's parameters of every part except `reinit` and the item-ID table ("id_embedding",
             always new: a checkpoint from other tasks has none that fits), which keep the fresh initialisation
             the model was built with (seeded by the run);
    frozen   parts that get no gradient and are not in the optimiser, so they stay bit-identical to the checkpoint.

A model without `PARTS` is one part (ant.model.parts): loading is then all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ant.errors import UserError
from ant.methods import Variant
from ant.model.parts import parameters_by_part

ID_EMBEDDING = "id_embedding"  # the part a variant's `item_ids` adds; never taken from a checkpoint


def apply_variant(
    model: nn.Module,
    variant: Variant,
    part_of: Callable[[str], str],
    checkpoint: Mapping[str, torch.Tensor] | None,
    source: Path | str | None = None,
) -> None:
    """Load the variant's parts from `checkpoint` (a state dict; None for a variant that does not load), then
    freeze its frozen parts. A checkpoint that lacks a part to load, or holds what the model has not, is refused."""
    if variant.load:
        if checkpoint is None:
            raise UserError(f"variant {variant.name} starts from a pre-trained model: pass --pretrained")
        fresh = variant.reinit | {ID_EMBEDDING}
        keep = {k: v for k, v in checkpoint.items() if part_of(k) not in fresh}
        try:
            missing, unexpected = model.load_state_dict(keep, strict=False)
        except RuntimeError as err:  # a tensor of another shape: another d, another max_history, ...
            mismatch = str(err).split("\n\t")[1:2] or [str(err)]
            raise UserError(f"{source or 'the checkpoint'}: does not fit the model ({mismatch[0].strip()})") from err
        not_loaded = sorted({part_of(k) for k in missing} - fresh)
        if not_loaded or unexpected:
            raise UserError(
                f"{source or 'the checkpoint'}: does not fit the model (missing {not_loaded}, extra {unexpected[:3]})"
            )
    for part, params in parameters_by_part(model, part_of).items():
        if part in variant.frozen:
            for param in params.values():
                param.requires_grad_(False)
