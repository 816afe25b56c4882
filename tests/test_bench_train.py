"""`python -m ant bench train`: steps/s of each pre-training variant and the projection of the paper's corpus."""

import re

import pytest

from tests.train_helpers import run_cli

# the paper's Table I, auxiliary tasks (users, items, interactions), as the spec lists them
TABLE_I = {
    "Food": (115_349, 39_670, 1_027_413),
    "Movies": (281_700, 59_203, 3_226_731),
    "Home": (731_913, 185_552, 6_451_926),
    "Clothing": (1_164_752, 372_593, 10_714_172),
}


def test_bench_train_times_every_pretraining_variant_and_projects_the_paper_corpus(capsys):
    argv = ["bench", "train", "--settings", "demo", "--only", "pretrain", "evaluate", "--steps", "1", "--warmup", "0"]
    assert run_cli(*argv, "--eval-users", "200", "--threads", "1") == 0
    out = capsys.readouterr().out
    rates = {}
    for layout in ("prefixes", "all_positions"):
        for how in ("one pass", "length groups", "length groups, sfc64"):  # sfc64: train.dropout_rng on the CPU
            line = re.search(rf"demo\s+pretrain, {layout}, {how}\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)", out)
            assert line, (layout, how, out)
            rate, steps, ms = (float(x.replace(",", "")) for x in line.groups())
            assert steps == pytest.approx(1000 / ms, rel=5e-3) and rate > 0  # both printed rounded
            rates[layout, how] = rate
    targets = sum(interactions - 3 * users for users, _, interactions in TABLE_I.values())
    assert f"{targets:,} training targets per epoch" in out and targets == 14_539_100
    # the projection is 300 epochs of those targets at each variant's measured rate, plus the validation's time
    validation = float(re.search(r"validation .*, ([\d,.]+) h in all at", out).group(1).replace(",", ""))
    for (layout, how), rate in rates.items():
        line = re.search(rf"demo\s+pretrain, {layout}, {how}\s+([\d,.]+) h training \+ validation = ([\d,.]+) h", out)
        train, total = (float(x.replace(",", "")) for x in line.groups())
        assert train == pytest.approx(300 * targets / rate / 3600, rel=2e-3, abs=0.06)  # the rate printed rounded
        assert total == pytest.approx(train + validation, abs=0.11)
