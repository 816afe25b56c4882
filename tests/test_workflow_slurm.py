"""The cluster profile for real: one task's data stage submitted through SLURM.

Needs a running SLURM (`.ci/slurm-up` starts a single-node cluster; CI runs it and sets ANT_TEST_SLURM=1, which
turns a missing cluster into a failure instead of a skip).
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.workflow_helpers import make_workdir, planned_jobs, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def slurm_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return probe.returncode == 0 and any(s.startswith(("idle", "mixed")) for s in probe.stdout.split())


@pytest.fixture
def cluster():
    if not slurm_is_up():
        if os.environ.get("ANT_TEST_SLURM") == "1":
            pytest.fail("ANT_TEST_SLURM=1 but no SLURM node is up (run .ci/slurm-up)")
        pytest.skip("no SLURM cluster here; start one with .ci/slurm-up")


def test_data_stage_runs_through_slurm(cluster, tmp_path):
    work = make_workdir(tmp_path)
    target = "results/data/DemoScientific/stats.json"
    run = snakemake(
        work,
        target,  # first: the options below take several values each
        "--workflow-profile",
        "workflow/profiles/slurm",
        # a one-node test cluster: small nodes, no accounting database (hence squeue), no account
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-keep-successful-logs",
        "--jobs",
        "2",
        "--max-threads",
        "1",
        "--default-resources",
        "mem_mb=1500",
        "runtime=10",
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-8000:]
    out = run.stdout + run.stderr
    assert "SLURM" in out or "slurm" in out
    stats = json.loads((work / target).read_text())
    assert stats["users"] > 0 and stats["items"] > 0
    # every job really went through sbatch: SLURM wrote a log per job
    slurm_logs = [p.relative_to(work).as_posix() for p in (work / ".snakemake" / "slurm_logs").rglob("*.log")]
    for rule in ("rule_ingest", "rule_kcore", "rule_download"):
        assert any(f"/{rule}/" in p for p in slurm_logs), (rule, slurm_logs)
    # and asked SLURM for what its rule states: memory from the input size, run time, threads (capped here)
    submitted = {m[2]: m[1] for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+?)/", out)}
    inputs = {job.rule: job.input for job in planned_jobs(out)}
    for rule, per_mb, minutes in (("ingest", 4, "04:00:00"), ("kcore", 5, "02:00:00")):
        size_mb = sum((work / path).stat().st_size / 2**20 for path in inputs[rule])
        job = subprocess.run(["scontrol", "-o", "show", "job", submitted[rule]], capture_output=True, text=True)
        assert f" MinMemoryNode={int(1000 + per_mb * size_mb)}M " in job.stdout, (rule, job.stdout)
        assert f" TimeLimit={minutes} " in job.stdout and " NumCPUs=1 " in job.stdout, (rule, job.stdout)
