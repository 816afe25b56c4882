"""The tables' HTML pages (what the report shows inline): our Markdown subset converted, everything else escaped."""

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from ant.analysis.html import markdown_to_html
from tests.test_negative_transfer import write_run
from tests.train_helpers import run_cli

TABLE = """## Results

| Task | Metric | SASRec | ANT |
|---|---|---:|---:|
| Office | R@10 | <u>0.1186</u> | **0.1295** |
| Office | N@10 | 0.0787 | **0.0969** |

Bold = best; `eval.ties` pessimistic.
Second line of the note.
"""


def body(page: str) -> str:
    return page[page.index("<body>") + 6 : page.index("</body>")]


def test_tables_headings_paragraphs_and_emphasis():
    page = markdown_to_html(TABLE, "Table II")
    assert "<title>Table II</title>" in page
    out = body(page)
    assert out.index("<h2>Results</h2>") < out.index("<table>") < out.index("<p>")
    rows = re.findall(r"<tr>(.*?)</tr>", out)
    assert len(rows) == 3  # header and two body rows
    assert re.findall(r"<th[^>]*>(.*?)</th>", rows[0]) == ["Task", "Metric", "SASRec", "ANT"]
    cells = re.findall(r"<td([^>]*)>(.*?)</td>", rows[1])
    assert cells == [
        ("", "Office"),
        ("", "R@10"),
        (" class=right", "<u>0.1186</u>"),
        (" class=right", "<strong>0.1295</strong>"),
    ]
    assert "<p>Bold = best; <code>eval.ties</code> pessimistic. Second line of the note.</p>" in out


def test_other_markup_is_escaped_not_interpreted():
    out = body(markdown_to_html('| a |\n|---|\n| <script>alert("x")</script> & <b>b</b> |\n\n<img src=x>', "t"))
    assert "<script>" not in out and "<img" not in out and "<b>" not in out
    assert "&lt;script&gt;" in out and "&amp;" in out and "&lt;img src=x&gt;" in out


cell_text = st.text(
    st.characters(blacklist_characters="|*`\n\r", blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12
)


@given(st.lists(st.lists(cell_text, min_size=2, max_size=2), min_size=1, max_size=5))
def test_every_cell_survives_the_conversion(rows):
    markdown = "| x | y |\n|---|---:|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    out = body(markdown_to_html(markdown, "t"))
    found = [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in re.findall(r"<tr>(.*?)</tr>", out, re.S)[1:]
    ]
    expected = [[c.strip() for c in row] for row in rows]
    expected = [[re.sub(r"<u>(.+?)</u>", r"\1", c) for c in row] for row in expected]
    found = [[re.sub(r"<u>(.+?)</u>", r"\1", c) for c in row] for row in found]
    assert found == expected


def test_a_table_command_writes_the_page_beside_its_markdown(tmp_path):
    paths = [
        write_run(tmp_path / "runs", "Office", "ant", s, 0, 0.1 + i / 50) for i, s in enumerate(("scratch", "relearn"))
    ]
    out = {ext: tmp_path / f"t.{ext}" for ext in ("csv", "md", "html")}
    assert run_cli("table", "negative-transfer", *paths, *(f"--{e}={p}" for e, p in out.items())) == 0
    page = out["html"].read_text()
    for cell in re.findall(r"\| ([^|]+?) (?=\|)", out["md"].read_text().split("\n")[2]):  # the first body row
        assert html.escape(cell.replace("**", ""), quote=False) in page.replace("<strong>", "").replace("</strong>", "")
    assert page.count("<tr>") == out["md"].read_text().count("\n| Office") + 1
