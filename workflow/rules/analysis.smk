"""The paper's tables and figures as final targets, each output a result of the HTML report (`snakemake --report`).

Every output is the configuration's: results/tables/<experiment>/, results/figures/<experiment>/ (common.smk
summary_file), logs beside in logs/tables/<experiment>/ and logs/figures/<experiment>/.

Table II is written three ways from the same runs: under the configured history rule (the headline), under the
other rule, and "as published" (each method under its source's rule; spec baselines.md 2.5)."""

TRANSFERABILITY_TASKS = list(dict.fromkeys(TARGETS + AUXILIARY))
CURVE_GROUPS = [*TARGETS, "pretraining"]


# headline: the configured rule for every method; other: the other rule; published: each method's source's rule
OVERALL_FORMS = {
    "headline": ("overall", "configured"),
    "other": (f"overall_{OTHER_HISTORY_RULE}", OTHER_HISTORY_RULE),
    "published": ("overall_as_published", "as_published"),
}


rule table_overall:
    input:
        overall_runs(),
    output:
        **{
            f"{form}_{ext}": table_file(name, ext, "Overall", f"Table II, {rule.replace('_', ' ')}", "overall")
            for form, (name, rule) in OVERALL_FORMS.items()
            for ext in ("csv", "md", "html")
        },
    log:
        summary_log("tables", "overall.log"),
    benchmark:
        summary_log("tables", "overall.benchmark.tsv")
    conda:
        "../envs/ant.yaml"
    params:
        alpha=config["tables"]["alpha"],
        other=OTHER_HISTORY_RULE,
        version=VERSION["tables"],
    shell:
        "(python -m ant table overall {input:q} --rule configured --alpha {params.alpha} "
        "--csv {output.headline_csv:q} --md {output.headline_md:q} --html {output.headline_html:q} && "
        "python -m ant table overall {input:q} --rule {params.other} --alpha {params.alpha} "
        "--csv {output.other_csv:q} --md {output.other_md:q} --html {output.other_html:q} && "
        "python -m ant table overall {input:q} --rule as_published --alpha {params.alpha} "
        "--csv {output.published_csv:q} --md {output.published_md:q} --html {output.published_html:q}) "
        "> {log:q} 2>&1"


rule table_negative_transfer:
    input:
        negative_transfer_runs(),
    output:
        **{e: table_file("negative_transfer", e, "Negative transfer", "Table III") for e in ("csv", "md", "html")},
    log:
        summary_log("tables", "negative_transfer.log"),
    benchmark:
        summary_log("tables", "negative_transfer.benchmark.tsv")
    conda:
        "../envs/ant.yaml"
    params:
        version=VERSION["tables"],
    shell:
        "python -m ant table negative-transfer {input:q} --csv {output.csv:q} --md {output.md:q} "
        "--html {output.html:q} > {log:q} 2>&1"


rule table_ablation:
    input:
        ablation_runs(),
    output:
        **{e: table_file("ablation", e, "Ablation", "Table IV") for e in ("csv", "md", "html")},
    log:
        summary_log("tables", "ablation.log"),
    benchmark:
        summary_log("tables", "ablation.benchmark.tsv")
    conda:
        "../envs/ant.yaml"
    params:
        version=VERSION["tables"],
    shell:
        "python -m ant table ablation {input:q} --csv {output.csv:q} --md {output.md:q} --html {output.html:q} "
        "> {log:q} 2>&1"


rule figure_transferability:
    input:
        unpack(transferability_inputs),
    output:
        **{
            e: table_file("transferability", e, "Transferability", "Figure 2", modality="all (numbers)")
            for e in ("csv", "md", "html")
        },
        **{
            m: report(
                summary_file("figures", f"transferability_{m}.png"),
                caption="../report/transferability.rst",
                category="Transferability",
                labels={"table": "Figure 2", "modality": m, "file": "png"},
            )
            for m in MODALITIES
        },
    log:
        summary_log("figures", "transferability.log"),
    benchmark:
        summary_log("figures", "transferability.benchmark.tsv")
    conda:
        "../envs/ant.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=32000,
        runtime=240,
    params:
        tasks=lambda w, input: task_flags(input, TRANSFERABILITY_TASKS),
        roles=shlex.join(["--targets", *TARGETS, "--auxiliary", *AUXILIARY]),
        pretrained=lambda w, input: (
            f"--pretrained {shlex.quote(input.pretrained)}" if "pretrained" in input.keys() else ""
        ),
        # figure2.features is --features-kind: --features names the feature stores, as in every training command
        settings=shlex.join(["--features-kind", config["figure2"]["features"]])
        + " "
        + cli_flags(config["figure2"], skip=("features",)),
        seed=SEEDS[0],
        figures=lambda w, output: shlex.join(f"--figure={m}={output[m]}" for m in MODALITIES),
        version=VERSION["figures"],
    shell:
        "python -m ant figure transferability {params.tasks} {params.roles} {params.pretrained} {params.settings} "
        "--seed {params.seed} --threads {threads} --csv {output.csv:q} --md {output.md:q} --html {output.html:q} "
        "{params.figures} > {log:q} 2>&1"


rule figure_training_curves:
    input:
        curve_inputs,
    output:
        report(
            summary_file("figures", "training_curves/{group}.png"),
            caption="../report/training_curves.rst",
            category="Training curves",
            labels={"runs": "{group}"},
        ),
    log:
        summary_log("figures", "training_curves/{group}.log"),
    wildcard_constraints:
        group=_alternatives(CURVE_GROUPS),
    conda:
        "../envs/ant.yaml"
    params:
        panels=lambda w, input: curve_flags(w.group, input),
        title=lambda w: curve_title(w.group),
        version=VERSION["figures"],
    shell:
        "python -m ant figure training-curves {params.panels} --title {params.title:q} --out {output:q} > {log:q} 2>&1"
