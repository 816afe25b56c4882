"""Result tables (and, later, figures and the report) as final targets."""


rule table_negative_transfer:
    input:
        negative_transfer_runs(),
    output:
        csv="results/tables/negative_transfer.csv",
        md="results/tables/negative_transfer.md",
    log:
        "logs/tables/negative_transfer.log",
    benchmark:
        "logs/tables/negative_transfer.benchmark.tsv"
    conda:
        "../envs/ant.yaml"
    params:
        version=VERSION["tables"],
    shell:
        "python -m ant table negative-transfer {input:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"
