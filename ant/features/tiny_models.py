"""`tiny-models`: a tiny BERT and a tiny Swin, built from configs and saved like hub models (offline demo, tests).

    python -m ant tiny-models --bert resources/models/tiny-bert --swin resources/models/tiny-swin --seed 2023

The BERT folder holds config.json, model.safetensors and a hand-written WordPiece vocabulary (vocab.txt +
tokenizer_config.json, saved again through AutoTokenizer so tokenizer.json is there too). The vocabulary is
the special tokens, every printable ASCII character and its "##" continuation (so any lower-cased ASCII text
tokenizes without [UNK]) and the whole words of the demo catalogue (`ant.data.demo.vocabulary()`), so that the
demo's titles are mostly single tokens. The Swin folder holds config.json, model.safetensors and a
ViTImageProcessor config (ImageNet mean/std, bicubic resize to the model's image size), which is what
AutoImageProcessor loads for microsoft/swin-base-patch4-window7-224.

Weights are random, drawn from torch's generator seeded with --seed: the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import string
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class TinyBert:
    """The tiny BERT's size, as BertConfig arguments."""

    hidden_size: int = 32
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 64
    max_position_embeddings: int = 512  # the paper's truncation length works unchanged


@dataclass(frozen=True)
class TinySwin:
    """The tiny Swin's size, as SwinConfig arguments."""

    image_size: int = 64
    patch_size: int = 4
    embed_dim: int = 16
    depths: list[int] = field(default_factory=lambda: [1, 1])
    num_heads: list[int] = field(default_factory=lambda: [1, 2])
    window_size: int = 4
    # at the usual 0.02 a random Swin's pooled output is the image's mean colour and little else; at 0.5 it
    # also sees shapes (the demo's styles are drawn as colour *and* shape)
    initializer_range: float = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bert", required=True, help="output folder of the tiny BERT")
    parser.add_argument("--swin", required=True, help="output folder of the tiny Swin")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    words = demo_words()
    build_bert(args.bert, args.seed, words)
    build_swin(args.swin, args.seed)
    log.info("tiny BERT in %s (%d demo words in its vocabulary), tiny Swin in %s", args.bert, len(words), args.swin)
    return 0


def demo_words() -> list[str]:
    """The demo catalogue's words, when the demo generator provides them (it may not exist in a checkout)."""
    try:
        from ant.data.demo import vocabulary
    except ImportError:
        log.warning("ant.data.demo.vocabulary() not found: the tiny BERT vocabulary has characters only")
        return []
    return list(vocabulary())


def wordpiece_vocab(words: list[str]) -> list[str]:
    """Special tokens, single characters, ##characters, then whole lower-cased words (each once, in order)."""
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    tokens = SPECIAL_TOKENS + chars + ["##" + c for c in chars]
    tokens += sorted({w.lower() for w in words if w and not any(ch.isspace() for ch in w)})
    return list(dict.fromkeys(tokens))


def build_bert(out: str | Path, seed: int, words: list[str], spec: TinyBert = TinyBert()) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    vocab = wordpiece_vocab(words)
    model = _random_model(BertConfig, BertModel, seed, vocab_size=len(vocab), **asdict(spec))
    # A freshly initialised BERT's last-layer [CLS] is its own embedding passed through: every text then gets
    # the same vector up to 0.1%, and the demo's text modality would carry nothing. With the [CLS], position
    # and segment embeddings zeroed, [CLS] starts as the zero vector and attends uniformly to the words, so
    # its output is a (non-linear) bag-of-words summary - a stand-in for a pre-trained BERT's semantic [CLS].
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[vocab.index("[CLS]")] = 0
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
    with _atomic_dir(out) as tmp:
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer_config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "model_max_length": spec.max_position_embeddings,
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        AutoTokenizer.from_pretrained(tmp).save_pretrained(tmp)
        model.save_pretrained(tmp)
    return Path(out)


def build_swin(out: str | Path, seed: int, spec: TinySwin = TinySwin()) -> Path:
    from transformers import SwinConfig, SwinModel, ViTImageProcessor

    model = _random_model(SwinConfig, SwinModel, seed, **asdict(spec))
    processor = ViTImageProcessor(
        size={"height": spec.image_size, "width": spec.image_size},
        resample=3,  # bicubic, like Swin-B's
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    with _atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return Path(out)


def _random_model(config_class: Any, model_class: Any, seed: int, **config: Any) -> torch.nn.Module:
    """A model of `config` with weights drawn from torch's generator seeded with `seed` (in eval mode)."""
    torch.manual_seed(seed)
    return model_class(config_class(**config)).eval()


@contextlib.contextmanager
def _atomic_dir(out: str | Path) -> Iterator[Path]:
    """Build a folder next to its destination and swap it in at the end: never a half-saved model."""
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
