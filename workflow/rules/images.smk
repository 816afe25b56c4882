"""Item images: fetched, verified with Pillow, resized and stored re-encoded in Parquet shards.

Dead links never fail this rule: they are counted by cause in stats.json. The shards are not outputs (the
manifest is); a killed job resumes from the shards it finished.
"""


rule fetch_images:
    input:
        item_table=rules.kcore.output.item_table,
    output:
        manifest="results/images/{task}/manifest.json",
        stats="results/images/{task}/stats.json",
    log:
        "logs/images/{task}.log",
    benchmark:
        "logs/images/{task}.benchmark.tsv"
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    threads: config["images"]["threads"]
    resources:
        mem_mb=16000,
        runtime=2880,
    params:
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        flags=cli_flags(config["images"], skip=("threads",)),
        version=VERSION["images"],
    shell:
        "python -m ant fetch-images --items {input.item_table:q} --out-dir {params.out_dir:q} "
        "--stats {output.stats:q} {params.flags} > {log:q} 2>&1"
