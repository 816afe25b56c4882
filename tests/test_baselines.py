"""What every baseline owes the one trainer and evaluator, checked for each registered one; SASRec in detail.

Per-model behaviour (NPE's padding switch, BERT4Rec's cloze, FDSA's streams, S3-Rec's pretext losses) is tested
in tests/test_baseline_<method>.py; the Transformer itself against independent references in
tests/test_model_reference.py.
"""

import copy
import dataclasses
import importlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from ant.baselines.base import TaskShape
from ant.data.split import PAD, Sequences, split
from ant.methods import METHODS
from ant.train.batches import TrainRows
from ant.train.trainer import RESUME_FILE
from tests.train_helpers import assert_same_run, kill_once_resumable, make_world, run_cli
from tests.workflow_helpers import ROOT

BASELINES = [m for m in METHODS.values() if m.is_baseline]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
# the keys of a baselines.<method> entry that are not the model's settings (workflow and optimisation)
OPTIM_KEYS = {"preset", "lr", "batch_size", "epochs", "patience", "tasks", "variants", "pretrain_tasks"}
N_ITEMS, N_USERS = 30, 12
DIMS = {"text": 24, "image": 20, "price": 8}


def tiny(method, **switches):
    """A small model of `method` with its default switches (or `switches`), for a task of N_ITEMS items."""
    module = importlib.import_module(method.module)
    fields = {f.name for f in dataclasses.fields(module.Settings)}
    small = {"hidden_size": 16, "inner_size": 16, "pretrain_epochs": 1} | {"layers": 1}
    settings = module.Settings(**{k: v for k, v in small.items() if k in fields}, **switches)
    rng = np.random.default_rng(0)
    features = {m: rng.normal(size=(N_ITEMS, d)).astype(np.float32) for m, d in DIMS.items()}
    shape = TaskShape(N_ITEMS, N_USERS, 50, {m: features[m] for m in method.modalities})
    torch.manual_seed(0)
    return module.Model(settings, shape).eval()


def sequences():
    rng = np.random.default_rng(1)
    return Sequences.from_lists([list(rng.integers(0, N_ITEMS, size=rng.integers(4, 12))) for _ in range(N_USERS)])


@pytest.mark.parametrize("method", BASELINES, ids=lambda m: m.name)
def test_the_schema_entry_is_the_module_settings(method):
    """config keys = Settings fields + the optimisation keys; defaults equal; the registry's switches too."""
    module = importlib.import_module(method.module)
    entry = SCHEMA["properties"]["baselines"]["properties"][method.name]["properties"]
    defaults = {f.name: f.default for f in dataclasses.fields(module.Settings)}
    assert {k: v.get("default") for k, v in entry.items() if k not in OPTIM_KEYS} == defaults
    assert entry["preset"]["default"] == method.preset
    for key, default in method.switches:
        assert defaults[key] == default, key
    assert method.name in SCHEMA["properties"]["baselines"]["properties"]["run"]["items"]["enum"]


# NOVA's upstream mask lends each head another row's padding: its scores depend on the batch (test_baseline_nova.py)
BATCH_FREE = {"nova": {"mask_layout": "fixed"}}


@pytest.mark.parametrize("method", BASELINES, ids=lambda m: m.name)
def test_scores_cover_the_real_items_only_and_follow_the_history(method):
    model = tiny(method, **BATCH_FREE.get(method.name, {}))
    rows = split(sequences(), 50)["test"]
    history = torch.from_numpy(rows.history[:, : rows.length.max()]).long()
    length = torch.from_numpy(rows.length).long()
    user = torch.from_numpy(rows.user_idx).long()
    position = torch.from_numpy(rows.position).long()
    short = length < length.max()
    with torch.no_grad():
        scores = model.scores(history, length, user, position)
        other = history.clone()
        other[:, 0] = (other[:, 0] + 1) % N_ITEMS  # another oldest item
        changed = model.scores(other, length, user, position)
        trimmed = model.scores(history[short][:, : int(length.max()) - 1], length[short], user[short], position[short])
    assert scores.shape == (len(rows), N_ITEMS)  # padding and mask rows are never candidates
    assert torch.isfinite(scores).all() and model.candidates().shape[0] == N_ITEMS
    assert not torch.allclose(scores, changed)  # the history matters
    torch.testing.assert_close(trimmed, scores[short], rtol=1e-5, atol=1e-5)  # padding does not


# the models that declare one causal pass exact (spec baselines.md section 2.6); BERT4Rec is bidirectional
EXACT = [m for m in BASELINES if tiny(m).exact_all_positions]


def test_exactly_the_causal_last_position_models_use_all_positions():
    """With their default switches; NOVA's fixed mask layout is exact too (tests/test_baseline_nova.py)."""
    assert [m.name for m in EXACT] == ["npe", "sasrec", "fdsa", "s3rec", "unisrec"]


@pytest.mark.parametrize("method", EXACT, ids=lambda m: m.name)
def test_all_positions_rows_give_the_prefix_rows_states_where_the_model_says_so(method):
    model = tiny(method)
    train = split(sequences(), 6)["train"]
    states = {}
    for layout in ("prefixes", "all_positions"):
        (batch,) = TrainRows.build(train, layout).batches(10_000, torch.device("cpu"))
        with torch.no_grad():
            hidden, target, row = batch.select(model.encode(batch.history, batch.length, batch.user))
        if batch.target.dim() == 1:
            keys = [
                (tuple(h[:n].tolist()), int(t)) for h, n, t in zip(batch.history, batch.length, target, strict=True)
            ]
        else:
            rows, cols = torch.nonzero(batch.target != PAD, as_tuple=True)
            keys = [
                (tuple(batch.history[r, : c + 1].tolist()), int(batch.target[r, c]))
                for r, c in zip(rows, cols, strict=True)
            ]
        states[layout] = dict(zip(keys, hidden, strict=True))
    for key, state in states["prefixes"].items():
        torch.testing.assert_close(states["all_positions"][key], state, rtol=1e-5, atol=1e-5)


def test_sasrec_is_causal_ties_its_embeddings_and_starts_as_recbole():
    model = tiny(METHODS["sasrec"])
    history = torch.tensor([[3, 4, 5, 6, PAD]])
    with torch.no_grad():
        hidden = model.encode(history, torch.tensor([4]), torch.tensor([0]))
        later = model.encode(torch.tensor([[3, 4, 9, 9, PAD]]), torch.tensor([4]), torch.tensor([0]))
    torch.testing.assert_close(hidden[:, :2], later[:, :2])  # positions 0, 1 do not see items 2, 3
    assert not torch.allclose(hidden[:, 2], later[:, 2])
    assert model.candidates().data_ptr() == model.items.weight[1:].data_ptr()  # tied input/output table
    assert model.items.weight[0].abs().sum() > 0  # RecBole's init draws the padding row too (never a candidate)
    stds = [p.std().item() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2]
    assert all(0.015 < s < 0.025 for s in stds)  # N(0, 0.02)


# ---------------------------------------------------------------- the command ------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), {"Target": (160, 80)}, clusters=16)


def sasrec_args(world, out, epochs=4, seed=0):
    data, _ = world.tasks["Target"]
    settings = {
        "model": {"hidden_size": 16, "inner_size": 16},
        "optim": {"epochs": epochs, "batch_size": 32},
        "train": {"device": "cpu", "threads": 1, "rows": "all_positions"},
        "eval": {"exclude_history": False},
    }
    return [
        "train-baseline",
        "--method",
        "sasrec",
        "--sequences",
        f"Target={data / 'sequences.parquet'}",
        "--items",
        f"Target={data / 'items.parquet'}",
        "--hparams",
        json.dumps(settings),
        "--seed",
        str(seed),
        "--out-dir",
        str(out),
        "--no-progress",
    ]


def test_a_baseline_run_writes_what_an_ant_run_writes(world, tmp_path):
    assert run_cli(*sasrec_args(world, tmp_path / "run", epochs=12)) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["method"], metrics["variant"], metrics["label"], metrics["preset"]) == (
        "sasrec",
        "default",
        "SASRec",
        "recbole",
    )
    assert metrics["selection"] == "ndcg@10" and metrics["rows"] == "all_positions"
    assert metrics["test"] == metrics["test_history_kept"] and "test_history_excluded" in metrics
    ranks = pq.read_table(tmp_path / "run" / "ranks.parquet")
    assert ranks.schema.names == ["user_idx", "rank_history_kept", "rank_history_excluded"] and ranks.num_rows == 160
    popular = metrics["reference_test"]["most_popular_history_kept"]["recall@10"]
    assert metrics["test"]["recall@10"] > popular, metrics["test"]
    assert (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / RESUME_FILE).exists()


@pytest.mark.slow
def test_a_killed_baseline_run_resumes_to_the_uninterrupted_weights(world, tmp_path):
    epochs = 8
    assert run_cli(*sasrec_args(world, tmp_path / "whole", epochs=epochs)) == 0
    killed = tmp_path / "killed"
    kill_once_resumable(sasrec_args(world, killed, epochs=epochs), killed)
    assert run_cli(*sasrec_args(world, killed, epochs=epochs)) == 0
    assert 1 <= json.loads((killed / "metrics.json").read_text())["resumed_from_epoch"] < epochs
    assert_same_run(tmp_path / "whole", killed)


def test_bad_baseline_invocations_fail_with_one_clear_line(world, tmp_path, caplog):
    args = sasrec_args(world, tmp_path / "o")
    assert run_cli(*args, "--features", "Target.text=x.json") == 1
    assert "modality 'text' is not read here" in caplog.text
    assert run_cli(*args, "--pretrained", "x.safetensors") == 1
    assert "sasrec has no pre-training stage" in caplog.text


@pytest.mark.parametrize("method", BASELINES, ids=lambda m: m.name)
def test_evaluation_reuses_computed_candidates_only_while_the_weights_are_unchanged(method):
    model = tiny(method, **BATCH_FREE.get(method.name, {}))
    rows = split(sequences(), 50)["test"]
    args = [torch.from_numpy(a).long() for a in (rows.history[:, : rows.length.max()], rows.length, rows.user_idx)]
    with torch.no_grad():
        first = model.scores(*args)
        torch.testing.assert_close(model.scores(*args), first, rtol=0, atol=0)
        for param in model.parameters():
            param.add_(0.5 * torch.randn_like(param))  # in place, as an optimiser step or a checkpoint load
        moved = model.scores(*args)
    assert not torch.allclose(moved, first)
    fresh = copy.deepcopy(model)  # the same weights, nothing cached
    with torch.no_grad():
        torch.testing.assert_close(moved, fresh.scores(*args), rtol=1e-6, atol=1e-6)
