"""`python -m ant pretrain` and `adapt` end to end on a synthetic world: outputs, learning, and clear errors."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ant.model.ant import load_model
from ant.train.evaluate import metrics_from_ranks
from tests.train_helpers import SMALL_MODEL, hparams, make_world, run_cli

SIZES = {"AuxA": (300, 128), "AuxB": (240, 96), "Target": (200, 96)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    world = make_world(root, SIZES, clusters=16)
    pre = root / "pretrain"
    assert (
        run_cli(
            "pretrain",
            *world.flags("AuxA", "AuxB"),
            "--hparams",
            hparams(epochs=3, batch_size=128, model=SMALL_MODEL),
            "--out-dir",
            str(pre),
            "--no-progress",
        )
        == 0
    )
    for strategy in ("scratch", "relearn"):
        assert (
            run_cli(
                "adapt",
                "--strategy",
                strategy,
                *world.flags("Target"),
                "--pretrained",
                str(pre / "model.safetensors"),
                "--hparams",
                hparams(epochs=5, batch_size=64, model=SMALL_MODEL),
                "--out-dir",
                str(root / strategy),
                "--no-progress",
            )
            == 0
        )
    return world, root


def test_pretraining_writes_its_outputs(runs):
    world, root = runs
    metrics = json.loads((root / "pretrain/metrics.json").read_text())
    assert metrics["tasks"] == ["AuxA", "AuxB"] and 1 <= metrics["best_epoch"] <= 3
    valid, per_task = metrics["valid"], metrics["valid_per_task"]
    users = {"AuxA": 300, "AuxB": 240}
    pooled = sum(per_task[t]["recall@10"] * n for t, n in users.items()) / sum(users.values())
    assert valid["recall@10"] == pytest.approx(pooled)  # micro-average over all auxiliary validation users
    assert metrics["history_rule"] == "history_excluded" and valid == metrics["valid_history_excluded"]
    assert metrics["valid_history_kept"].keys() == valid.keys()
    assert {"AuxA", "AuxB"} == set(metrics["test_per_task"]) and "ndcg@50" in metrics["test_per_task"]["AuxA"]
    model, meta = load_model(root / "pretrain/model.safetensors")
    assert json.loads(meta["tasks"]) == ["AuxA", "AuxB"] and model.config.hidden_size == 32
    history = (root / "pretrain/history.csv").read_text().splitlines()
    assert len(history) == 4 and "valid_AuxA/recall@10" in history[0] and "align" in history[0]
    assert "valid_history_kept/recall@10" in history[0] and "valid_history_excluded/ndcg@50" in history[0]
    assert not (root / "pretrain/resume.pt").exists()


def test_adaptation_outputs_agree_with_each_other(runs):
    _, root = runs
    metrics = json.loads((root / "relearn/metrics.json").read_text())
    ranks = pq.read_table(root / "relearn/ranks.parquet")
    assert ranks.schema.names == ["user_idx", "rank_history_kept", "rank_history_excluded"]
    assert sorted(ranks.column("user_idx").to_pylist()) == list(range(200))
    kept, excluded = (ranks.column(f"rank_{rule}").to_numpy() for rule in ("history_kept", "history_excluded"))
    assert kept.min() >= 1 and kept.max() <= 96
    repeated = np.isinf(excluded)  # targets that repeat their history: a miss under the excluded rule
    assert repeated.sum() == metrics["repeated_targets"] and (excluded[~repeated] <= kept[~repeated]).all()
    assert metrics["test_history_kept"] == pytest.approx(metrics_from_ranks(kept, (10, 50)))
    assert metrics["test_history_excluded"] == pytest.approx(metrics_from_ranks(excluded, (10, 50)))
    assert metrics["test"] == metrics["test_history_excluded"]  # the default rule
    assert set(metrics["tied_targets"]) == {"history_kept", "history_excluded"}
    assert (metrics["task"], metrics["method"], metrics["users"], metrics["items"]) == ("Target", "ant", 200, 96)


def test_ant_learns_far_above_most_popular_and_random(runs):
    _, root = runs
    for strategy in ("scratch", "relearn"):
        metrics = json.loads((root / strategy / "metrics.json").read_text())
        ref = metrics["reference_test"]
        # each rule against the references under the same rule (random: all items are candidates, history kept);
        # the synthetic world repeats items a lot, so under the excluded rule about half the targets are misses
        for rule in ("history_kept", "history_excluded"):
            recall, popular = metrics[f"test_{rule}"]["recall@10"], ref[f"most_popular_{rule}"]
            assert recall > 2 * popular["recall@10"], (strategy, rule, recall, ref)
            assert metrics[f"test_{rule}"]["ndcg@10"] > 2 * popular["ndcg@10"], (strategy, rule)
        assert metrics["test_history_kept"]["recall@10"] > 5 * ref["random"]["recall@10"], (strategy, ref)


def test_the_runs_make_a_negative_transfer_table(runs, tmp_path):
    _, root = runs
    paths = [str(root / s / "metrics.json") for s in ("relearn", "scratch")]
    assert (
        run_cli("table", "negative-transfer", *paths, "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md"))
        == 0
    )
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[1].startswith("Target,ANT,scratch,G,1,") and lines[2].startswith("Target,ANT,relearn,R,1,")
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("| Task | Metric | ANT-G | ANT-R |") and "| Target | R@10 |" in md


@pytest.mark.parametrize(
    "argv, message",
    [
        (["adapt", "--strategy", "relearn"], "needs --pretrained"),
        (["adapt", "--strategy", "scratch", "--features", "Target.text=x"], "has no --sequences"),
        (["adapt", "--strategy", "scratch", "--sequences", "Target"], "expected NAME=PATH"),
        (["adapt", "--strategy", "scratch", "--hparams", '{"optim": {"epoch": 3}}'], "unknown key"),
        (["pretrain", "--sequences", "AuxA=/nonexistent"], "task 'AuxA': no --items"),
        (["pretrain", "--sequences", "AuxA=/x", "--items", "AuxA=/y"], "no --features for text, image, price"),
    ],
)
def test_bad_invocations_fail_with_one_clear_line(runs, tmp_path, caplog, argv, message):
    world, _ = runs
    flags = world.flags("Target") if argv[-1] in ("relearn",) else []
    assert run_cli(*argv, *flags, "--out-dir", str(tmp_path / "out")) == 1
    assert message in caplog.text
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_a_missing_data_file_names_the_rule_to_run(tmp_path, caplog):
    flags = ["--sequences", f"X={tmp_path}/sequences.parquet", "--items", f"X={tmp_path}/items.parquet"]
    flags += [f"--features=X.{m}={tmp_path}/m.json" for m in ("text", "image", "price")]
    assert run_cli("adapt", "--strategy", "scratch", *flags, "--out-dir", str(tmp_path / "o")) == 1
    assert "sequences.parquet not found (run the data rules" in caplog.text


def test_every_training_row_counts_once(runs):
    # #training targets = #interactions - 3 * #users (spec section 1)
    world, root = runs
    metrics = json.loads((root / "pretrain/metrics.json").read_text())
    seqs = [
        pq.read_table(world.tasks[t][0] / "sequences.parquet").column("item_idx").to_pylist() for t in ("AuxA", "AuxB")
    ]
    expected = sum(len(s) - 3 for task in seqs for s in task)
    assert metrics["training_targets"] == expected
    assert np.isfinite(metrics["valid"]["recall@10"])
