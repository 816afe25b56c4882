"""The pure-Python reference of ingest + k-core: the same algorithm, straightforwardly (csv, json, dicts, loops).

What `bench data` times ours against, and what the k-core tests check ours against: the 2018 ratings CSV and
meta JSON lines (plain or gzip) in, each user's items in time order out. It writes nothing, so it is timed
favourably.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

from ant.data.price import parse_price
from ant.data.text import item_text


def pure_python(ratings: Path, meta: Path, k: int = 5, timings: dict[str, float] | None = None) -> dict[str, list]:
    """The same ingest + k-core, straightforwardly: csv module, json, dicts and loops. Returns each user's
    items in order; `timings` (if given) receives the seconds of each phase."""
    timings = {} if timings is None else timings
    start = time.perf_counter()
    interactions = []
    with open(ratings, newline="") as fh:
        for row in csv.reader(fh, quoting=csv.QUOTE_NONE):
            try:
                item, user, rating, timestamp = row
                if item and user:
                    interactions.append((user, item, float(rating), int(timestamp)))
            except ValueError:
                continue
    timings["read ratings"] = time.perf_counter() - start

    start = time.perf_counter()
    items = {}
    with open(meta, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    with gzip.open(meta, "rt") if gzipped else open(meta) as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            asin = record.get("asin")
            if asin and asin not in items:
                high, low = record.get("imageURLHighRes") or [], record.get("imageURL") or []
                items[asin] = (
                    item_text(record.get("title"), record.get("category"), record.get("brand")),
                    parse_price(record.get("price"))[0],
                    [(h or lo, lo if h else None) for h, lo in itertools.zip_longest(high, low) if h or lo],
                )
    timings["read meta"] = time.perf_counter() - start

    start = time.perf_counter()
    interactions = [x for x in dict.fromkeys(interactions) if x[1] in items]
    timings["dedupe, meta filter"] = time.perf_counter() - start

    start = time.perf_counter()
    while True:
        user_count: dict[str, int] = defaultdict(int)
        item_count: dict[str, int] = defaultdict(int)
        for user, item, _, _ in interactions:
            user_count[user] += 1
            item_count[item] += 1
        kept = [x for x in interactions if user_count[x[0]] >= k and item_count[x[1]] >= k]
        if len(kept) == len(interactions):
            break
        interactions = kept
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user, item, _, timestamp in interactions:
        by_user[user].append((timestamp, item))
    sequences = {user: [item for _, item in sorted(by_user[user])] for user in sorted(by_user)}
    timings["k-core, order"] = time.perf_counter() - start
    return sequences
