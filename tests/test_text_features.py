"""Text features: the stored vector is BERT's last-layer [CLS] on the item text; resume; partitions; errors."""

import json

import numpy as np
import pytest
import torch
from features_helpers import tiny_models, write_items
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModel, AutoTokenizer

import ant.features.text as text_module
from ant.cli import main
from ant.features.store import load_features
from ant.features.text import _pad, encode_texts

TEXTS = [
    "Red cotton shirt. Clothing Men Shirts. Acme.",
    "",  # no title, no categories, no brand
    "guitar strings " * 400,  # far beyond 512 tokens: truncated
    "Crème brûlée torch Ω — 100% stainless.",
    "x",
    "shirt.",
    "Strings for an acoustic guitar, set of 6.",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def items(tmp_path):
    return write_items(tmp_path / "items.parquet", texts=TEXTS)


def embed(items, out, bert, *extra):
    args = [
        "embed-text",
        "--task",
        "T",
        "--items",
        str(items),
        "--out-dir",
        str(out),
        "--model",
        str(bert),
        "--max-length",
        "512",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--shard-items",
        "3",
        *extra,
    ]
    return main(args)


def direct_cls(bert, text):
    tokenizer, model = AutoTokenizer.from_pretrained(bert), AutoModel.from_pretrained(bert).eval()
    with torch.no_grad():
        encoded = tokenizer(text, truncation=True, max_length=512, return_tensors="pt")
        return model(**encoded).last_hidden_state[0, 0].numpy()


def test_stored_vector_is_the_direct_cls_of_each_text(tmp_path, items, models):
    bert, _ = models
    assert embed(items, tmp_path / "text", bert) == 0
    features = load_features(tmp_path / "text" / "manifest.json", items)
    assert features.values.shape == (len(TEXTS), 32) and features.values.dtype == np.float32
    assert features.present.all()  # the empty text too: encoded as [CLS] [SEP], like UniSRec
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(features.values[i], direct_cls(bert, text), rtol=1e-4, atol=1e-5, err_msg=text)
    manifest = features.manifest
    assert manifest["encoder"]["name"] == "tiny-bert" and len(manifest["encoder"]["files_sha256"]) == 64
    assert (manifest["encoder"]["pooling"], manifest["encoder"]["precision"], manifest["empty_texts"]) == (
        "cls",
        "fp32",
        1,
    )
    assert len(manifest["shards"]) == 3


def test_batching_and_sorting_do_not_change_vectors(models):
    bert, _ = models
    tokenizer, model = AutoTokenizer.from_pretrained(bert), AutoModel.from_pretrained(bert).eval()
    cpu = torch.device("cpu")
    one_by_one = encode_texts(model, tokenizer, TEXTS, max_length=512, batch_size=1, device=cpu)
    together = encode_texts(model, tokenizer, TEXTS, max_length=512, batch_size=7, device=cpu)
    reversed_ = encode_texts(model, tokenizer, TEXTS[::-1], max_length=512, batch_size=3, device=cpu)[::-1]
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(reversed_, one_by_one, atol=1e-5)
    short = encode_texts(model, tokenizer, TEXTS, max_length=8, batch_size=4, device=cpu)
    assert not np.allclose(short[2], one_by_one[2])  # truncation really applies
    np.testing.assert_allclose(short[4], one_by_one[4], atol=1e-5)  # a short text is untouched by it


class Interrupted(Exception):
    pass


def test_resume_computes_only_missing_shards_and_ends_identical(tmp_path, items, models, monkeypatch):
    bert, _ = models
    assert embed(items, tmp_path / "full", bert) == 0

    calls = []
    real = text_module.encode_texts

    def counting(model, tokenizer, texts, **kw):
        calls.append(list(texts))
        if len(calls) == 3 and stop:
            raise Interrupted  # killed while computing the third shard
        return real(model, tokenizer, texts, **kw)

    monkeypatch.setattr(text_module, "encode_texts", counting)
    stop = True
    with pytest.raises(Interrupted):
        embed(items, tmp_path / "resumed", bert)
    out = tmp_path / "resumed"
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    calls.clear()
    stop = False
    assert embed(items, out, bert) == 0
    assert calls == [TEXTS[6:7]]  # only the third shard was encoded
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept
    for name in ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet", "manifest.json"]:
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name

    calls.clear()
    assert embed(items, out, bert) == 0 and calls == []  # a finished store loads no model, encodes nothing


def test_partitions_then_merge_equal_one_job(tmp_path, items, models):
    bert, _ = models
    assert embed(items, tmp_path / "one", bert) == 0
    parts = tmp_path / "parts"
    assert embed(items, parts, bert, "--partitions", "2", "--partition", "1") == 0
    assert not (parts / "manifest.json").exists()
    merge = ["merge-features", "--items", str(items), "--out-dir", str(parts), "--partitions", "2"]
    assert main(merge) == 1  # partition 0 not done yet
    assert embed(items, parts, bert, "--partitions", "2", "--partition", "0") == 0
    assert sorted(p.name for p in (parts / "partitions").iterdir()) == ["0-of-2.json", "1-of-2.json"]
    assert main(merge) == 0
    assert json.loads((parts / "manifest.json").read_text()) == json.loads(
        (tmp_path / "one" / "manifest.json").read_text()
    )


def test_model_errors_say_how_to_provide_the_model(tmp_path, items, models, caplog):
    assert embed(items, tmp_path / "a", tmp_path / "no" / "such" / "folder") == 1
    assert "features.text.model" in caplog.text and "tiny_models rule" in caplog.text
    caplog.clear()
    assert embed(items, tmp_path / "b", "no-such-org/no-such-model") == 1  # offline (conftest): not in the cache
    assert "HF_HOME" in caplog.text and "HF_HUB_OFFLINE" in caplog.text
    caplog.clear()
    bert, _ = models
    assert (
        main(
            [
                "embed-text",
                "--task",
                "T",
                "--items",
                str(items),
                "--out-dir",
                str(tmp_path / "c"),
                "--model",
                str(bert),
                "--max-length",
                "600",
            ]
        )
        == 1
    )
    assert "position embeddings" in caplog.text
    if not torch.cuda.is_available():
        caplog.clear()
        assert embed(items, tmp_path / "d", bert, "--device", "cuda") == 1
        assert "no CUDA GPU" in caplog.text


@given(st.lists(st.lists(st.integers(1, 99), min_size=1, max_size=20), min_size=1, max_size=8), st.sampled_from([1, 8]))
def test_padding_keeps_every_token_in_order_and_rounds_the_width(ids, multiple):
    lengths = np.array([len(row) for row in ids])
    input_ids, mask = _pad(ids, lengths, pad_id=0, multiple=multiple)
    width = input_ids.shape[1]
    assert width % multiple == 0 and lengths.max() <= width < lengths.max() + multiple
    assert mask.sum(1).tolist() == lengths.tolist()
    for row, tokens in zip(input_ids, ids, strict=True):
        assert row[: len(tokens)].tolist() == tokens and not row[len(tokens) :].any()
