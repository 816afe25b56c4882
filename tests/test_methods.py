"""The method registry is the one place that names methods and variants: everything else agrees with it."""

from pathlib import Path

import pytest
import yaml

from ant.cli import build_parser
from ant.methods import INPUTS, METHODS, Method, Variant, method
from ant.model.ant import PARTS
from ant.train.adapt import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def test_the_schema_offers_exactly_the_registry_strategies_of_ant():
    strategies = SCHEMA["properties"]["adapt"]["properties"]["strategies"]
    assert strategies["items"]["enum"] == list(method("ant").variant_names)
    assert strategies["default"] == list(method("ant").variant_names)


def test_the_adapt_command_offers_the_registry_strategies():
    parser = build_parser(["adapt"])
    adapt = parser._subparsers._group_actions[0].choices["adapt"]
    choices = next(a.choices for a in adapt._actions if a.dest == "strategy")
    assert list(choices) == list(method("ant").variant_names) == list(STRATEGIES)


def test_the_workflow_takes_its_strategy_wildcard_and_labels_from_the_registry():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    train = (ROOT / "workflow/rules/train.smk").read_text()
    assert 'variant=_alternatives(METHODS["ant"].variant_names + tuple(ABLATION_VARIANTS))' in train
    assert 'ABLATION_VARIANTS = [f"{ABLATED_VARIANT}+{name}" for name in ABLATIONS]' in common
    for rules in (common, train):
        assert "scratch" not in rules and "relearn" not in rules  # no second list of the strategies


def test_every_part_a_variant_names_is_a_part_of_its_model():
    parts = set(PARTS.values())
    for variant in method("ant").variants:
        assert variant.reinit | variant.frozen <= parts, variant


def test_labels_and_names_are_unique_and_the_paper_labels_are_kept():
    for m in METHODS.values():
        assert len(set(m.variant_names)) == len(m.variants)
        assert len({v.label for v in m.variants}) == len(m.variants)
    assert [v.label for v in method("ant").variants] == ["G", "F", "R", "ANT+ID"]
    assert [v.load for v in method("ant").variants] == [False, True, True, True]
    assert method("ant").modalities == ("text", "image", "price") and set(method("ant").inputs) <= set(INPUTS)


def test_a_bad_entry_is_refused_where_it_is_written():
    with pytest.raises(ValueError, match="unknown inputs"):
        Method("x", "X", "text", frozenset({"sound"}), "ant", None)
    with pytest.raises(ValueError, match="does not pre-train"):
        Method("x", "X", "text", frozenset({"text"}), "recbole", None, (Variant("f", "F", load=True),))
    with pytest.raises(KeyError, match="unknown method"):
        method("pinsage")
    with pytest.raises(KeyError, match="no variant"):
        method("ant").variant("frozen")
