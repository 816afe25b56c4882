"""Frozen modality features per task: BERT text, Swin image, sinusoidal price (spec section 2), and UniSRec's
word-dropped BERT text (modality text_worddrop, spec baselines.md section 8) where a rule asks for it.

Every store's manifest.json is the output other rules depend on. The text and image encoders of a task run as
features.partitions = P jobs, one per partition of the store's shards: each asks for a GPU and writes
partitions/<i>-of-<P>.json (i = 0..P-1) in the store folder. One merge job per store then checks the P markers
and writes the manifest (`merge-features`, one rule for all encoder stores). P = 1 is one encoder job and its merge.
A merge is a second of work without torch, so on a cluster it runs where Snakemake runs instead of queueing.

A partition wildcard rather than `scattergather`: scatter items are numbered 1-of-P..P-of-P while the commands
name their markers 0-of-P..(P-1)-of-P, and `--set-scatter` could change the number of jobs without changing the
`--partitions P` the commands are given.
"""

PARTITIONS = FEAT["partitions"]
ENCODER_FLAGS = cli_flags({k: FEAT[k] for k in ("device", "precision", "shard_items")})
# tokenisation or image decoding, and torch's CPU side, of one encoder job
ENCODER_THREADS = FEAT["threads"]
# an encoder job holds a GPU unless the config pins the encoders to the CPU (the demo): then they share the cores
ENCODER_GPUS = 0 if FEAT["device"] == "cpu" else 1
# an encoder job's output, in its store folder (the commands name it so)
MARKER = f"partitions/{{part}}-of-{PARTITIONS}.json"
# the stores embed_text writes: the plain text and UniSRec's word-dropped text (same encoder, same code version)
TEXT_MODALITIES = "text_worddrop|text"


# Both text stores of a task: modality text, and text_worddrop (UniSRec's word-dropped text, spec baselines.md
# section 8), which is built only when a rule asks for its manifest.
rule embed_text:
    input:
        item_table=rules.kcore.output.item_table,
        model=local_model_input(FEAT["text"]["model"]),
    output:
        # feature_store(task, modality)'s layout, with the modality a wildcard
        marker=os.path.join("results/features/{task}/{modality}", TEXT_ENCODER, MARKER),
    log:
        f"logs/features/{{task}}/{{modality}}.{{part}}-of-{PARTITIONS}.log",
    benchmark:
        f"logs/features/{{task}}/{{modality}}.{{part}}-of-{PARTITIONS}.benchmark.tsv"
    wildcard_constraints:
        part=r"\d+",
        modality=TEXT_MODALITIES,
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    threads: ENCODER_THREADS
    resources:
        gpu=ENCODER_GPUS,
        mem_mb=32000,
        runtime=720,
    params:
        out_dir=lambda w: feature_store(w.task, w.modality),
        # the rate is read only for text_worddrop: a config without UniSRec's settings still plans the plain store
        flags=lambda w: cli_flags(FEAT["text"])
        + ("" if w.modality == "text" else f" --word-drop {config['baselines']['unisrec']['word_drop_rate']}"),
        common=ENCODER_FLAGS,
        partitions=PARTITIONS,
        version=VERSION["text"],
    shell:
        "python -m ant embed-text --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
        "{params.flags} {params.common} --threads {threads} --partitions {params.partitions} "
        "--partition {wildcards.part} > {log:q} 2>&1"


rule embed_image:
    input:
        item_table=rules.kcore.output.item_table,
        images=rules.fetch_images.output.manifest,
        model=local_model_input(FEAT["image"]["model"]),
    output:
        marker=os.path.join(feature_store("{task}", "image"), MARKER),
    log:
        f"logs/features/{{task}}/image.{{part}}-of-{PARTITIONS}.log",
    benchmark:
        f"logs/features/{{task}}/image.{{part}}-of-{PARTITIONS}.benchmark.tsv"
    wildcard_constraints:
        part=r"\d+",
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    # never fewer than the encoder process and its decoding workers, which the job really keeps busy
    threads: max(ENCODER_THREADS, 1 + FEAT["image"]["loader_workers"])
    resources:
        gpu=ENCODER_GPUS,
        mem_mb=32000,
        runtime=1440,
    params:
        out_dir=lambda w: feature_store(w.task, "image"),
        flags=cli_flags(FEAT["image"]),
        common=ENCODER_FLAGS,
        partitions=PARTITIONS,
        version=VERSION["image"],
    shell:
        "python -m ant embed-image --task {wildcards.task} --items {input.item_table:q} --images {input.images:q} "
        "--out-dir {params.out_dir:q} {params.flags} {params.common} --threads {threads} "
        "--partitions {params.partitions} --partition {wildcards.part} > {log:q} 2>&1"


rule merge_features:
    input:
        item_table=rules.kcore.output.item_table,
        markers=lambda w: expand(
            rules.embed_image.output.marker if w.modality == "image" else rules.embed_text.output.marker,
            task=w.task,
            modality=w.modality,
            part=range(PARTITIONS),
        ),
    output:
        manifest="results/features/{task}/{modality}/{encoder}/manifest.json",
    log:
        "logs/features/{task}/{modality}/{encoder}.merge.log",
    benchmark:
        "logs/features/{task}/{modality}/{encoder}.merge.benchmark.tsv"
    wildcard_constraints:
        modality=f"{TEXT_MODALITIES}|image",
        encoder=_alternatives([TEXT_ENCODER, IMAGE_ENCODER]),
    priority: PRIORITY["inputs"]
    localrule: True
    conda:
        "../envs/ant.yaml"
    params:
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        partitions=PARTITIONS,
        version=lambda w: VERSION["image" if w.modality == "image" else "text"],
    shell:
        "python -m ant merge-features --items {input.item_table:q} --out-dir {params.out_dir:q} "
        "--partitions {params.partitions} > {log:q} 2>&1"


rule embed_price:
    input:
        item_table=rules.kcore.output.item_table,
    output:
        manifest=feature_manifest("{task}", "price"),
    log:
        "logs/features/{task}/price.log",
    benchmark:
        "logs/features/{task}/price.benchmark.tsv"
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    params:
        out_dir=lambda w: feature_store(w.task, "price"),
        flags=cli_flags(FEAT["price"]),
        version=VERSION["price"],
    shell:
        "python -m ant embed-price --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
        "{params.flags} > {log:q} 2>&1"
