"""UniSRec end to end: pre-training on several tasks, then its variants G, F, R and +ID on a target, checked part
by part as ANT's strategies are (tests/test_adapt.py); the model itself is tested in test_baseline_unisrec.py."""

import argparse
import csv
import json

import numpy as np
import pytest
import torch

from ant.baselines.base import load_state
from ant.baselines.unisrec import PARTS
from ant.errors import UserError
from ant.features.store import FeatureStore, load_features
from ant.methods import METHODS
from ant.model.parts import parameters_by_part, part_function
from ant.train.baseline import build_model, load_pretrained, prepare
from tests.train_helpers import make_world, run_cli

METHOD = METHODS["unisrec"]
MODEL = {
    "hidden_size": 16,
    "inner_size": 16,
    "layers": 1,
    "experts": 2,
    "pretrain_epochs": 3,
    "pretrain_batch_size": 64,
}


def word_dropped_store(world, name, seed):
    """A text_worddrop store beside the task's text store: some items' vectors moved, as dropped words move them."""
    data, manifests = world.tasks[name]
    text = load_features(manifests["text"], data / "items.parquet")
    values = text.values.copy()
    changed = np.random.default_rng(seed).random(len(values)) < 0.5
    values[changed] += 0.3
    item_ids = [f"{name}-{i}" for i in range(len(values))]
    out = world.root / "features" / name / "text_worddrop" / "synthetic"
    store = FeatureStore(
        out,
        task=name,
        modality="text_worddrop",
        encoder={"name": "synthetic"},
        dim=values.shape[1],
        item_ids=item_ids,
        inputs_digest="synthetic",
    )
    for shard in store.shards():
        store.write_shard(shard, values[shard.start : shard.stop], text.present[shard.start : shard.stop])
    store.write_manifest()
    manifests["text_worddrop"] = out / "manifest.json"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_world(tmp_path_factory.mktemp("world"))
    for seed, name in enumerate(("AuxA", "AuxB")):
        word_dropped_store(world, name, seed)
    return world


def flags(world, *names, modalities=("text",)):
    out = []
    for name in names:
        data, manifests = world.tasks[name]
        out += ["--sequences", f"{name}={data / 'sequences.parquet'}", "--items", f"{name}={data / 'items.parquet'}"]
        out += [arg for m in modalities for arg in ("--features", f"{name}.{m}={manifests[m]}")]
    return out


def settings(epochs=3, **model):
    return json.dumps(
        {
            "model": MODEL | model,
            "optim": {"epochs": epochs, "batch_size": 32},
            "train": {"device": "cpu", "threads": 1, "rows": "all_positions"},
        }
    )


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    argv = [
        "pretrain-baseline",
        "--method",
        "unisrec",
        *flags(world, "AuxA", "AuxB", modalities=("text", "text_worddrop")),
    ]
    assert run_cli(*argv, "--hparams", settings(), "--out-dir", str(out), "--no-progress") == 0
    return out


def test_pre_training_spans_every_corpus_task_and_learns(world, checkpoint):
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    assert metrics["tasks"] == ["AuxA", "AuxB"] and metrics["items"] == {"AuxA": 64, "AuxB": 56}
    assert metrics["epochs_run"] == 3 and metrics["hparams"]["optim"]["batch_size"] == 64  # pretrain_batch_size
    assert set(metrics["last_epoch_losses"]) >= {"loss", "si", "ss"}
    history = list(csv.DictReader((checkpoint / "history.csv").open()))
    losses = [float(row["loss"]) for row in history]
    assert len(losses) == 3 and losses[-1] < losses[0] and float(history[-1]["ss"]) > 0
    state, _ = load_state(checkpoint / "model.safetensors", "unisrec")
    assert not any(k.startswith("item_ids") for k in state)  # no task-sized tensor: it fits any target


def test_pre_training_without_the_word_dropped_text_is_one_clear_error(world, tmp_path, caplog):
    argv = ["pretrain-baseline", "--method", "unisrec", *flags(world, "AuxA", "AuxB")]
    assert run_cli(*argv, "--hparams", settings(), "--out-dir", str(tmp_path), "--no-progress") == 1
    assert "no --features for text_worddrop" in caplog.text
    argv += ["--hparams", settings(word_drop=False), "--out-dir", str(tmp_path), "--no-progress"]
    assert run_cli(*argv) == 0  # word_drop false: item drop only, the plain text suffices


def start(world, variant, checkpoint, seed=7):
    """The model a variant's train-baseline run starts from, built by the command's own functions."""
    args = argparse.Namespace(
        method="unisrec",
        preset=None,
        hparams=settings(),
        seed=seed,
        threads=1,
        sequences=[f"Target={world.tasks['Target'][0] / 'sequences.parquet'}"],
        items=[f"Target={world.tasks['Target'][0] / 'items.parquet'}"],
        features=[f"Target.text={world.tasks['Target'][1]['text']}"],
    )
    method, module, hp, _, shape = prepare(args, "train-baseline")
    model = build_model(module, method.variant(variant), hp, shape)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    load_pretrained(
        model, module, method, method.variant(variant), checkpoint if method.variant(variant).load else None
    )
    return model, fresh


@pytest.mark.parametrize("name", METHOD.variant_names)
def test_step_zero_loads_reinitialises_and_freezes_the_right_parts(world, checkpoint, name):
    variant = METHOD.variant(name)
    pre, _ = load_state(checkpoint / "model.safetensors", "unisrec")
    model, fresh = start(world, name, checkpoint / "model.safetensors")
    part_of = part_function(PARTS)
    now = model.state_dict()
    for part, params in parameters_by_part(model, part_of).items():
        for key, param in params.items():
            assert param.requires_grad == (part not in variant.frozen), (name, key)
            if part == "id_embedding":
                assert variant.item_ids and torch.equal(now[key], fresh[key])
            elif variant.load and part not in variant.reinit:
                assert torch.equal(now[key], pre[key]), (name, key, "must start from the checkpoint")
            else:
                assert torch.equal(now[key], fresh[key]) and not torch.equal(now[key], pre[key]), (name, key)
    assert ("id_embedding" in parameters_by_part(model, part_of)) == variant.item_ids


@pytest.mark.parametrize("name", ["finetune", "relearn", "finetune_id"])
def test_after_fine_tuning_the_frozen_parts_are_the_checkpoints_and_the_rest_trained(world, checkpoint, name, tmp_path):
    variant = METHOD.variant(name)
    argv = ["train-baseline", "--method", "unisrec", "--variant", name, *flags(world, "Target")]
    argv += ["--pretrained", str(checkpoint / "model.safetensors"), "--hparams", settings(epochs=2)]
    assert run_cli(*argv, "--out-dir", str(tmp_path), "--no-progress") == 0
    pre, _ = load_state(checkpoint / "model.safetensors", "unisrec")
    after, _ = load_state(tmp_path / "model.safetensors", "unisrec")
    part_of = part_function(PARTS)
    for key, value in after.items():
        part = part_of(key)
        if part in variant.frozen:
            assert torch.equal(value, pre[key]), (name, key)
        elif part != "id_embedding":
            assert not torch.equal(value, pre[key]), (name, key, "trainable but unchanged")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["method"], metrics["strategy"], metrics["variant"], metrics["label"]) == (
        "unisrec",
        name,
        name,
        variant.label,
    )
    assert metrics["pretrained"]


def test_bad_variant_invocations_fail_with_one_clear_line(world, checkpoint, tmp_path, caplog):
    base = ["train-baseline", "--method", "unisrec", *flags(world, "Target"), "--hparams", settings(epochs=1)]
    out = ["--out-dir", str(tmp_path), "--no-progress"]
    assert run_cli(*base, *out) == 1 and "unisrec has no variant 'default'" in caplog.text
    assert run_cli(*base, "--variant", "finetune", *out) == 1 and "pass --pretrained" in caplog.text
    pretrained = ["--pretrained", str(checkpoint / "model.safetensors")]
    assert run_cli(*base, "--variant", "scratch", *pretrained, *out) == 1 and "trains from scratch" in caplog.text
    wider = ["--hparams", settings(epochs=1, hidden_size=32)]
    assert run_cli(*base, "--variant", "finetune", *pretrained, *wider, *out) == 1
    assert "does not fit the model (size mismatch" in caplog.text
    with pytest.raises(UserError, match="starts from a pre-trained model"):
        start(world, "relearn", None)
