"""Config validation, wildcard constraints and the input functions shared by every rule file."""

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

from ant.config_check import check_config
from ant.data.sources import merge_releases, raw_files
from ant.methods import ABLATED_VARIANT, METHODS, MODALITIES, OVERALL_COLUMNS

min_version("9.0")


# ---------------------------------------------------------------- config --------------------------------
check_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")  # every error, one line each
validate(config, "../schemas/config.schema.yaml")  # fills in the defaults


def _config_error(message):
    raise ValueError(f"config: {message}")


TASKS = config["tasks"]
AUXILIARY = list(config["auxiliary"])
TARGETS = list(config["targets"])
for _name in AUXILIARY + TARGETS:
    if _name not in TASKS:
        _config_error(f"{_name!r} is listed in auxiliary/targets but not defined under tasks: (known: {sorted(TASKS)})")
if set(AUXILIARY) & set(TARGETS):
    _config_error(f"{sorted(set(AUXILIARY) & set(TARGETS))} are both auxiliary and target tasks")
USED_TASKS = list(dict.fromkeys(AUXILIARY + TARGETS))

try:
    RELEASES = merge_releases(config.get("releases"))
    RAW = {name: raw_files(name, TASKS[name], RELEASES) for name in TASKS}
except ValueError as err:
    _config_error(str(err))

# every raw file under resources/, keyed by its path (two tasks may share one release file)
RAW_BY_DEST = {}
for _files in RAW.values():
    for _raw in _files.values():
        _known = RAW_BY_DEST.setdefault(_raw.dest, _raw)
        if _known.urls != _raw.urls:
            _config_error(f"resources/{_raw.dest} would come from two different places ({_known.task}, {_raw.task})")

BASELINES = config["baselines"]
BASELINE_RUNS = list(BASELINES["run"])
# keys of a `baselines.<method>` entry that set the optimisation or what the workflow runs; every other key is a
# model setting (the method's Settings)
BASELINE_OPTIM = ("preset", "lr", "batch_size", "epochs", "patience")
BASELINE_WORKFLOW = ("variants", "pretrain_tasks", "tasks")
for _method in METHODS.values():
    if not _method.is_baseline:
        continue
    for _task in BASELINES[_method.name].get("pretrain_tasks") or []:
        if _task not in TASKS:
            _config_error(f"baselines.{_method.name}.pretrain_tasks: {_task!r} is not defined under tasks:")
    for _task, _override in BASELINES[_method.name]["tasks"].items():
        if _task not in TASKS:
            _config_error(f"baselines.{_method.name}.tasks.{_task}: no such task (known: {sorted(TASKS)})")
        if _unknown := sorted(set(_override) - set(BASELINES[_method.name]) - {"tasks"}):
            _config_error(f"baselines.{_method.name}.tasks.{_task}: unknown key(s) {_unknown}")

DEMO = config["demo"]
# the name of this configuration's tables and figures (results/tables/<experiment>/, results/figures/<experiment>/)
EXPERIMENT = config["experiment"]
FEAT = config["features"]
SEEDS = list(config["seeds"])
STRATEGIES = list(config["adapt"]["strategies"])
# Table IV: each ablation is a re-learning (R) adaptation of the one full pre-trained model (spec baselines.md 14)
ABLATIONS = list(config["adapt"]["ablations"])
ABLATION_VARIANTS = [f"{ABLATED_VARIANT}+{name}" for name in ABLATIONS]
# the history rule the headline tables show, and the other one (Table II is written under both)
HISTORY_RULE = "history_excluded" if config["eval"]["exclude_history"] else "history_kept"
OTHER_HISTORY_RULE = "history_kept" if HISTORY_RULE == "history_excluded" else "history_excluded"


def encoder_slug(model):
    """Folder name of an encoder's features: the last part of a hub name or of a local folder."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(model).rstrip("/")).name)


TEXT_ENCODER = encoder_slug(config["features"]["text"]["model"])
IMAGE_ENCODER = encoder_slug(config["features"]["image"]["model"])
PRICE_ENCODER = f"sinusoidal-{config['features']['price']['dim']}"


def _alternatives(values):
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) or "(?!)"


wildcard_constraints:
    task=_alternatives(TASKS),
    seed=r"\d+",


# Which ready job starts first: the data and features every training needs, then the pre-trainings (the long poles
# most runs wait for), then the runs. Without it Snakemake starts target runs first and ANT's pre-training waits
# for the last auxiliary task's features (in the demo it started 7 of 11 minutes in, with cores idle at the end).
PRIORITY = {"inputs": 2, "pretraining": 1}


# ---------------------------------------------------------------- where results go ----------------------
# Data, features, pre-trainings and runs are keyed by what they are made from (a task, a pre-training's corpus), so
# configs that agree on them share them; tables and figures summarise one configuration and are keyed by its
# `experiment`, so two configs in one checkout never replace each other's (docs/DESIGN.md, "Where results go").
CORPUS_NAME_MAX = 100  # a longer corpus name is shortened: one path component, readable in a listing
CORPUS_PREFIX_MAX = 60  # how much of a shortened name still names tasks


def corpus_name(tasks):
    """The folder of a pre-training on `tasks`: their names joined by "+" in config order
    ("Food+Movies+Home+Clothing"). Longer than CORPUS_NAME_MAX, it is the leading names that fit in
    CORPUS_PREFIX_MAX characters, how many more there are and the first 10 hex digits of the sha256 of the whole
    "+"-joined list ("Food+Movies-and-7-more-3f2a9c01d4"); task names have no "-", so the forms never meet."""
    if not tasks:
        _config_error(
            "a pre-training needs at least one task: auxiliary (or baselines.<method>.pretrain_tasks) is empty"
        )
    joined = "+".join(tasks)
    if len(joined) <= CORPUS_NAME_MAX:
        return joined
    shown = 1
    while shown < len(tasks) and len("+".join(tasks[: shown + 1])) <= CORPUS_PREFIX_MAX:
        shown += 1
    prefix = "+".join(tasks[:shown])[:CORPUS_PREFIX_MAX]
    digest = hashlib.sha256(joined.encode()).hexdigest()[:10]
    return f"{prefix}-and-{len(tasks) - shown}-more-{digest}"


# ANT's pre-training corpus: the auxiliary tasks (none: no pre-training to name)
ANT_CORPORA = [corpus_name(AUXILIARY)] if AUXILIARY else []


def summary_file(kind, name):
    """results/<kind>/<experiment>/<name>: a table or figure (kind "tables" or "figures") of this configuration."""
    return f"results/{kind}/{EXPERIMENT}/{name}"


def summary_log(kind, name):
    """logs/<kind>/<experiment>/<name>: the log or benchmark of the job that writes a table or figure."""
    return f"logs/{kind}/{EXPERIMENT}/{name}"


def print_config(log):
    """The effective config (the schema's defaults filled in, --config overrides merged: what the rules read) as
    YAML, on stdout and into `log`."""
    text = yaml.safe_dump(config)
    Path(log).write_text(text)
    print(text, end="")


# ---------------------------------------------------------------- helpers -------------------------------
def cli_flags(section, skip=()):
    """A config section as command-line flags: {max_side: 256, schemes: [a, b]} -> --max-side 256 --schemes a b.

    Every key of a section that a command takes is one flag of that command, so the config, the CLI's
    --help and config/README.md speak of the same names. Booleans become --key / --no-key; null is left out.
    """
    flags = []
    for key, value in section.items():
        if key in skip or value is None or isinstance(value, dict):
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, list):
            flags += [f"--{name}", *map(str, value)]
        else:
            flags += [f"--{name}", str(value)]
    return shlex.join(flags)


def local_model_input(model):
    """A model given as a local folder (e.g. the demo's tiny models) is an input of the rules that use it."""
    return [model] if (Path(model).exists() or str(model).startswith("resources/")) else []


def feature_store(task, modality):
    """The folder of one feature store: its shards, partition markers and manifest.json."""
    encoder = {"text": TEXT_ENCODER, "text_worddrop": TEXT_ENCODER, "image": IMAGE_ENCODER, "price": PRICE_ENCODER}
    encoder = encoder[modality]
    return f"results/features/{task}/{modality}/{encoder}"


def feature_manifest(task, modality):
    return f"{feature_store(task, modality)}/manifest.json"


# the feature stores a training command may read: the modalities, and UniSRec's word-dropped text (pre-training)
FEATURE_KINDS = (*MODALITIES, "text_worddrop")


def task_inputs(task, method, extra=()):
    """Everything a training run of `method` needs of one task: its sequences, items and the feature stores of
    the modalities the method reads (ant/methods.py) and of `extra` ones, as named inputs `<task>_sequences`,
    `<task>_text`, ..."""
    return {
        f"{task}_sequences": expand(rules.kcore.output.sequences, task=task)[0],
        f"{task}_items": expand(rules.kcore.output.item_table, task=task)[0],
        **{f"{task}_{m}": feature_manifest(task, m) for m in (*METHODS[method].modalities, *extra)},
    }


def task_flags(input, tasks):
    """The training commands' --sequences/--items NAME=PATH and --features NAME.MODALITY=MANIFEST flags: exactly
    the files the rule declares as `input` (named by task_inputs, "<task>_<kind>")."""
    flags = []
    for task in tasks:
        for kind in ("sequences", "items"):
            if f"{task}_{kind}" in input.keys():
                flags += [f"--{kind}", f"{task}={input[f'{task}_{kind}']}"]
        for kind in FEATURE_KINDS:
            if f"{task}_{kind}" in input.keys():
                flags += ["--features", f"{task}.{kind}={input[f'{task}_{kind}']}"]
    return shlex.join(flags)


def all_targets():
    """The final targets (rule all, after every rule file is included)."""
    targets = [*rules.table_datasets.output, *rules.table_overall.output, *rules.table_negative_transfer.output]
    targets += [*rules.table_ablation.output] if ABLATIONS else []
    targets += [*rules.figure_transferability.output]
    targets += expand(rules.figure_training_curves.output[0], group=CURVE_GROUPS)
    targets += [feature_manifest(t, m) for t in USED_TASKS for m in MODALITIES]
    for method in BASELINE_RUNS:
        targets += [
            baseline_run(t, method, v, seed) for t in TARGETS for v in baseline_variants(method) for seed in SEEDS
        ]
    if config["data"]["export_recbole"]:
        targets += expand(rules.export_recbole.output[0], task=USED_TASKS)
    return targets


def raw_file(wildcards):
    return RAW_BY_DEST[wildcards.rawfile]


def download_inputs(wildcards):
    """A raw file's local sources (plain paths, file://) that are inputs: those that exist or that the workflow
    makes (the demo's mirror, so its rule runs first). A missing local copy with other sources behind it is no
    input: the command tries the next source. If every source is local, all are inputs (a missing one: an error
    before anything runs)."""
    raw = raw_file(wildcards)
    local = raw.local_sources()
    kept = [p for p in local if p.exists() or p.is_relative_to(DEMO["out"])]
    return kept if kept or len(local) < len(raw.urls) else local


def train_settings(stage):
    """The `train` section a stage reads: `gpus` only for ANT's pre-training (the only data-parallel stage), so
    changing it reruns nothing else; `length_groups` only for ANT's stages (the baselines do not read it)."""
    skip = {"gpus"} if stage != "pretrain" else set()
    skip |= {"length_groups", "dropout_rng", "gpus"} if stage == "baseline" else set()
    return {k: v for k, v in config["train"].items() if k not in skip}


def hparams(stage):
    """Model, optimisation and evaluation settings of one training stage, as one shell-quoted JSON argument."""
    settings = {
        "model": config["model"],
        "optim": {k: v for k, v in config[stage].items() if k not in ("strategies", "ablations")},
        "train": train_settings(stage),
        "eval": config["eval"],
        "max_history": config["data"]["max_history"],
    }
    return shlex.quote(json.dumps(settings, sort_keys=True))


def baseline_settings(task, method):
    """A baseline's config entry with the task's overrides (Table A1; task None: a pre-training on other tasks,
    without overrides); `baselines.hparams: uniform` keeps the method's own hidden_size and lr on every task."""
    entry = BASELINES[method]
    override = dict(entry["tasks"].get(task, {})) if task else {}
    if BASELINES["hparams"] == "uniform":
        override = {k: v for k, v in override.items() if k not in ("hidden_size", "lr")}
    return {k: v for k, v in entry.items() if k not in BASELINE_WORKFLOW} | override


def baseline_variants(method):
    """The registry variants of `method` that run: UniSRec's `variants`, the one "default" of the others."""
    return BASELINES[method].get("variants") or ["default"]


def baseline_variant(task, method, variant="default"):
    """The run folder of a variant: its name with the non-default switches (ant/methods.py Method.folder)."""
    return METHODS[method].folder(variant, baseline_settings(task, method))


def registry_variant(method, folder):
    """The registry variant a run folder belongs to (what `train-baseline --variant` takes)."""
    name = folder.partition("+")[0]
    return name if name in METHODS[method].variant_names else "default"


def baseline_corpus(method):
    """The tasks a method pre-trains on: the target task itself, or its `pretrain_tasks` (default: the auxiliary)."""
    return BASELINES[method].get("pretrain_tasks") or AUXILIARY


def pretrain_features(method):
    """Feature stores a baseline's pre-training reads besides its modalities: UniSRec's word-dropped text."""
    return ("text_worddrop",) if BASELINES[method].get("word_drop") else ()


def baseline_hparams(task, method):
    """--hparams of a baseline run: its model settings, the optimisation keys it sets (the rest: its preset's;
    patience 0 = never stop early), and the shared train/eval settings."""
    settings = baseline_settings(task, method)
    optim = {k: settings[k] for k in ("lr", "batch_size")}
    if settings["epochs"] is not None:
        optim["epochs"] = settings["epochs"]
    if settings["patience"] is not None:
        optim["patience"] = settings["patience"] or None
    hparams = {
        "model": {k: v for k, v in settings.items() if k not in BASELINE_OPTIM},
        "optim": optim,
        "train": train_settings("baseline"),
        "eval": config["eval"],
        "max_history": config["data"]["max_history"],
    }
    return shlex.quote(json.dumps(hparams, sort_keys=True))


def baseline_inputs(wildcards):
    method = METHODS[wildcards.method]
    inputs = task_inputs(wildcards.task, wildcards.method)
    if method.variant(registry_variant(wildcards.method, wildcards.variant)).load:
        if method.pretrain == "target":
            inputs["pretrained"] = expand(rules.pretrain_baseline.output.model, **wildcards)[0]
        else:
            inputs["pretrained"] = corpus_pretraining(wildcards.method, wildcards.seed)
    return inputs


def ant_pretraining(seed, output="model"):
    """A file of ANT's pre-training of one seed on the auxiliary tasks: results/pretrain/ant/<corpus>/seed<k>/."""
    return expand(getattr(rules.pretrain.output, output), corpus=corpus_name(AUXILIARY), seed=seed)[0]


def corpus_pretraining(method, seed, output="model"):
    """A file of a baseline's pre-training on its corpus (UniSRec's): results/pretrain/<method>/<corpus>/seed<k>/."""
    corpus = corpus_name(baseline_corpus(method))
    return expand(getattr(rules.pretrain_baseline_corpus.output, output), method=method, corpus=corpus, seed=seed)[0]


def corpus_inputs(wildcards):
    """A pre-training on other tasks: every corpus task's inputs, with the extra stores it reads."""
    inputs = {}
    for task in baseline_corpus(wildcards.method):
        inputs.update(task_inputs(task, wildcards.method, pretrain_features(wildcards.method)))
    return inputs


def baseline_run(task, method, variant, seed, output="metrics"):
    """A baseline run's metrics.json (or another `output` of it; its variant folder named by the configured
    switches)."""
    folder = baseline_variant(task, method, variant)
    return expand(getattr(rules.train_baseline.output, output), task=task, method=method, variant=folder, seed=seed)[0]


def ant_run(task, variant, seed, output="metrics"):
    """An ANT run's metrics.json (or another `output` of it): a strategy's, or an ablation's (ABLATION_VARIANTS)."""
    return expand(getattr(rules.adapt.output, output), task=task, variant=variant, seed=seed)[0]


def ant_strategy(variant):
    """The strategy of an ANT run folder: the part before the ablations ("<strategy>+no_text+no_fusion")."""
    return variant.partition("+")[0]


def ant_ablations(variant):
    """The ablations of an ANT run folder, as `adapt --ablation` flags ("" for a plain strategy)."""
    names = variant.split("+")[1:]
    return shlex.join(["--ablation", *names]) if names else ""


def negative_transfer_runs():
    """Table III: ANT's strategies and, when it runs, UniSRec's variants, on every target and seed."""
    runs = [ant_run(t, s, seed) for t in TARGETS for s in STRATEGIES for seed in SEEDS]
    if "unisrec" in BASELINE_RUNS:
        runs += [
            baseline_run(t, "unisrec", v, seed) for t in TARGETS for v in baseline_variants("unisrec") for seed in SEEDS
        ]
    return runs


def overall_runs():
    """Table II: the runs of its columns (ant/methods.py OVERALL_COLUMNS) that the config runs, every target
    and seed; a column whose method or variant does not run is left empty in the table."""
    runs = []
    for method, variant, _title in OVERALL_COLUMNS:
        if method == "ant":
            runs += [ant_run(t, variant, seed) for t in TARGETS for seed in SEEDS] if variant in STRATEGIES else []
        elif method in BASELINE_RUNS and variant in baseline_variants(method):
            runs += [baseline_run(t, method, variant, seed) for t in TARGETS for seed in SEEDS]
    return runs


def ablation_runs():
    """Table IV: ANT-R and each configured ablation of it, on every target and seed."""
    return [ant_run(t, v, seed) for t in TARGETS for v in [ABLATED_VARIANT, *ABLATION_VARIANTS] for seed in SEEDS]


def target_runs(task, output="history"):
    """Every training run on one target task (a file of each): ANT's strategies and ablations, the baselines'."""
    runs = [ant_run(task, v, seed, output) for v in STRATEGIES + ABLATION_VARIANTS for seed in SEEDS]
    for method in BASELINE_RUNS:
        runs += [baseline_run(task, method, v, seed, output) for v in baseline_variants(method) for seed in SEEDS]
    return runs


def table_file(name, ext, category, table, caption=None, **labels):
    """results/tables/<experiment>/<name>.<ext>; its HTML page (shown inline) and CSV (a download) are results of
    the report, under `category`, labelled by table and file type (the report's csv/html toggle), the Markdown is
    not."""
    path = summary_file("tables", f"{name}.{ext}")
    if ext == "md":
        return path
    labels = {"table": table, **labels, "file": ext}
    return report(path, caption=f"../report/{caption or name}.rst", category=category, labels=labels)


def transferability_inputs(wildcards):
    """Figure 2: every target's and auxiliary task's items and feature stores, and (features: pretrained) the
    pre-trained ANT of the first seed."""
    inputs = {}
    for task in dict.fromkeys(TARGETS + AUXILIARY):
        inputs[f"{task}_items"] = expand(rules.kcore.output.item_table, task=task)[0]
        inputs.update({f"{task}_{m}": feature_manifest(task, m) for m in MODALITIES})
    if config["figure2"]["features"] == "pretrained":
        inputs["pretrained"] = ant_pretraining(SEEDS[0])
    return inputs


def curve_panels(group):
    """The panels of one training-curves figure, (title, history.csv) each: every run on a target task (title None:
    the command titles it from its folder), or (group "pretraining") every pre-training, titled without its corpus
    (the figure's title names the corpora: a long corpus name would run into the next panel)."""
    if group != "pretraining":
        return [(None, path) for path in target_runs(group, "history")]
    panels = [(f"ant pre-training seed{seed}", ant_pretraining(seed, "history")) for seed in SEEDS]
    for method in BASELINE_RUNS:
        if METHODS[method].pretrain == "target":
            panels += [
                (
                    f"{method} {task} pre-training seed{seed}",
                    expand(rules.pretrain_baseline.output.history, method=method, task=task, seed=seed)[0],
                )
                for task in TARGETS
                for seed in SEEDS
            ]
        elif METHODS[method].pretrain == "auxiliary":
            panels += [
                (f"{method} pre-training seed{seed}", corpus_pretraining(method, seed, "history")) for seed in SEEDS
            ]
    return panels


def curve_inputs(wildcards):
    """The history.csv of every panel of a training-curves figure."""
    return [path for _, path in curve_panels(wildcards.group)]


def curve_flags(group, input):
    """The training-curves command's panels: `--history=TITLE=PATH` where the workflow titles one, else the path."""
    titles = [title for title, _ in curve_panels(group)]
    return shlex.join(f"--history={t}={path}" if t else path for t, path in zip(titles, input, strict=True))


def curve_title(group):
    """The figure's title: the target task, or the pre-trainings with the corpus each method's was made on."""
    if group != "pretraining":
        return f"Runs on {group}"
    corpora = {corpus_name(AUXILIARY): ["ant"]}
    for method in BASELINE_RUNS:
        if METHODS[method].pretrain == "auxiliary":
            corpora.setdefault(corpus_name(baseline_corpus(method)), []).append(method)
    return (
        "Pre-trainings (" + "; ".join(f"{', '.join(methods)} on {corpus}" for corpus, methods in corpora.items()) + ")"
    )


def pretrain_inputs(wildcards):
    inputs = {}
    for task in AUXILIARY:
        inputs.update(task_inputs(task, "ant"))
    return inputs


def adapt_inputs(wildcards):
    inputs = task_inputs(wildcards.task, "ant")
    if METHODS["ant"].variant(ant_strategy(wildcards.variant)).load:
        inputs["pretrained"] = ant_pretraining(wildcards.seed)
    return inputs
