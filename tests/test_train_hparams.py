"""--hparams parsing: the paper's defaults (the schema's), clear errors, and Table IV's switches."""

from dataclasses import fields

import pytest
import yaml

from ant.errors import UserError
from ant.train.hparams import ModelHparams, apply_ablations, parse_hparams, stage_optim
from tests.workflow_helpers import ROOT

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]


def schema_defaults(section):
    return {k: v.get("default") for k, v in SCHEMA[section]["properties"].items()}


def plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_defaults_are_the_schema_defaults():
    hp = parse_hparams("{}", "adapt")
    for section, obj in (("model", hp.model), ("train", hp.train), ("eval", hp.eval)):
        assert {f.name: plain(getattr(obj, f.name)) for f in fields(obj)} == schema_defaults(section)
    for stage in ("pretrain", "adapt"):
        optim = stage_optim(stage)
        # strategies and ablations say which runs the workflow makes, not how one trains
        expected = {k: v for k, v in schema_defaults(stage).items() if k not in ("strategies", "ablations")}
        assert {k: getattr(optim, k) for k in expected} == expected
    assert stage_optim("pretrain").lr_decay == 0.995 and stage_optim("adapt").epochs == 100


def test_the_workflow_settings_round_trip():
    text = (
        '{"model": {"hidden_size": 64, "modalities": ["text", "price"]},'
        ' "optim": {"epochs": 3, "patience": 2, "select": "ndcg@5"}, "train": {"rows": "all_positions"},'
        ' "eval": {"ks": [5, 20], "exclude_history": true}, "max_history": 20}'
    )
    hp = parse_hparams(text, "pretrain")
    assert hp.model.hidden_size == 64 and hp.model.modalities == ("text", "price")
    assert hp.optim.epochs == 3 and hp.optim.lr_decay == 0.995 and hp.optim.patience == 2
    assert hp.train.rows == "all_positions" and hp.eval.ks == (5, 20) and hp.max_history == 20
    assert parse_hparams(__import__("json").dumps(hp.to_dict()), "pretrain") == hp


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"optimizer": {}}', "unknown section"),
        ('{"model": {"hidden": 3}}', "unknown key"),
        ('{"model": {"hidden_size": 10, "attention_heads": 3}}', "multiple of"),
        ('{"optim": {"epochs": 0}}', "optim.epochs"),
        ('{"optim": {"lr_decay": 1.5}}', "lr_decay"),
        ('{"train": {"rows": "windows"}}', "train.rows"),
        ('{"model": {"modalities": ["sound"]}}', "model.modalities"),
        ('{"eval": {"ks": []}}', "eval.ks"),
        ('{"eval": {"ks": [5, 20]}}', "optim.select must be null or one of ndcg@20"),  # selects recall@10
    ],
)
def test_bad_settings_are_clear_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_hparams(text, "adapt")


def test_ablations_are_settings_of_the_same_model():
    base = ModelHparams()
    assert apply_ablations(base, ["no_text"]).modalities == ("image", "price")
    assert apply_ablations(base, ["no_image", "no_price"]).modalities == ("text",)
    assert apply_ablations(base, ["no_moe"]).experts == 1
    assert apply_ablations(base, ["no_fusion"]).fusion_beta == 0.0
    assert apply_ablations(base, []) == base
    with pytest.raises(UserError, match="unknown ablation"):
        apply_ablations(base, ["no_sasrec"])
