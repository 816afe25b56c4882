"""`python -m ant figure <name>`: draw one of the paper's figures (PNG) with the numbers behind it."""

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "transferability": ("ant.analysis.transferability", "Figure 2: target-vs-auxiliary item classifiers per modality"),
    "training-curves": ("ant.analysis.curves", "each run's loss and validation metric per epoch (history.csv)"),
}
