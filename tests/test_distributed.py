"""Data-parallel pre-training on the CPU (ant.train.distributed): 2 gloo processes under torchrun train as one
process does on the same global batches, and a killed run resumes to the uninterrupted weights."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from ant.train.trainer import RESUME_FILE
from tests.train_helpers import TINY_MODEL, assert_same_run, hparams, make_world, run_cli
from tests.workflow_helpers import load_config, make_workdir, planned_jobs, snakemake, write_config

# a model without random draws (no dropout; one expert, so the gate noise cannot matter): one process and two
# compute the same function of the same batches, and differ only by float rounding
DETERMINISTIC = {**TINY_MODEL, "experts": 1, "dropout": 0.0, "adaptor_dropout": 0.0}
# the default world's 1,038 training rows in batches of 61: 17 full batches and one of 1 row, so the second
# process's share of the last batch is empty
BATCH = 61
TOLERANCE = 1e-5  # relative, on every epoch's losses and on the metrics


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def pretrain_args(world, out, gpus: int, model: dict, epochs: int) -> list[str]:
    settings = json.loads(hparams(epochs=epochs, batch_size=BATCH, model=model))
    settings["train"]["gpus"] = gpus
    return ["pretrain", *world.flags("AuxA", "AuxB"), "--hparams", json.dumps(settings), "--out-dir", str(out)]


def history(out) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in row.items() if k != "best"} for row in csv.DictReader((out / "history.csv").open())
    ]


@pytest.mark.slow
def test_two_processes_train_as_one_on_the_same_global_batches(world, tmp_path):
    assert run_cli(*pretrain_args(world, tmp_path / "one", 1, DETERMINISTIC, 3), "--no-progress") == 0
    assert run_cli(*pretrain_args(world, tmp_path / "two", 2, DETERMINISTIC, 3), "--no-progress") == 0
    one, two = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        for key in a:
            if not key.endswith("seconds"):
                assert b[key] == pytest.approx(a[key], rel=TOLERANCE, abs=1e-9), key
    metrics = {n: json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two")}
    assert (metrics["one"]["processes"], metrics["two"]["processes"]) == (1, 2)
    assert metrics["two"]["test"] == pytest.approx(metrics["one"]["test"], rel=TOLERANCE)
    assert metrics["two"]["best_epoch"] == metrics["one"]["best_epoch"]
    a, b = load_file(str(tmp_path / "one/model.safetensors")), load_file(str(tmp_path / "two/model.safetensors"))
    for name, weight in a.items():  # attention's key bias has a zero gradient but for rounding noise, which
        # Adam's normalisation turns into steps of its own: it drifts most (~2e-6 here), and matters to nothing
        torch.testing.assert_close(b[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert not (tmp_path / "two" / RESUME_FILE).exists()


def kill_group_once_resumable(argv: list[str], out) -> None:
    """Start `torchrun --standalone --nproc-per-node 2 -m ant <argv>` (the other way to launch) in a session of
    its own and SIGKILL the session as soon as the first resume.pt exists."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.Popen(
        [*torchrun, "-m", "ant", *argv],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (out / RESUME_FILE).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    written = (out / RESUME_FILE).stat().st_mtime_ns
    time.sleep(0.5)  # torchrun's workers run in sessions of their own: they must have died with it
    assert (out / RESUME_FILE).stat().st_mtime_ns == written and not (out / "metrics.json").exists()


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(world, tmp_path):
    """With dropout and gate noise on: each rank's RNG state is in resume.pt and comes back to that rank."""
    epochs = 5
    assert run_cli(*pretrain_args(world, tmp_path / "whole", 2, TINY_MODEL, epochs), "--no-progress") == 0
    killed = tmp_path / "killed"
    kill_group_once_resumable([*pretrain_args(world, killed, 2, TINY_MODEL, epochs), "--no-progress"], killed)
    assert run_cli(*pretrain_args(world, killed, 2, TINY_MODEL, epochs), "--no-progress") == 0
    assert 1 <= json.loads((killed / "metrics.json").read_text())["resumed_from_epoch"] < epochs
    assert_same_run(tmp_path / "whole", killed)


def test_a_bad_flag_of_a_multi_process_run_is_one_clear_line(world, tmp_path, caplog):
    argv = pretrain_args(world, tmp_path / "bad", 2, TINY_MODEL, 1)
    argv[argv.index("--items") + 1] = "Nope=items.parquet"
    assert run_cli(*argv) != 0
    assert "task 'Nope' has no --sequences" in caplog.text and "torchrun" not in caplog.text


@pytest.mark.slow
@pytest.mark.workflow
def test_the_pretrain_job_asks_for_train_gpus_gpus_on_one_node(tmp_path):
    """train.gpus 3 on a GPU config: the pre-training job asks for 3 GPUs on one node, 3 x train.threads CPUs and
    memory for 3 processes, and its command carries the setting (which starts torchrun). The default profile
    lets one GPU job run at a time (resources gpu: 1): a workstation with 4 GPUs says --resources gpu=4."""
    work = make_workdir(tmp_path)
    config = load_config("config.yaml")
    config["train"] |= {"device": "auto", "gpus": 3, "threads": 2}
    write_config(work, "gpus.yaml", config)
    target = "results/pretrain/ant/DemoFood+DemoMovies+DemoHome+DemoClothing/seed0/model.safetensors"  # its corpus
    run = snakemake(
        work, target, "-n", "-p", "--cores", "16", "--resources", "gpu=4", "--configfile", "config/gpus.yaml"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (job,) = [j for j in planned_jobs(run.stdout) if j.rule == "pretrain"]
    assert job.threads == 6
    assert {k: job.resources[k] for k in ("gpu", "nodes", "mem_mb")} == {"gpu": "3", "nodes": "1", "mem_mb": "128000"}
    assert '"gpus": 3' in job.fields["shell"]
