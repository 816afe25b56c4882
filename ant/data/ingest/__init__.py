"""`python -m ant ingest`: raw ratings + meta files -> interactions.parquet, items_raw.parquet, ingest.json.

Inputs (gzip, plain, or gzip inside gzip; sniffed from the bytes, never from the file name):
  ratings, --format amazon2018: the ratings-only CSV (no header; item,user,rating,timestamp in seconds) or
      the full reviews as JSON lines (reviewerID, asin, overall, unixReviewTime), told apart by content;
  ratings, --format amazon2023: reviews as JSON lines (user_id, parent_asin, rating, timestamp in ms);
  meta: JSON lines, 2018 (asin, title, brand, category, price, imageURL, imageURLHighRes) or
      2023 (parent_asin, title, store, details.Brand, categories, price, images[{hi_res, large}]).

Outputs (the contract the k-core stage and the feature stages read):
  interactions.parquet  user_id str, item_id str, rating f32, timestamp i64 (s): every parsed line, in
                        file order, nothing deduplicated yet (that is step 1 of `kcore`).
  items_raw.parquet     one row per distinct meta id, first record wins, in file order: item_id, title,
                        brand, categories list<str>, text (ant.data.text), price_usd f64|null
                        (ant.data.price), image_urls list<str>, image_fallback_urls list<str|null>.
                        Image slot k: imageURLHighRes[k] if present else imageURL[k]; its fallback is
                        imageURL[k] when the primary came from imageURLHighRes (2023: hi_res / large).
  ingest.json           per file: lines, blank and malformed lines (with examples), records, ...

A malformed line is counted and skipped; more than --max-malformed-share of a file's lines fails the ingest
with a message naming the file, the count, the share and the first bad line. All three outputs appear
together, only when everything succeeded.

Everything streams (the parts: ant.data.ingest.inputs, .ratings, .json_lines, .meta, .line_stats); Python
runs per bad line, never per good one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ant.data.ingest.inputs import open_input, sniff
from ant.data.ingest.line_stats import LineStats
from ant.data.ingest.meta import ITEMS_RAW_SCHEMA, meta_items
from ant.data.ingest.ratings import INTERACTIONS_SCHEMA, csv_ratings, json_ratings
from ant.data.price import MODES, RANGE
from ant.data.text import DEFAULT_MAX_CHARS
from ant.errors import UserError
from ant.io import atomic_path, write_json

log = logging.getLogger(__name__)

FORMATS = ("amazon2018", "amazon2023")


def _arrow(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    return frame.select(schema.names).to_arrow().cast(schema)


def ingest(
    fmt: str,
    ratings: str | Path,
    meta: str | Path,
    interactions_out: str | Path,
    items_out: str | Path,
    stats_out: str | Path,
    max_malformed_share: float = 0.01,
    price_range: str = "lower",
    max_field_chars: int = DEFAULT_MAX_CHARS,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run the ingest (see the module docstring); returns the statistics also written to `stats_out`.
    `timings`, if given, receives the seconds spent on each file (for the benchmark)."""
    timings = {} if timings is None else timings
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if price_range not in MODES:
        raise UserError(f"unknown --price-range {price_range!r}; use one of {', '.join(MODES)}")
    with contextlib.ExitStack() as stack:
        inter_tmp = stack.enter_context(atomic_path(interactions_out))
        items_tmp = stack.enter_context(atomic_path(items_out))
        start = time.perf_counter()
        rating_stats = _ingest_ratings(fmt, Path(ratings), inter_tmp, max_malformed_share)
        timings["ratings"] = time.perf_counter() - start
        meta_stats = _ingest_meta(fmt, Path(meta), items_tmp, max_malformed_share, price_range, max_field_chars)
        timings["meta"] = time.perf_counter() - start - timings["ratings"]
        stats = {
            "format": fmt,
            "options": {
                "max_malformed_share": max_malformed_share,
                "price_range": price_range,
                "max_field_chars": max_field_chars,
            },
            "ratings": rating_stats,
            "meta": meta_stats,
        }
        write_json(stats, stats_out)
    return stats


def _ingest_ratings(fmt: str, path: Path, out: Path, max_share: float) -> dict[str, Any]:
    stream, layers = open_input(path)
    stats = LineStats(str(path), layers)
    empty, as_json = sniff(path, layers)
    if fmt == "amazon2023" and not (as_json or empty):
        stream.close()
        raise UserError(f"{path}: amazon2023 reviews must be JSON lines (user_id, parent_asin, rating, timestamp)")
    # an intermediate file read once by `kcore`: lz4 without dictionaries writes 2x and reads 6x faster than
    # zstd with them (bench data: 0.20 s + 0.05 s against 0.39 s + 0.32 s per 1M lines), for 1.8x the bytes
    writer = pq.ParquetWriter(out, INTERACTIONS_SCHEMA, compression="lz4", use_dictionary=False)
    with stream, writer:
        tables = json_ratings(stream, fmt, stats) if as_json else csv_ratings(stream, stats)
        for table in tables if not empty else ():
            if len(table):
                writer.write_table(table)
    stats.check(max_share, "ratings")
    log.info("%s: %d lines, %d interactions, %d malformed", path, stats.lines, stats.records, stats.malformed_lines)
    return {"kind": "json_lines" if as_json else "csv", **stats.as_dict(), "interactions": stats.records}


def _ingest_meta(fmt: str, path: Path, out: Path, max_share: float, price_range: str,
                 max_field_chars: int) -> dict[str, Any]:  # fmt: skip
    stream, layers = open_input(path)
    stats = LineStats(str(path), layers)
    with stream:
        records = meta_items(stream, fmt, stats, price_range, max_field_chars)
    if stats.examples and stats.examples[0]["text"].startswith("{'"):
        stats.hint = " (single-quoted records are Python literals, as in the 2014 release; use the 2018 metaFiles2)"
    stats.check(max_share, "meta")  # raises when there is no record at all
    assert records is not None
    items = records.filter(records["item_id"].is_first_distinct())  # the first record of an id wins
    prices = Counter(dict(items["price_status"].value_counts().iter_rows()))
    pq.write_table(_arrow(items.drop("price_status"), ITEMS_RAW_SCHEMA), out, compression="zstd")
    log.info("%s: %d records, %d items", path, records.height, items.height)
    return {
        **stats.as_dict(),
        "duplicate_ids": records.height - items.height,
        "items": items.height,
        "prices": {
            "parsed": prices["parsed"] + prices[RANGE],
            "from_range": prices[RANGE],
            "unparseable": prices["unparseable"],
            "missing": prices["missing"],
        },
        "items_without_text": int((items["text"] == "").sum()),
        "items_without_images": int((items["image_urls"].list.len() == 0).sum()),
    }


# ---------------------------------------------------------------- CLI ------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="raw release format")
    parser.add_argument("--ratings", required=True, help="ratings CSV or reviews JSON lines (gzip or plain)")
    parser.add_argument("--meta", required=True, help="item metadata, JSON lines (gzip or plain)")
    parser.add_argument("--interactions", required=True, help="output interactions.parquet")
    parser.add_argument("--items", required=True, help="output items_raw.parquet")
    parser.add_argument("--stats", required=True, help="output ingest.json")
    parser.add_argument(
        "--max-malformed-share",
        type=float,
        default=0.01,
        help="fail when more than this share of a file's lines is malformed (default 0.01)",
    )
    parser.add_argument(
        "--price-range", choices=MODES, default="lower", help="which number of a price range to keep (default lower)"
    )
    parser.add_argument("--max-field-chars", type=int, default=DEFAULT_MAX_CHARS,
                        help="a text field of at least this many characters becomes empty (default 2000)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.max_malformed_share <= 1:
        raise UserError(f"--max-malformed-share must be within [0, 1], got {args.max_malformed_share}")
    if args.max_field_chars < 1:
        raise UserError(f"--max-field-chars must be positive, got {args.max_field_chars}")
    ingest(
        args.format,
        args.ratings,
        args.meta,
        args.interactions,
        args.items,
        args.stats,
        max_malformed_share=args.max_malformed_share,
        price_range=args.price_range,
        max_field_chars=args.max_field_chars,
    )
    return 0
