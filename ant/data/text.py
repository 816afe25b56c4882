"""Item text (spec §1): cleaned title, then the category list joined by spaces, then brand.

Each field is cleaned as UniSRec's `clean_text` does: html-unescape, delete `"`, `\\n` and `\\r`, strip the
trailing dots and end with exactly one `.`; a field of >= `max_chars` characters (counted with its final
dot) becomes empty. Fields are joined by one space. Where UniSRec is sloppy we decide:
  - a missing, empty or blank field (nothing but spaces/tabs/dots after cleaning) is skipped rather than
    turned into a lone "." and a double space; an item with nothing left has the text "";
  - no other whitespace is touched (UniSRec keeps it too).

`clean_field` / `item_text` are the readable one-value reference; `clean_fields` / `item_texts` are the
vectorised versions the ingest runs on millions of items. Only the distinct values that contain a
character reference go through Python's `html.unescape` (it returns any other string unchanged);
everything else is one polars expression. A property test keeps the two versions identical.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import polars as pl

DEFAULT_MAX_CHARS = 2000
_DELETED = {ord('"'): None, ord("\n"): None, ord("\r"): None}
_BLANK_CHARS = " \t\f\v"  # ASCII on purpose: Python and Rust disagree on exotic Unicode whitespace
# where html.unescape can change anything: its own pattern's first characters (other strings come back as is)
_ENTITY = r"&(?:#[0-9]|#[xX][0-9a-fA-F]|[^\t\n\f <&#;])"


def clean_field(value: str | None, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """One cleaned field, "" when missing, blank or too long."""
    if value is None:
        return ""
    text = html.unescape(value).translate(_DELETED).rstrip(".")
    if not text.strip(_BLANK_CHARS):
        return ""
    text += "."
    return "" if len(text) >= max_chars else text


def item_text(
    title: str | None,
    categories: Sequence[str] | None,
    brand: str | None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The item text of one item (see the module docstring)."""
    joined = " ".join(categories) if categories is not None else None
    fields = (clean_field(title, max_chars), clean_field(joined, max_chars), clean_field(brand, max_chars))
    return " ".join(field for field in fields if field)


def clean_fields(values: pl.Series, max_chars: int = DEFAULT_MAX_CHARS) -> pl.Series:
    """`clean_field` over a String series, vectorised; missing/blank/too long -> null."""
    values = values.cast(pl.String)
    has_entity = values.str.contains(_ENTITY).fill_null(False)
    if has_entity.any():
        where = has_entity.arg_true()
        distinct = values.gather(where).unique()  # category lists repeat a lot
        unescaped = pl.Series([html.unescape(v) for v in distinct.to_list()], dtype=pl.String)
        values = values.scatter(where, values.gather(where).replace_strict(distinct, unescaped))
    frame = pl.DataFrame({"v": values}).select(
        pl.col("v").str.replace_all('["\n\r]', "").str.strip_chars_end(".").alias("v")
    )
    return frame.select(
        pl.when(
            (pl.col("v").str.strip_chars(_BLANK_CHARS).str.len_chars() > 0)
            & (pl.col("v").str.len_chars() + 1 < max_chars)
        )
        .then(pl.col("v") + ".")
        .otherwise(None)
        .alias(values.name)
    ).to_series()


def item_texts(
    title: pl.Series, categories: pl.Series, brand: pl.Series, max_chars: int = DEFAULT_MAX_CHARS
) -> pl.Series:
    """`item_text` over aligned series (categories: List(String)), vectorised; never null."""
    fields = pl.DataFrame(
        {
            "title": clean_fields(title, max_chars),
            "categories": clean_fields(categories.list.join(" "), max_chars),
            "brand": clean_fields(brand, max_chars),
        }
    )
    return fields.select(
        pl.concat_str(["title", "categories", "brand"], separator=" ", ignore_nulls=True).fill_null("").alias("text")
    ).to_series()
