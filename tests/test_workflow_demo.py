"""The full demo, for real: `snakemake --cores 2 all` from a fresh copy, offline, then what a researcher relies on.

One run (module fixture, a few minutes on 2 cores) feeds every test here: final targets present and consistent,
a second run has nothing to do, --forcerun reruns one stage and what depends on it, a bumped stage version
reruns its dependents, and ANT's results are far above a most-popular ranking.
"""

import json

import numpy as np
import polars as pl
import pytest

from ant.data.split import read_sequences, split
from ant.features.store import load_features
from ant.methods import METHODS
from ant.train.evaluate import HISTORY_RULES
from tests.workflow_helpers import jobs_of, load_config, make_workdir, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CONFIG = load_config("config.yaml")
TASKS = CONFIG["auxiliary"] + CONFIG["targets"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    run = snakemake(work, "--cores", "2", "all")
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "logs").rglob("*.log")))
        pytest.fail(f"demo run failed:\n{run.stderr[-6000:]}\n{logs[-12000:]}")
    return work


def test_table_one_matches_the_stats(demo):
    table = pl.read_csv(demo / "results/tables/datasets.csv")
    assert table["task"].to_list() == TASKS
    for row in table.iter_rows(named=True):
        stats = json.loads((demo / f"results/data/{row['task']}/stats.json").read_text())
        assert (row["users"], row["items"], row["interactions"]) == (
            stats["users"],
            stats["items"],
            stats["interactions"],
        )
        assert row["users"] >= 100 and row["items"] >= 50
    assert "| task" in (demo / "results/tables/datasets.md").read_text()


def test_every_task_has_data_and_features_that_agree(demo):
    for task in TASKS:
        data = demo / "results/data" / task
        items = pl.read_parquet(data / "items.parquet")
        assert items["item_idx"].to_list() == list(range(items.height))
        seqs = read_sequences(data / "sequences.parquet")
        assert seqs.lengths.min() >= CONFIG.get("data", {}).get("k_core", 5)
        assert len(seqs.items) == json.loads((data / "stats.json").read_text())["interactions"]
        for modality in ("text", "image", "price"):
            manifest = next((demo / "results/features" / task / modality).glob("*/manifest.json"))
            features = load_features(manifest, data / "items.parquet")
            assert features.values.shape[0] == items.height
            assert features.present.any(), (task, modality)


def test_negative_transfer_table_has_every_target_and_strategy(demo):
    """Every (target, method, strategy) of UniSRec and ANT is one row of Table III, labelled as the registry says,
    and its numbers are its run's test metrics under the configured history rule; every run recorded both rules
    and its ties."""
    table = pl.read_csv(demo / "results/tables/negative_transfer.csv")
    variants = {"unisrec": list(METHODS["unisrec"].variant_names)}
    variants["ant"] = CONFIG.get("adapt", {}).get("strategies", list(METHODS["ant"].variant_names))
    expected = [
        (t, METHODS[m].title, v, METHODS[m].variant(v).label)
        for t in CONFIG["targets"]
        for m in variants
        for v in variants[m]
    ]
    assert list(table.select("task", "method", "strategy", "label").iter_rows()) == expected
    md = (demo / "results/tables/negative_transfer.md").read_text()
    assert md.splitlines()[0].startswith("| Task | Metric | UniSRec-G | UniSRec-F | UniSRec-R | UniSRec+ID | ANT-G |")
    for row in table.iter_rows(named=True):
        method = row["method"].lower()
        run = json.loads(
            (demo / f"results/runs/{row['task']}/{method}/{row['strategy']}/seed0/metrics.json").read_text()
        )
        assert run["history_rule"] == row["history_rule"] == "history_excluded"
        assert run["test"] == run["test_history_excluded"] and run["valid"] == run["valid_history_excluded"]
        assert set(run["test_history_kept"]) == set(run["test"]) and set(run["tied_targets"]) == set(HISTORY_RULES)
        for metric in ("recall@10", "recall@50", "ndcg@10", "ndcg@50"):
            assert row[metric] == pytest.approx(run["test"][metric], abs=1e-6)
            assert 0 < run["test_history_kept"][metric] < 1
        assert f"| {row['task']} | R@10 | " in md and f"{row['recall@10']:.4f}" in md


def test_ant_is_far_above_most_popular(demo):
    for task in CONFIG["targets"]:
        seqs = read_sequences(demo / f"results/data/{task}/sequences.parquet")
        rows = split(seqs)
        counts = np.bincount(rows["train"].target, minlength=seqs.items.max() + 1)
        top10 = np.argsort(-counts, kind="stable")[:10]
        popular_recall = np.isin(rows["test"].target, top10).mean()
        metrics = json.loads((demo / f"results/runs/{task}/ant/relearn/seed0/metrics.json").read_text())
        recall = metrics["test_history_kept"]["recall@10"]  # popular_recall keeps the history too
        assert recall > 2 * popular_recall and recall > 0.1, (task, recall, popular_recall)


def test_every_baseline_beats_most_popular_on_both_targets(demo):
    """All eight baselines (UniSRec as each of its variants), under both history rules."""
    runs = CONFIG["baselines"].get("run", [m.name for m in METHODS.values() if m.is_baseline])
    assert len(runs) == 8
    for task in CONFIG["targets"]:
        for method, variant in [(m, v) for m in runs for v in METHODS[m].variant_names]:
            path = demo / f"results/runs/{task}/{method}/{variant}/seed0/metrics.json"
            metrics = json.loads(path.read_text())
            for rule in HISTORY_RULES:
                recall = metrics[f"test_{rule}"]["recall@10"]
                popular = metrics["reference_test"][f"most_popular_{rule}"]["recall@10"]
                assert recall > popular, (task, method, variant, rule, recall, popular)


def test_second_run_has_nothing_to_do(demo):
    run = snakemake(demo, "-n", "all")
    assert run.returncode == 0, run.stderr
    assert "Nothing to be done" in run.stdout + run.stderr


def test_forcerun_reruns_one_stage_and_its_dependents(demo):
    run = snakemake(demo, "-n", "all", "--forcerun", "kcore")
    assert run.returncode == 0, run.stderr
    jobs = jobs_of(run.stdout + run.stderr)
    assert jobs["kcore"] == len(TASKS)
    assert {"fetch_images", "embed_text", "embed_price", "pretrain", "adapt", "table_datasets"} <= set(jobs)
    assert not {"demo_data", "download", "ingest"} & set(jobs)


def test_a_new_stage_version_reruns_what_depends_on_it(demo):
    snakefile = demo / "workflow" / "Snakefile"
    original = snakefile.read_text()
    try:
        snakefile.write_text(
            original.replace(
                "from ant.versions import STAGES as VERSION\n",
                "from ant.versions import STAGES as VERSION\n\nVERSION = {**VERSION, 'price': VERSION['price'] + 1}\n",
            )
        )
        run = snakemake(demo, "-n", "all")
    finally:
        snakefile.write_text(original)
    assert run.returncode == 0, run.stderr
    jobs = jobs_of(run.stdout + run.stderr)
    assert jobs["embed_price"] == len(TASKS) and "embed_text" not in jobs and "kcore" not in jobs
    assert jobs["pretrain"] >= 1 and jobs["adapt"] >= 1
