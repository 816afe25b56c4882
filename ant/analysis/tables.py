"""`python -m ant table <name>`: render one result table as CSV and Markdown."""

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "datasets": ("ant.analysis.datasets_table", "Table I: users, items, interactions per task"),
    "overall": ("ant.analysis.overall", "Table II: every method on every target, improvement and significance"),
    "negative-transfer": ("ant.analysis.negative_transfer", "Table III: G / F / R adaptation per target task"),
    "ablation": ("ant.analysis.ablation", "Table IV: ANT-R and its ablations per target task"),
}
