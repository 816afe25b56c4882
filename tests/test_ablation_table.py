"""Table IV: ANT-R and its ablations per task, in the paper's column order, mean ± std, the R@10 change, the
paper's rows, and what is refused or ignored."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ant.analysis.ablation import PARTS, summarise
from ant.analysis.published import TABLE_IV
from ant.analysis.runs_table import read_run
from ant.cli import main
from ant.errors import UserError
from ant.train.hparams import ABLATIONS

METRICS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50")
PAPER_ORDER = ["w/o text", "w/o image", "w/o price", "w/o MoE", "w/o fusion", "ANT"]


def write_run(root, task, seed, base, ablations=(), method="ant", strategy="relearn", rule="history_excluded"):
    folder = "+".join([strategy, *ablations])
    path = root / task / method / folder / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True)
    test = {m: base + i / 100 for i, m in enumerate(METRICS)}
    run = {"task": task, "method": method, "strategy": strategy, "variant": folder, "label": "R", "seed": seed}
    run |= {"ablations": list(ablations), "history_rule": rule, "test": test, f"test_{rule}": test}
    path.write_text(json.dumps(run))
    return str(path)


def render(tmp_path, paths):
    out, md = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["table", "ablation", *paths, "--csv", str(out), "--md", str(md)]) == 0
    return list(csv.DictReader(out.open())), md.read_text()


def test_layout_order_std_and_change_against_ant(tmp_path, caplog):
    paths = []
    bases = {"no_fusion": 0.19, "no_moe": 0.18, "no_price": 0.17, "no_image": 0.16, "no_text": 0.15}
    for task in ("Office", "DemoA"):  # Office is a paper task, DemoA is not
        # given in reverse order; ANT-R with three seeds
        paths += [write_run(tmp_path, task, 0, base, (name,)) for name, base in bases.items()]
        paths += [write_run(tmp_path, task, seed, 0.20 + seed / 100) for seed in (2, 0, 1)]
    paths.append(write_run(tmp_path, "Office", 0, 0.5, strategy="finetune"))  # not Table IV's: ignored
    paths.append(write_run(tmp_path, "Office", 0, 0.5, method="sasrec", strategy="default"))
    with caplog.at_level(logging.INFO):
        rows, md = render(tmp_path, paths)
    assert "ignored 2 run(s)" in caplog.text
    assert [(r["task"], r["variant"]) for r in rows] == [(t, v) for t in ("Office", "DemoA") for v in PAPER_ORDER]
    full = next(r for r in rows if r["task"] == "DemoA" and r["variant"] == "ANT")
    r10 = np.array([0.20, 0.21, 0.22])
    assert full["seeds"] == "3" and full["ablations"] == "" and full["recall@10_vs_ANT_pct"] == ""
    assert float(full["recall@10"]) == pytest.approx(r10.mean(), abs=1e-6)
    assert float(full["recall@10_std"]) == pytest.approx(r10.std(ddof=1), abs=1e-6)
    no_text = next(r for r in rows if r["task"] == "DemoA" and r["variant"] == "w/o text")
    assert no_text["ablations"] == "no_text" and no_text["recall@10_std"] == ""
    assert float(no_text["recall@10_vs_ANT_pct"]) == pytest.approx(100 * (0.15 - 0.21) / 0.21, abs=1e-5)
    assert float(no_text["ndcg@50"]) == pytest.approx(0.18, abs=1e-6) and no_text["history_rule"] == "history_excluded"

    lines = md.splitlines()
    assert lines[0] == "| Task | Metric | " + " | ".join(PAPER_ORDER) + " |"
    assert "| DemoA | R@10 | 0.1500 | 0.1600 | 0.1700 | 0.1800 | 0.1900 | **0.2100 ± 0.0100** |" in lines
    assert "| DemoA | R@10 vs ANT | -28.6 % | -23.8 % | -19.0 % | -14.3 % | -9.5 % | – |" in lines
    # the paper's numbers under each of Office's rows, none for DemoA
    assert "| Office | R@10 paper | 0.1123 | 0.1053 | 0.1056 | 0.1173 | 0.1262 | 0.1295 |" in lines
    assert "| Office | N@50 paper | 0.0969 | 0.0914 | 0.0921 | 0.1024 | 0.1100 | 0.1127 |" in lines
    assert not any(line.startswith("| DemoA") and "paper" in line for line in lines)
    assert "Mean over 1/3 seed(s)" in md and "history items excluded" in md


def test_missing_variants_and_combinations(tmp_path):
    paths = [
        write_run(tmp_path, "T", 0, 0.20),
        write_run(tmp_path, "T", 0, 0.12, ("no_image", "no_text")),  # a combination: after the single ones
        write_run(tmp_path, "T", 0, 0.18, ("no_moe",)),
        write_run(tmp_path, "U", 0, 0.16, ("no_price",)),  # U: no full model, so no change
    ]
    rows = summarise([read_run(Path(p)) for p in paths])
    assert [(r["task"], r["variant"], r["ablations"]) for r in rows] == [
        ("T", "w/o MoE", "no_moe"),
        ("T", "w/o text & image", "no_text+no_image"),
        ("T", "ANT", ""),
        ("U", "w/o price", "no_price"),
    ]
    assert rows[1]["recall@10_vs_ANT_pct"] == pytest.approx(-40.0) and rows[3]["recall@10_vs_ANT_pct"] is None
    _, md = render(tmp_path, paths)
    assert md.splitlines()[0] == "| Task | Metric | w/o price | w/o MoE | w/o text & image | ANT |"
    assert "| U | R@10 | **0.1600** | – | – | – |" in md


def test_refusals(tmp_path):
    mixed = [write_run(tmp_path, "T", 0, 0.2), write_run(tmp_path, "T", 0, 0.1, ("no_text",), rule="history_kept")]
    with pytest.raises(UserError, match="different history rules"):
        summarise([read_run(Path(p)) for p in mixed])
    unknown = write_run(tmp_path, "U", 0, 0.1, ("no_everything",))
    with pytest.raises(UserError, match=r"unknown ablation\(s\) \['no_everything'\]"):
        summarise([read_run(Path(unknown))])
    with pytest.raises(UserError, match="none of the runs is an ANT re-learning"):
        summarise([read_run(Path(write_run(tmp_path, "V", 0, 0.1, strategy="scratch")))])


def test_every_ablation_has_a_title_the_paper_uses():
    assert list(PARTS) == list(ABLATIONS)
    assert ["w/o " + PARTS[a] for a in ABLATIONS] + ["ANT"] == PAPER_ORDER == list(TABLE_IV["Scientific"])
