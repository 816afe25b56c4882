"""Parameter groups ("parts") of a model, by parameter-name prefix: what the adaptation variants load, re-initialise
and freeze (ant.train.strategy). A model declares `PARTS = {prefix: part}`; a model without one is a single part."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

WHOLE = "model"  # the one part of a model that declares none


def part_function(parts: Mapping[str, str] | None) -> Callable[[str], str]:
    """name -> its part under `parts` (prefix -> part); every name must belong to one."""
    if not parts:
        return lambda name: WHOLE

    def part_of(name: str) -> str:
        for prefix, part in parts.items():
            if name.startswith(prefix):
                return part
        raise KeyError(f"parameter {name!r} belongs to no part of the model")

    return part_of


def parameters_by_part(model: nn.Module, part_of: Callable[[str], str]) -> dict[str, dict[str, nn.Parameter]]:
    groups: dict[str, dict[str, nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(part_of(name), {})[name] = param
    return groups
