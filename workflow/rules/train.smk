"""Pre-training on the auxiliary tasks, adaptation to each target task (spec sections 3-7).

The pre-training's folder names its corpus (results/pretrain/ant/<corpus>/seed<k>/, common.smk corpus_name), so
configs with the same auxiliary tasks share it and configs with others keep their own.

A killed run resumes from its last finished epoch: the trainer keeps resume.pt in the run's folder (not an
output, so Snakemake leaves it in place) and removes it once the outputs are written."""

# A training job holds a GPU unless the config pins training to the CPU (the demo): then jobs share the cores,
# `train.threads` each, instead of queueing for the one `gpu` the default profile offers.
TRAIN_GPUS = 0 if config["train"]["device"] == "cpu" else 1


# Pre-training runs train.gpus processes, one per GPU (ant.train.distributed): the job asks for all of them, for
# `train.threads` CPU threads per process (the command splits --threads between them) and memory for each
# process's copy of the item table and rows.
PRETRAIN_PROCESSES = config["train"]["gpus"]


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model="results/pretrain/ant/{corpus}/seed{seed}/model.safetensors",
        metrics="results/pretrain/ant/{corpus}/seed{seed}/metrics.json",
        history="results/pretrain/ant/{corpus}/seed{seed}/history.csv",
    log:
        "logs/pretrain/ant/{corpus}/seed{seed}.log",
    benchmark:
        "logs/pretrain/ant/{corpus}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        corpus=_alternatives(ANT_CORPORA),
    priority: PRIORITY["pretraining"]
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"] * PRETRAIN_PROCESSES
    resources:
        gpu=TRAIN_GPUS * PRETRAIN_PROCESSES,
        nodes=1,  # torchrun --standalone: all the job's GPUs on one node
        mem_mb=32000 + 32000 * PRETRAIN_PROCESSES,
        runtime=4320,
    params:
        tasks=lambda w, input: task_flags(input, AUXILIARY),
        hparams=hparams("pretrain"),
        out_dir=lambda w, output: os.path.dirname(output.model),
        version=VERSION["pretrain"],
    shell:
        "python -m ant pretrain {params.tasks} --seed {wildcards.seed} --hparams {params.hparams} "
        "--threads {threads} --out-dir {params.out_dir:q} > {log:q} 2>&1"


# a strategy's run, or an ablation of Table IV (a re-learning without one part, in results/runs/<task>/ant/<R>+<ablation>/)
rule adapt:
    input:
        unpack(adapt_inputs),
    output:
        metrics="results/runs/{task}/ant/{variant}/seed{seed}/metrics.json",
        ranks="results/runs/{task}/ant/{variant}/seed{seed}/ranks.parquet",
        model="results/runs/{task}/ant/{variant}/seed{seed}/model.safetensors",
        history="results/runs/{task}/ant/{variant}/seed{seed}/history.csv",
    log:
        "logs/runs/{task}/ant/{variant}/seed{seed}.log",
    benchmark:
        "logs/runs/{task}/ant/{variant}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        variant=_alternatives(METHODS["ant"].variant_names + tuple(ABLATION_VARIANTS)),
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=32000,
        runtime=720,
    params:
        tasks=lambda w, input: task_flags(input, [w.task]),
        pretrained=lambda w, input: (
            f"--pretrained {shlex.quote(input.pretrained)}" if "pretrained" in input.keys() else ""
        ),
        strategy=lambda w: ant_strategy(w.variant),
        ablations=lambda w: ant_ablations(w.variant),
        hparams=hparams("adapt"),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
        version=VERSION["adapt"],
    shell:
        "python -m ant adapt --strategy {params.strategy} {params.ablations} {params.tasks} {params.pretrained} "
        "--seed {wildcards.seed} --hparams {params.hparams} --threads {threads} --out-dir {params.out_dir:q} > {log:q} 2>&1"
