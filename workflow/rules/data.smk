"""Raw files -> interactions -> 5-core sequences, items and stats per task; Table I."""


rule download:
    input:
        download_inputs,
    output:
        "resources/{rawfile}",
    log:
        "logs/download/{rawfile}.log",
    benchmark:
        "logs/download/{rawfile}.benchmark.tsv"
    wildcard_constraints:
        rawfile=_alternatives(RAW_BY_DEST),
    priority: PRIORITY["inputs"]
    retries: 1
    conda:
        "../envs/ant.yaml"
    params:
        sources=lambda w: shlex.join(f"--url={u}" for u in raw_file(w).urls),
        sha256=lambda w: f"--sha256 {raw_file(w).sha256}" if raw_file(w).sha256 else "",
        flags=cli_flags(config["download"]),
        version=VERSION["download"],
    shell:
        "python -m ant download --out {output:q} {params.sources} {params.sha256} {params.flags} > {log:q} 2>&1"


rule ingest:
    input:
        ratings=lambda w: f"resources/{RAW[w.task]['ratings'].dest}",
        meta=lambda w: f"resources/{RAW[w.task]['meta'].dest}",
    output:
        interactions="results/data/{task}/interactions.parquet",
        item_table="results/data/{task}/items_raw.parquet",
        stats="results/data/{task}/ingest.json",
    log:
        "logs/data/{task}/ingest.log",
    benchmark:
        "logs/data/{task}/ingest.benchmark.tsv"
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    threads: config["data"]["threads"]
    # peak RSS, measured with `bench data` at 3.2M and 9.6M lines: about 0.5 GB + 2.5 x the size of the raw files;
    # 4 x leaves room for real meta records (longer than the synthetic ones), and a retry asks for twice as much
    resources:
        mem_mb=lambda w, input, attempt: attempt * int(1000 + 4 * input.size_mb),
        runtime=240,
    params:
        format=lambda w: RELEASES[TASKS[w.task]["release"]]["format"],
        flags=cli_flags(config["data"], skip=("k_core", "max_history", "export_recbole", "threads")),
        version=VERSION["ingest"],
    shell:
        "python -m ant ingest --format {params.format} --ratings {input.ratings:q} --meta {input.meta:q} "
        "--interactions {output.interactions:q} --items {output.item_table:q} --stats {output.stats:q} "
        "{params.flags} > {log:q} 2>&1"


rule kcore:
    input:
        interactions=rules.ingest.output.interactions,
        item_table=rules.ingest.output.item_table,
        ingest_stats=rules.ingest.output.stats,
    output:
        sequences="results/data/{task}/sequences.parquet",
        item_table="results/data/{task}/items.parquet",
        stats="results/data/{task}/stats.json",
    log:
        "logs/data/{task}/kcore.log",
    benchmark:
        "logs/data/{task}/kcore.benchmark.tsv"
    priority: PRIORITY["inputs"]
    conda:
        "../envs/ant.yaml"
    threads: config["data"]["threads"]
    # peak RSS, measured alike: about 0.4 GB + 3.4 x the size of the ingest's files
    resources:
        mem_mb=lambda w, input, attempt: attempt * int(1000 + 5 * input.size_mb),
        runtime=120,
    params:
        k=config["data"]["k_core"],
        version=VERSION["kcore"],
    shell:
        "python -m ant kcore --task {wildcards.task} --interactions {input.interactions:q} "
        "--items-raw {input.item_table:q} --ingest-stats {input.ingest_stats:q} --k {params.k} "
        "--sequences {output.sequences:q} --items {output.item_table:q} --stats {output.stats:q} > {log:q} 2>&1"


rule export_recbole:
    input:
        sequences=rules.kcore.output.sequences,
        item_table=rules.kcore.output.item_table,
    output:
        directory("results/recbole/{task}"),
    log:
        "logs/data/{task}/export_recbole.log",
    benchmark:
        "logs/data/{task}/export_recbole.benchmark.tsv"
    conda:
        "../envs/ant.yaml"
    params:
        max_history=config["data"]["max_history"],
        version=VERSION["export"],
    shell:
        "python -m ant export-recbole --task {wildcards.task} --sequences {input.sequences:q} "
        "--items {input.item_table:q} --max-history {params.max_history} --out-dir {output:q} > {log:q} 2>&1"


rule table_datasets:
    input:
        expand(rules.kcore.output.stats, task=USED_TASKS),
    output:
        **{e: table_file("datasets", e, "Data", "Table I") for e in ("csv", "md", "html")},
    log:
        summary_log("tables", "datasets.log"),
    benchmark:
        summary_log("tables", "datasets.benchmark.tsv")
    conda:
        "../envs/ant.yaml"
    params:
        stats=lambda w, input: shlex.join(f"{t}={p}" for t, p in zip(USED_TASKS, input)),
        version=VERSION["tables"],
    shell:
        "python -m ant table datasets {params.stats} --csv {output.csv:q} --md {output.md:q} --html {output.html:q} "
        "> {log:q} 2>&1"
