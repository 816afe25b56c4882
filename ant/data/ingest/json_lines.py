"""JSON lines -> polars frames, 32 MB at a time, with exact line accounting, however broken the file.

A block is parsed by pyarrow (strict types, fast) or, for a lenient schema, by polars (slower, but reads
numbers where text is expected as text). Only a block that fails is bisected down to its bad lines, which
get a second chance with Python's `json` (a record whose field has an unexpected type is kept, coerced to
the schema); so Python runs per bad line, never per good one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pajson

from ant.data.ingest.line_stats import LineStats

JSON_BLOCK_BYTES = 32 << 20
_BISECT_FLOOR_LINES = 64  # below this many lines a failing block is parsed line by line


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


class JsonLines:
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
