"""Table III: layout, seed averaging, the change against G, and refusal of inputs that are not runs."""

import csv
import json
import statistics
from pathlib import Path

import pytest

from ant.analysis.negative_transfer import read_run, summarise
from ant.errors import UserError
from tests.train_helpers import run_cli

METRICS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50")


def write_run(root, task, method, strategy, seed, base, label=None, rule="history_excluded"):
    path = root / task / method / strategy / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True)
    test = {m: base + i / 100 for i, m in enumerate(METRICS)}
    run = {"task": task, "method": method, "strategy": strategy, "variant": strategy, "seed": seed, "test": test}
    path.write_text(json.dumps(run | {"history_rule": rule} | ({"label": label} if label else {})))
    return str(path)


def render(tmp_path, paths):
    assert (
        run_cli("table", "negative-transfer", *paths, "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md"))
        == 0
    )
    return list(csv.DictReader((tmp_path / "t.csv").open())), (tmp_path / "t.md").read_text()


def test_rows_follow_the_paper_and_average_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    paths = []
    # given in a scrambled order; ANT with two seeds, and a method the registry does not know (after the
    # registered ones, labelled as its metrics.json says) with one
    for task in ("Scientific", "Office"):
        paths.append(write_run(runs, task, "mystery", "tuned", 0, 0.10, label="F"))
        paths.append(write_run(runs, task, "mystery", "plain", 0, 0.12, label="G"))
        for strategy, base in (("relearn_id", 0.30), ("relearn", 0.25), ("finetune", 0.18), ("scratch", 0.20)):
            paths += [write_run(runs, task, "ant", strategy, seed, base + seed / 50) for seed in (1, 0)]
    rows, md = render(tmp_path, paths)
    order = [(r["task"], r["method"], r["label"]) for r in rows]
    assert order == [
        (t, m, label)
        for t in ("Scientific", "Office")
        for m, labels in (("ANT", ("G", "F", "R", "ANT+ID")), ("mystery", ("G", "F")))
        for label in labels
    ]
    assert {r["history_rule"] for r in rows} == {"history_excluded"} and "history items excluded" in md
    relearn = next(r for r in rows if r["task"] == "Office" and r["label"] == "R")
    assert relearn["seeds"] == "2"
    assert float(relearn["recall@10"]) == pytest.approx(statistics.mean([0.25, 0.27]), abs=1e-6)
    assert float(relearn["recall@10_std"]) == pytest.approx(statistics.stdev([0.25, 0.27]), abs=1e-6)
    assert float(relearn["recall@10_vs_G_pct"]) == pytest.approx(100 * (0.26 - 0.21) / 0.21, abs=1e-6)
    fine = next(r for r in rows if r["method"] == "mystery" and r["label"] == "F")
    assert float(fine["recall@10_vs_G_pct"]) < 0 and fine["recall@10_std"] == ""  # negative transfer, one seed
    # the paper's layout: a row per task and metric, a column per method and variant in the registry's order
    assert md.splitlines()[0] == "| Task | Metric | ANT-G | ANT-F | ANT-R | ANT+ID | mystery-G | mystery-F |"
    office = next(line for line in md.splitlines() if line.startswith("| Office | R@10 |"))
    assert office == (
        "| Office | R@10 | 0.2100 ± 0.0141 | 0.1900 ± 0.0141 | 0.2600 ± 0.0141 | **0.3100 ± 0.0141** "
        "| **0.1200** | 0.1000 |"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ({"task": "T", "method": "ant", "strategy": "scratch", "seed": 0}, "missing test"),
        ({"task": "T", "method": "ant", "strategy": "scratch", "seed": 0, "test": {"recall@10": 1}}, "test.ndcg@50"),
    ],
)
def test_files_that_are_not_runs_are_refused(tmp_path, caplog, content, message):
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps(content))
    assert (
        run_cli(
            "table", "negative-transfer", str(bad), "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")
        )
        == 1
    )
    assert message in caplog.text and not (tmp_path / "t.csv").exists()


def test_runs_under_different_history_rules_are_refused(tmp_path):
    paths = [
        write_run(tmp_path, "T", "ant", "scratch", 0, 0.2),
        write_run(tmp_path, "T", "ant", "relearn", 0, 0.2, rule="history_kept"),
    ]
    with pytest.raises(UserError, match="different history rules"):
        summarise([read_run(p) for p in map(Path, paths)])


def test_a_run_given_twice_is_refused(tmp_path):
    path = write_run(tmp_path, "T", "ant", "scratch", 0, 0.2)
    copy = tmp_path / "copy.json"
    copy.write_text(open(path).read())
    with pytest.raises(UserError, match="second run"):
        summarise([read_run(tmp_path / "T/ant/scratch/seed0/metrics.json"), read_run(copy)])
