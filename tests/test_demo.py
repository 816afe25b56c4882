"""The embedded demo (ant.data.demo): layout and formats of the raw 2018 files, determinism, the noise the data
stage must remove, and the learnable structure the models must find."""

from __future__ import annotations

import gzip
import hashlib
import html
import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ant.data.demo import generate, vocabulary
from ant.data.demo.catalog import PROFILES, STYLES, words
from ant.data.demo.render import folder_digest, format_price
from ant.data.demo.world import DAY, FIRST_DAY, KNOBS, LAST_DAY, build_world, cut_series, day_sequence
from ant.errors import UserError

SEED = 2023
META_KEYS_2018 = [
    "category",
    "tech1",
    "description",
    "fit",
    "title",
    "also_buy",
    "tech2",
    "brand",
    "feature",
    "rank",
    "also_view",
    "details",
    "main_cat",
    "similar_item",
    "date",
    "price",
    "asin",
    "imageURL",
    "imageURLHighRes",
]
PLAIN = re.compile(r"^\$\d{1,3}\.\d\d$")
THOUSANDS = re.compile(r"^\$\d{1,3}(,\d{3})+\.\d\d$")
RANGE = re.compile(r"^\$[\d,]+\.\d\d - \$[\d,]+\.\d\d$")


# ---------------------------------------------------------------- fixtures -------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """Two categories at full size (an auxiliary and a target task)."""
    out = tmp_path_factory.mktemp("demo")
    generate(out, SEED, ["Food", "Scientific"])
    return out


def ratings(out: Path, category: str) -> list[tuple[str, str, float, int]]:
    rows = []
    for line in (out / "categoryFilesSmall" / f"{category}.csv").read_text().splitlines():
        item, user, rating, timestamp = line.split(",")
        rows.append((item, user, float(rating), int(timestamp)))
    return rows


def meta(out: Path, category: str) -> list[dict]:
    with gzip.open(out / "metaFiles2" / f"meta_{category}.json.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


def first_records(records: list[dict]) -> dict[str, dict]:
    first: dict[str, dict] = {}
    for record in records:
        first.setdefault(record["asin"], record)
    return first


def url_path(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file" and parsed.netloc == ""
    return Path(unquote(parsed.path))


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def style_of(category: str, scale: float = 1.0) -> dict[str, int]:
    world = build_world(category, PROFILES[category], SEED, scale)
    return dict(zip(world.asin.tolist(), world.style.tolist(), strict=True))


def sequences(out: Path, category: str) -> dict[str, list[str]]:
    """Each user's items in time order, ties broken by item id (as the data stage does)."""
    by_user: dict[str, list[tuple[int, str]]] = {}
    for item, user, _, timestamp in sorted(set(ratings(out, category))):
        by_user.setdefault(user, []).append((timestamp, item))
    return {user: [item for _, item in sorted(events)] for user, events in by_user.items()}


# ---------------------------------------------------------------- determinism and layout -----------------
def test_same_seed_gives_byte_identical_files_and_rewrites_in_place(tmp_path):
    out = tmp_path / "demo"
    generate(out, SEED, ["Office"], scale=0.3)
    first = tree_digest(out)
    (out / "images" / "Office" / "stale.jpg").write_bytes(b"left over from an older run")
    generate(out, SEED, ["Office"], scale=0.3)
    assert tree_digest(out) == first
    assert any(name.startswith("images/Office/") for name in first)
    gz = (out / "metaFiles2" / "meta_Office.json.gz").read_bytes()
    assert gz[:2] == b"\x1f\x8b" and gz[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_different_seed_gives_different_files(tmp_path):
    generate(tmp_path / "a", SEED, ["Office"], scale=0.3)
    generate(tmp_path / "b", SEED + 1, ["Office"], scale=0.3)
    for name in ("categoryFilesSmall/Office.csv", "metaFiles2/meta_Office.json.gz"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes()


def test_a_category_does_not_depend_on_the_others(tmp_path):
    generate(tmp_path / "a", SEED, ["Office"], scale=0.3)
    generate(tmp_path / "a2", SEED, ["Food", "Office"], scale=0.3)
    assert (tmp_path / "a" / "categoryFilesSmall/Office.csv").read_bytes() == (
        tmp_path / "a2" / "categoryFilesSmall/Office.csv"
    ).read_bytes()
    # the image URLs are absolute, so they name the other folder; everything else is the same
    rewritten = json.loads(json.dumps(meta(tmp_path / "a2", "Office")).replace("/a2/", "/a/"))
    assert rewritten == meta(tmp_path / "a", "Office")


def test_layout_and_manifest(demo):
    manifest = json.loads((demo / "demo.json").read_text())
    assert manifest["seed"] == SEED and manifest["categories"] == ["Food", "Scientific"]
    for category in ("Food", "Scientific"):
        assert (demo / "categoryFilesSmall" / f"{category}.csv").is_file()
        assert (demo / "metaFiles2" / f"meta_{category}.json.gz").is_file()
        assert (demo / "images" / category).is_dir()
    assert set(manifest["files"]) == {
        "categoryFilesSmall/Food.csv",
        "categoryFilesSmall/Scientific.csv",
        "metaFiles2/meta_Food.json.gz",
        "metaFiles2/meta_Scientific.json.gz",
    }
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((demo / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["counts"]["Food"]["rating_lines"] == len(ratings(demo, "Food"))
    files, digest = folder_digest(demo / "images" / "Food")
    assert (files, digest) == (manifest["counts"]["Food"]["image_files"], manifest["counts"]["Food"]["images_sha256"])
    assert not list(demo.rglob("*.tmp"))


def test_ratings_csv_is_four_columns_without_header(demo):
    text = (demo / "categoryFilesSmall" / "Food.csv").read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) > 1000
    for line in lines:
        item, user, rating, timestamp = line.split(",")
        assert re.fullmatch(r"B0[0-9A-Z]{8}", item) and re.fullmatch(r"A[0-9A-Z]{12}", user)
        assert rating in {"1.0", "2.0", "3.0", "4.0", "5.0"}
        assert FIRST_DAY * DAY <= int(timestamp) <= LAST_DAY * DAY and int(timestamp) % DAY == 0
    items = [line.split(",")[0] for line in lines]
    assert items == sorted(items)  # grouped by item, as the real files


def test_meta_records_have_the_2018_keys_in_order(demo):
    records = meta(demo, "Food")
    main = PROFILES["Food"].top
    for record in records:
        assert list(record) == [k for k in META_KEYS_2018 if k in record]
        assert set(META_KEYS_2018) - set(record) <= {"details"}
        assert isinstance(record["category"], list) and isinstance(record["imageURL"], list)
        assert not record["category"] or record["category"][0] == main
    assert any("details" in r for r in records) and any("details" not in r for r in records)


def test_images_are_real_files_except_the_planted_broken_ones(demo):
    manifest = json.loads((demo / "demo.json").read_text())
    broken: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    for record in meta(demo, "Food"):
        for k, url in enumerate(record["imageURL"]):
            path = url_path(url)
            assert path.parent == (demo / "images" / "Food").resolve()
            assert re.fullmatch(rf"{record['asin']}_{k}\.(jpg|png)", path.name)
            if not path.exists():
                broken["missing"] += 1
                continue
            try:
                with Image.open(path) as image:
                    image.load()
                    formats[image.format] += 1
                    assert 48 <= min(image.size) and max(image.size) <= 96
            except OSError as err:
                broken["truncated" if "truncated" in str(err) else "not_image"] += 1
    assert formats["JPEG"] > 100 and formats["PNG"] > 20
    assert dict(broken) == manifest["counts"]["Food"]["broken_images"]
    assert all(broken[kind] >= 1 for kind in ("missing", "not_image", "truncated"))


# ---------------------------------------------------------------- noise ----------------------------------
def test_rating_noise_is_present(demo):
    rows = ratings(demo, "Food")
    lines = Counter(rows)
    assert sum(n - 1 for n in lines.values()) >= 50  # exact duplicate lines
    pairs = Counter((item, user) for item, user, _, _ in set(rows))
    assert sum(n > 1 for n in pairs.values()) >= 30  # the same (user, item) at different times
    per_user = Counter(user for _, user, _, _ in rows)
    assert sum(n < 5 for n in per_user.values()) >= 100  # sparse users
    per_item = Counter(item for item, _, _, _ in rows)
    assert sum(n < 5 for n in per_item.values()) >= 10  # rare items
    with_meta = {r["asin"] for r in meta(demo, "Food")}
    assert len(set(per_item) - with_meta) >= 5  # rated items without a meta record
    assert len(with_meta - set(per_item)) >= 5  # meta records nobody rated
    ties = Counter((user, timestamp) for _, user, _, timestamp in set(rows))
    assert sum(n > 1 for n in ties.values()) >= 100  # several items of a user on one day


def test_meta_noise_is_present(demo):
    records = meta(demo, "Food")
    asins = Counter(r["asin"] for r in records)
    twins = [a for a, n in asins.items() if n > 1]
    assert len(twins) >= 2
    for asin in twins:
        first, second = [r for r in records if r["asin"] == asin]
        assert first != second
    prices = [r["price"] for r in records]
    assert sum(map(bool, map(PLAIN.match, prices))) > 100
    assert any(THOUSANDS.match(p) for p in prices)
    assert any(RANGE.match(p) for p in prices)
    assert "" in prices
    assert any(p and not p.startswith("$") for p in prices)  # scraped junk
    titles = [r["title"] for r in records]
    assert any("&amp;" in t for t in titles) and any("&quot;" in t for t in titles)
    assert any(len(t) >= 2000 for t in titles)
    assert any(t.endswith(".") for t in titles)
    assert any("&amp;" in r["brand"] for r in records) and any(r["brand"] == "" for r in records)
    assert any(r["category"] == [] for r in records)
    assert any(len(d) >= 2000 for r in records for d in r["description"])
    counts = Counter(len(r["imageURLHighRes"]) for r in first_records(records).values())
    assert counts[0] > 0 and counts[1] > 0 and counts[6] > 0
    assert any(r["imageURL"] and not r["imageURLHighRes"] for r in records)  # fallback to imageURL needed


# ---------------------------------------------------------------- learnable structure --------------------
def mean_colours(out: Path, category: str) -> dict[str, np.ndarray]:
    colours = {}
    for record in first_records(meta(out, category)).values():
        for url in record["imageURLHighRes"][:1]:
            try:
                with Image.open(url_path(url)) as image:
                    colours[record["asin"]] = np.asarray(image.convert("RGB"), dtype=float).mean(axis=(0, 1))
            except OSError:
                pass
    return colours


def plain_prices(out: Path, category: str) -> dict[str, float]:
    records = first_records(meta(out, category)).values()
    return {
        r["asin"]: float(r["price"][1:].replace(",", ""))
        for r in records
        if PLAIN.match(r["price"]) or THOUSANDS.match(r["price"])
    }


def pair_gap(values: dict[str, np.ndarray | float], style: dict[str, int]) -> tuple[float, float]:
    """Mean distance of same-style pairs and of all pairs."""
    keys = sorted(values)
    x = np.array([np.atleast_1d(values[k]) for k in keys], dtype=float)
    s = np.array([style[k] for k in keys])
    distance = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    off_diagonal = ~np.eye(len(keys), dtype=bool)
    return distance[(s[:, None] == s[None, :]) & off_diagonal].mean(), distance[off_diagonal].mean()


@pytest.mark.parametrize("category", ["Food", "Scientific"])
def test_images_and_prices_follow_the_latent_style(demo, category):
    style = style_of(category)
    same, anyone = pair_gap(mean_colours(demo, category), style)
    assert same < 0.5 * anyone
    log_prices = {a: np.log(p) for a, p in plain_prices(demo, category).items()}
    same, anyone = pair_gap(log_prices, style)
    assert same < 0.5 * anyone


def test_style_maps_to_the_same_colour_and_price_in_every_task(demo):
    centroids, medians = {}, {}
    for category in ("Food", "Scientific"):
        style, colours, prices = style_of(category), mean_colours(demo, category), plain_prices(demo, category)
        centroids[category] = np.array(
            [np.mean([c for a, c in colours.items() if style[a] == s], axis=0) for s in range(len(STYLES))]
        )
        medians[category] = np.array(
            [np.median([p for a, p in prices.items() if style[a] == s]) for s in range(len(STYLES))]
        )
    distance = np.linalg.norm(centroids["Food"][:, None] - centroids["Scientific"][None], axis=-1)
    assert (distance.argmin(axis=1) == np.arange(len(STYLES))).all()
    assert np.all(np.abs(np.log(medians["Food"] / medians["Scientific"])) < np.log(1.5))


def test_titles_carry_shared_style_words_and_task_specific_nouns(demo):
    nouns = {}
    for category in ("Food", "Scientific"):
        style = style_of(category)
        records = [r for r in first_records(meta(demo, category)).values() if len(r["title"]) < 2000]
        own = [bool(set(words(r["title"])) & set(STYLES[style[r["asin"]]].colours)) for r in records]
        assert np.mean(own) > 0.8  # an item's title names its style's colour (shared across tasks)
        nouns[category] = {w for r in records for w in words(r["title"])} & set(PROFILES[category].nouns)
    assert nouns["Food"] and nouns["Scientific"] and not nouns["Food"] & nouns["Scientific"]


@pytest.mark.parametrize("category", ["Food", "Scientific"])
def test_next_items_follow_the_users_taste(demo, category):
    world = build_world(category, PROFILES[category], SEED)
    style = dict(zip(world.asin.tolist(), world.style.tolist(), strict=True))
    taste = dict(zip(world.user_id.tolist(), world.taste, strict=True))
    share = np.bincount([style[i] for i, *_ in ratings(demo, category)], minlength=len(STYLES))
    share = share / share.sum()
    same_style, taste_of_next, taste_of_any = [], [], []
    for user, items in sequences(demo, category).items():
        for previous, following in itertools.pairwise(items):
            same_style.append(style[previous] == style[following])
            taste_of_next.append(taste[user][style[following]])
            taste_of_any.append(taste[user] @ share)
    assert np.mean(same_style) > 3 * (share**2).sum()
    assert np.mean(taste_of_next) > 2 * np.mean(taste_of_any)


def test_vocabulary_covers_every_title_category_and_brand_word(demo):
    vocab = vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() and w.isalnum() for w in vocab)
    used = set()
    for category in ("Food", "Scientific"):
        for record in meta(demo, category):
            used.update(words(" ".join([record["title"], record["brand"], *record["category"]])))
    assert used <= set(vocab)
    assert "decor" in vocab and "crimson" in vocab  # accents stripped as an uncased BERT does


def test_every_known_category_generates_within_the_vocabulary(tmp_path):
    generate(tmp_path, SEED, list(PROFILES), scale=0.1)
    vocab = set(vocabulary())
    for category in PROFILES:
        records = meta(tmp_path, category)
        assert records and ratings(tmp_path, category)
        used = {w for r in records for w in words(" ".join([r["title"], r["brand"], *r["category"]]))}
        assert used <= vocab, used - vocab


def reference_kcore(out: Path, category: str, k: int = 5) -> tuple[int, int, int]:
    """Users, items, interactions after the spec's filtering, the slow obvious way."""
    rows = {(item, user, timestamp) for item, user, _, timestamp in set(ratings(out, category))}
    with_meta = {r["asin"] for r in meta(out, category)}
    rows = {row for row in rows if row[0] in with_meta}
    while True:
        users, items = Counter(r[1] for r in rows), Counter(r[0] for r in rows)
        kept = {r for r in rows if users[r[1]] >= k and items[r[0]] >= k}
        if kept == rows:
            return len(users), len(items), len(rows)
        rows = kept


@pytest.mark.parametrize("category", ["Food", "Scientific"])
def test_ingest_and_kcore_leave_the_intended_sizes(demo, category, tmp_path):
    pytest.importorskip("ant.data.ingest", reason="the data stage's ingest is not there yet")
    pytest.importorskip("ant.data.kcore", reason="the data stage's kcore is not there yet")
    from ant.cli import main

    raw = tmp_path / category
    assert (
        main(
            [
                "ingest",
                "--format",
                "amazon2018",
                "--ratings",
                str(demo / "categoryFilesSmall" / f"{category}.csv"),
                "--meta",
                str(demo / "metaFiles2" / f"meta_{category}.json.gz"),
                "--interactions",
                str(raw / "interactions.parquet"),
                "--items",
                str(raw / "items_raw.parquet"),
                "--stats",
                str(raw / "ingest.json"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "kcore",
                "--task",
                category,
                "--interactions",
                str(raw / "interactions.parquet"),
                "--items-raw",
                str(raw / "items_raw.parquet"),
                "--ingest-stats",
                str(raw / "ingest.json"),
                "--k",
                "5",
                "--sequences",
                str(raw / "sequences.parquet"),
                "--items",
                str(raw / "items.parquet"),
                "--stats",
                str(raw / "stats.json"),
            ]
        )
        == 0
    )
    stats = json.loads((raw / "stats.json").read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == reference_kcore(demo, category)
    assert 300 <= stats["users"] <= 900 and 150 <= stats["items"] <= 500  # the demo's intended task sizes
    assert 2_000 <= stats["interactions"] <= 10_000
    assert stats["interactions"] < 0.9 * len(ratings(demo, category))  # the noise was there to remove


# ---------------------------------------------------------------- pure functions -------------------------
@given(st.text())
def test_words_ignore_html_escaping_and_are_lower_alphanumeric(text):
    found = words(text)
    assert found == words(html.escape(text))
    assert all(re.fullmatch(r"[a-z0-9]+", w) for w in found)


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=2**32))
def test_day_sequence_is_ordered_inside_the_crawl(n, seed):
    days = day_sequence(np.random.default_rng(seed), n, KNOBS)
    assert len(days) == n and np.all(np.diff(days) >= 0)
    assert FIRST_DAY <= days[0] and days[-1] <= LAST_DAY


@given(
    st.lists(st.integers(min_value=0, max_value=len(STYLES) - 1), min_size=1, max_size=200),
    st.integers(min_value=0, max_value=2**32),
)
def test_series_hold_two_to_five_items_of_one_style(styles, seed):
    style = np.array(styles)
    series, position, next_item = cut_series(np.random.default_rng(seed), style, 0.4, len(style) + 3)
    for number in set(series[series >= 0].tolist()):
        members = np.flatnonzero(series == number)
        ordered = members[np.argsort(position[members])]
        assert 2 <= len(members) <= 5 and len(set(style[members].tolist())) == 1
        assert position[ordered].tolist() == list(range(1, len(members) + 1))
        assert next_item[ordered[:-1]].tolist() == ordered[1:].tolist() and next_item[ordered[-1]] == -1
    assert np.all(next_item[series < 0] == -1)


@given(st.floats(min_value=0.01, max_value=99_999.99))
def test_price_strings_parse_back_to_their_amount(usd):
    usd = round(usd, 2)
    rng = np.random.default_rng(0)
    text = format_price(usd, "plain", rng)
    assert (PLAIN if usd < 1000 else THOUSANDS).match(text)
    assert float(text[1:].replace(",", "")) == pytest.approx(usd)
    low, high = (float(p[1:].replace(",", "")) for p in format_price(usd, "range", rng).split(" - "))
    assert low == pytest.approx(usd) and high > low


# ---------------------------------------------------------------- CLI ------------------------------------
def test_cli_writes_the_demo_and_rejects_unknown_categories(tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "ant",
            "demo-data",
            "--out",
            str(tmp_path / "cli"),
            "--seed",
            "7",
            "--categories",
            "Scientific",
            "--scale",
            "0.2",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "cli" / "demo.json").read_text())["seed"] == 7
    bad = subprocess.run(
        [sys.executable, "-m", "ant", "demo-data", "--out", str(tmp_path / "bad"), "--categories", "Toys"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "unknown categories ['Toys']" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_bad_arguments_are_user_errors(tmp_path):
    for kwargs in (
        {"categories": ["Food", "Food"]},
        {"categories": []},
        {"seed": -1},
        {"categories": ["Food"], "scale": 0},
    ):
        arguments = {"out": tmp_path, "seed": SEED, "categories": ["Food"], **kwargs}
        with pytest.raises(UserError):
            generate(**arguments)
