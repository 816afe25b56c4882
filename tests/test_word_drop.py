"""UniSRec's word-dropped text features (spec baselines.md section 8): `drop_words` and `embed-text --word-drop`."""

import json
import math

import numpy as np
import pytest
from features_helpers import tiny_models, write_items
from hypothesis import given
from hypothesis import strategies as st
from test_text_features import direct_cls, embed

from ant.cli import main
from ant.features.store import load_features
from ant.features.text import drop_words

WORDS = "red cotton shirt guitar strings acoustic set of six for men".split()
# distinct words per text (a dropped word always changes the bag of words the tiny BERT sees), odd whitespace
TEXTS = [" ".join(WORDS[i % 4 : i % 4 + 3 + i % 5]) for i in range(14)] + ["", "  shirt\tred \n guitar  "]
IDS = [f"B{i:08d}" for i in range(len(TEXTS))]  # the item_ids write_items gives

texts_st = st.lists(st.text(st.sampled_from("ab \t\n"), max_size=30), min_size=1, max_size=12)
rate_st = st.floats(0.01, 0.99)
seed_st = st.integers(-(2**63), 2**63)


def ids_for(texts: list[str]) -> list[str]:
    return [f"item-{i}" for i in range(len(texts))]


@given(texts_st, seed_st)
def test_rate_zero_is_the_identity(texts, seed):
    assert drop_words(texts, ids_for(texts), 0.0, seed) == texts


def is_subsequence(short: list[str], long: list[str]) -> bool:
    rest = iter(long)
    return all(any(word == other for other in rest) for word in short)


@given(texts_st, rate_st, seed_st)
def test_words_are_only_removed_never_reordered(texts, rate, seed):
    for before, after in zip(texts, drop_words(texts, ids_for(texts), rate, seed), strict=True):
        assert is_subsequence(after.split(), before.split())
        if len(after.split()) == len(before.split()):
            assert after == before  # nothing dropped: the text as it was, whitespace included
        else:
            assert after == " ".join(after.split())  # the kept words, joined by single spaces


@given(st.permutations(range(len(TEXTS))), st.integers(0, len(TEXTS)), seed_st)
def test_an_items_result_depends_only_on_the_seed_and_its_id(order, cut, seed):
    whole = drop_words(TEXTS, IDS, 0.5, seed)
    shuffled = drop_words([TEXTS[i] for i in order], [IDS[i] for i in order], 0.5, seed)
    assert shuffled == [whole[i] for i in order]
    # shards: any split of the items into two calls
    assert drop_words(TEXTS[:cut], IDS[:cut], 0.5, seed) + drop_words(TEXTS[cut:], IDS[cut:], 0.5, seed) == whole


def test_another_seed_or_id_drops_other_words():
    texts = [" ".join(f"w{j}" for j in range(20))] * 200
    ids = ids_for(texts)
    seed0, seed1 = drop_words(texts, ids, 0.15, 0), drop_words(texts, ids, 0.15, 1)
    renamed = drop_words(texts, [f"{i}'" for i in ids], 0.15, 0)
    # independent draws keep the same words of one item with p (0.85^2 + 0.15^2)^20 = 0.3%
    assert sum(a != b for a, b in zip(seed0, seed1, strict=True)) > 0.9 * len(texts)
    assert sum(a != b for a, b in zip(seed0, renamed, strict=True)) > 0.9 * len(texts)


@given(st.floats(0.02, 0.95), seed_st)
def test_each_word_is_dropped_with_the_rate(rate, seed):
    texts = [" ".join(f"w{j}" for j in range(40))] * 250
    words = [f"w{j}" for j in range(40)]
    kept = np.array([np.isin(words, t.split()) for t in drop_words(texts, ids_for(texts), rate, seed)])  # [250, 40]
    n = kept.size
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs((~kept).sum() - n * rate) < 5 * sigma  # overall (10,000 words)
    per_position = (~kept).mean(0)  # no position is favoured (250 draws each)
    assert np.abs(per_position - rate).max() < 5 * math.sqrt(rate * (1 - rate) / len(texts)) + 1e-9


def test_rates_outside_zero_one_are_refused():
    for rate in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            drop_words(TEXTS, IDS, rate, 0)
    with pytest.raises(ValueError, match="item ids"):
        drop_words(TEXTS, IDS[:-1], 0.1, 0)


# ---------------------------------------------------------------- embed-text --word-drop ----------------------
RATE = 0.3


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))[0]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return write_items(tmp_path_factory.mktemp("items") / "items.parquet", texts=TEXTS)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, items, bert):
    out = tmp_path_factory.mktemp("plain")
    assert embed(items, out, bert) == 0
    return load_features(out / "manifest.json", items)


def word_drop(items, out, bert, seed=0, *extra):
    assert embed(items, out, bert, "--word-drop", str(RATE), "--word-drop-seed", str(seed), *extra) == 0
    return load_features(out / "manifest.json", items)


def test_vectors_change_exactly_for_the_items_whose_text_changed(tmp_path, items, bert, plain):
    dropped = word_drop(items, tmp_path / "wd", bert)
    texts = drop_words(TEXTS, IDS, RATE, 0)
    changed = np.array([a != b for a, b in zip(TEXTS, texts, strict=True)])
    assert changed.any() and (~changed).any()  # both kinds occur at this rate and seed
    # the others: the plain store's vectors (batched with other texts, hence not asked bit for bit)
    np.testing.assert_allclose(dropped.values[~changed], plain.values[~changed], rtol=0, atol=1e-6)
    for i in np.flatnonzero(changed):
        assert np.abs(dropped.values[i] - plain.values[i]).max() > 1e-4, TEXTS[i]
        np.testing.assert_allclose(dropped.values[i], direct_cls(bert, texts[i]), rtol=1e-4, atol=1e-5)
    manifest = dropped.manifest
    assert manifest["modality"] == "text_worddrop" and manifest["encoder"]["word_drop"] == {"rate": RATE, "seed": 0}
    assert manifest["word_drop_changed_texts"] == changed.sum()
    assert manifest["empty_texts"] == sum(not t.strip() for t in texts)
    # the plain store records no word drop, so stores written before it existed stay valid
    assert plain.manifest["modality"] == "text" and "word_drop" not in plain.manifest["encoder"]
    assert "word_drop_changed_texts" not in plain.manifest


def test_a_seed_gives_one_store_whatever_the_runs_shards_and_partitions(tmp_path, items, bert):
    first = word_drop(items, tmp_path / "a", bert)
    word_drop(items, tmp_path / "b", bert)
    for name in ["manifest.json", *(s["file"] for s in first.manifest["shards"])]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    other = word_drop(items, tmp_path / "other-seed", bert, 7)
    assert other.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert np.abs(other.values - first.values).max(1).max() > 1e-4  # some item lost other words

    resharded = word_drop(items, tmp_path / "resharded", bert, 0, "--shard-items", "5")
    np.testing.assert_allclose(resharded.values, first.values, rtol=0, atol=1e-6)

    parts = tmp_path / "parts"
    for partition in ("1", "0"):
        flags = ["--word-drop", str(RATE), "--partitions", "2", "--partition", partition]
        assert embed(items, parts, bert, *flags) == 0
    assert main(["merge-features", "--items", str(items), "--out-dir", str(parts), "--partitions", "2"]) == 0
    assert json.loads((parts / "manifest.json").read_text()) == first.manifest


@pytest.mark.parametrize("rate", ["-0.1", "1", "1.5", "nan"])
def test_a_rate_outside_zero_one_fails_with_one_line(tmp_path, items, bert, rate, caplog):
    assert embed(items, tmp_path / "wd", bert, "--word-drop", rate) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "--word-drop must be in [0, 1)" in errors[0] and f"got {float(rate)}" in errors[0]
    assert not (tmp_path / "wd").exists()


def test_a_rate_that_is_no_number_is_an_argument_error(tmp_path, items, bert, capsys):
    with pytest.raises(SystemExit) as exit_:
        embed(items, tmp_path / "wd", bert, "--word-drop", "often")
    assert exit_.value.code == 2 and "--word-drop: invalid float value: 'often'" in capsys.readouterr().err
