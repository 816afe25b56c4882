"""A real Snakemake HTML report in a real headless Chromium: results listed, a table, images and captions shown.

A tiny workflow in tmp_path marks a CSV table (with an HTML copy, the two told apart by a "file" label, which the
report turns into a toggle, as the project's own tables are), and a figure per wildcard value (two subcategories)
for the report; `snakemake --report` builds it; tests/report_browser.py clicks through it. Skipped without
playwright or Chromium (.ci/browser-up installs Chromium; ANT_TEST_BROWSER=1 makes that a failure).
"""

import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from tests.report_browser import chromium_or_skip, open_report

# shell jobs, not run: blocks, which Snakemake 9 runs each in a fresh Snakemake process (seconds per job)
SNAKEFILE = """
configfile: "config.yaml"


report: "report/workflow.rst"


rule all:
    input:
        "results/recall.csv",
        "results/recall.html",
        expand("results/curve_{kind}.png", kind=["loss", "recall"]),


rule table:
    output:
        csv=report(
            "results/recall.csv",
            caption="report/table.rst",
            category="Tables",
            labels={"table": "Recall@10", "file": "csv"},
        ),
        html=report(
            "results/recall.html",
            caption="report/table.rst",
            category="Tables",
            labels={"table": "Recall@10", "file": "html"},
        ),
    shell:
        "PYTHON make.py table {output.csv} {output.html}"


rule figure:
    output:
        report(
            "results/curve_{kind}.png",
            caption="report/figure.rst",
            category="Figures",
            subcategory="{kind}",
            labels={"figure": "curve", "kind": "{kind}"},
        ),
    shell:
        "PYTHON make.py figure {output}"
""".replace("PYTHON", sys.executable)

MAKE = """
import sys

if sys.argv[1] == "table":
    rows = [("method", "recall@10"), ("ANT", "0.4321"), ("SASRec", "0.1234")]
    with open(sys.argv[2], "w") as fh:
        fh.write("".join(",".join(row) + "\\n" for row in rows))
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    with open(sys.argv[3], "w") as fh:
        fh.write(f"<html><body><table>{cells}</table></body></html>")
else:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=100)
    fig.add_subplot().plot([1, 2, 3], [3, 1, 2])
    fig.savefig(sys.argv[2])
"""

CAPTIONS = {
    "workflow.rst": "A tiny workflow to test the report, seeds {{ snakemake.config['seeds'] | join(', ') }}.\n",
    # Jinja first (snakemake.config, .output, .wildcards of the job), then reStructuredText: the csv-table
    # directive reads the finished table from its path, relative to the directory the report is built in
    "table.rst": """\
        Recall per method; seeds: {{ snakemake.config['seeds'] }}; rule {{ snakemake.rule }}.

        .. csv-table::
           :file: {{ snakemake.output.csv }}
           :header-rows: 1
        """,
    "figure.rst": "The {{ snakemake.wildcards.kind }} curve, drawn with matplotlib.\n",
}


def snakemake(work, *args):
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.mark.workflow
@pytest.mark.slow
def test_report_lists_and_shows_table_figures_and_captions(tmp_path):
    chromium_or_skip()  # before the workflow runs: skip at once where there is no browser
    work = tmp_path / "wf"
    (work / "report").mkdir(parents=True)
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "make.py").write_text(MAKE)
    (work / "config.yaml").write_text("seeds: [0, 1, 2]\n")
    for name, text in CAPTIONS.items():
        (work / "report" / name).write_text(textwrap.dedent(text))
    snakemake(work, "--cores", "1")
    snakemake(work, "--report", "report.html")
    html = work / "report.html"
    print(f"report: {html.stat().st_size / 1e6:.2f} MB")

    with open_report(html, screenshot=tmp_path / "report.png") as report:
        csv_path, html_path = "results/recall.csv", "results/recall.html"
        figures = ["results/curve_loss.png", "results/curve_recall.png"]
        assert sorted(report.result_names()) == sorted([csv_path, html_path, *figures])
        assert report.categories() == {
            "Tables": {"Other": [csv_path, html_path]},
            "Figures": {"loss": [figures[0]], "recall": [figures[1]]},
        }
        assert "A tiny workflow to test the report, seeds 0, 1, 2." in report.text()  # the start page

        # a CSV is only a download link (its bytes are the file's); its values are visible in its info panel,
        # where the caption's csv-table renders it, next to the Jinja-rendered config
        table = report.show(csv_path)
        assert table.kind == "download"
        assert table.download == (work / csv_path).read_bytes()
        info = report.info(csv_path)
        assert "Recall per method; seeds: [0, 1, 2]; rule table." in info
        for value in ("ANT", "0.4321", "SASRec", "0.1234"):
            assert value in info
        # the HTML copy (the toggle's other value) renders in the page
        shown = report.show(html_path)
        assert shown.kind == "html"
        assert "ANT\t0.4321" in shown.text and "SASRec\t0.1234" in shown.text

        for figure in figures:
            kind = figure.removeprefix("results/curve_").removesuffix(".png")
            assert f"The {kind} curve, drawn with matplotlib." in report.info(figure)  # the wildcard in the caption
            image = report.show(figure)  # last: the screenshot shows the figure beside its results table
            with Image.open(work / figure) as png:
                assert image.kind == "img" and image.image_size == png.size  # decoded at its real size

        assert report.errors == []  # no console error, no page error, no request that failed (all embedded)
    assert (tmp_path / "report.png").stat().st_size > 0
