"""Item text cleaning and price parsing: worked examples, and the vectorised versions equal the references."""

import math

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ant.data.price import parse_price, parse_prices
from ant.data.text import clean_field, clean_fields, item_text, item_texts

# ---------------------------------------------------------------- text -------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("Slim Fit Shirt", "Slim Fit Shirt."),
        ("Shirt...", "Shirt."),  # trailing dots stripped, exactly one added
        ("Tom &amp; Jerry &quot;Mug&quot;", "Tom & Jerry Mug."),  # unescaped first, then quotes deleted
        ('He said "hi"\r\nbye', "He said hibye."),
        ("Dots. In. Middle", "Dots. In. Middle."),
        ("Shirt. ", "Shirt. ."),  # only dots at the very end are stripped (UniSRec does the same)
        ("&#10;Line", "Line."),  # an entity that decodes to a newline is deleted too
        ("", ""),
        ("...", ""),
        ('" \t"', ""),
        (None, ""),
    ],
)
def test_clean_field_examples(raw, cleaned):
    assert clean_field(raw) == cleaned


def test_long_field_becomes_empty():
    # the limit counts the final dot: 1998 letters + "." = 1999 < 2000 stays, 1999 letters + "." goes
    assert clean_field("a" * 1998) == "a" * 1998 + "."
    assert clean_field("a" * 1999) == ""
    assert clean_field("a" * 5, max_chars=7) == "aaaaa."
    assert clean_field("a" * 5, max_chars=6) == ""


def test_item_text_joins_title_categories_brand():
    text = item_text("Classic &amp; Slim Shirt...", ["Clothing, Shoes & Jewelry", "Men"], "Acme")
    assert text == "Classic & Slim Shirt. Clothing, Shoes & Jewelry Men. Acme."
    assert item_text(None, ["Books"], None) == "Books."
    assert item_text("", [], "  ") == ""
    assert item_text("T", None, "x" * 3000) == "T."  # a too-long field is skipped, not a double space


_FRAGMENTS = st.sampled_from(
    ["a", "Z", " ", ".", "..", '"', "\n", "\r", "\t", "&", "&amp;", "&quot;", "&#34;", "&#x2e;", "&lt", "&nbsp;",
     "&#10;", "é", "日本", "\u00a0", "\x1c", ";", "#"]
)  # fmt: skip
_CATEGORY = st.lists(_FRAGMENTS, max_size=4).map("".join)
_TEXT = st.one_of(st.none(), st.lists(_FRAGMENTS, max_size=12).map("".join), st.text(max_size=20))


@given(st.lists(_TEXT, max_size=20), st.integers(1, 30))
def test_clean_fields_equals_reference(values, max_chars):
    got = clean_fields(pl.Series(values, dtype=pl.String), max_chars).to_list()
    assert [g or "" for g in got] == [clean_field(v, max_chars) for v in values]


@given(
    st.lists(st.tuples(_TEXT, st.one_of(st.none(), st.lists(_CATEGORY, max_size=4)), _TEXT), max_size=15),
    st.integers(2, 40),
)
def test_item_texts_equals_reference(rows, max_chars):
    titles, categories, brands = (list(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
    got = item_texts(
        pl.Series(titles, dtype=pl.String),
        pl.Series(categories, dtype=pl.List(pl.String)),
        pl.Series(brands, dtype=pl.String),
        max_chars,
    ).to_list()
    assert got == [item_text(t, c, b, max_chars) for t, c, b in rows]


# ---------------------------------------------------------------- price ------------------------------------


@pytest.mark.parametrize(
    ("raw", "lower", "upper", "status"),
    [
        ("$12.99", 12.99, 12.99, "parsed"),
        ("$1,299.00", 1299.0, 1299.0, "parsed"),
        ("$8.99 - $15.99", 8.99, 15.99, "range"),
        ("$15.99 - $8.99", 8.99, 15.99, "range"),  # a reversed range is still a range
        (" $ 5 ", 5.0, 5.0, "parsed"),
        ("$.99", 0.99, 0.99, "parsed"),
        ("14.5", 14.5, 14.5, "parsed"),  # Amazon 2023 numbers arrive as text
        ("", None, None, "missing"),
        ("   ", None, None, "missing"),
        (None, None, None, "missing"),
        (".a-box-inner{background-color:#fff}", None, None, "unparseable"),
        ("$1,29.00", None, None, "unparseable"),  # misplaced thousands separator
        ("-3", None, None, "unparseable"),
        ("None", None, None, "unparseable"),
        ("$12.99 and up", None, None, "unparseable"),
        ("$1 - $2 - $3", None, None, "unparseable"),
    ],
)
def test_parse_price_examples(raw, lower, upper, status):
    assert parse_price(raw, "lower") == (lower, status)
    assert parse_price(raw, "upper") == (upper, status)
    mean = None if lower is None else (lower + upper) / 2
    assert parse_price(raw, "mean") == (mean, status)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="lower"):
        parse_price("$1", "median")


_PRICE = st.one_of(
    st.none(),
    st.lists(
        st.sampled_from(["$", "1", "23", ",", "456", ".", "99", " ", "-", " - ", "a", "{", "\t"]), max_size=10
    ).map("".join),
    st.text(max_size=12),
)


@given(st.lists(_PRICE, max_size=25), st.sampled_from(["lower", "upper", "mean"]))
def test_parse_prices_equals_reference(values, mode):
    got = parse_prices(pl.Series(values, dtype=pl.String), mode)
    expected = [parse_price(v, mode) for v in values]
    assert got["price_status"].to_list() == [status for _, status in expected]
    for value, (reference, _) in zip(got["price_usd"].to_list(), expected, strict=True):
        assert (value is None and reference is None) or math.isclose(value, reference, rel_tol=1e-12)


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_formatted_amounts_round_trip(cents_a, cents_b):
    a, b = cents_a / 100, cents_b / 100
    assert parse_price(f"${a:,.2f}")[0] == pytest.approx(a)
    low, high = min(a, b), max(a, b)
    raw = f"${a:,.2f} - ${b:,.2f}"
    assert parse_price(raw, "lower")[0] == pytest.approx(low)
    assert parse_price(raw, "upper")[0] == pytest.approx(high)
    assert parse_price(raw, "lower")[0] <= parse_price(raw, "mean")[0] <= parse_price(raw, "upper")[0]
