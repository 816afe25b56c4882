"""Run the real Snakemake workflow on a copy of the project's workflow/ and config/ in a temporary folder.

Each test gets its own working directory, so runs never share .snakemake/ state, resources/ or results/ with the
developer's checkout or with each other. The `ant` package itself is the installed (editable) one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_workdir(tmp_path: Path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, work / name)
    return work


def snakemake(
    work: Path, *args: str, timeout: float = 1800, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`snakemake <args>` in `work`, with the project's default profile (picked up from workflow/profiles);
    `env` overrides variables of this process's environment."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(work: Path, name: str, config: dict) -> Path:
    path = work / "config" / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def jobs_of(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule name -> number of jobs."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


@dataclass
class PlannedJob:
    """One job of a dry run, as Snakemake prints it (a job of one thread has no `threads:` line)."""

    rule: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return int(self.fields.get("threads", 1))

    @property
    def resources(self) -> dict[str, str]:
        return dict(_pairs(self.fields.get("resources", "")))

    @property
    def wildcards(self) -> dict[str, str]:
        return dict(_pairs(self.fields.get("wildcards", "")))

    @property
    def input(self) -> list[str]:
        return _items(self.fields.get("input", ""))

    @property
    def output(self) -> list[str]:
        return _items(self.fields.get("output", ""))

    @property
    def log(self) -> list[str]:
        return _items(self.fields.get("log", ""))

    @property
    def benchmark(self) -> list[str]:
        return _items(self.fields.get("benchmark", ""))

    @property
    def files(self) -> list[str]:
        """Every file the job writes: its outputs, logs and benchmark."""
        return [*self.output, *self.log, *self.benchmark]


def _items(text: str) -> list[str]:
    return text.split(", ") if text else []


def _pairs(text: str) -> list[tuple[str, str]]:
    """'a=1, b=2 GB' -> [('a', '1'), ('b', '2 GB')]"""
    return [tuple(item.split("=", 1)) for item in _items(text)]


def planned_jobs(dry_run_output: str) -> list[PlannedJob]:
    """Every job block of a dry run: `rule NAME:` or `localrule NAME:`, its indented `key: value` lines and, with
    -p, its `Shell command:` line (as field `shell`)."""
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    for line in dry_run_output.splitlines():
        if header := re.fullmatch(r"(?:local)?rule (\w+):", line):
            current = PlannedJob(header[1])
            jobs.append(current)
        elif current is not None and (entry := re.fullmatch(r"    (\w+): (.*)", line)):
            current.fields[entry[1]] = entry[2]
        elif current is not None and line.startswith("Shell command: "):  # printed with -p (or printshellcmds)
            current.fields["shell"] = line.removeprefix("Shell command: ")
        else:
            current = None
    return jobs
