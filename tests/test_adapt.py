"""Adaptation strategies: what is loaded, re-initialised, frozen and trained — checked parameter by parameter."""

import json

import pytest
import torch

from ant.errors import UserError
from ant.model.ant import ANT, ANTConfig, load_model, parameters_by_part, save_model
from ant.train.adapt import STRATEGIES, build_model
from ant.train.hparams import ModelHparams, apply_ablations
from tests.train_helpers import DIMS, TINY_MODEL, hparams, make_world, run_cli

MODEL = ModelHparams(**TINY_MODEL)
N_ITEMS = 48  # the world's target task


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 'pre-trained' model whose every parameter is far from any initial value (gates and shifts included)."""
    torch.manual_seed(123)
    model = ANT(ANTConfig(dims=DIMS, max_history=50, **MODEL.__dict__))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    path = tmp_path_factory.mktemp("pre") / "model.safetensors"
    save_model(model, path)
    return path


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def parts_equal(a, b, model):
    """part -> True if every parameter of the part is identical in the two state dicts."""
    return {
        part: all(torch.equal(a[name], b[name]) for name in params if name in b)
        for part, params in parameters_by_part(model).items()
    }


def parts_all_differ(a, b, model):
    """part -> True if every parameter of the part differs (somewhere) between the two state dicts."""
    return {
        part: all(not torch.equal(a[name], b[name]) for name in params if name in b)
        for part, params in parameters_by_part(model).items()
    }


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_step_zero_loads_reinitialises_and_freezes_the_right_parts(name, checkpoint):
    strategy = STRATEGIES[name]
    pre = state(load_model(checkpoint)[0])
    torch.manual_seed(7)
    model = build_model(strategy, MODEL, DIMS, 50, N_ITEMS, checkpoint if strategy.load else None)
    torch.manual_seed(7)
    fresh = state(ANT(model.config))
    now = state(model)
    same_as_pre = parts_equal(now, pre, model)
    differs_from_pre = parts_all_differ(now, pre, model)
    same_as_fresh = parts_equal(now, fresh, model)

    for part in ("item_encoder", "position", "input_norm", "transformer"):
        if not strategy.load or part in strategy.reinit:
            assert differs_from_pre[part] and same_as_fresh[part], (name, part, "must be re-initialised")
        else:
            assert same_as_pre[part], (name, part, "must start from the checkpoint")
    assert ("id_embedding" in parameters_by_part(model)) == strategy.item_ids
    if strategy.item_ids:
        assert model.item_ids.weight.shape == (N_ITEMS, MODEL.hidden_size) and same_as_fresh["id_embedding"]

    for part, params in parameters_by_part(model).items():
        for param in params.values():
            assert param.requires_grad == (part not in strategy.frozen), (name, part)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_after_adaptation_frozen_parts_are_bit_identical_and_the_rest_trained(name, world, checkpoint, tmp_path):
    strategy = STRATEGIES[name]
    out = tmp_path / name
    pretrained = ["--pretrained", str(checkpoint)] if strategy.load else []
    assert (
        run_cli(
            "adapt",
            "--strategy",
            name,
            *world.flags("Target"),
            *pretrained,
            "--seed",
            "3",
            "--hparams",
            hparams(epochs=2, batch_size=32),
            "--out-dir",
            str(out),
            "--no-progress",
        )
        == 0
    )
    adapted, meta = load_model(out / "model.safetensors")
    assert meta["strategy"] == name
    after = state(adapted)
    pre = state(load_model(checkpoint)[0])
    torch.manual_seed(3)
    start = state(build_model(strategy, MODEL, DIMS, 50, N_ITEMS, checkpoint if strategy.load else None))
    same_as_pre = parts_equal(after, pre, adapted)
    trained = parts_all_differ(after, start, adapted)
    for part in parameters_by_part(adapted):
        if part in strategy.frozen:
            assert same_as_pre[part], (name, part, "frozen part changed")
        else:
            assert trained[part], (name, part, "trainable part did not train")
    metrics = json.loads((out / "metrics.json").read_text())
    frozen = sum(
        p.numel() for part, ps in parameters_by_part(adapted).items() if part in strategy.frozen for p in ps.values()
    )
    assert metrics["parameters"]["frozen"] == frozen
    assert (metrics["strategy"], metrics["label"], metrics["variant"]) == (name, strategy.label, name)
    assert not (out / "resume.pt").exists()


def test_relearning_allows_another_item_encoder_but_finetuning_does_not(checkpoint):
    no_moe = apply_ablations(MODEL, ["no_moe"])
    model = build_model(STRATEGIES["relearn"], no_moe, DIMS, 50, N_ITEMS, checkpoint)
    assert model.items.adaptors["text"].weight.shape[0] == 1
    with pytest.raises(UserError, match="experts 2 vs 1"):
        build_model(STRATEGIES["finetune"], no_moe, DIMS, 50, N_ITEMS, checkpoint)
    with pytest.raises(UserError, match="hidden_size"):
        build_model(
            STRATEGIES["relearn"], ModelHparams(**{**TINY_MODEL, "hidden_size": 32}), DIMS, 50, N_ITEMS, checkpoint
        )
    with pytest.raises(UserError, match="max_history"):
        build_model(STRATEGIES["relearn"], MODEL, DIMS, 20, N_ITEMS, checkpoint)
    with pytest.raises(UserError, match="feature dims"):
        build_model(STRATEGIES["finetune"], MODEL, {**DIMS, "text": 7}, 50, N_ITEMS, checkpoint)
    with pytest.raises(UserError, match="needs --pretrained"):
        build_model(STRATEGIES["relearn"], MODEL, DIMS, 50, N_ITEMS, None)


def test_ablations_reach_the_model_and_name_the_variant(world, checkpoint, tmp_path):
    out = tmp_path / "ablated"
    assert (
        run_cli(
            "adapt",
            "--strategy",
            "relearn",
            *world.flags("Target"),
            "--pretrained",
            str(checkpoint),
            "--ablation",
            "no_text",
            "no_fusion",
            "--hparams",
            hparams(epochs=1),
            "--out-dir",
            str(out),
            "--no-progress",
        )
        == 0
    )
    model, _ = load_model(out / "model.safetensors")
    assert model.config.modalities == ("image", "price") and model.config.fusion_beta == 0.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "relearn+no_text+no_fusion" and metrics["ablations"] == ["no_text", "no_fusion"]
