"""Version of each stage's code and output format.

Snakemake does not rerun a rule when code inside `ant/` changes; every rule puts its stage's version into
its `params`, so bumping a number here reruns that stage and everything downstream of it. Bump it whenever
a change alters what the stage writes (format, semantics, numbers), not for refactors.
"""

STAGES: dict[str, int] = {
    "demo": 1,
    "download": 1,
    "ingest": 1,
    "kcore": 1,
    "export": 1,
    "tiny_models": 2,
    "images": 2,
    "text": 2,
    "image": 2,
    "price": 1,
    "pretrain": 3,
    "adapt": 3,
    "baselines": 1,
    "baseline_pretrain": 1,
    "tables": 3,
    "figures": 1,
}
