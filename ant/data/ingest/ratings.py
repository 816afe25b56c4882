"""The ratings file -> interactions tables (user_id, item_id, rating f32, timestamp i64 in seconds), streamed.

Two layouts: the 2018 ratings-only CSV (no header; item,user,rating,timestamp), read by pyarrow's streaming
CSV reader without quoting (a line is split at every comma, as UniSRec does) and cast by polars; and the
reviews as JSON lines (2018: reviewerID, asin, overall, unixReviewTime; 2023: user_id, parent_asin, rating,
timestamp in ms). A row whose rating or timestamp does not parse, or whose ids are empty, is malformed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ant.data.ingest.json_lines import JsonLines
from ant.data.ingest.line_stats import MAX_EXAMPLES, LineStats, reject, rejected_rows

CSV_BLOCK_BYTES = 32 << 20

INTERACTIONS_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("rating", pa.float32()), ("timestamp", pa.int64())]
)
_CSV_COLUMNS = ["item_id", "user_id", "rating", "timestamp"]  # item first, as in categoryFilesSmall
# JSON review fields -> our names, and the types they have in the raw files
_REVIEW_FIELDS = {
    "amazon2018": {"reviewerID": "user_id", "asin": "item_id", "overall": "rating", "unixReviewTime": "timestamp"},
    "amazon2023": {"user_id": "user_id", "parent_asin": "item_id", "rating": "rating", "timestamp": "timestamp"},
}
_REVIEW_TYPES = {"user_id": pa.string(), "item_id": pa.string(), "rating": pa.float64(), "timestamp": pa.int64()}
_TIMESTAMP_DIVISOR = {"amazon2018": 1, "amazon2023": 1000}  # 2023 stores milliseconds


class _InvalidRows:
    """pyarrow's invalid-row handler: counts rows with the wrong number of fields and keeps their line
    numbers (to turn a row position into a line number) while examples are still being collected."""

    def __init__(self, stats: LineStats) -> None:
        self.stats = stats
        self.numbers: list[int] = []
        self.fields: Counter[int] = Counter()
        self.keep_numbers = True

    def __call__(self, row: Any) -> str:
        self.fields[row.actual_columns] += 1
        self.stats.malformed_lines += 1
        self.stats.example(row.number, f"{row.actual_columns} fields instead of 4", row.text)
        if self.keep_numbers:
            self.numbers.append(row.number)
        return "skip"

    def line_of(self, row_position: int) -> int:
        """1-based line number of the `row_position`-th (0-based) row that pyarrow delivered."""
        line = row_position + 1
        for number in self.numbers:  # ascending: the reader is single-threaded
            if number <= line:
                line += 1
            else:
                break
        return line


def csv_ratings(stream: BinaryIO, stats: LineStats) -> Iterator[pa.Table]:
    invalid = _InvalidRows(stats)
    reader = pacsv.open_csv(
        stream,
        # single-threaded: the invalid-row handler then knows line numbers (parsing is not the bottleneck)
        read_options=pacsv.ReadOptions(column_names=_CSV_COLUMNS, block_size=CSV_BLOCK_BYTES, use_threads=False),
        # no quoting: a line is split at every comma, as UniSRec's line.split(',') does
        parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in _CSV_COLUMNS}),
    )
    delivered = 0
    for batch in reader:
        table, ok = _typed_interactions(batch, 1)
        # an empty line arrives as a row of four empty fields
        blank = np.logical_and.reduce([pc.binary_length(batch[c]).to_numpy() == 0 for c in _CSV_COLUMNS])
        bad = ~ok & ~blank
        stats.blank_lines += int(blank.sum())
        stats.records += len(batch) - int(blank.sum())
        positions = np.flatnonzero(bad)[: MAX_EXAMPLES - len(stats.examples)].tolist()
        examples = [",".join(row.values()) for row in batch.take(pa.array(positions, pa.int64())).to_pylist()]
        reject(stats, int(bad.sum()), [invalid.line_of(delivered + p) for p in positions], examples,
                "unparseable rating or timestamp, or an empty id")  # fmt: skip
        invalid.keep_numbers = len(stats.examples) < MAX_EXAMPLES
        delivered += len(batch)
        yield table
    stats.lines = delivered + sum(invalid.fields.values())
    if invalid.fields:
        count, _ = invalid.fields.most_common(1)[0]
        stats.hint = f" (most lines with a wrong field count have {count} fields; expected item,user,rating,timestamp)"


def _number(raw: pa.Array | pa.ChunkedArray, dtype: type[pl.DataType]) -> pl.Series:
    """Text (or JSON numbers) -> numbers, null where unparseable. Python's float()/int() allow surrounding
    spaces, so what fails is tried once more stripped (only that: stripping everything costs)."""
    values = pl.Series(raw)
    parsed = values.cast(dtype, strict=False)
    if values.dtype == pl.String:
        retry = (parsed.is_null() & values.is_not_null()).arg_true()
        if len(retry):
            parsed = parsed.scatter(retry, values.gather(retry).str.strip_chars().cast(dtype, strict=False))
    return parsed


def _typed_interactions(raw: pa.RecordBatch | pa.Table, timestamp_divisor: int) -> tuple[pa.Table, np.ndarray]:
    """Raw user_id, item_id, rating, timestamp columns (text, or numbers from JSON) -> the usable rows as an
    interactions table, and the mask of usable rows (both numbers parse, both ids non-empty)."""
    rating = _number(raw["rating"], pl.Float32)
    timestamp = _number(raw["timestamp"], pl.Int64) // timestamp_divisor
    ok = (rating.is_not_null() & timestamp.is_not_null()).to_numpy()
    for column in ("user_id", "item_id"):
        ok &= pc.fill_null(pc.binary_length(raw[column]), 0).to_numpy() > 0
    table = pa.table(
        {
            "user_id": raw["user_id"],
            "item_id": raw["item_id"],
            "rating": rating.to_arrow(),
            "timestamp": timestamp.to_arrow(),
        }  # fmt: skip
    )
    return (table if ok.all() else table.filter(pa.array(ok))).cast(INTERACTIONS_SCHEMA), ok


def json_ratings(stream: BinaryIO, fmt: str, stats: LineStats) -> Iterator[pa.Table]:
    fields = _REVIEW_FIELDS[fmt]
    schema = pa.schema([(raw, _REVIEW_TYPES[ours]) for raw, ours in fields.items()])
    for frame in JsonLines(stream, schema, stats).frames():
        table, ok = _typed_interactions(frame.rename(fields).to_arrow(), _TIMESTAMP_DIVISOR[fmt])
        bad = pl.Series(~ok)
        reject(stats, int(bad.sum()), *rejected_rows(frame, bad), f"lacks a usable {', '.join(fields)}")
        yield table
