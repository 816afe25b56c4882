"""The paper's baselines on every target task (spec baselines.md), one run per (task, method, variant, seed).

The methods are the registry's (ant/methods.py); `baselines.run` chooses which run and `baselines.<method>` holds
their settings (config/README.md). A method that pre-trains on the target task itself (S3-Rec) does so in a
pretrain_baseline job, one that pre-trains on other tasks (UniSRec, on `pretrain_tasks`: the auxiliary tasks by
default) in one pretrain_baseline_corpus job per seed, in a folder named by its corpus; the train_baseline jobs of the variants that start from a
checkpoint fine-tune it. All resume after a kill (resume.pt).
"""

# the variant folders: UniSRec's strategies, "default" for the others, named with the non-default switches
BASELINE_VARIANTS = {baseline_variant(t, m, v) for t in TARGETS for m in BASELINE_RUNS for v in baseline_variants(m)}
PRETRAINING_BASELINES = [m for m in BASELINE_RUNS if METHODS[m].pretrain == "target"]
CORPUS_BASELINES = [m for m in BASELINE_RUNS if METHODS[m].pretrain == "auxiliary"]
# their corpora, each a folder named by corpus_name (one method, UniSRec, pre-trains on a corpus today; a second
# one with another corpus would need its own rule, or the pattern would take either corpus for either method)
BASELINE_CORPORA = {corpus_name(tasks) for m in CORPUS_BASELINES if (tasks := baseline_corpus(m))}


rule pretrain_baseline:
    input:
        unpack(lambda w: task_inputs(w.task, w.method)),
    output:
        model="results/pretrain/{method}/{task}/seed{seed}/model.safetensors",
        metrics="results/pretrain/{method}/{task}/seed{seed}/metrics.json",
        history="results/pretrain/{method}/{task}/seed{seed}/history.csv",
    log:
        "logs/pretrain/{method}/{task}/seed{seed}.log",
    benchmark:
        "logs/pretrain/{method}/{task}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        method=_alternatives(PRETRAINING_BASELINES),
    priority: PRIORITY["pretraining"]
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        tasks=lambda w, input: task_flags(input, [w.task]),
        preset=lambda w: baseline_settings(w.task, w.method)["preset"],
        hparams=lambda w: baseline_hparams(w.task, w.method),
        out_dir=lambda w, output: os.path.dirname(output.model),
        version=VERSION["baseline_pretrain"],
    shell:
        "python -m ant pretrain-baseline --method {wildcards.method} --preset {params.preset} {params.tasks} "
        "--seed {wildcards.seed} --hparams {params.hparams} --threads {threads} --out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"


rule pretrain_baseline_corpus:
    input:
        unpack(corpus_inputs),
    output:
        model="results/pretrain/{method}/{corpus}/seed{seed}/model.safetensors",
        metrics="results/pretrain/{method}/{corpus}/seed{seed}/metrics.json",
        history="results/pretrain/{method}/{corpus}/seed{seed}/history.csv",
    log:
        "logs/pretrain/{method}/{corpus}/seed{seed}.log",
    benchmark:
        "logs/pretrain/{method}/{corpus}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        method=_alternatives(CORPUS_BASELINES),
        corpus=_alternatives(BASELINE_CORPORA),
    priority: PRIORITY["pretraining"]
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=64000,
        runtime=4320,
    params:
        tasks=lambda w, input: task_flags(input, baseline_corpus(w.method)),
        preset=lambda w: baseline_settings(None, w.method)["preset"],
        hparams=lambda w: baseline_hparams(None, w.method),
        out_dir=lambda w, output: os.path.dirname(output.model),
        version=VERSION["baseline_pretrain"],
    shell:
        "python -m ant pretrain-baseline --method {wildcards.method} --preset {params.preset} {params.tasks} "
        "--seed {wildcards.seed} --hparams {params.hparams} --threads {threads} --out-dir {params.out_dir:q} "
        "> {log:q} 2>&1"


rule train_baseline:
    input:
        unpack(baseline_inputs),
    output:
        metrics="results/runs/{task}/{method}/{variant}/seed{seed}/metrics.json",
        ranks="results/runs/{task}/{method}/{variant}/seed{seed}/ranks.parquet",
        model="results/runs/{task}/{method}/{variant}/seed{seed}/model.safetensors",
        history="results/runs/{task}/{method}/{variant}/seed{seed}/history.csv",
    log:
        "logs/runs/{task}/{method}/{variant}/seed{seed}.log",
    benchmark:
        "logs/runs/{task}/{method}/{variant}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        method=_alternatives(BASELINE_RUNS),
        variant=_alternatives(BASELINE_VARIANTS),
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=720,
    params:
        tasks=lambda w, input: task_flags(input, [w.task]),
        preset=lambda w: baseline_settings(w.task, w.method)["preset"],
        pretrained=lambda w, input: (
            f"--pretrained {shlex.quote(input.pretrained)}" if "pretrained" in input.keys() else ""
        ),
        hparams=lambda w: baseline_hparams(w.task, w.method),
        variant=lambda w: registry_variant(w.method, w.variant),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
        version=VERSION["baselines"],
    shell:
        "python -m ant train-baseline --method {wildcards.method} --variant {params.variant} --preset {params.preset} "
        "{params.tasks} {params.pretrained} --seed {wildcards.seed} --hparams {params.hparams} --threads {threads} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"
