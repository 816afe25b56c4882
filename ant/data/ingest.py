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

Speed and memory: everything streams. The CSV goes through pyarrow's streaming reader (no quoting: a line
is split at every comma, as UniSRec does) and polars casts; JSON lines are parsed 32 MB at a time by
pyarrow (polars for 2023 meta, whose prices mix numbers and text). Only a block that fails to parse is
bisected down to its bad lines, which get a second chance with Python's `json` (a record whose field has
an unexpected type is kept, coerced); so Python runs per bad line, never per good one.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ant.data.price import MODES, RANGE, parse_prices
from ant.data.text import DEFAULT_MAX_CHARS, item_texts
from ant.errors import UserError
from ant.io import atomic_path, write_json

log = logging.getLogger(__name__)

FORMATS = ("amazon2018", "amazon2023")
GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_LAYERS = 3
MAX_EXAMPLES = 5
CSV_BLOCK_BYTES = 32 << 20
JSON_BLOCK_BYTES = 32 << 20
_BISECT_FLOOR_LINES = 64  # below this many lines a failing block is parsed line by line

INTERACTIONS_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_id", pa.string()), ("rating", pa.float32()), ("timestamp", pa.int64())]
)
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
_CSV_COLUMNS = ["item_id", "user_id", "rating", "timestamp"]  # item first, as in categoryFilesSmall
# JSON review fields -> our names, and the types they have in the raw files
_REVIEW_FIELDS = {
    "amazon2018": {"reviewerID": "user_id", "asin": "item_id", "overall": "rating", "unixReviewTime": "timestamp"},
    "amazon2023": {"user_id": "user_id", "parent_asin": "item_id", "rating": "rating", "timestamp": "timestamp"},
}
_REVIEW_TYPES = {"user_id": pa.string(), "item_id": pa.string(), "rating": pa.float64(), "timestamp": pa.int64()}
_TIMESTAMP_DIVISOR = {"amazon2018": 1, "amazon2023": 1000}  # 2023 stores milliseconds
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


# ---------------------------------------------------------------- opening files --------------------------
class _Decompressed(io.RawIOBase):
    """A readable stream whose decompression errors become one clear UserError (truncated download...)."""

    def __init__(self, path: Path, layers: int) -> None:
        self._path = path
        self._files: list[BinaryIO] = [open(path, "rb")]
        for _ in range(layers):
            self._files.append(gzip.GzipFile(fileobj=self._files[-1], mode="rb"))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._files[-1].read(size)
        except (EOFError, OSError, zlib.error) as err:
            raise UserError(
                f"{self._path}: cannot decompress ({err}); the file is truncated or corrupt: "
                "delete it and download it again"
            ) from err

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        for f in reversed(self._files):
            f.close()
        super().close()


def gzip_layers(path: Path) -> int:
    """How many times the file is gzipped (0 = plain); a gzip inside a gzip is seen by its magic bytes."""
    layers = 0
    while True:
        with _Decompressed(path, layers) as stream:
            head = stream.read(2)
        if head != GZIP_MAGIC:
            return layers
        layers += 1
        if layers > MAX_GZIP_LAYERS:
            raise UserError(f"{path}: more than {MAX_GZIP_LAYERS} nested gzip layers; this is not a data file")


def open_input(path: str | Path) -> tuple[_Decompressed, int]:
    """The decompressed content of `path` and its number of gzip layers."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    layers = gzip_layers(path)
    if layers > 1:
        log.warning("%s is gzipped %d times; decompressing every layer", path, layers)
    return _Decompressed(path, layers), layers


def sniff(path: Path, layers: int) -> tuple[bool, bool]:
    """(is empty, is JSON lines): JSON lines start with `{` after any whitespace, anything else is CSV."""
    with _Decompressed(path, layers) as stream:
        head = stream.read(4096)
    return head == b"", head.lstrip().startswith(b"{")


# ---------------------------------------------------------------- line accounting ------------------------
@dataclass
class LineStats:
    """Every line of a file is exactly one of: a record, a blank line, a malformed line."""

    path: str
    gzip_layers: int = 0
    lines: int = 0
    blank_lines: int = 0
    malformed_lines: int = 0
    records: int = 0
    repaired_records: int = 0  # JSON that polars could not type but Python's json could (kept, coerced)
    examples: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""  # appended to the error message

    def example(self, line: int | None, reason: str, text: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"line": line, "reason": reason, "text": text[:200]})

    def check(self, max_share: float, what: str) -> None:
        """Fail on an empty file or on more malformed lines than allowed."""
        if self.lines == self.blank_lines:
            raise UserError(f"{self.path}: the {what} file is empty")
        share = self.malformed_lines / self.lines
        if share > max_share:
            first = min(self.examples, key=lambda e: e["line"] or 0)
            raise UserError(
                f"{self.path}: {self.malformed_lines:,} of {self.lines:,} lines ({share:.2%}) of the {what} file "
                f"are malformed, more than --max-malformed-share {max_share:.2%} allows; e.g. line "
                f"{first['line']} ({first['reason']}): {first['text']!r}{self.hint}"
            )
        if self.records == 0:
            raise UserError(f"{self.path}: the {what} file has no usable records")

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "gzip_layers": self.gzip_layers,
            "double_gzip": self.gzip_layers > 1,
            "lines": self.lines,
            "blank_lines": self.blank_lines,
            "malformed_lines": self.malformed_lines,
            "malformed_share": self.malformed_lines / self.lines if self.lines else 0.0,
            "records": self.records,
            "repaired_records": self.repaired_records,
            "malformed_examples": sorted(self.examples, key=lambda e: e["line"] or 0),
        }


def _reject(stats: LineStats, count: int, lines: list[int | None], texts: list[str], reason: str) -> None:
    """Count `count` parsed records as malformed after all; `lines`/`texts`: the first few of them."""
    stats.malformed_lines += count
    stats.records -= count
    for line, text in zip(lines, texts, strict=True):
        stats.example(line, reason, text)


def _rejected_rows(frame: pl.DataFrame, bad: pl.Series) -> tuple[list[int | None], list[str]]:
    """Line numbers and JSON text of the first few rows of `frame` flagged `bad`."""
    examples = frame.filter(bad).head(MAX_EXAMPLES)
    rows = examples.drop("_line").iter_rows(named=True)
    return examples["_line"].to_list(), [json.dumps(row, default=str) for row in rows]


# ---------------------------------------------------------------- ratings: CSV ---------------------------
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


def _csv_ratings(stream: BinaryIO, stats: LineStats) -> Iterator[pa.Table]:
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
        _reject(stats, int(bad.sum()), [invalid.line_of(delivered + p) for p in positions], examples,
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


# ---------------------------------------------------------------- JSON lines -----------------------------
def _coerce(value: Any, dtype: pa.DataType) -> Any:
    """A value decoded by Python's json, shaped to `dtype` as polars would read it (None if impossible)."""
    if value is None:
        return None
    if pa.types.is_string(dtype):
        if isinstance(value, str):
            return value
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
    if pa.types.is_floating(dtype) or pa.types.is_integer(dtype):
        kind = float if pa.types.is_floating(dtype) else int
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            number = kind(value)
        except (ValueError, OverflowError):
            return None
        return number if kind is float or number == float(value) else None
    if pa.types.is_list(dtype):
        values = value if isinstance(value, list) else [value]
        return [c for c in (_coerce(v, dtype.value_type) for v in values) if c is not None]
    if pa.types.is_struct(dtype):
        if not isinstance(value, dict):
            return None
        return {f.name: _coerce(value.get(f.name), f.type) for f in dtype}
    raise TypeError(f"unsupported type {dtype}")


_WHITESPACE = np.array([9, 10, 11, 12, 13, 32], np.uint8)


class _JsonLines:
    """The records of a JSON-lines stream as polars frames (file order, plus a `_line` column), with exact
    line accounting in `stats`.

    A block is parsed by pyarrow (strict types, fast) or, if `lenient`, by polars (slower, but turns numbers
    into text where text is expected). A block that fails is bisected down to its failing lines; such a
    line is kept if Python's json reads it as an object (its fields coerced to the schema) and counted as
    malformed otherwise.
    """

    def __init__(self, stream: BinaryIO, schema: pa.Schema, stats: LineStats, lenient: bool = False) -> None:
        self.stream, self.schema, self.stats, self.lenient = stream, schema, stats, lenient
        self.polars_schema = pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]
        self.invalid_lines = 0  # lines that are not JSON objects (the consumer may reject records too)

    def frames(self) -> Iterator[pl.DataFrame]:
        carry = b""
        line0 = 1  # line number of the first line of the next block
        while block := self.stream.read(JSON_BLOCK_BYTES):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                n_lines = data.count(b"\n", 0, cut)
                yield from self._block(data[:cut], line0, n_lines)
                line0 += n_lines
        if carry:
            yield from self._block(carry + b"\n", line0, 1)
            line0 += 1
        self.stats.lines = line0 - 1

    def _block(self, buf: bytes, line0: int, n_lines: int) -> Iterator[pl.DataFrame]:
        invalid_before = self.invalid_lines
        # one frame per block, however many pieces a bisection cut it into
        frames = self._parse(buf, 0, len(buf), line0, n_lines)
        frame = frames[0] if len(frames) == 1 else pl.concat(frames) if frames else None
        records = frame.height if frame is not None else 0
        self.stats.records += records
        # both readers skip blank lines: a line that is neither a record nor invalid was blank
        self.stats.blank_lines += n_lines - records - (self.invalid_lines - invalid_before)
        if frame is not None:
            yield frame

    def _read(self, data: bytes) -> pl.DataFrame:
        if self.lenient:
            return pl.read_ndjson(io.BytesIO(data), schema=self.polars_schema)
        table = pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, len(data) // 2 + 1)),
            parse_options=pajson.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore"),
        )
        return pl.from_arrow(table)  # type: ignore[return-value]

    def _parse(self, buf: bytes, start: int, end: int, line0: int, n_lines: int) -> list[pl.DataFrame]:
        """Records of the `n_lines` whole lines buf[start:end], whose first line is number `line0`."""
        try:
            frame = self._read(buf[start:end])
        except (pa.ArrowInvalid, pl.exceptions.PolarsError):
            pass
        else:
            return [frame.with_columns(_line=self._record_lines(buf, start, end, line0, n_lines, frame.height))]
        if n_lines == 1:
            return self._fallback(buf[start:end], line0)
        if n_lines <= _BISECT_FLOOR_LINES:
            frames, pos = [], start
            for offset in range(n_lines):
                nxt = buf.index(b"\n", pos) + 1
                frames += self._parse(buf, pos, nxt, line0 + offset, 1)
                pos = nxt
            return frames
        # bisect at the newline nearest the middle; both halves keep whole lines
        mid = buf.find(b"\n", start + (end - start) // 2, end - 1)
        if mid < 0:
            mid = buf.rfind(b"\n", start, start + (end - start) // 2)
        mid += 1
        first = buf.count(b"\n", start, mid)
        return self._parse(buf, start, mid, line0, first) + self._parse(buf, mid, end, line0 + first, n_lines - first)

    @staticmethod
    def _record_lines(buf: bytes, start: int, end: int, line0: int, n_lines: int, records: int) -> pl.Series:
        """Line number of each record: consecutive unless the block has blank lines (then found with numpy)."""
        if records == n_lines:
            return pl.Series(np.arange(line0, line0 + n_lines, dtype=np.int64))
        data = np.frombuffer(buf, np.uint8, count=end - start, offset=start)
        ends = np.flatnonzero(data == 10)
        starts = np.concatenate([[0], ends[:-1] + 1])
        filled = np.concatenate([[0], np.cumsum(~np.isin(data, _WHITESPACE), dtype=np.int64)])
        numbers = line0 + np.flatnonzero(filled[ends] > filled[starts])
        if len(numbers) != records:  # the reader's idea of a blank line differs from ours: give up on numbers
            return pl.Series(np.full(records, None), dtype=pl.Int64)
        return pl.Series(numbers.astype(np.int64))

    def _fallback(self, line: bytes, number: int) -> list[pl.DataFrame]:
        """One line the reader rejected: valid JSON whose fields have unexpected types is kept, coerced."""
        text = line.decode("utf-8", "replace").rstrip("\n")
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            return self._invalid(number, f"invalid JSON ({err})", text)
        if not isinstance(obj, dict):
            return self._invalid(number, "not a JSON object", text)
        self.stats.repaired_records += 1
        row = {f.name: _coerce(obj.get(f.name), f.type) for f in self.schema}
        frame = pl.from_arrow(pa.Table.from_pylist([row], schema=self.schema))
        return [frame.with_columns(_line=pl.lit(number, pl.Int64))]  # type: ignore[union-attr]

    def _invalid(self, number: int, reason: str, text: str) -> list[pl.DataFrame]:
        self.invalid_lines += 1
        self.stats.malformed_lines += 1
        self.stats.example(number, reason, text)
        return []


def _json_ratings(stream: BinaryIO, fmt: str, stats: LineStats) -> Iterator[pa.Table]:
    fields = _REVIEW_FIELDS[fmt]
    schema = pa.schema([(raw, _REVIEW_TYPES[ours]) for raw, ours in fields.items()])
    for frame in _JsonLines(stream, schema, stats).frames():
        table, ok = _typed_interactions(frame.rename(fields).to_arrow(), _TIMESTAMP_DIVISOR[fmt])
        bad = pl.Series(~ok)
        _reject(stats, int(bad.sum()), *_rejected_rows(frame, bad), f"lacks a usable {', '.join(fields)}")
        yield table


# ---------------------------------------------------------------- meta ---------------------------------
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


def _meta_items(stream: BinaryIO, fmt: str, stats: LineStats, price_range: str,
                max_field_chars: int) -> pl.DataFrame | None:  # fmt: skip
    """All meta records as items_raw rows (plus price_status), in file order, repeated ids still there.

    The rows are kept in memory (one row per record: Clothing's 2.7M take ~2 GB) so that "first record
    wins" is one pass over all ids at the end, not a lookup of every block in everything before it.
    """
    id_field = _META_ID[fmt]
    parts = []
    for frame in _JsonLines(stream, _META_SCHEMA[fmt], stats, lenient=_LENIENT_META[fmt]).frames():
        no_id = frame[id_field].is_null() | (frame[id_field].str.len_bytes() == 0)
        _reject(stats, int(no_id.sum()), *_rejected_rows(frame, no_id), f"no {id_field}")
        parts.append(_items_raw(_normalised_meta(frame.filter(~no_id), fmt), price_range, max_field_chars))
    return pl.concat(parts, rechunk=False) if parts else None


# ---------------------------------------------------------------- the step -------------------------------
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
        tables = _json_ratings(stream, fmt, stats) if as_json else _csv_ratings(stream, stats)
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
        records = _meta_items(stream, fmt, stats, price_range, max_field_chars)
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
