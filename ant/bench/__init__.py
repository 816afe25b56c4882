"""`python -m ant bench <name>`: benchmarks that print throughput, wall time and peak memory."""

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "baselines": ("ant.bench.baselines", "every baseline's training rows/s and evaluation users/s"),
    "data": ("ant.bench.data", "ingest + 5-core at Clothing scale vs a pure-Python reference"),
    "features": ("ant.bench.features", "text and image embedding items/s vs a naive batch-of-4 loop"),
    "precision": ("ant.bench.precision", "text features in bf16/fp16 vs fp32: cosine, neighbour overlap, speed"),
    "train": ("ant.bench.train", "training rows/s and full-ranking evaluation users/s"),
}
