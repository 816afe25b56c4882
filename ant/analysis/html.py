"""The result tables' Markdown as a standalone HTML page, the form the Snakemake report shows inline.

The report displays HTML (and images) in the page but offers CSV and Markdown only as downloads, so every table
command also writes `--html`: the same text as its Markdown, through a converter of exactly the subset our
tables use — `## ` headings, pipe tables with an alignment row (`---:` right-aligned), paragraphs, and inline
**bold**, <u>underline</u> (Table II's best baseline) and `code`. Everything else is escaped, never interpreted.
"""

from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

from ant.io import write_text

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f3f3f3; }
td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; }
p { max-width: 70em; line-height: 1.4; }
"""
_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"`(.+?)`"), r"<code>\1</code>"),
    (re.compile(r"&lt;u&gt;(.+?)&lt;/u&gt;"), r"<u>\1</u>"),
]


def add_html_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--html", type=Path, help="also write the Markdown table as an HTML page (the report's view)")


def write_markdown(markdown: str, md_path: Path, html_path: Path | None, title: str) -> None:
    """Write a table's Markdown and, when asked, its HTML page (both atomically)."""
    write_text(markdown, md_path)
    if html_path is not None:
        write_text(markdown_to_html(markdown, title), html_path)


def inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    header, rule, body = _cells(lines[0]), _cells(lines[1]), [_cells(line) for line in lines[2:]]
    right = [cell.endswith(":") and not cell.startswith(":") for cell in rule]

    def row(cells: list[str], tag: str) -> str:
        return (
            "<tr>"
            + "".join(
                f"<{tag}{' class=right' if i < len(right) and right[i] else ''}>{inline(c)}</{tag}>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )

    return (
        "<table>\n<thead>"
        + row(header, "th")
        + "</thead>\n<tbody>\n"
        + "\n".join(row(r, "td") for r in body)
        + ("\n</tbody>\n</table>")
    )


def markdown_to_html(markdown: str, title: str) -> str:
    """Our tables' Markdown -> one HTML page: headings, tables and paragraphs in their order."""
    blocks: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            blocks.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\s*\|[\s:|-]+\|\s*", lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            blocks.append(_table(lines[i:end]))
            i = end
        else:
            end = i
            while end < len(lines) and lines[end].strip() and not lines[end].lstrip().startswith(("|", "#")):
                end += 1
            blocks.append("<p>" + inline(" ".join(s.strip() for s in lines[i:end])) + "</p>")
            i = end
    return (
        f"<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>{html.escape(title)}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(blocks) + "\n</body>\n</html>\n"
    )
