"""Dry runs of every shipped config, lint, config validation errors and custom tasks (no job is executed)."""

import hashlib
import os
import re
import sys

import pytest
import yaml

from tests.workflow_helpers import jobs_of, load_config, make_workdir, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow


# the demo's pre-training corpus: its auxiliary tasks, "+"-joined in config order
DEMO_CORPUS = "DemoFood+DemoMovies+DemoHome+DemoClothing"
PAPER_CORPUS = "Food+Movies+Home+Clothing"


@pytest.fixture
def work(tmp_path):
    return make_workdir(tmp_path)


def test_demo_dry_run_plans_the_whole_demo(work):
    run = snakemake(work, "-n", "all")
    assert run.returncode == 0, run.stderr
    jobs = jobs_of(run.stdout + run.stderr)
    assert "reason: Missing output files" in run.stdout + run.stderr  # README: how to see why a job would run
    demo = load_config("config.yaml")
    n_tasks = len(demo["auxiliary"]) + len(demo["targets"])
    assert jobs["demo_data"] == 1 and jobs["tiny_models"] == 1
    assert "show_config" not in jobs  # a command of its own, not a part of `all`
    assert jobs["download"] == 2 * n_tasks  # ratings + meta per task, copied from the local demo mirror
    for rule in ("ingest", "kcore", "fetch_images", "embed_price"):
        assert jobs[rule] == n_tasks, rule
    # features.partitions: 1 is one encoder job and one merge per task and modality; UniSRec's pre-training corpus
    # (the auxiliary tasks) has a word-dropped text store as well
    n_aux, runs = len(demo["auxiliary"]), len(demo["targets"]) * len(demo.get("seeds", [0]))
    assert jobs["embed_text"] == n_tasks + n_aux and jobs["embed_image"] == n_tasks
    assert jobs["merge_features"] == 2 * n_tasks + n_aux  # one rule merges every encoder's stores
    assert jobs["table_datasets"] == 1 and jobs["table_negative_transfer"] == 1
    assert jobs["pretrain"] == len(demo.get("seeds", [0]))
    n_ablations = len(
        demo.get("adapt", {}).get("ablations", ["no_text", "no_image", "no_price", "no_moe", "no_fusion"])
    )
    assert jobs["adapt"] == (4 + n_ablations) * runs  # ANT's four strategies and Table IV's ablations of R
    for rule in ("table_overall", "table_ablation", "figure_transferability"):
        assert jobs[rule] == 1, rule
    assert jobs["figure_training_curves"] == len(demo["targets"]) + 1  # one per target, one of the pre-trainings
    assert jobs["train_baseline"] == (7 + 4) * runs  # seven baselines and UniSRec's four variants
    assert jobs["pretrain_baseline"] == runs  # S3-Rec's, on each target
    assert jobs["pretrain_baseline_corpus"] == len(demo.get("seeds", [0]))  # UniSRec's, on the auxiliary tasks


def test_unisrec_pre_trains_on_its_corpus_and_only_its_loading_variants_wait_for_it(work):
    config = load_config("config.yaml")
    unisrec = config["baselines"]["unisrec"]
    unisrec |= {"pretrain_tasks": ["DemoFood", "DemoHome"], "word_drop": False, "variants": ["scratch", "finetune"]}
    write_config(work, "unisrec.yaml", config)
    run = snakemake(work, "-n", "all", "--configfile", "config/unisrec.yaml")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout)
    (pretraining,) = [j for j in jobs if j.rule == "pretrain_baseline_corpus"]
    assert pretraining.output[0] == "results/pretrain/unisrec/DemoFood+DemoHome/seed0/model.safetensors"
    shell = pretraining.fields["shell"]
    assert "--sequences DemoFood=" in shell and "--sequences DemoHome=" in shell and "DemoMovies" not in shell
    assert "text_worddrop" not in shell and not [j for j in jobs if j.wildcards.get("modality") == "text_worddrop"]
    runs = {
        j.wildcards["variant"]: j for j in jobs if j.rule == "train_baseline" and j.wildcards["method"] == "unisrec"
    }
    assert sorted(runs) == ["finetune", "scratch"]
    assert (
        "--pretrained results/pretrain/unisrec/DemoFood+DemoHome/seed0/model.safetensors"
        in runs["finetune"].fields["shell"]
    )
    assert "--variant finetune " in runs["finetune"].fields["shell"]
    assert "--pretrained" not in runs["scratch"].fields["shell"]


def test_analyses_read_the_runs_they_describe(work):
    """Table IV's runs are re-learnings of the one pre-trained model; Table II reads its columns' runs only;
    Figure 2 reads the first seed's pre-trained model and every task's stores; the curves every run's history."""
    config = load_config("config.yaml") | {"seeds": [0, 1]}
    write_config(work, "seeds.yaml", config)
    run = snakemake(work, "-n", "all", "--configfile", "config/seeds.yaml")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout)
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).append(job)
    (ablated,) = [
        j for j in by_rule["adapt"] if j.output[0] == "results/runs/DemoOffice/ant/relearn+no_moe/seed1/metrics.json"
    ]
    shell = ablated.fields["shell"]
    assert "--strategy relearn --ablation no_moe " in shell
    assert f"--pretrained results/pretrain/ant/{DEMO_CORPUS}/seed1/model.safetensors" in shell
    plain = [j for j in by_rule["adapt"] if j.wildcards["variant"] == "relearn"]
    assert plain and all("--ablation" not in j.fields["shell"] for j in plain)

    (overall,) = by_rule["table_overall"]
    folders = {tuple(p.split("/")[3:5]) for p in overall.input}
    assert ("ant", "relearn") in folders and ("ant", "relearn_id") in folders and ("unisrec", "finetune") in folders
    assert ("ant", "scratch") not in folders and ("unisrec", "scratch") not in folders
    assert ("carca", "default") in folders and len(overall.input) == 11 * 2 * 2  # columns x targets x seeds
    for form in ("configured", "history_kept", "as_published"):
        assert f"--rule {form} " in overall.fields["shell"]

    (ablation,) = by_rule["table_ablation"]
    assert (
        len(ablation.input) == 6 * 2 * 2
        and "results/runs/DemoScientific/ant/relearn/seed1/metrics.json" in ablation.input
    )

    (figure,) = by_rule["figure_transferability"]
    assert f"results/pretrain/ant/{DEMO_CORPUS}/seed0/model.safetensors" in figure.input
    assert "seed1" not in " ".join(figure.input)
    shell = figure.fields["shell"]
    assert "--targets DemoScientific DemoOffice --auxiliary DemoFood DemoMovies DemoHome DemoClothing" in shell
    assert "--features-kind pretrained" in shell and "--features DemoFood.image=" in shell

    # train.gpus reaches only ANT's pre-training, train.length_groups only ANT's stages: changing them reruns no other
    assert '"gpus": 1' in by_rule["pretrain"][0].fields["shell"]
    trained = [j for r in ("adapt", "train_baseline", "pretrain_baseline") for j in by_rule[r]]
    assert trained and not [j for j in trained if '"gpus"' in j.fields["shell"]]
    assert not [j for j in by_rule["train_baseline"] if "length_groups" in j.fields["shell"]]

    curves = {j.wildcards["group"]: j for j in by_rule["figure_training_curves"]}
    assert sorted(curves) == sorted(["DemoScientific", "DemoOffice", "pretraining"])
    office = curves["DemoOffice"].input
    assert all(p.startswith("results/runs/DemoOffice/") and p.endswith("/history.csv") for p in office)
    assert len(office) == (4 + 5 + 7 + 4) * 2  # ANT's strategies and ablations, the baselines' runs, 2 seeds
    assert f"results/pretrain/unisrec/{DEMO_CORPUS}/seed1/history.csv" in curves["pretraining"].input
    # a pre-training's panel is titled without its corpus (a long name would run into the next panel): the figure's
    # title names it
    shell = curves["pretraining"].fields["shell"]
    assert f"'--history=unisrec pre-training seed1=results/pretrain/unisrec/{DEMO_CORPUS}/seed1/history.csv'" in shell
    assert (
        "'--history=s3rec DemoOffice pre-training seed0=results/pretrain/s3rec/DemoOffice/seed0/history.csv'" in shell
    )
    assert f"--title 'Pre-trainings (ant, unisrec on {DEMO_CORPUS})' " in shell
    assert shell.count("--history=") == len(curves["pretraining"].input)


def test_paper_dry_run_needs_no_network_and_replaces_the_demo(work):
    # `--configfile` takes several files, so the target goes first (or use --configfile=config/paper.yaml)
    run = snakemake(work, "-n", "all", "--configfile", "config/paper.yaml")
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    jobs = jobs_of(out)
    assert "demo_data" not in jobs and "tiny_models" not in jobs
    assert "Demo" not in out  # the paper config replaces the demo config instead of being merged into it
    assert jobs["download"] == 18 and jobs["kcore"] == 9 and jobs["adapt"] == 45 and jobs["pretrain"] == 1
    # the mirrors of the 2018 release, in order, for one file
    command = next(line for line in out.splitlines() if "Clothing_Shoes_and_Jewelry.csv" in line and "--url" in line)
    urls = re.findall(r"--url=(\S+)", command)
    assert [u.split("/")[2] for u in urls] == ["mcauleylab.ucsd.edu", "datarepo.eng.ucsd.edu", "jmcauley.ucsd.edu"]
    assert all(u.endswith("/categoryFilesSmall/Clothing_Shoes_and_Jewelry.csv") for u in urls)
    assert "bert-base-uncased" in out and "swin-base-patch4-window7-224" in out


# the rules that summarise one configuration: their outputs, logs and benchmarks are keyed by its `experiment`
SUMMARY_RULES = {
    "table_datasets",
    "table_overall",
    "table_negative_transfer",
    "table_ablation",
    "figure_transferability",
    "figure_training_curves",
}


def plan(work, *args):
    """The jobs of `snakemake -n -p all ARGS` in `work`."""
    run = snakemake(work, "-n", "-p", "all", *args)
    assert run.returncode == 0, run.stderr
    return planned_jobs(run.stdout)


def test_the_demo_and_the_paper_write_no_file_in_common(work):
    """Two configs in one checkout: tables and figures under their experiment's name, pre-trainings under their
    corpus, everything else under its task (the demo's tasks are not the paper's)."""
    plans = {
        "demo": (plan(work), DEMO_CORPUS),
        "paper": (plan(work, "--configfile", "config/paper.yaml"), PAPER_CORPUS),
    }
    files = {name: {f for j in jobs for f in j.files} for name, (jobs, _) in plans.items()}
    assert files["demo"] and files["paper"] and not files["demo"] & files["paper"]
    for experiment, (jobs, corpus) in plans.items():
        pretrainings = {j.rule: j.output[0] for j in jobs if j.rule in ("pretrain", "pretrain_baseline_corpus")}
        assert pretrainings == {
            "pretrain": f"results/pretrain/ant/{corpus}/seed0/model.safetensors",
            "pretrain_baseline_corpus": f"results/pretrain/unisrec/{corpus}/seed0/model.safetensors",
        }
        assert {j.rule for j in jobs if j.rule in SUMMARY_RULES} == SUMMARY_RULES
        for job in jobs:
            summary = [f for f in job.files if re.match(r"(results|logs)/(tables|figures)/", f)]
            if job.rule not in SUMMARY_RULES:
                assert not summary, job.rule
                continue
            assert summary == job.files and job.log, job.rule  # its outputs and its log
            assert all(f.split("/")[2] == experiment for f in job.files), job.files
        (figure,) = [j for j in jobs if j.rule == "figure_transferability"]
        assert f"results/pretrain/ant/{corpus}/seed0/model.safetensors" in figure.input
        assert f"results/tables/{experiment}/overall.csv" in files[experiment]
        assert f"results/figures/{experiment}/training_curves/pretraining.png" in files[experiment]


def test_an_experiment_name_moves_only_the_tables_and_figures(work):
    default, renamed = plan(work), plan(work, "--config", "experiment=second")
    moved = {f.replace("/demo/", "/second/", 1) if j.rule in SUMMARY_RULES else f for j in default for f in j.files}
    assert {f for j in renamed for f in j.files} == moved
    assert "results/tables/second/negative_transfer.md" in moved and "logs/tables/second/overall.log" in moved


@pytest.mark.parametrize("how", ["file", "--config"])
def test_a_bad_experiment_name_is_one_config_error_line(work, how):
    if how == "file":
        write_config(work, "bad.yaml", load_config("config.yaml") | {"experiment": "my tables"})
        run = snakemake(work, "-n", "all", "--configfile", "config/bad.yaml")
        value = "my tables"
    else:
        run = snakemake(work, "-n", "all", "--config", "experiment=../elsewhere")
        value = "../elsewhere"
    assert run.returncode != 0
    problems = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("  - ")]
    assert problems == [f"  - experiment: {value!r} does not match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"]


def test_a_long_corpus_is_named_by_its_first_tasks_and_a_hash(work):
    """Past 100 characters the corpus folder is the leading task names that fit in 60, how many more, and the first
    10 hex digits of the sha256 of the "+"-joined names (docs/DESIGN.md); ANT's and UniSRec's share it."""
    config = load_config("config.yaml")
    names = [f"DemoFoodCopy{i}WithAVeryLongTaskName" for i in range(1, 6)]
    config["tasks"] |= {name: {"release": "demo", "category": "Food"} for name in names}
    config["auxiliary"] = names
    write_config(work, "long.yaml", config)
    targets = [f"results/runs/DemoOffice/{m}/finetune/seed0/metrics.json" for m in ("ant", "unisrec")]
    run = snakemake(work, "-n", "-p", *targets, "--configfile", "config/long.yaml")
    assert run.returncode == 0, run.stderr
    jobs = {j.rule: j for j in planned_jobs(run.stdout)}
    corpus = f"{names[0]}-and-4-more-{hashlib.sha256('+'.join(names).encode()).hexdigest()[:10]}"
    assert len("+".join(names[:2])) > 60 and len(corpus) <= 100
    assert jobs["pretrain"].output[0] == f"results/pretrain/ant/{corpus}/seed0/model.safetensors"
    assert jobs["pretrain_baseline_corpus"].output[0] == f"results/pretrain/unisrec/{corpus}/seed0/model.safetensors"
    assert all(
        f"--sequences {name}=results/data/{name}/sequences.parquet " in jobs["pretrain"].fields["shell"]
        for name in names
    )


def test_show_config_prints_the_effective_config_and_runs_nothing_else(work):
    """`snakemake --cores 1 show_config`: the config as the rules read it, the schema's defaults filled in and
    --config merged, as YAML on stdout; no other job (it is not part of `all`)."""
    schema = yaml.safe_load((work / "workflow/schemas/config.schema.yaml").read_text())
    paper = load_config("paper.yaml")
    args = ["--cores", "1", "show_config", "--configfile", "config/paper.yaml", "--config", "experiment=paper-check"]
    run = snakemake(work, *args)
    assert run.returncode == 0, run.stderr
    shown = yaml.safe_load(run.stdout)
    assert (
        "data" not in paper
        and shown["data"]["k_core"] == schema["properties"]["data"]["properties"]["k_core"]["default"]
    )
    assert shown["experiment"] == "paper-check"  # the override, not the file's `paper`
    assert {k: shown[k] for k in ("tasks", "auxiliary", "targets")} == {
        k: paper[k] for k in ("tasks", "auxiliary", "targets")
    }
    assert shown["baselines"]["npe"]["tasks"] == paper["baselines"]["npe"]["tasks"]
    assert jobs_of(run.stderr) == {"show_config": 1} and not (work / "results").exists()


def test_partitioned_encoders_plan_one_job_per_partition_and_a_merge(work):
    config = load_config("paper.yaml")
    config["features"]["partitions"] = 3
    write_config(work, "partitioned.yaml", config)
    run = snakemake(work, "-n", "all", "--configfile", "config/partitioned.yaml")
    assert run.returncode == 0, run.stderr
    jobs = jobs_of(run.stdout + run.stderr)
    assert jobs["embed_image"] == 3 * 9 and jobs["embed_text"] == 3 * (9 + 4)  # + UniSRec's word-dropped text
    assert jobs["merge_features"] == 2 * 9 + 4  # the merges write the manifests, one per store


@pytest.mark.parametrize("partitions", [1, 3])
def test_each_task_and_modality_has_one_encoder_job_per_partition_and_one_merge(work, partitions):
    config = load_config("config.yaml")
    config.setdefault("features", {})["partitions"] = partitions
    write_config(work, "partitioned.yaml", config)
    run = snakemake(work, "-n", "all", "--configfile", "config/partitioned.yaml")
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout)
    tasks = config["auxiliary"] + config["targets"]
    for modality, encoder in (("text", "tiny-bert"), ("image", "tiny-swin")):
        parts = [j for j in jobs if j.rule == f"embed_{modality}" and j.wildcards.get("modality", modality) == modality]
        merges = [j for j in jobs if j.rule == "merge_features" and j.wildcards["modality"] == modality]
        assert sorted((j.wildcards["task"], int(j.wildcards["part"])) for j in parts) == sorted(
            (t, i) for t in tasks for i in range(partitions)
        )
        assert sorted(j.wildcards["task"] for j in merges) == sorted(tasks)
        for job in parts:
            store, part = f"results/features/{job.wildcards['task']}/{modality}/{encoder}", job.wildcards["part"]
            assert job.output == [f"{store}/partitions/{part}-of-{partitions}.json"]
            # the demo pins its encoders to the CPU: no GPU slot, one thread each (features.threads)
            assert job.resources["gpu"] == "0" and job.threads == 1
            assert f"--out-dir {store} " in job.fields["shell"]
            assert f"--partitions {partitions} --partition {part} " in job.fields["shell"]
        for job in merges:
            store = f"results/features/{job.wildcards['task']}/{modality}/{encoder}"
            assert job.output == [f"{store}/manifest.json"]
            markers = [p for p in job.input if "/partitions/" in p]
            assert sorted(markers) == [f"{store}/partitions/{i}-of-{partitions}.json" for i in range(partitions)]
            assert "gpu" not in job.resources
            assert f"merge-features --items results/data/{job.wildcards['task']}/items.parquet " in job.fields["shell"]
            assert f"--out-dir {store} --partitions {partitions} " in job.fields["shell"]


# What each job of the paper asks for, as its rule says: threads and the resources below (a resource a rule does not
# set comes from the profile's default-resources). The raw files and the ingest's outputs are made 100 MiB each,
# so that ingest (2 files) and kcore (3 files) have an input size to compute their memory from.
RESOURCES = ("gpu", "mem_mb", "runtime")
PAPER_JOBS = {
    "download": (1, {}),
    "ingest": (4, {"mem_mb": 1000 + 4 * 200, "runtime": 240}),
    "kcore": (4, {"mem_mb": 1000 + 5 * 300, "runtime": 120}),
    "table_datasets": (1, {}),
    "fetch_images": (8, {"mem_mb": 16000, "runtime": 2880}),
    "embed_text": (8, {"gpu": 1, "mem_mb": 32000, "runtime": 720}),
    "embed_image": (8, {"gpu": 1, "mem_mb": 32000, "runtime": 1440}),
    "merge_features": (1, {}),
    "embed_price": (1, {}),
    "pretrain": (2, {"gpu": 1, "mem_mb": 64000, "runtime": 4320}),
    "adapt": (2, {"gpu": 1, "mem_mb": 32000, "runtime": 720}),
    "train_baseline": (2, {"gpu": 1, "mem_mb": 32000, "runtime": 720}),
    "pretrain_baseline": (2, {"gpu": 1, "mem_mb": 32000, "runtime": 1440}),
    "pretrain_baseline_corpus": (2, {"gpu": 1, "mem_mb": 64000, "runtime": 4320}),
    "table_overall": (1, {}),
    "table_ablation": (1, {}),
    "table_negative_transfer": (1, {}),
    "figure_training_curves": (1, {}),
    # every task's items through the pre-trained item encoder, then small linear probes: CPU work
    "figure_transferability": (2, {"mem_mb": 32000, "runtime": 240}),
}
PAPER_JOBS_SET_ELSEWHERE = {"all"}  # the Snakefile


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_paper_jobs_ask_for_the_threads_and_resources_of_their_rules(work, profile):
    if profile == "slurm":
        pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    paper = ["all", "--configfile", "config/paper.yaml", "--workflow-profile", f"workflow/profiles/{profile}"]
    fresh = snakemake(work, "-n", *paper)
    assert fresh.returncode == 0, fresh.stderr
    for job in planned_jobs(fresh.stdout):
        if job.rule in ("download", "ingest"):
            for path in job.output:
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                with open(work / path, "wb") as sparse:
                    sparse.truncate(100 * 2**20)
    # --forceall plans every job again, now with inputs to measure; a dry run runs on one core unless told more
    run = snakemake(work, "-n", "--forceall", "--cores", "64", *paper)
    assert run.returncode == 0, run.stderr
    jobs = planned_jobs(run.stdout)
    assert {j.rule for j in jobs} == set(PAPER_JOBS) | PAPER_JOBS_SET_ELSEWHERE
    defaults = yaml.safe_load((work / f"workflow/profiles/{profile}/profile.yaml").read_text())["default-resources"]
    for job in jobs:
        if job.rule in PAPER_JOBS:
            threads, resources = PAPER_JOBS[job.rule]
            expected = {k: str(v) for k, v in (defaults | resources).items() if k in RESOURCES}
            assert job.threads == threads, job.rule
            assert {k: v for k, v in job.resources.items() if k in RESOURCES} == expected, job.rule


def test_the_profiles_name_no_rule(work):
    """Threads and resources live in the rules; a profile adds what depends on the site only."""
    settings = {
        p: yaml.safe_load((work / f"workflow/profiles/{p}/profile.yaml").read_text()) for p in ("default", "slurm")
    }
    for profile, values in settings.items():
        assert not {"set-threads", "set-resources"} & set(values), profile
    assert settings["default"]["resources"] == {"gpu": 1}  # locally, one GPU job at a time


def test_configfile_equals_form_also_works(work):
    run = snakemake(work, "-n", "--configfile=config/paper.yaml", "all")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("config", [None, "config/paper.yaml"])
def test_lint_is_clean(work, config):
    args = ["--lint"] + (["--configfile", config] if config else [])
    run = snakemake(work, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations, your workflow is in a good condition!" in run.stdout + run.stderr


def test_one_task_builds_only_its_data(work):
    run = snakemake(work, "-n", "results/data/DemoScientific/stats.json")
    assert run.returncode == 0, run.stderr
    assert jobs_of(run.stdout + run.stderr) == {"demo_data": 1, "download": 2, "ingest": 1, "kcore": 1}


def test_custom_task_from_urls_and_paths(work, tmp_path):
    config = load_config("config.yaml")
    config["tasks"]["MyShop"] = {
        "release": "amazon2018",
        "ratings": "https://example.org/data/my_shop.csv",
        "meta": f"file://{tmp_path}/meta_my_shop.json.gz",
    }
    config["targets"] = ["DemoScientific", "MyShop"]
    (tmp_path / "meta_my_shop.json.gz").write_bytes(b"")
    write_config(work, "custom.yaml", config)
    run = snakemake(work, "-n", "results/data/MyShop/stats.json", "--configfile", "config/custom.yaml")
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    assert "resources/tasks/MyShop/my_shop.csv" in out and "--url=https://example.org/data/my_shop.csv" in out
    assert f"--url=file://{tmp_path}/meta_my_shop.json.gz" in out


def test_a_local_source_that_does_not_exist_is_reported_before_anything_runs(work, tmp_path):
    config = load_config("config.yaml")
    config["tasks"]["MyShop"] = {
        "release": "amazon2018",
        "ratings": f"{tmp_path}/nope.csv",
        "meta": f"{tmp_path}/nope.json.gz",
    }
    config["targets"] = ["MyShop"]
    write_config(work, "custom.yaml", config)
    run = snakemake(work, "-n", "results/data/MyShop/stats.json", "--configfile", "config/custom.yaml")
    assert run.returncode != 0
    assert "nope.csv" in run.stdout + run.stderr


def test_a_local_mirror_missing_a_file_falls_back_to_the_hosts_behind_it(work, tmp_path):
    """A local copy of the release that lacks a file is skipped for that file (the next mirror is tried); the
    files it holds are inputs of their download jobs."""
    mirror = tmp_path / "amazon_v2"
    (mirror / "categoryFilesSmall").mkdir(parents=True)
    (mirror / "categoryFilesSmall/Industrial_and_Scientific.csv").write_text("item,user,rating,timestamp\n")
    config = load_config("paper.yaml")
    config["releases"] = {
        "amazon2018": {"mirrors": [str(mirror), "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2"]}
    }
    write_config(work, "mirror.yaml", config)
    run = snakemake(work, "-n", "results/data/Scientific/interactions.parquet", "--configfile", "config/mirror.yaml")
    assert run.returncode == 0, run.stderr
    downloads = {j.output[0]: j for j in planned_jobs(run.stdout) if j.rule == "download"}
    ratings = downloads["resources/amazon2018/Industrial_and_Scientific.csv"]
    meta = downloads["resources/amazon2018/meta_Industrial_and_Scientific.json.gz"]
    assert ratings.input == [f"{mirror}/categoryFilesSmall/Industrial_and_Scientific.csv"]
    assert meta.input == []  # not in the local copy: the host behind it serves it
    assert f"--url={mirror}/" in meta.fields["shell"] and "--url=https://mcauleylab.ucsd.edu/" in meta.fields["shell"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(targets=["Nowhere"]), "'Nowhere' is listed in auxiliary/targets but not defined"),
        (lambda c: c.update(auxiliary=["DemoOffice"]), "are both auxiliary and target tasks"),
        (lambda c: c.setdefault("data", {}).update(k_core=2), "data.k_core: 2 is less than the minimum of 3"),
        (lambda c: c.update(colour="blue"), "colour"),
        (lambda c: c["tasks"].update(Bad={"release": "amazon2018"}), "category"),
        (lambda c: c["tasks"].update(Odd={"release": "amazon1999", "category": "X"}), "unknown release 'amazon1999'"),
        (lambda c: c.update(releases={"tasks": {"mirrors": ["/x"]}}), "reserved"),
        (
            lambda c: c["baselines"]["sasrec"].update(tasks={"DemoOffice": {"hiden_size": 32}}),
            "baselines.sasrec.tasks.DemoOffice: unknown key(s) ['hiden_size']",
        ),
        (
            lambda c: c["baselines"]["npe"].update(tasks={"Nowhere": {"lr": 0.01}}),
            "baselines.npe.tasks.Nowhere: no such task",
        ),
        (lambda c: c["baselines"].update(run=["sasrec", "pinsage"]), "baselines.run.1"),
        (lambda c: c.update(auxiliary=[]), "config: a pre-training needs at least one task: auxiliary"),
    ],
    ids=[
        "unknown-target",
        "aux-and-target",
        "bad-k-core",
        "unknown-key",
        "no-source",
        "unknown-release",
        "reserved",
        "baseline-override-key",
        "baseline-override-task",
        "unknown-baseline",
        "no-corpus",
    ],
)
def test_config_errors_are_clear(work, change, message):
    config = load_config("config.yaml")
    change(config)
    write_config(work, "bad.yaml", config)
    run = snakemake(work, "-n", "all", "--configfile", "config/bad.yaml")
    assert run.returncode != 0
    assert message in run.stdout + run.stderr


def test_jobs_use_the_interpreter_of_snakemake_when_no_environment_is_activated(work):
    """`.venv/bin/python -m pytest` or `.venv/bin/snakemake` in a fresh shell: `python` on PATH is not the venv's."""
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != os.path.dirname(sys.executable))
    run = snakemake(work, "--cores", "1", "resources/demo_source/demo.json", env={"PATH": bare_path})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "resources/demo_source/demo.json").exists()
