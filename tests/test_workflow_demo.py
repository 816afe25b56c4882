"""The full demo, for real: `snakemake --cores 2 all` from a fresh copy, offline, then what a researcher relies on.

One run (module fixture, a few minutes on 2 cores) feeds every test here: final targets present and consistent,
a second run has nothing to do, --forcerun reruns one stage and what depends on it, a bumped stage version
reruns its dependents, and ANT's results are far above a most-popular ranking.
"""

import json
import struct
from pathlib import PurePosixPath

import numpy as np
import polars as pl
import pytest

from ant.data.split import read_sequences, split
from ant.features.store import load_features
from ant.methods import METHODS, OVERALL_COLUMNS
from ant.train.evaluate import HISTORY_RULES
from tests.report_browser import chromium_or_skip, open_report
from tests.workflow_helpers import jobs_of, load_config, make_workdir, planned_jobs, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CONFIG = load_config("config.yaml")
TASKS = CONFIG["auxiliary"] + CONFIG["targets"]
# the demo's tables and figures (keyed by its experiment) and its pre-trainings (keyed by their corpus)
TABLES = f"results/tables/{CONFIG['experiment']}"
FIGURES = f"results/figures/{CONFIG['experiment']}"
CORPUS = "+".join(CONFIG["auxiliary"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    run = snakemake(work, "--cores", "2", "all")
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "logs").rglob("*.log")))
        pytest.fail(f"demo run failed:\n{run.stderr[-6000:]}\n{logs[-12000:]}")
    return work


def test_table_one_matches_the_stats(demo):
    table = pl.read_csv(demo / f"{TABLES}/datasets.csv")
    assert table["task"].to_list() == TASKS
    for row in table.iter_rows(named=True):
        stats = json.loads((demo / f"results/data/{row['task']}/stats.json").read_text())
        assert (row["users"], row["items"], row["interactions"]) == (
            stats["users"],
            stats["items"],
            stats["interactions"],
        )
        assert row["users"] >= 100 and row["items"] >= 50
    assert "| task" in (demo / f"{TABLES}/datasets.md").read_text()


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
    table = pl.read_csv(demo / f"{TABLES}/negative_transfer.csv")
    variants = {"unisrec": list(METHODS["unisrec"].variant_names)}
    variants["ant"] = CONFIG.get("adapt", {}).get("strategies", list(METHODS["ant"].variant_names))
    expected = [
        (t, METHODS[m].title, v, METHODS[m].variant(v).label)
        for t in CONFIG["targets"]
        for m in variants
        for v in variants[m]
    ]
    assert list(table.select("task", "method", "strategy", "label").iter_rows()) == expected
    md = (demo / f"{TABLES}/negative_transfer.md").read_text()
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


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def run_metrics(demo, task, method, variant):
    return json.loads((demo / f"results/runs/{task}/{method}/{variant}/seed0/metrics.json").read_text())


def test_table_two_has_every_method_and_reads_each_form_from_its_rule(demo):
    """Every column of every target in all three forms; "as published" takes a RecBole baseline's metrics with
    history kept and ANT's with it excluded; imprv is the best ANT variant over the best baseline."""
    forms = {"overall": "history_excluded", "overall_history_kept": "history_kept", "overall_as_published": None}
    for name, rule in forms.items():
        table = pl.read_csv(demo / f"{TABLES}/{name}.csv", infer_schema_length=None)
        assert sorted(set(table["task"])) == sorted(CONFIG["targets"]) and table.height == 4 * len(CONFIG["targets"])
        for row in table.iter_rows(named=True):
            for method, variant, title in OVERALL_COLUMNS:
                published = METHODS[method].published_rule
                metrics = run_metrics(demo, row["task"], method, variant)[f"test_{rule or published}"]
                assert row[title] == pytest.approx(metrics[row["metric"]], abs=1e-6), (name, title)
            baselines = [t for m, _, t in OVERALL_COLUMNS if m != "ant"]
            best_baseline = max(row[t] for t in baselines)
            best_ant = max(row["ANT"], row["ANT+ID"])
            assert row["imprv_pct"] == pytest.approx(100 * (best_ant - best_baseline) / best_baseline, abs=1e-3)
            assert row["significant"] in (True, False) and (not row["significant"] or row["imprv_pct"] > 0)
        assert (demo / f"{TABLES}/{name}.md").read_text().count("| Demo") == table.height


def test_table_four_is_ant_r_and_its_ablations(demo):
    table = pl.read_csv(demo / f"{TABLES}/ablation.csv")
    ablations = CONFIG.get("adapt", {}).get("ablations", ["no_text", "no_image", "no_price", "no_moe", "no_fusion"])
    for task in CONFIG["targets"]:
        rows = {r["variant"]: r for r in table.filter(pl.col("task") == task).iter_rows(named=True)}
        assert len(rows) == len(ablations) + 1
        assert rows["ANT"]["recall@10"] == pytest.approx(
            run_metrics(demo, task, "ant", "relearn")["test"]["recall@10"], abs=1e-6
        )
        for name in ablations:
            (row,) = [r for r in rows.values() if r["ablations"] == name]
            metrics = run_metrics(demo, task, "ant", f"relearn+{name}")
            assert metrics["ablations"] == [name] and row["recall@10"] == pytest.approx(
                metrics["test"]["recall@10"], abs=1e-6
            )


def test_figure_two_has_every_pair_and_readable_heat_maps(demo):
    table = pl.read_csv(demo / f"{TABLES}/transferability.csv")
    pairs = len(CONFIG["targets"]) * len(CONFIG["auxiliary"])
    for modality in ("text", "image", "price"):
        rows = table.filter(pl.col("modality") == modality)
        assert rows.height == pairs and rows["test_accuracy"].is_between(0, 1).all()
        assert png_size(demo / f"{FIGURES}/transferability_{modality}.png") == (840, 600)
    # the demo's item texts name their category: text separates the tasks far better than chance
    assert table.filter(pl.col("modality") == "text")["test_accuracy"].mean() > 0.8


def test_training_curves_show_every_run(demo):
    for group in [*CONFIG["targets"], "pretraining"]:
        width, height = png_size(demo / f"{FIGURES}/training_curves/{group}.png")
        assert width == 1600 and height > 400


def test_the_report_shows_every_table_and_figure_in_a_browser(demo, tmp_path):
    chromium_or_skip()
    run = snakemake(demo, "--report", "results/report.html")
    assert run.returncode == 0, run.stderr
    tables = ["datasets", "overall", "overall_history_kept", "overall_as_published", "negative_transfer", "ablation"]
    tables.append("transferability")
    with open_report(demo / "results/report.html", screenshot=tmp_path / "report.png") as report:
        assert set(report.categories()) == {
            "Data",
            "Overall",
            "Negative transfer",
            "Ablation",
            "Transferability",
            "Training curves",
        }
        for name in tables:
            view = report.show(f"{TABLES}/{name}.html")
            assert view.kind == "html", name
            first_task = CONFIG["targets"][0] if name != "datasets" else CONFIG["auxiliary"][0]
            assert first_task in view.text, name
        view = report.show(f"{TABLES}/overall_as_published.html")
        assert "imprv" in view.text and "ANT+ID" in view.text and "CARCA" in view.text
        for modality in ("text", "image", "price"):
            view = report.show(f"{FIGURES}/transferability_{modality}.png")
            assert view.kind == "img" and view.image_size == (840, 600), modality
        for group in [*CONFIG["targets"], "pretraining"]:
            view = report.show(f"{FIGURES}/training_curves/{group}.png")
            assert view.kind == "img" and view.image_size[0] == 1600
        # the captions print the settings in force
        assert "seeds 0" in report.info(f"{TABLES}/overall.csv")
        assert report.errors == []


def test_the_paper_config_in_the_same_project_plans_no_file_the_demo_wrote(demo):
    """After the demo, the paper's plan in the same checkout: no job of it writes (or writes into a folder of) a file
    the demo made, and planning it changes none of them; the next test then finds the demo still complete."""

    def written():
        files = [p for top in ("results", "logs", "resources") for p in (demo / top).rglob("*") if p.is_file()]
        return {p.relative_to(demo).as_posix(): p.stat().st_mtime_ns for p in files}

    before = written()
    run = snakemake(demo, "-n", "all", "--configfile", "config/paper.yaml")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout)
    assert {"pretrain", "pretrain_baseline_corpus", "table_overall", "figure_training_curves"} <= {j.rule for j in jobs}
    planned = {f for job in jobs for f in job.files}
    folders = {parent for path in before for parent in map(str, PurePosixPath(path).parents)}
    assert not planned & set(before) and not planned & folders
    for path in (f"results/pretrain/ant/{CORPUS}/seed0/model.safetensors", f"{TABLES}/overall.csv"):
        assert path in before  # among what was compared: the demo's pre-training and its tables
    assert written() == before


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
