"""Line accounting of one input file: every line is exactly one of a record, a blank line, a malformed line.

`LineStats` keeps the counts and the first few malformed lines as examples, fails a file that is empty or
has more malformed lines than allowed (naming the count, the share and the first bad line), and is what
ingest.json records per file. `reject` moves parsed records whose fields turn out unusable to the
malformed count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ant.errors import UserError

MAX_EXAMPLES = 5


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


def reject(stats: LineStats, count: int, lines: list[int | None], texts: list[str], reason: str) -> None:
    """Count `count` parsed records as malformed after all; `lines`/`texts`: the first few of them."""
    stats.malformed_lines += count
    stats.records -= count
    for line, text in zip(lines, texts, strict=True):
        stats.example(line, reason, text)


def rejected_rows(frame: pl.DataFrame, bad: pl.Series) -> tuple[list[int | None], list[str]]:
    """Line numbers and JSON text of the first few rows of `frame` flagged `bad`."""
    examples = frame.filter(bad).head(MAX_EXAMPLES)
    rows = examples.drop("_line").iter_rows(named=True)
    return examples["_line"].to_list(), [json.dumps(row, default=str) for row in rows]
