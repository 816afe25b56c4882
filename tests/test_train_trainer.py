"""The shared trainer: best-epoch selection, early stopping, exact resume after a kill, determinism."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ant.errors import UserError
from ant.train.trainer import RESUME_FILE, RESUME_FORMAT, Trainer
from ant.versions import STAGES
from tests.train_helpers import assert_same_run, hparams, kill_once_resumable, make_world, run_cli


class Scripted:
    """A tiny regression model whose validation metrics follow a script (one value per epoch)."""

    def __init__(self, script, loss_scale=1.0):
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)
        self.x, self.y = torch.randn(64, 3), torch.randn(64, 1)
        self.script, self.loss_scale, self.calls, self.snapshots = list(script), loss_scale, 0, []

    def steps(self):
        return 4

    def batches(self, generator):
        order = torch.randperm(64, generator=generator)
        return [order[i : i + 16] for i in range(0, 64, 16)]

    def loss(self, idx):
        return self.loss_scale * ((self.model(self.x[idx]) - self.y[idx]) ** 2).mean()

    def validate(self):
        self.snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})
        value = self.script[self.calls]
        self.calls += 1
        return {"recall@10": value}


def trainer(objective, tmp_path, **kw):
    settings = {
        "epochs": len(objective.script),
        "lr": 0.01,
        "lr_decay": 0.9,
        "patience": None,
        "device": torch.device("cpu"),
        "seed": 0,
        "out_dir": tmp_path,
        "fingerprint": "f",
        "progress": False,
    }
    return Trainer(objective, **(settings | kw))


def test_keeps_the_best_epoch_and_stops_early(tmp_path):
    objective = Scripted([0.1, 0.3, 0.2, 0.3, 0.9])
    result = trainer(objective, tmp_path, patience=2).fit()
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (2, 4, True)  # ties keep epoch 2
    assert result.best_metrics == {"recall@10": 0.3}
    for k, v in objective.model.state_dict().items():
        assert torch.equal(v, objective.snapshots[1][k])
    assert [row["lr"] for row in result.history] == pytest.approx([0.01, 0.009, 0.0081, 0.00729])
    assert [row["best"] for row in result.history] == [True, True, False, False]


def test_frozen_parameters_are_not_optimised(tmp_path):
    objective = Scripted([0.1, 0.2])
    objective.model.bias.requires_grad_(False)
    before = objective.model.bias.clone()
    t = trainer(objective, tmp_path)
    assert len(t.optimizer.params) == 1
    t.fit()
    assert torch.equal(objective.model.bias, before)


def test_divergence_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="diverged at epoch 1"):
        trainer(Scripted([0.1], loss_scale=float("nan")), tmp_path).fit()


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_reproduces_the_uninterrupted_weights(tmp_path):
    script = [0.1, 0.2, 0.15, 0.3, 0.25]
    whole = Scripted(script)
    reference = trainer(whole, tmp_path / "whole").fit()

    broken = Scripted(script)
    broken.validate_original, calls = broken.validate, []

    def validate():
        calls.append(1)
        if len(calls) == 3:  # dies during epoch 3, after epoch 2's checkpoint
            raise Interrupted
        return broken.validate_original()

    broken.validate = validate
    with pytest.raises(Interrupted):
        trainer(broken, tmp_path / "broken").fit()
    assert (tmp_path / "broken" / RESUME_FILE).exists()

    again = Scripted(script)
    again.calls = 2  # the script continues at epoch 3
    t = trainer(again, tmp_path / "broken")
    result = t.fit()
    assert result.resumed_from == 2
    untimed = [
        [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in h.history] for h in (result, reference)
    ]
    assert untimed[0] == untimed[1]  # same losses, learning rates, metrics and choices, epoch by epoch
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    t.finish()
    assert not (tmp_path / "broken" / RESUME_FILE).exists()


def test_a_resume_file_of_other_settings_is_ignored(tmp_path):
    first = trainer(Scripted([0.1, 0.2]), tmp_path)
    first._save_resume()
    result = trainer(Scripted([0.1, 0.2]), tmp_path, fingerprint="other").fit()
    assert result.resumed_from == 0 and result.epochs_run == 2
    (tmp_path / RESUME_FILE).write_bytes(b"damaged")
    assert trainer(Scripted([0.1, 0.2]), tmp_path).fit().resumed_from == 0


def test_a_resume_file_of_an_older_trainer_is_ignored(tmp_path):
    """A run killed before an upgrade left torch.optim's state (no format key): it starts over, no crash."""
    trainer(Scripted([0.1, 0.2]), tmp_path).fit()  # leaves resume.pt after epoch 2 (finish() not called)
    assert trainer(Scripted([0.1, 0.2, 0.3]), tmp_path, epochs=3).fit().resumed_from == 2
    state = torch.load(tmp_path / RESUME_FILE, weights_only=True)
    assert state["format"] == RESUME_FORMAT
    del state["format"]
    torch.save(state | {"scheduler": {"last_epoch": 2}}, tmp_path / RESUME_FILE)
    result = trainer(Scripted([0.1, 0.2, 0.3]), tmp_path, epochs=3).fit()
    assert result.resumed_from == 0 and result.epochs_run == 3


# ---------------------------------------------------------------- the real commands --------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def adapt_args(world, out, seed=0, epochs=3):
    return [
        "adapt",
        "--strategy",
        "scratch",
        *world.flags("Target"),
        "--seed",
        str(seed),
        "--hparams",
        hparams(epochs=epochs, batch_size=16),
        "--out-dir",
        str(out),
        "--no-progress",
    ]


def test_the_same_seed_gives_the_same_run_twice(world, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert run_cli(*adapt_args(world, tmp_path / name, seed)) == 0
    runs = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in "abc"}
    assert runs["a"]["test"] == runs["b"]["test"] and runs["a"]["valid"] == runs["b"]["valid"]
    weights = {n: load_file(str(tmp_path / n / "model.safetensors")) for n in "abc"}
    assert all(torch.equal(v, weights["b"][k]) for k, v in weights["a"].items())
    assert not all(torch.equal(v, weights["c"][k]) for k, v in weights["a"].items())
    history = list(csv.DictReader((tmp_path / "a" / "history.csv").open()))
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert {"lr", "loss", "valid_recall@10", "valid_ndcg@50", "best"} <= set(history[0])


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_weights(world, tmp_path):
    epochs = 6
    assert run_cli(*adapt_args(world, tmp_path / "whole", epochs=epochs)) == 0
    killed = tmp_path / "killed"
    kill_once_resumable(adapt_args(world, killed, epochs=epochs), killed)
    assert run_cli(*adapt_args(world, killed, epochs=epochs)) == 0
    assert 1 <= json.loads((killed / "metrics.json").read_text())["resumed_from_epoch"] < epochs
    assert_same_run(tmp_path / "whole", killed)


def test_a_resume_file_from_before_a_code_change_is_not_resumed(world, tmp_path, monkeypatch):
    """The fingerprint covers the stage's version (ant/versions.py): bumping it, as a change to what the stage
    computes must, makes a left-over resume.pt stale."""
    monkeypatch.setattr(Trainer, "finish", lambda self: None)  # keep resume.pt after the run, as a kill would
    args = adapt_args(world, tmp_path / "run", epochs=2)
    assert run_cli(*args) == 0 and (tmp_path / "run" / RESUME_FILE).exists()
    assert run_cli(*args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["resumed_from_epoch"] == 2
    monkeypatch.setitem(STAGES, "adapt", STAGES["adapt"] + 1)
    assert run_cli(*args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["resumed_from_epoch"] == 0
