"""Frozen modality features per task: BERT text, Swin image, sinusoidal price (spec section 2).

Every store's manifest.json is the output other rules depend on. With features.partitions = P > 1 the text
and image encoders of a task run as P jobs (one per partition, each writing partitions/<i>-of-<P>.json in the
store folder, each asking for a GPU) plus one merge job that checks them and writes the manifest.
"""

PARTITIONS = FEAT["partitions"]
ENCODER_FLAGS = cli_flags({k: FEAT[k] for k in ("device", "precision", "shard_items")})
ONE_JOB = "--partitions 1"
# the encoder process plus its decoding workers: what the job really uses, locally and on SLURM
IMAGE_THREADS = 1 + FEAT["image"]["loader_workers"]
MERGE = f"--partitions {PARTITIONS} --merge"
PARTITION_MARKER = os.path.join("{store}", "partitions", f"{{part}}-of-{PARTITIONS}.json")
TEXT_PARTITION = PARTITION_MARKER.format(store=os.path.dirname(feature_manifest("{task}", "text")), part="{part}")
IMAGE_PARTITION = PARTITION_MARKER.format(store=os.path.dirname(feature_manifest("{task}", "image")), part="{part}")


if PARTITIONS == 1:

    rule embed_text:
        input:
            item_table="results/data/{task}/items.parquet",
            model=local_model_input(FEAT["text"]["model"]),
        output:
            feature_manifest("{task}", "text"),
        log:
            "logs/features/{task}/text.log",
        benchmark:
            "logs/features/{task}/text.benchmark.tsv"
        conda:
            "../envs/ant.yaml"
        threads: 2
        resources:
            gpu=1,
        params:
            out_dir=lambda w, output: os.path.dirname(output[0]),
            flags=cli_flags(FEAT["text"]),
            common=ENCODER_FLAGS,
            partition=ONE_JOB,
            version=VERSION["text"],
        shell:
            "python -m ant embed-text --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
            "{params.flags} {params.common} --threads {threads} {params.partition} > {log:q} 2>&1"

    rule embed_image:
        input:
            item_table="results/data/{task}/items.parquet",
            images="results/images/{task}/manifest.json",
            model=local_model_input(FEAT["image"]["model"]),
        output:
            feature_manifest("{task}", "image"),
        log:
            "logs/features/{task}/image.log",
        benchmark:
            "logs/features/{task}/image.benchmark.tsv"
        conda:
            "../envs/ant.yaml"
        threads: IMAGE_THREADS
        resources:
            gpu=1,
        params:
            out_dir=lambda w, output: os.path.dirname(output[0]),
            flags=cli_flags(FEAT["image"]),
            common=ENCODER_FLAGS,
            partition=ONE_JOB,
            version=VERSION["image"],
        shell:
            "python -m ant embed-image --task {wildcards.task} --items {input.item_table:q} --images {input.images:q} "
            "--out-dir {params.out_dir:q} {params.flags} {params.common} --threads {threads} {params.partition} "
            "> {log:q} 2>&1"

else:

    rule embed_text_partition:
        input:
            item_table="results/data/{task}/items.parquet",
            model=local_model_input(FEAT["text"]["model"]),
        output:
            TEXT_PARTITION,
        log:
            "logs/features/{task}/text.part{part}.log",
        benchmark:
            "logs/features/{task}/text.part{part}.benchmark.tsv"
        wildcard_constraints:
            part=r"\d+",
        conda:
            "../envs/ant.yaml"
        threads: 2
        resources:
            gpu=1,
        params:
            out_dir=lambda w, output: os.path.dirname(os.path.dirname(output[0])),  # above partitions/
            flags=cli_flags(FEAT["text"]),
            common=ENCODER_FLAGS,
            partition=lambda w: f"--partitions {PARTITIONS} --partition {w.part}",
            version=VERSION["text"],
        shell:
            "python -m ant embed-text --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
            "{params.flags} {params.common} --threads {threads} {params.partition} > {log:q} 2>&1"

    rule embed_text:
        input:
            item_table="results/data/{task}/items.parquet",
            partitions=lambda w: expand(TEXT_PARTITION, task=w.task, part=range(PARTITIONS)),
        output:
            feature_manifest("{task}", "text"),
        log:
            "logs/features/{task}/text.log",
        benchmark:
            "logs/features/{task}/text.benchmark.tsv"
        conda:
            "../envs/ant.yaml"
        params:
            out_dir=lambda w, output: os.path.dirname(output[0]),
            flags=cli_flags(FEAT["text"]),
            common=ENCODER_FLAGS,
            partition=MERGE,
            version=VERSION["text"],
        shell:
            "python -m ant embed-text --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
            "{params.flags} {params.common} --threads {threads} {params.partition} > {log:q} 2>&1"

    rule embed_image_partition:
        input:
            item_table="results/data/{task}/items.parquet",
            images="results/images/{task}/manifest.json",
            model=local_model_input(FEAT["image"]["model"]),
        output:
            IMAGE_PARTITION,
        log:
            "logs/features/{task}/image.part{part}.log",
        benchmark:
            "logs/features/{task}/image.part{part}.benchmark.tsv"
        wildcard_constraints:
            part=r"\d+",
        conda:
            "../envs/ant.yaml"
        threads: IMAGE_THREADS
        resources:
            gpu=1,
        params:
            out_dir=lambda w, output: os.path.dirname(os.path.dirname(output[0])),  # above partitions/
            flags=cli_flags(FEAT["image"]),
            common=ENCODER_FLAGS,
            partition=lambda w: f"--partitions {PARTITIONS} --partition {w.part}",
            version=VERSION["image"],
        shell:
            "python -m ant embed-image --task {wildcards.task} --items {input.item_table:q} --images {input.images:q} "
            "--out-dir {params.out_dir:q} {params.flags} {params.common} --threads {threads} {params.partition} "
            "> {log:q} 2>&1"

    rule embed_image:
        input:
            item_table="results/data/{task}/items.parquet",
            images="results/images/{task}/manifest.json",
            partitions=lambda w: expand(IMAGE_PARTITION, task=w.task, part=range(PARTITIONS)),
        output:
            feature_manifest("{task}", "image"),
        log:
            "logs/features/{task}/image.log",
        benchmark:
            "logs/features/{task}/image.benchmark.tsv"
        conda:
            "../envs/ant.yaml"
        params:
            out_dir=lambda w, output: os.path.dirname(output[0]),
            flags=cli_flags(FEAT["image"]),
            common=ENCODER_FLAGS,
            partition=MERGE,
            version=VERSION["image"],
        shell:
            "python -m ant embed-image --task {wildcards.task} --items {input.item_table:q} --images {input.images:q} "
            "--out-dir {params.out_dir:q} {params.flags} {params.common} --threads {threads} {params.partition} "
            "> {log:q} 2>&1"


rule embed_price:
    input:
        item_table="results/data/{task}/items.parquet",
    output:
        feature_manifest("{task}", "price"),
    log:
        "logs/features/{task}/price.log",
    benchmark:
        "logs/features/{task}/price.benchmark.tsv"
    conda:
        "../envs/ant.yaml"
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
        flags=cli_flags(FEAT["price"]),
        version=VERSION["price"],
    shell:
        "python -m ant embed-price --task {wildcards.task} --items {input.item_table:q} --out-dir {params.out_dir:q} "
        "{params.flags} > {log:q} 2>&1"
