"""Tiny models: deterministic from the seed, loadable through the Auto classes, any ASCII text tokenizes."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from ant.cli import main
from ant.features.tiny_models import SPECIAL_TOKENS, demo_words, wordpiece_vocab


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert (
            main(
                [
                    "tiny-models",
                    "--bert",
                    str(root / name / "bert"),
                    "--swin",
                    str(root / name / "swin"),
                    "--seed",
                    str(seed),
                ]
            )
            == 0
        )
    return root


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_files_other_seed_other_weights(built):
    for model in ("bert", "swin"):
        assert files(built / "a" / model) == files(built / "b" / model)
        a, c = files(built / "a" / model), files(built / "c" / model)
        assert a["config.json"] == c["config.json"] and a["model.safetensors"] != c["model.safetensors"]
    assert not list(built.glob("**/.*.tmp"))  # built in a temporary folder, swapped in whole


def test_auto_classes_load_them(built):
    tokenizer = AutoTokenizer.from_pretrained(built / "a" / "bert")
    bert = AutoModel.from_pretrained(built / "a" / "bert")
    assert bert.config.hidden_size == 32 and bert.config.max_position_embeddings >= 512
    assert tokenizer.convert_ids_to_tokens(tokenizer("Red shirt")["input_ids"])[0] == "[CLS]"
    processor = AutoImageProcessor.from_pretrained(built / "a" / "swin")
    swin = AutoModel.from_pretrained(built / "a" / "swin")
    assert processor.size == {"height": 64, "width": 64} and swin.config.hidden_size == 32


def test_vocabulary_has_specials_characters_and_the_demo_words():
    words = demo_words()
    vocab = wordpiece_vocab(words + ["Shirt", "two words", "shirt"])
    assert vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS and len(vocab) == len(set(vocab))
    assert {"a", "##a", "7", "##7", "$", "##$"} <= set(vocab)
    assert "shirt" in vocab and "Shirt" not in vocab and "two words" not in vocab
    assert {w.lower() for w in words} <= set(vocab)


@pytest.fixture(scope="module")
def tokenizer(built):
    return AutoTokenizer.from_pretrained(built / "a" / "bert")


@given(text=st.text(alphabet=string.printable, max_size=80))
def test_any_ascii_text_tokenizes_without_unknowns(tokenizer, text):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert "[UNK]" not in tokens and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


def test_text_vectors_carry_the_words(built):
    """Like a pre-trained BERT's [CLS] (and unlike a random BERT's), the tiny model's [CLS] differs between
    texts, and texts sharing words are closer than texts that share none."""
    import numpy as np
    import torch

    tokenizer = AutoTokenizer.from_pretrained(built / "a" / "bert")
    model = AutoModel.from_pretrained(built / "a" / "bert").eval()
    texts = ["crimson cotton blouse.", "crimson cotton cardigan.", "blue brass clamp.", "blue brass caliper."]
    with torch.no_grad():
        cls = model(**tokenizer(texts, padding=True, return_tensors="pt")).last_hidden_state[:, 0].numpy()
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    cos = unit @ unit.T
    assert cos[0, 1] < 0.999 and cos[2, 3] < 0.999  # not one vector for everything
    assert min(cos[0, 1], cos[2, 3]) > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3])


def test_image_vectors_see_shapes_not_only_colours(built):
    """The same pixels shuffled (same colours, no shape) move the vector by a good part of what a new
    background colour does; a Swin at the usual init range sees little but the colours (0.08 of it)."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    def drawn(background):
        image = Image.new("RGB", (64, 64), background)
        ImageDraw.Draw(image).ellipse([(16, 16), (48, 48)], fill=(40, 40, 160))
        return image

    image, other_colour = drawn((200, 60, 60)), drawn((60, 160, 60))
    pixels = np.asarray(image).reshape(-1, 3)
    shuffled = Image.fromarray(pixels[np.random.default_rng(0).permutation(len(pixels))].reshape(64, 64, 3))
    processor = AutoImageProcessor.from_pretrained(built / "a" / "swin")
    model = AutoModel.from_pretrained(built / "a" / "swin").eval()
    with torch.no_grad():
        out = model(**processor([image, shuffled, other_colour], return_tensors="pt")).pooler_output.numpy()
    shape_change, colour_change = np.linalg.norm(out[0] - out[1]), np.linalg.norm(out[0] - out[2])
    assert shape_change > 0.3 * colour_change
