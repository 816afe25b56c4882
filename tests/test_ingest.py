"""Ingest: raw ratings + meta -> interactions, items_raw, ingest.json; formats, compression, bad input."""

import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ant.cli import main
from ant.data.ingest import ingest, json_lines
from ant.data.ingest.meta import image_slots
from ant.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "mini2018"


def run(tmp_path, ratings, meta, fmt="amazon2018", **options):
    options.setdefault("max_malformed_share", 0.2)  # the fixture has 2 bad lines of 18 on purpose
    out = tmp_path / "out"
    stats = ingest(
        fmt, ratings, meta, out / "interactions.parquet", out / "items_raw.parquet", out / "ingest.json", **options
    )
    assert json.loads((out / "ingest.json").read_text()) == json.loads(json.dumps(stats))
    return stats, pl.read_parquet(out / "interactions.parquet"), pl.read_parquet(out / "items_raw.parquet")


def clean_files(tmp_path):
    """A ratings and a meta file without a single bad line."""
    ratings = write(tmp_path / "clean.csv", "".join(f"B{i % 7},U{i % 5},5.0,{i}\n" for i in range(40)))
    meta = write(tmp_path / "clean.json", "".join(json.dumps({"asin": f"B{i}"}) + "\n" for i in range(7)))
    return ratings, meta


def write(path, text, layers=0):
    data = text.encode()
    for _ in range(layers):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the hand-made fixture ------------------
def test_fixture_interactions_and_counts(tmp_path):
    stats, inter, _ = run(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json")
    assert inter.schema == pl.Schema(
        {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float32, "timestamp": pl.Int64}
    )
    # every parsed line, in file order, duplicates still there
    assert inter.rows() == [
        ("AX9", "B07", 5.0, 100), ("AX9", "B01", 4.0, 200), ("AX9", "0001", 3.0, 200), ("AX9", "B07", 2.0, 300),
        ("AX9", "B01", 4.0, 200), ("A2B", "B01", 5.0, 150), ("A2B", "B07", 4.0, 150), ("A2B", "B50", 1.0, 160),
        ("A2B", "B10", 3.0, 170), ("A10", "0001", 4.0, 50), ("A10", "B10", 5.0, 60), ("AD1", "B05", 3.0, 10),
        ("AE1", "B05", 2.0, 20), ("AE1", "B99", 4.0, 30), ("AX9", "B01", 1.0, 200),
    ]  # fmt: skip
    ratings = stats["ratings"]
    assert (ratings["kind"], ratings["lines"], ratings["blank_lines"]) == ("csv", 18, 1)
    assert (ratings["malformed_lines"], ratings["records"], ratings["interactions"]) == (2, 15, 15)
    assert [(e["line"], e["text"]) for e in ratings["malformed_examples"]] == [
        (11, "B09,AZZ,abc,100"),
        (14, "B07,AX9,5.0"),
    ]
    meta = stats["meta"]
    assert (meta["lines"], meta["blank_lines"], meta["malformed_lines"], meta["records"]) == (12, 1, 2, 9)
    assert [e["line"] for e in meta["malformed_examples"]] == [9, 11]
    assert (meta["repaired_records"], meta["duplicate_ids"], meta["items"]) == (1, 1, 8)
    assert meta["prices"] == {"parsed": 4, "from_range": 1, "unparseable": 1, "missing": 3}
    assert (meta["gzip_layers"], meta["double_gzip"]) == (0, False)


def test_fixture_items_raw(tmp_path):
    _, _, items = run(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json")
    assert items["item_id"].to_list() == ["B07", "B01", "0001", "B10", "B05", "B99", "X77", "B09"]  # file order
    rows = {row["item_id"]: row for row in items.iter_rows(named=True)}
    assert rows["B07"] == {
        "item_id": "B07",
        "title": 'Classic &amp; "Slim" Fit Shirt...',
        "brand": "Acme",
        "categories": ["Clothing, Shoes & Jewelry", "Men"],
        "text": "Classic & Slim Fit Shirt. Clothing, Shoes & Jewelry Men. Acme.",
        "price_usd": 1299.0,
        "image_urls": ["https://img.example/a.jpg", "https://img.example/b._SS40_.jpg"],
        "image_fallback_urls": ["https://img.example/a._SS40_.jpg", None],
    }
    # first record of a repeated asin wins
    assert (rows["B01"]["title"], rows["B01"]["price_usd"]) == ("Socks", 8.99)
    assert rows["B01"]["text"] == "Socks. Clothing, Shoes & Jewelry Socks. Knit Co."
    assert (rows["B01"]["image_urls"], rows["B01"]["image_fallback_urls"]) == (["https://img.example/s.jpg"], [None])
    assert (rows["0001"]["text"], rows["0001"]["price_usd"]) == ("A BookAbout Hats. Books.", None)
    assert (rows["B10"]["text"], rows["B10"]["price_usd"], rows["B10"]["image_urls"]) == ("Zed.", None, [])
    assert (rows["B99"]["categories"], rows["B99"]["text"]) == ([], "Scarf.")
    # a record polars/pyarrow cannot type, repaired from Python's json: number -> text, string -> [string]
    assert (rows["B09"]["title"], rows["B09"]["categories"], rows["B09"]["text"]) == ("42", ["Hats"], "42. Hats.")


def test_price_range_option(tmp_path):
    _, _, items = run(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json", price_range="upper")
    assert items.filter(pl.col("item_id") == "B01")["price_usd"].item() == 15.99


def test_gzip_and_double_gzip_give_the_same_outputs(tmp_path):
    plain_stats, plain_inter, plain_items = run(tmp_path / "plain", FIXTURE / "ratings.csv", FIXTURE / "meta.json")
    ratings = write(tmp_path / "ratings.csv.gz", (FIXTURE / "ratings.csv").read_text(), layers=1)
    meta = write(tmp_path / "meta.json.gz", (FIXTURE / "meta.json").read_text(), layers=2)
    stats, inter, items = run(tmp_path / "gz", ratings, meta)
    assert inter.equals(plain_inter) and items.equals(plain_items)
    assert (stats["ratings"]["gzip_layers"], stats["ratings"]["double_gzip"]) == (1, False)
    assert (stats["meta"]["gzip_layers"], stats["meta"]["double_gzip"]) == (2, True)
    assert stats["meta"]["records"] == plain_stats["meta"]["records"]


# ---------------------------------------------------------------- other formats --------------------------
def test_2018_reviews_json_lines_are_sniffed(tmp_path):
    reviews = [
        {"overall": 5.0, "verified": True, "reviewerID": "U1", "asin": "B07", "unixReviewTime": 100, "vote": "2"},
        {"overall": "4.0", "reviewerID": "U2", "asin": "B01", "unixReviewTime": 200},  # rating as text: repaired
        {"overall": 3.0, "reviewerID": "U3", "asin": "B01"},  # no time: malformed
    ]
    text = "\n".join(json.dumps(r) for r in reviews) + "\n{not json\n"
    ratings = write(tmp_path / "Clothing.json.gz", text, layers=1)
    stats, inter, _ = run(tmp_path, ratings, FIXTURE / "meta.json", max_malformed_share=0.6)
    assert inter.rows() == [("U1", "B07", 5.0, 100), ("U2", "B01", 4.0, 200)]
    r = stats["ratings"]
    assert (r["kind"], r["lines"], r["malformed_lines"], r["records"], r["repaired_records"]) == (
        "json_lines", 4, 2, 2, 1,
    )  # fmt: skip
    assert [e["line"] for e in r["malformed_examples"]] == [3, 4]


def test_amazon2023(tmp_path):
    reviews = [
        {"rating": 5.0, "title": "ok", "asin": "C1", "parent_asin": "P1", "user_id": "U1", "timestamp": 1588687728923},
        {"rating": 2.0, "asin": "C2", "parent_asin": "P2", "user_id": "U1", "timestamp": 1588687729999},
    ]
    meta = [
        {"main_category": "All Beauty", "title": "Lotion", "store": "Acme", "details": {"Brand": "Other"},
         "categories": [], "price": 12.0, "parent_asin": "P1",
         "images": [{"thumb": "t1", "large": "L1", "variant": "MAIN", "hi_res": "H1"},
                    {"thumb": "t2", "large": "L2", "variant": "PT01", "hi_res": None}]},
        {"title": "Soap", "store": None, "details": {"Brand": "Suds", "Color": "red"}, "categories": ["Beauty", "Soap"],
         "price": None, "parent_asin": "P2", "images": []},
        {"title": "Brush", "details": {}, "categories": [], "price": "from $3.99", "parent_asin": "P3", "images": []},
    ]  # fmt: skip
    ratings = write(tmp_path / "r.jsonl.gz", "\n".join(map(json.dumps, reviews)), layers=1)
    meta_path = write(tmp_path / "m.jsonl", "\n".join(map(json.dumps, meta)) + "\n")
    stats, inter, items = run(tmp_path, ratings, meta_path, fmt="amazon2023")
    assert inter.rows() == [("U1", "P1", 5.0, 1588687728), ("U1", "P2", 2.0, 1588687729)]  # ms -> s
    rows = {row["item_id"]: row for row in items.iter_rows(named=True)}
    assert rows["P1"]["brand"] == "Acme" and rows["P2"]["brand"] == "Suds"  # store, else details.Brand
    assert rows["P1"]["text"] == "Lotion. Acme."
    assert rows["P2"]["text"] == "Soap. Beauty Soap. Suds."
    assert (rows["P1"]["image_urls"], rows["P1"]["image_fallback_urls"]) == (["H1", "L2"], ["L1", None])
    assert [rows[p]["price_usd"] for p in ("P1", "P2", "P3")] == [12.0, None, None]
    assert stats["meta"]["prices"] == {"parsed": 1, "from_range": 0, "unparseable": 1, "missing": 1}


def test_amazon2023_ratings_must_be_json(tmp_path):
    with pytest.raises(UserError, match="JSON lines"):
        run(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json", fmt="amazon2023")


# ---------------------------------------------------------------- bad input --------------------------------
def test_empty_files(tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(UserError, match="empty.csv: the ratings file is empty"):
        run(tmp_path, empty, FIXTURE / "meta.json")
    blank = write(tmp_path / "blank.json.gz", "\n\n", layers=1)
    with pytest.raises(UserError, match="blank.json.gz: the meta file is empty"):
        run(tmp_path, FIXTURE / "ratings.csv", blank)


def test_wrong_number_of_columns_fails_with_a_hint(tmp_path):
    ratings = write(tmp_path / "three.csv", "".join(f"B{i},U{i},5.0\n" for i in range(50)))
    with pytest.raises(UserError, match=r"50 of 50 lines \(100.00%\).*line 1.*most lines .* have 3 fields"):
        run(tmp_path, ratings, FIXTURE / "meta.json")


def test_malformed_share_above_the_limit_fails_and_writes_nothing(tmp_path):
    lines = [f"B{i},U{i},5.0,{i}" for i in range(96)] + ["B,U,five,1", "B,U,5.0,x", "B,U", "a,b,c,d,e"]
    ratings = write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    _, meta = clean_files(tmp_path)
    with pytest.raises(UserError) as err:
        run(tmp_path, ratings, meta, max_malformed_share=0.03)
    message = str(err.value)
    assert "r.csv" in message and "4 of 100 lines (4.00%)" in message and "line 97" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # the same file passes with a higher limit, counting exactly those four
    stats, inter, _ = run(tmp_path, ratings, meta, max_malformed_share=0.05)
    assert (stats["ratings"]["malformed_lines"], inter.height) == (4, 96)
    assert [e["line"] for e in stats["ratings"]["malformed_examples"]] == [97, 98, 99, 100]


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress((FIXTURE / "ratings.csv").read_bytes() * 200)
    truncated = tmp_path / "r.csv.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        run(tmp_path, truncated, FIXTURE / "meta.json")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        run(tmp_path, tmp_path / "nope.csv", FIXTURE / "meta.json")


def test_python_literal_meta_gets_a_hint(tmp_path):
    meta = write(tmp_path / "meta.json", "".join(f"{{'asin': 'B{i}', 'title': 'x'}}\n" for i in range(10)))
    with pytest.raises(UserError, match="Python literals"):
        run(tmp_path, FIXTURE / "ratings.csv", meta, max_malformed_share=0.5)


def test_cli_reports_bad_input_in_one_line(tmp_path, caplog):
    empty = write(tmp_path / "empty.csv", "")
    out = tmp_path / "out"
    argv = ["ingest", "--format", "amazon2018", "--ratings", str(empty), "--meta", str(FIXTURE / "meta.json"),
            "--interactions", str(out / "i.parquet"), "--items", str(out / "m.parquet"), "--stats",
            str(out / "s.json"), "--max-malformed-share", "0.01", "--price-range", "lower",
            "--max-field-chars", "2000"]  # fmt: skip
    assert main(argv) == 1
    assert "the ratings file is empty" in caplog.text
    assert not out.exists() or not any(out.iterdir())
    good = [a if a != str(empty) else str(FIXTURE / "ratings.csv") for a in argv]
    good[good.index("--max-malformed-share") + 1] = "0.2"
    assert main(good) == 0
    assert json.loads((out / "s.json").read_text())["ratings"]["records"] == 15


# ---------------------------------------------------------------- JSON blocks, bisection, line numbers ------
def test_bad_lines_deep_inside_big_blocks(tmp_path, monkeypatch):
    """Blocks split mid-line, bisection down to single lines, blank lines: every count and line exact."""
    monkeypatch.setattr(json_lines, "JSON_BLOCK_BYTES", 16384)  # ~270 lines: many blocks, bisection
    lines, expected_bad, expected_ids = [], [], []
    for n in range(1, 2001):
        if n % 397 == 0:
            lines.append('{"asin": "broken"')
            expected_bad.append(n)
        elif n % 251 == 0:
            lines.append("")
        elif n % 503 == 0:
            lines.append('{"title": "no asin"}')
            expected_bad.append(n)
        else:
            lines.append(json.dumps({"asin": f"A{n:05d}", "title": f"t{n}", "rank": [n]}))
            expected_ids.append(f"A{n:05d}")
    meta = write(tmp_path / "meta.json", "\n".join(lines))  # no final newline
    ratings, _ = clean_files(tmp_path)
    stats, _, items = run(tmp_path, ratings, meta, max_malformed_share=0.1)
    assert items["item_id"].to_list() == expected_ids
    m = stats["meta"]
    assert m["lines"] == 2000 and m["blank_lines"] == sum(1 for x in lines if x == "")
    assert m["malformed_lines"] == len(expected_bad)
    assert m["records"] == len(expected_ids)
    assert [e["line"] for e in m["malformed_examples"]] == expected_bad[:5]


_TOKEN = {
    "id": st.sampled_from(["B1", "B2", "U1", "U2", "", " B3"]),
    "rating": st.sampled_from(["5.0", "4", "x", "", "1e3", " 3.0", "-1"]),
    "time": st.sampled_from(["100", "1.5", "", "abc", " 7", "-5", "99999999999"]),
}


def _reference_csv(lines):
    """UniSRec's loop (line.split(','), float, int) plus: blank lines apart, empty ids malformed."""
    good, blank, bad = [], 0, 0
    for line in lines:
        if line == "":
            blank += 1
            continue
        fields = line.split(",")
        try:
            item, user, rating, timestamp = fields
            if not item or not user:
                raise ValueError
            good.append((user, item, float(rating), int(timestamp)))
        except ValueError:
            bad += 1
    return good, blank, bad


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(
    st.lists(
        st.one_of(
            st.tuples(_TOKEN["id"], _TOKEN["id"], _TOKEN["rating"], _TOKEN["time"]).map(",".join),
            st.lists(_TOKEN["id"], min_size=1, max_size=6).map(",".join),
            st.just(""),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_csv_lines_are_all_accounted_for(tmp_path_factory, lines):
    tmp_path = tmp_path_factory.mktemp("csv")
    ratings = write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    good, blank, bad = _reference_csv(lines)
    if len(good) == 0:
        with pytest.raises(UserError):
            run(tmp_path, ratings, FIXTURE / "meta.json", max_malformed_share=1.0)
        return
    stats, inter, _ = run(tmp_path, ratings, FIXTURE / "meta.json", max_malformed_share=1.0)
    r = stats["ratings"]
    assert (r["lines"], r["blank_lines"], r["malformed_lines"], r["records"]) == (len(lines), blank, bad, len(good))
    assert inter.rows() == [(u, i, pytest.approx(x), t) for u, i, x, t in good]
    shutil.rmtree(tmp_path)


# ---------------------------------------------------------------- image slots ------------------------------
def test_image_slots():
    hi = pl.Series([["H0", None, ""], [], None, ["X"], None], dtype=pl.List(pl.String))
    lo = pl.Series([["L0", "L1", "L2", "L3"], ["A"], None, None, ["", None]], dtype=pl.List(pl.String))
    slots = image_slots(hi, lo)
    assert slots["image_urls"].to_list() == [["H0", "L1", "L2", "L3"], ["A"], [], ["X"], []]
    assert slots["image_fallback_urls"].to_list() == [["L0", None, None, None], [None], [], [None], []]
