"""`figure training-curves` from hand-written history.csv files: the PNG's size, the parsing, the labels, bad input."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ant.analysis.curves import label_from_path, read_history
from ant.cli import main

VALID = ["valid_recall@10", "valid_ndcg@10", "valid_history_kept/recall@10", "valid_seconds"]


@pytest.fixture
def cli():
    """`python -m ant ARGS`, paths allowed among the arguments."""
    return lambda *argv: main([str(a) for a in argv])


def write_history(path, rows, columns=("epoch", "lr", "loss", "train_seconds", *VALID, "best")):
    """A history.csv as the trainer writes it; cells missing from a row are left blank."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_rows(recalls, best):
    return [
        {
            "epoch": e,
            "lr": 0.001,
            "loss": 5.0 - 0.3 * e,
            "train_seconds": 0.2,
            "valid_recall@10": r,
            "valid_ndcg@10": r / 2,
            "valid_history_kept/recall@10": r * 0.9,
            "valid_seconds": 0.05,
            "best": b,
        }
        for e, (r, b) in enumerate(zip(recalls, best, strict=True), start=1)
    ]


def pretrain_rows(losses):
    """S3-Rec / UniSRec pre-training: loss parts, no validation, every epoch kept."""
    return [
        {"epoch": e, "lr": 0.001, "loss": x, "aap": x / 2, "train_seconds": 3.1, "best": True}
        for e, x in enumerate(losses, 1)
    ]


def png_size(path):
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_height_grows_with_rows_of_four_width_fixed(tmp_path, cli):
    paths = [
        write_history(
            tmp_path / f"results/runs/Office/m{i}/default/seed0/history.csv", run_rows([0.1, 0.3], [True, True])
        )
        for i in range(9)
    ]
    sizes = {}
    for n in (1, 4, 5, 9):
        out = tmp_path / f"curves{n}.png"
        assert cli("figure", "training-curves", *paths[:n], "--out", out, "--title", "Office") == 0
        sizes[n] = png_size(out)
    assert {w for w, _ in sizes.values()} == {1600}  # 16 in at 100 dpi, whatever the panel count
    heights = {n: h for n, (_, h) in sizes.items()}
    assert heights[1] == heights[4] < heights[5] < heights[9]  # 1 row, 1 row, 2 rows, 3 rows
    assert heights[9] - heights[5] == heights[5] - heights[1]  # each row adds the same height


def test_mixed_runs_and_pretrainings_named_and_derived(tmp_path, cli):
    run = write_history(
        tmp_path / "results/runs/Office/sasrec/default/seed0/history.csv", run_rows([0.1, 0.2], [True, True])
    )
    s3rec = write_history(
        tmp_path / "results/pretrain/s3rec/Office/seed0/history.csv",
        pretrain_rows([80000.0, 2000.0, 600.0]),  # spans > 30x: the log axis
        columns=("epoch", "lr", "loss", "aap", "train_seconds", "best"),
    )
    out = tmp_path / "sub" / "pre.png"
    assert cli("figure", "training-curves", "--history", f"SASRec on Office={run}", s3rec, "--out", out) == 0
    assert png_size(out)[0] == 1600
    assert [p.name for p in out.parent.iterdir()] == ["pre.png"]  # written atomically: no temporary left behind


def test_read_history_kept_epoch_blanks_and_loss_only(tmp_path):
    rows = run_rows([0.10, 0.25, 0.20, 0.30, 0.28], [True, True, False, True, False])
    del rows[2]["valid_recall@10"]  # an epoch written without this metric: a blank cell
    curve = read_history(write_history(tmp_path / "h.csv", rows), "x", "recall@10")
    assert curve.kept == 4  # the last epoch marked best, the one whose weights were saved
    np.testing.assert_array_equal(curve.epoch, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(curve.loss, [4.7, 4.4, 4.1, 3.8, 3.5])
    np.testing.assert_allclose(curve.metric, [0.10, 0.25, np.nan, 0.30, 0.28])
    ndcg = read_history(tmp_path / "h.csv", "x", "ndcg@10")
    np.testing.assert_allclose(ndcg.metric[[0, 1]], [0.05, 0.125])

    columns = ("epoch", "lr", "loss", "aap", "train_seconds", "best")
    loss_only = read_history(write_history(tmp_path / "p.csv", pretrain_rows([6.0, 5.0]), columns), "p", "recall@10")
    assert loss_only.metric is None and loss_only.kept == 2


@pytest.mark.parametrize(
    ("parts", "label"),
    [
        ("results/runs/Office/sasrec/default/seed0", "sasrec/default seed0"),
        ("/abs/results/runs/Sci/ant/relearn_id/seed2", "ant/relearn_id seed2"),
        ("results/pretrain/ant/Food+Movies/seed0", "ant Food+Movies pre-training seed0"),  # a corpus
        ("results/pretrain/s3rec/Office/seed1", "s3rec Office pre-training seed1"),
        ("elsewhere/run1", "elsewhere/run1"),
    ],
)
def test_label_from_path(parts, label):
    assert label_from_path(Path(parts) / "history.csv") == label


def test_bad_input(tmp_path, caplog, cli):
    good = write_history(tmp_path / "results/runs/T/sasrec/default/seed0/history.csv", run_rows([0.1], [True]))
    no_loss = write_history(tmp_path / "no_loss.csv", [{"epoch": 1, "lr": 0.1}], columns=("epoch", "lr"))
    no_epoch = write_history(tmp_path / "no_epoch.csv", [{"loss": 1.0}], columns=("loss",))
    text = write_history(tmp_path / "text.csv", [{"epoch": 1, "loss": "nan?"}], columns=("epoch", "loss"))
    empty = write_history(tmp_path / "empty.csv", [], columns=("epoch", "loss"))
    missing = tmp_path / "missing" / "history.csv"
    cases = [
        ([missing], f"{missing}: not found"),
        ([no_loss], f"{no_loss}: not a history.csv (no loss column)"),
        ([no_epoch], f"{no_epoch}: not a history.csv (no epoch column)"),
        ([text], f"{text}: column 'loss' holds a value that is not a number"),
        ([empty], f"{empty}: no epochs"),
        (
            [good, "--metric", "ndcg@20"],
            f"{good}: no column valid_ndcg@20; its validation metrics are ndcg@10, recall@10",
        ),
        ([good, good], "two panels titled 'sasrec/default seed0'"),
        (["--history", str(good)], "expected NAME=path/to/history.csv"),
        ([], "no history.csv given"),
    ]
    for argv, message in cases:
        caplog.clear()
        out = tmp_path / "out.png"
        assert cli("figure", "training-curves", *argv, "--out", out) == 1, message
        assert message in caplog.text
        assert not out.exists()
