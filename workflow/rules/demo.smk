"""The embedded demo: raw mini-Amazon files in the 2018 formats, and tiny local BERT/Swin models."""


rule demo_data:
    output:
        ratings=expand("{out}/categoryFilesSmall/{category}.csv", out=DEMO["out"], category=DEMO["categories"]),
        meta=expand("{out}/metaFiles2/meta_{category}.json.gz", out=DEMO["out"], category=DEMO["categories"]),
        manifest=expand("{out}/demo.json", out=DEMO["out"]),
    log:
        "logs/demo/demo_data.log",
    benchmark:
        "logs/demo/demo_data.benchmark.tsv"
    conda:
        "../envs/ant.yaml"
    params:
        out=lambda w, output: os.path.dirname(output.manifest[0]),
        seed=DEMO["seed"],
        categories=DEMO["categories"],
        version=VERSION["demo"],
    shell:
        "python -m ant demo-data --out {params.out:q} --seed {params.seed} "
        "--categories {params.categories:q} > {log:q} 2>&1"


rule tiny_models:
    output:
        bert=directory("resources/models/tiny-bert"),
        swin=directory("resources/models/tiny-swin"),
    log:
        "logs/demo/tiny_models.log",
    benchmark:
        "logs/demo/tiny_models.benchmark.tsv"
    conda:
        "../envs/ant.yaml"
    params:
        seed=DEMO["seed"],
        version=VERSION["tiny_models"],
    shell:
        "python -m ant tiny-models --bert {output.bert:q} --swin {output.swin:q} " "--seed {params.seed} > {log:q} 2>&1"
