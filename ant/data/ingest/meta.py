"""The meta file -> items_raw rows: id, title, brand, categories, cleaned text, parsed price, image slots.

2018 records: asin, title, brand, category, price, imageURL, imageURLHighRes; 2023: parent_asin, title,
store, details.Brand, categories, price, images[{hi_res, large}]. Image slot k: imageURLHighRes[k] if
present else imageURL[k]; its fallback is imageURL[k] when the primary came from imageURLHighRes (2023:
hi_res / large). A record without an id is malformed.
"""

from __future__ import annotations

from typing import BinaryIO

import polars as pl
import pyarrow as pa

from ant.data.ingest.json_lines import JsonLines
from ant.data.ingest.line_stats import LineStats, reject, rejected_rows
from ant.data.price import parse_prices
from ant.data.text import item_texts

# items_raw.parquet: what _items_raw builds, less price_status (counted in ingest.json)
ITEMS_RAW_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("text", pa.string()),
        ("price_usd", pa.float64()),
        ("image_urls", pa.list_(pa.string())),
        ("image_fallback_urls", pa.list_(pa.string())),
    ]
)
_STR, _STRS = pa.string(), pa.list_(pa.string())
_META_SCHEMA = {
    "amazon2018": pa.schema([
        ("asin", _STR), ("title", _STR), ("brand", _STR), ("category", _STRS), ("price", _STR),
        ("imageURL", _STRS), ("imageURLHighRes", _STRS),
    ]),
    "amazon2023": pa.schema([
        ("parent_asin", _STR), ("title", _STR), ("store", _STR), ("details", pa.struct([("Brand", _STR)])),
        ("categories", _STRS), ("price", _STR),
        ("images", pa.list_(pa.struct([("hi_res", _STR), ("large", _STR)]))),
    ]),
}  # fmt: skip
# 2023 prices are numbers, null or text: only polars' reader turns all three into text
_LENIENT_META = {"amazon2018": False, "amazon2023": True}
_META_ID = {"amazon2018": "asin", "amazon2023": "parent_asin"}


def _normalised_meta(frame: pl.DataFrame, fmt: str) -> pl.DataFrame:
    """Raw meta records -> item_id, title, brand, categories, price_raw, hi (list), lo (list)."""
    if fmt == "amazon2018":
        return frame.select(
            item_id=pl.col("asin"),
            title=pl.col("title"),
            brand=pl.col("brand"),
            categories=pl.col("category"),
            price_raw=pl.col("price"),
            hi=pl.col("imageURLHighRes"),
            lo=pl.col("imageURL"),
        )
    images = pl.col("images").fill_null(pl.lit([], pl.List(pl.Struct({"hi_res": pl.String, "large": pl.String}))))
    return frame.select(
        item_id=pl.col("parent_asin"),
        title=pl.col("title"),
        brand=pl.coalesce(pl.col("store"), pl.col("details").struct.field("Brand")),
        categories=pl.col("categories"),
        price_raw=pl.col("price"),
        hi=images.list.eval(pl.element().struct.field("hi_res")),
        lo=images.list.eval(pl.element().struct.field("large")),
    )


def image_slots(hi: pl.Series, lo: pl.Series) -> pl.DataFrame:
    """Per row: image_urls (slot k: hi[k] if non-empty else lo[k]) and image_fallback_urls (lo[k] when
    the primary came from hi, else null). Slots where both are empty are dropped."""
    empty = pl.lit([], pl.List(pl.String))
    frame = pl.DataFrame({"hi": hi, "lo": lo}).with_columns(pl.col("hi", "lo").fill_null(empty))
    n = pl.max_horizontal(pl.col("hi").list.len(), pl.col("lo").list.len())

    def padded(name: str) -> pl.Expr:
        col = pl.col(name)
        values = col.list.eval(pl.when(pl.element() == "").then(None).otherwise(pl.element()))
        return pl.concat_list(values, pl.lit(None, pl.String).repeat_by(n - col.list.len()))

    slots = (
        frame.with_row_index("row")
        .select("row", hi=padded("hi"), lo=padded("lo"))
        .explode(["hi", "lo"])
        .filter(pl.col("hi").is_not_null() | pl.col("lo").is_not_null())
        .group_by("row", maintain_order=True)
        .agg(
            image_urls=pl.coalesce("hi", "lo"),
            image_fallback_urls=pl.when(pl.col("hi").is_not_null()).then(pl.col("lo")),
        )
    )
    rows = pl.DataFrame({"row": pl.arange(0, frame.height, eager=True, dtype=pl.UInt32)})
    return rows.join(slots, on="row", how="left", maintain_order="left").select(
        pl.col("image_urls", "image_fallback_urls").fill_null(empty)
    )


def _items_raw(frame: pl.DataFrame, price_range: str, max_field_chars: int) -> pl.DataFrame:
    """Normalised meta rows -> the items_raw columns (text cleaned, price parsed, image slots)."""
    prices = parse_prices(frame["price_raw"], price_range)
    images = image_slots(frame["hi"], frame["lo"])
    categories = frame["categories"].fill_null(pl.lit([], pl.List(pl.String))).list.drop_nulls()
    return pl.DataFrame(
        {
            "item_id": frame["item_id"],
            "title": frame["title"],
            "brand": frame["brand"],
            "categories": categories,
            "text": item_texts(frame["title"], categories, frame["brand"], max_field_chars),
            "price_usd": prices["price_usd"],
            "price_status": prices["price_status"],
            "image_urls": images["image_urls"],
            "image_fallback_urls": images["image_fallback_urls"],
        }
    )


def meta_items(stream: BinaryIO, fmt: str, stats: LineStats, price_range: str,
                max_field_chars: int) -> pl.DataFrame | None:  # fmt: skip
    """All meta records as items_raw rows (plus price_status), in file order, repeated ids still there.

    The rows are kept in memory (one row per record: Clothing's 2.7M take ~2 GB) so that "first record
    wins" is one pass over all ids at the end, not a lookup of every block in everything before it.
    """
    id_field = _META_ID[fmt]
    parts = []
    for frame in JsonLines(stream, _META_SCHEMA[fmt], stats, lenient=_LENIENT_META[fmt]).frames():
        no_id = frame[id_field].is_null() | (frame[id_field].str.len_bytes() == 0)
        reject(stats, int(no_id.sum()), *rejected_rows(frame, no_id), f"no {id_field}")
        parts.append(_items_raw(_normalised_meta(frame.filter(~no_id), fmt), price_range, max_field_chars))
    return pl.concat(parts, rechunk=False) if parts else None
