"""The shipped configs are valid, resolve to the paper's settings, and bad configs give one line per problem."""

import copy

import pytest
import yaml
from snakemake.utils import validate

from ant.config_check import check_config, schema_errors
from tests.workflow_helpers import ROOT, load_config

SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def resolved(name):
    config = load_config(name)
    check_config(config, SCHEMA_PATH)
    validate(config, str(SCHEMA_PATH))  # fills the defaults, as the workflow does
    return config


def test_paper_config_resolves_to_the_papers_settings():
    c = resolved("paper.yaml")
    assert (c["data"]["k_core"], c["data"]["max_history"], c["data"]["price_range"]) == (5, 50, "lower")
    m = c["model"]
    assert (m["hidden_size"], m["experts"], m["layers"], m["attention_heads"], m["inner_size"]) == (256, 8, 2, 2, 256)
    assert (m["dropout"], m["adaptor_dropout"], m["fusion_beta"], m["temperature"]) == (0.5, 0.2, 0.1, 0.07)
    assert (c["pretrain"]["epochs"], c["pretrain"]["batch_size"], c["pretrain"]["lr_decay"]) == (300, 2048, 0.995)
    assert (c["pretrain"]["lr"], c["pretrain"]["align_weight"], c["pretrain"]["patience"]) == (0.001, 0.001, None)
    assert (c["adapt"]["epochs"], c["adapt"]["lr_decay"], c["adapt"]["batch_size"]) == (100, 0.99, 2048)
    p = c["features"]["price"]
    assert (p["dim"], p["max_usd"], p["scale"], p["base"]) == (64, 1000, 10000, 50000)
    assert c["features"]["text"]["max_length"] == 512 and c["images"]["per_item"] == 4
    assert c["eval"] == {"ks": [10, 50], "exclude_history": True, "ties": "pessimistic"}  # the authors' rule
    assert c["features"]["text"]["model"] == "bert-base-uncased"
    assert c["features"]["image"]["model"] == "microsoft/swin-base-patch4-window7-224"
    assert set(c["auxiliary"]) == {"Food", "Movies", "Home", "Clothing"}
    assert set(c["targets"]) == {"Scientific", "Pantry", "Instruments", "Arts", "Office"}


def test_demo_config_is_valid():
    c = resolved("config.yaml")
    assert c["releases"]["demo"]["mirrors"] == [c["demo"]["out"]]


def test_every_problem_is_reported_on_its_own_line():
    config = copy.deepcopy(load_config("config.yaml"))
    config["data"] = {"k_core": 0, "price_range": "median"}
    config["tasks"]["Bad"] = {"release": "amazon2018"}
    config["seeds"] = [1, 1]
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith("data.k_core: 0 is less than the minimum of 3") for e in errors)
    assert any(e.startswith("data.price_range: 'median' is not one of") for e in errors)
    assert any(e.startswith("tasks.Bad: needs one of:") and "'category' is a required property" in e for e in errors)
    assert any(e.startswith("seeds:") and "non-unique" in e for e in errors)
    with pytest.raises(ValueError, match="config is invalid") as err:
        check_config(config, SCHEMA_PATH)
    assert str(err.value).count("\n  - ") == len(errors) == 4
