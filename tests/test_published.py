"""The paper's Tables II-IV as transcribed in ant/analysis/published.py equal the spec's text, cell by cell."""

from pathlib import Path

import pytest

from ant.analysis.published import (
    TABLE_II,
    TABLE_II_COLUMNS,
    TABLE_II_IMPRV,
    TABLE_III,
    TABLE_III_COLUMNS,
    TABLE_IV,
    TABLE_IV_COLUMNS,
)
from ant.methods import OVERALL_COLUMNS

SPEC = Path(__file__).parents[1] / "docs/baselines.md"  # the spec as built; its Appendix A is the paper's
METRIC = {"R@10": "recall@10", "R@50": "recall@50", "N@10": "ndcg@10", "N@50": "ndcg@50"}


def spec_table(title: str) -> tuple[list[str], list[list[str]]]:
    """The Markdown table after `**<title>**` in the spec's Appendix A: header cells and body rows."""
    text = SPEC.read_text()
    text = text[text.index("## Appendix A") :]
    lines = text[text.index(f"**{title}**") :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return table[0], table[2:]


def test_table_ii_equals_the_spec_cell_by_cell():
    header, rows = spec_table("Table II")
    assert header[2:-1] == list(TABLE_II_COLUMNS) == [title for _, _, title in OVERALL_COLUMNS]
    assert len(rows) == 20 and set(TABLE_II) == {r[0] for r in rows}
    for row in rows:
        task, metric = row[0], METRIC[row[1]]
        for column, text in zip(TABLE_II_COLUMNS, row[2:-1], strict=True):
            assert TABLE_II[task][column][metric] == float(text), (task, column, metric)
        assert TABLE_II_IMPRV[task][metric] == float(row[-1]), (task, metric)


@pytest.mark.parametrize(
    "title, table, columns", [("Table III", TABLE_III, TABLE_III_COLUMNS), ("Table IV", TABLE_IV, TABLE_IV_COLUMNS)]
)
def test_tables_iii_and_iv_equal_the_spec_cell_by_cell(title, table, columns):
    header, rows = spec_table(title)
    assert header[1:] == list(columns) and [r[0] for r in rows] == list(table)
    for row in rows:
        for column, text in zip(columns, row[1:], strict=True):
            values = [float(v) for v in text.split(" / ")]  # R@10 / R@50 / N@10 / N@50
            assert list(table[row[0]][column].values()) == values, (row[0], column)
            assert list(table[row[0]][column]) == list(METRIC.values())


def test_spot_checks_from_the_spec_prose():
    # section 14: "Scientific R@10: 0.1001, 0.1253, 0.1314, 0.1288, 0.1334, 0.1334" and ANT = ANT-R of Table III
    assert [TABLE_IV["Scientific"][c]["recall@10"] for c in TABLE_IV_COLUMNS] == [
        0.1001,
        0.1253,
        0.1314,
        0.1288,
        0.1334,
        0.1334,
    ]
    # Appendix A: "ANT over CARCA +5.9 % R@10 on Scientific (0.1334 / 0.1260)"
    assert (TABLE_II["Scientific"]["ANT"]["recall@10"], TABLE_II["Scientific"]["CARCA"]["recall@10"]) == (
        0.1334,
        0.1260,
    )
    for task in TABLE_II:  # "the UniSRec column equals UniSRec-F of Table III on all five tasks"; ANT is ANT-R
        assert TABLE_II[task]["UniSRec"] == TABLE_III[task]["UniSRec-F"]
        assert TABLE_II[task]["ANT"] == TABLE_III[task]["ANT-R"] == TABLE_IV[task]["ANT"]
