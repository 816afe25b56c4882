"""`python -m ant demo-data`: the embedded demo, a generated mini-Amazon in the raw 2018 formats.

Contract. For `--out OUT --seed S --categories C1 .. Cn` it writes, laid out like the Amazon 2018 host (the
demo is served as a release whose mirror is OUT):

    OUT/categoryFilesSmall/<C>.csv        ratings only, no header: item,user,rating,timestamp
    OUT/metaFiles2/meta_<C>.json.gz       one JSON object per line, the 2018 meta keys in their order
    OUT/images/<C>/<asin>_<k>.jpg|png     small JPEG and PNG images, referenced by absolute file:// URLs
    OUT/demo.json                         manifest (seed, categories, counts, file checksums), written last

Every file is written atomically (each category's images as one folder rename), demo.json is removed first
and written last, so its presence means the set is complete. The output is byte-identical for the same
seed, categories, scale and output folder (the URLs are absolute). Each category is generated from its own
random streams, so it does not depend on which other categories are generated.

Sizes, the planted structure and the noise are documented in world.py and render.py; the word lists in
catalog.py, whose `vocabulary()` the demo's tiny BERT is built from.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ant.data.demo.catalog import PROFILES, STYLES, vocabulary
from ant.data.demo.render import write_category
from ant.data.demo.world import KNOBS, build_world
from ant.errors import UserError
from ant.io import sha256_file, write_json
from ant.versions import STAGES

__all__ = ["generate", "vocabulary", "add_arguments", "run"]

log = logging.getLogger(__name__)


def generate(out: str | Path, seed: int, categories: Sequence[str], scale: float = 1.0) -> dict[str, Any]:
    """Write the demo release into `out` and return its manifest (also written to `out`/demo.json)."""
    unknown = [c for c in categories if c not in PROFILES]
    if unknown:
        raise UserError(f"demo-data: unknown categories {unknown}; the demo knows {sorted(PROFILES)}")
    if len(set(categories)) != len(categories) or not categories:
        raise UserError(f"demo-data: give each category once, at least one (got {list(categories)})")
    if seed < 0:
        raise UserError(f"demo-data: --seed must be >= 0 (got {seed})")
    if not 0 < scale <= 100:
        raise UserError(f"demo-data: --scale must be in (0, 100] (got {scale})")
    out = Path(out).resolve()
    manifest_path = out / "demo.json"
    manifest_path.unlink(missing_ok=True)  # no stale manifest may vouch for a half-rewritten folder

    counts, files = {}, []
    for category in categories:
        world = build_world(category, PROFILES[category], seed, scale)
        written = write_category(world, out, seed)
        counts[category], files = written.counts, files + written.files
        log.info(
            "%s: %d rating lines, %d users, %d meta records, %d image files",
            category,
            written.counts["rating_lines"],
            written.counts["users"],
            written.counts["meta_records"],
            written.counts["image_files"],
        )
    manifest = {
        "generator": "ant.data.demo",
        "version": STAGES["demo"],
        "format": "amazon2018",
        "seed": seed,
        "scale": scale,
        "categories": list(categories),
        "styles": len(STYLES),
        "knobs": dict(vars(KNOBS).items()),
        "counts": counts,
        "files": {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files},
    }
    write_json(manifest, manifest_path)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the demo release into")
    parser.add_argument("--seed", type=int, default=2023, help="everything follows from it (default 2023)")
    parser.add_argument(
        "--categories",
        nargs="+",
        default=["Food", "Movies", "Home", "Clothing", "Scientific", "Office"],
        help=f"categories to generate, among {', '.join(PROFILES)}",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply users and items (default 1)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    generate(args.out, args.seed, args.categories, args.scale)
    log.info("demo written to %s in %.1f s", args.out, time.perf_counter() - start)
    return 0
