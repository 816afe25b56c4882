"""`python -m ant bench data`: ingest + k-core at Clothing scale, and against a pure-Python reference.

1. Generates (seeded, streaming, in a temporary folder) a ratings CSV in the 2018 `categoryFilesSmall`
   layout and a gzipped meta file with Clothing's shape: 32M lines, 2.7M meta records, ~12M users with
   Amazon-like ids (A + 13 base-36 chars; B0 + 8 for items), power-law activity, day-resolution
   timestamps (many ties), exact duplicate lines, items without meta, duplicate asins, junk prices.
   The 5-core keeps about 0.8M users, 0.5M items, 9.8M interactions (Clothing: 1.2M, 0.4M, 10.7M).
2. Runs the ingest and the k-core on it through the library functions the CLI calls, each in its own
   process, and prints the step's own time, the process's wall time, and its peak RSS (VmHWM).
3. On a 1M-line data set from the same generator (meta scaled alike), runs the same two steps and a
   straightforward pure-Python implementation of the same algorithm (ant.bench.reference: csv module, json,
   dicts, loops; it writes nothing, so it is timed favourably), alternately, best of --repeat runs; checks
   that both give the same sequences, and prints the speed-up overall and per part.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from ant.bench.reference import pure_python

_B36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
_CHUNK = 1 << 20
_RATINGS = np.array(["5.0", "4.0", "3.0", "2.0", "1.0"])
_RATING_P = [0.58, 0.2, 0.1, 0.06, 0.06]
_WORDS = np.array(
    "women men kids shoe shoes boot sandal dress shirt t-shirt jacket coat sock socks watch ring necklace "
    "bracelet earrings silver gold leather cotton slim fit classic running casual black white blue red pink "
    "grey navy size pack set of 2 3 vintage luggage bag handbag wallet belt hat cap scarf glove gloves sterling "
    "&amp; stainless steel crystal pendant sneaker loafer heel flat jeans pants shorts skirt hoodie sweater "
    "costume halloween baby girls boys toddler sport athletic outdoor hiking waterproof".split()
)
_CATEGORIES = [
    ["Clothing, Shoes & Jewelry", "Women", "Clothing", "Dresses"],
    ["Clothing, Shoes & Jewelry", "Men", "Shoes", "Athletic"],
    ["Clothing, Shoes & Jewelry", "Women", "Jewelry", "Necklaces & Pendants"],
    ["Clothing, Shoes & Jewelry", "Novelty & More", "Clothing", "Novelty", "Men", "Shirts", "T-Shirts"],
    ["Clothing, Shoes & Jewelry", "Girls", "Clothing"],
    ["Clothing, Shoes & Jewelry", "Luggage & Travel Gear"],
    [],
]


@dataclass(frozen=True)
class Shape:
    """The size of a synthetic data set; `scaled` keeps Clothing's proportions."""

    lines: int = 32_000_000
    meta_records: int = 2_700_000
    seed: int = 0

    @property
    def users(self) -> int:
        return max(10, int(self.lines * 12.0 / 32))

    @property
    def rated_items(self) -> int:  # items that appear in the ratings file
        return max(10, int(self.meta_records * 1.01))


# ---------------------------------------------------------------- synthetic data --------------------------
def _ids(rng: np.random.Generator, n: int, prefix: bytes, width: int) -> pa.Array:
    """n distinct random ids: prefix + base-36 characters, `width` bytes in all."""
    body = width - len(prefix)
    chars = _B36[rng.integers(0, 36, size=(n, body))]
    ids = np.frombuffer(np.hstack([np.tile(np.frombuffer(prefix, np.uint8), (n, 1)), chars]).tobytes(), f"S{width}")
    ids = ids.copy()
    while True:  # redraw the (rare) collisions
        _, first = np.unique(ids, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if not len(dup):
            break
        redraw = _B36[rng.integers(0, 36, size=(len(dup), body))]
        ids[dup] = np.frombuffer(
            np.hstack([np.tile(np.frombuffer(prefix, np.uint8), (len(dup), 1)), redraw]).tobytes(), f"S{width}"
        )
    return pa.array(ids, pa.binary(width)).cast(pa.string())


def _power_law(rng: np.random.Generator, n_pool: int, size: int, alpha: float) -> np.ndarray:
    """Indices into a pool where low indices are much more popular (density ~ x^(1/alpha - 1))."""
    return np.minimum((n_pool * rng.random(size) ** alpha).astype(np.int64), n_pool - 1)


def write_ratings(path: Path, shape: Shape) -> None:
    """The ratings CSV: item,user,rating,timestamp, no header, ~3% exact duplicate lines."""
    rng = np.random.default_rng(shape.seed)
    users = _ids(rng, shape.users, b"A", 14)
    items = _ids(np.random.default_rng(shape.seed + 1), shape.rated_items, b"B0", 10)
    user_perm = rng.permutation(shape.users)  # popularity is not alphabetical
    item_perm = rng.permutation(shape.rated_items)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with pacsv.CSVWriter(path, pa.schema([("i", pa.string()), ("u", pa.string()), ("r", pa.string()),
                                           ("t", pa.int64())]), write_options=options) as writer:  # fmt: skip
        for start in range(0, shape.lines, _CHUNK):
            n = min(_CHUNK, shape.lines - start)
            u = user_perm[_power_law(rng, shape.users, n, 3.0)]
            i = item_perm[_power_law(rng, shape.rated_items, n, 5.0)]
            t = 86400 * rng.integers(11_000, 17_800, n)
            r = rng.choice(len(_RATINGS), n, p=_RATING_P)
            dup = rng.random(n) < 0.03
            source = rng.integers(0, n, n)
            u, i, t, r = (np.where(dup, a[source], a) for a in (u, i, t, r))
            writer.write_table(
                pa.table(
                    {
                        "i": items.take(pa.array(i)),
                        "u": users.take(pa.array(u)),
                        "r": pa.array(_RATINGS[r]),
                        "t": pa.array(t),
                    }
                )  # fmt: skip
            )


def write_meta(path: Path, shape: Shape) -> None:
    """The meta JSON lines (gzip): 99% of the rated items plus meta-only items, 0.5% repeated asins."""
    rng = np.random.default_rng(shape.seed + 2)
    rated = _ids(np.random.default_rng(shape.seed + 1), shape.rated_items, b"B0", 10)
    described = rng.permutation(shape.rated_items)[: int(shape.rated_items * 0.98)]
    extra = max(0, shape.meta_records - len(described))
    asins = pa.concat_arrays([rated.take(pa.array(np.sort(described))), _ids(rng, extra, b"X0", 10)])[
        : shape.meta_records
    ]
    asins = asins.take(pa.array(rng.permutation(len(asins))))
    with gzip.open(path, "wb", compresslevel=1) as out:
        for start in range(0, len(asins), _CHUNK // 4):
            chunk = asins[start : start + _CHUNK // 4]
            n = len(chunk)
            repeat = rng.random(n) < 0.005
            ids = pa.concat_arrays([chunk, chunk.filter(pa.array(repeat))])
            _meta_frame(rng, ids).write_ndjson(out)


def _word_lists(rng: np.random.Generator, n: int, low: int, high: int) -> pl.Series:
    lengths = rng.integers(low, high, n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    words = pa.array(_WORDS).take(pa.array(rng.integers(0, len(_WORDS), int(lengths.sum()))))
    return pl.Series(pa.ListArray.from_arrays(offsets, words))


def _meta_frame(rng: np.random.Generator, ids: pa.Array) -> pl.DataFrame:
    n = len(ids)
    dollars = rng.lognormal(3, 1, n).round(2)
    kind = rng.random(n)
    amount = np.char.add("$", dollars.astype(str))
    price = np.where(kind < 0.55, amount, "")
    price = np.where((kind >= 0.55) & (kind < 0.6), np.char.add(amount, " - $99.99"), price)
    price = np.where((kind >= 0.6) & (kind < 0.65), ".a-box-inner{background-color:#fff}", price)
    n_images = rng.integers(0, 7, n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(n_images)]).astype(np.int32))
    image_ids = _ids(rng, int(n_images.sum()), b"", 11)
    base = pl.Series(image_ids).str.replace(r"^", "https://images-na.ssl-images-amazon.com/images/I/")
    small = pl.Series(pa.ListArray.from_arrays(offsets, (base + "._SS40_.jpg").to_arrow()))
    large = pl.Series(pa.ListArray.from_arrays(offsets, (base + ".jpg").to_arrow()))
    category = pl.Series([_CATEGORIES[c] for c in rng.integers(0, len(_CATEGORIES), 1024)], dtype=pl.List(pl.String))
    return pl.DataFrame(
        {
            "category": category.gather(rng.integers(0, 1024, n)),
            # a one-element list of text, as in the raw files
            "description": _word_lists(rng, n, 0, 40)
            .list.join(" ")
            .to_frame()
            .select(pl.concat_list(pl.first()))
            .to_series(),
            "title": _word_lists(rng, n, 3, 14).list.join(" "),
            "also_buy": _word_lists(rng, n, 0, 6),
            "brand": pl.Series(_WORDS[rng.integers(0, len(_WORDS), n)]).str.to_titlecase(),
            "rank": pl.Series(rng.integers(1, 5_000_000, n)).cast(pl.String).str.replace(r"^", ">#"),
            "main_cat": pl.repeat("Clothing, Shoes & Jewelry", n, eager=True),
            "price": pl.Series(price),
            "asin": pl.Series(ids),
            "imageURL": small,
            "imageURLHighRes": large,
        }
    )


def generate(folder: Path, shape: Shape) -> tuple[Path, Path]:
    ratings, meta = folder / "ratings.csv", folder / "meta.json.gz"
    write_ratings(ratings, shape)
    write_meta(meta, shape)
    return ratings, meta


# ---------------------------------------------------------------- measuring -------------------------------
def _child_main() -> None:
    """A measured child process: run one step, print its timing and its own peak RSS as JSON."""
    step, *paths = sys.argv[1:]
    phases: dict[str, float] = {}
    start = time.perf_counter()
    if step == "ingest":
        from ant.data.ingest import ingest

        work = time.perf_counter()
        ingest("amazon2018", *paths, timings=phases)
    elif step == "kcore":
        from ant.data.kcore import kcore

        work = time.perf_counter()
        kcore("bench", *paths[:3], 5, *paths[3:])
    else:
        work = time.perf_counter()
        sequences = pure_python(Path(paths[0]), Path(paths[1]), timings=phases)
        Path(paths[2]).write_text(json.dumps(sequences))
    end = time.perf_counter()
    print(json.dumps({"import_s": work - start, "work_s": end - work, "rss_gib": _peak_rss_gib(), "phases": phases}))


def _peak_rss_gib() -> float:
    """Peak resident memory of this process. Linux's VmHWM, because ru_maxrss survives exec() and so would
    count the pages of the (big) parent this child was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@dataclass(frozen=True)
class Measured:
    wall_s: float  # the whole process: interpreter start-up and imports included
    work_s: float  # the step itself
    rss_gib: float  # peak resident memory of the process
    phases: dict[str, float]


def _measure(label: str, step: str, *paths: Path, quiet: bool = False) -> Measured:
    """Run one step in its own process (so its peak memory is its own); print and return the numbers."""
    code = "from ant.bench.data import _child_main; _child_main()"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, step, *map(str, paths)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{done.stderr}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    measured = Measured(wall, child["work_s"], child["rss_gib"], child["phases"])
    if not quiet:
        _print(label, measured)
    return measured


def _print(label: str, m: Measured) -> None:
    print(f"  {label:<30} {m.work_s:8.1f} s work {m.wall_s:8.1f} s wall   peak RSS {m.rss_gib:6.2f} GiB", flush=True)


def _ours(folder: Path, ratings: Path, meta: Path, quiet: bool = False) -> tuple[Measured, Measured]:
    """ingest + kcore on one data set, each in its own process."""
    inter, items_raw, ingest_json = (folder / n for n in ("interactions.parquet", "items_raw.parquet", "ingest.json"))
    seqs, items, stats_json = (folder / n for n in ("sequences.parquet", "items.parquet", "stats.json"))
    ingest = _measure("ingest", "ingest", ratings, meta, inter, items_raw, ingest_json, quiet=quiet)
    kcore = _measure("kcore", "kcore", inter, items_raw, ingest_json, seqs, items, stats_json, quiet=quiet)
    if not quiet:
        stats = json.loads(stats_json.read_text())
        print(f"  -> {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions "
              f"from {stats['steps'][0]['interactions']:,} lines")  # fmt: skip
    return ingest, kcore


def _generate(folder: Path, shape: Shape) -> tuple[Path, Path]:
    start = time.perf_counter()
    ratings, meta = generate(folder, shape)
    print(f"  generated in {time.perf_counter() - start:.0f} s: {ratings.stat().st_size / 2**30:.2f} GiB csv, "
          f"{meta.stat().st_size / 2**30:.2f} GiB meta.json.gz", flush=True)  # fmt: skip
    return ratings, meta


def _best(runs: list[Measured]) -> Measured:
    return min(runs, key=lambda m: m.work_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=32_000_000, help="rating lines at full scale (Clothing: 32M)")
    parser.add_argument("--meta-records", type=int, default=2_700_000, help="meta records (Clothing: 2.7M)")
    parser.add_argument("--sample-lines", type=int, default=1_000_000,
                        help="lines of the comparison with pure Python (meta records scaled alike)")  # fmt: skip
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each side of the comparison, alternating; the fastest counts (default 3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-full", action="store_true", help="only run the comparison with pure Python")
    parser.add_argument("--workdir", default=None, help="folder for the temporary files (default: system temp)")


def run(args: argparse.Namespace) -> int:
    print(f"ant bench data: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="ant-bench-data-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        if not args.skip_full:
            print(f"\nfull scale: {args.lines:,} lines, {args.meta_records:,} meta records")
            (folder / "full").mkdir()
            ratings, meta = _generate(folder / "full", Shape(args.lines, args.meta_records, args.seed))
            ingest, kcore = _ours(folder / "full", ratings, meta)
            both = Measured(ingest.wall_s + kcore.wall_s, ingest.work_s + kcore.work_s,
                            max(ingest.rss_gib, kcore.rss_gib), {})  # fmt: skip
            _print("ingest + kcore", both)
            shutil.rmtree(folder / "full")

        scale = args.sample_lines / args.lines
        shape = Shape(args.sample_lines, max(100, round(args.meta_records * scale)), args.seed + 1)
        print(f"\nsample: {shape.lines:,} lines, {shape.meta_records:,} meta records; best of {args.repeat} runs each")
        sample = folder / "sample"
        sample.mkdir()
        ratings, meta = _generate(sample, shape)
        runs: dict[str, list[Measured]] = {"ingest": [], "kcore": [], "reference": []}
        for _ in range(args.repeat):
            ingest, kcore = _ours(sample, ratings, meta, quiet=True)
            runs["ingest"].append(ingest)
            runs["kcore"].append(kcore)
            runs["reference"].append(
                _measure("pure Python", "pure_python", ratings, meta, sample / "reference.json", quiet=True)
            )
        ingest, kcore, reference = _best(runs["ingest"]), _best(runs["kcore"]), _best(runs["reference"])
        _print("ours: ingest", ingest)
        for phase, seconds in ingest.phases.items():
            print(f"    {phase:<28} {seconds:8.1f} s")
        _print("ours: kcore", kcore)
        _print("pure Python: ingest + kcore", reference)
        for phase, seconds in reference.phases.items():
            print(f"    {phase:<28} {seconds:8.1f} s")
        expected = json.loads((sample / "reference.json").read_text())
        got = pl.read_parquet(sample / "sequences.parquet", columns=["user_id", "item_id"])
        same = dict(zip(got["user_id"].to_list(), got["item_id"].to_list(), strict=True)) == expected
        print(f"  same sequences as pure Python: {same} ({len(expected):,} users)")
        print(
            f"  speed-up over pure Python: {reference.work_s / (ingest.work_s + kcore.work_s):.1f}x (work), "
            f"{reference.wall_s / (ingest.wall_s + kcore.wall_s):.1f}x (wall: our 2 processes vs its 1)"
        )
        ref = reference.phases
        without_meta = ref["read ratings"] + ref["dedupe, meta filter"] + ref["k-core, order"]
        print(
            f"    ratings -> sequences: {without_meta / (ingest.phases['ratings'] + kcore.work_s):.1f}x, "
            f"meta: {ref['read meta'] / ingest.phases['meta']:.1f}x"
        )
        return 0 if same else 1
