"""`embed-text`: the [CLS] vector of the last hidden layer of a BERT-like encoder, per item (spec section 2).

    python -m ant embed-text --task T --items items.parquet --out-dir DIR --model bert-base-uncased \\
        [--revision R] --max-length 512 --batch-size 256 --device auto --partitions 1 --shard-items 20000 \\
        [--word-drop 0.15 --word-drop-seed 0]

Contract: a feature store (ant.features.store) of dimension hidden_size, one float32 row per item_idx:
last_hidden_state[:, 0] (not pooler_output, whose extra dense+tanh layer was trained for next-sentence
prediction) of the item's `text`, truncated at max_length tokens. Within a shard the texts are encoded in
batches sorted by token length (longest first, so an out-of-memory error shows up at once), under
torch.inference_mode and, on CUDA, bf16 autocast.

Empty text: encoded like any other text, i.e. "[CLS] [SEP]", with present = True. This is what UniSRec's
script (which ANT's features come from) does, the text modality has no presence flag in the model (spec
section 3), and an item's text is empty only when its title, categories and brand are all missing, which the
count `empty_texts` in the manifest makes visible.

Word drop (UniSRec's second text feature, spec baselines.md section 8): with `--word-drop p` each item's text
is split on whitespace and every word dropped with probability p before tokenisation (`drop_words`); the store
is then modality `text_worddrop`. The draws of an item come from a generator seeded by (seed, item_id), so a
store is the same whatever its sharding, partitions or item order. An item that loses no word keeps its text
as it was, hence its plain vector. The manifest's encoder records {rate, seed} and `word_drop_changed_texts`
counts the items whose text changed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ant.data.items import column_digest, read_items
from ant.device import autocast, resolve_device, resolve_precision, set_threads
from ant.errors import UserError
from ant.features import encoders as rt
from ant.features.command import add_store_arguments, check_store_arguments, fill_store_from_arguments
from ant.features.store import Shard
from ant.versions import STAGES

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser, shard_items=20_000)
    rt.add_encoder_arguments(parser, model="bert-base-uncased", batch_size=256)
    parser.add_argument("--max-length", type=int, default=512, help="tokens per text, [CLS] and [SEP] included")
    parser.add_argument(
        "--word-drop",
        type=float,
        default=0.0,
        help="drop each word of a text with this probability before encoding (UniSRec's word-dropped text "
        "feature, a store of modality text_worddrop); 0: off",
    )
    parser.add_argument("--word-drop-seed", type=int, default=0, help="seed of the word drop (with the item_id)")


def run(args: argparse.Namespace) -> int:
    check_store_arguments(args)
    if args.max_length < 2 or args.batch_size < 1:
        raise UserError("--max-length must be at least 2 and --batch-size at least 1")
    if not 0 <= args.word_drop < 1:  # written so that NaN is refused too
        raise UserError(f"--word-drop must be in [0, 1) (0: off), got {args.word_drop}")
    items = read_items(args.items, ["text"])
    item_ids = items.column("item_id").to_pylist()
    texts = [t or "" for t in items.column("text").to_pylist()]
    word_drop: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if args.word_drop > 0:
        # the plain store's encoder and manifest stay as they were without word drop: existing stores stay valid
        word_drop = {"word_drop": {"rate": args.word_drop, "seed": args.word_drop_seed}}
        dropped = drop_words(texts, item_ids, args.word_drop, args.word_drop_seed)
        extra["word_drop_changed_texts"] = sum(a != b for a, b in zip(texts, dropped, strict=True))
        texts = dropped
    extra["empty_texts"] = sum(1 for t in texts if not t.strip())  # of the texts encoded

    config = rt.model_config("text", args.model, args.revision)
    check_max_length(config, args.max_length)
    set_threads(args.threads)
    device = resolve_device(args.device, args.partition)
    precision = resolve_precision(device, args.precision)
    encoder = {
        **rt.encoder_identity("text", args.model, args.revision),
        "pooling": "cls",
        "max_length": args.max_length,
        "precision": precision,
        "code_version": STAGES["text"],  # a bumped stage version must not reuse old shards
        **word_drop,
    }
    loaded: dict[str, Any] = {}

    def compute(shard: Shard, progress: Any) -> tuple[np.ndarray, np.ndarray]:
        if not loaded:  # only when a shard is actually missing: a finished store never loads the model
            loaded["tokenizer"], loaded["model"] = rt.load_text_encoder(args.model, args.revision, device)
            log.info("encoding on %s (%s), batch size %d", device, precision, args.batch_size)
        values = encode_texts(
            loaded["model"],
            loaded["tokenizer"],
            texts[shard.start : shard.stop],
            max_length=args.max_length,
            batch_size=args.batch_size,
            device=device,
            precision=precision,
            progress=progress,
        )
        return values, np.ones(len(values), dtype=bool)

    dim, digest = config.hidden_size, column_digest(texts, b"\0")
    modality = "text_worddrop" if args.word_drop > 0 else "text"
    fill_store_from_arguments(
        args, modality, compute, encoder=encoder, dim=dim, item_ids=item_ids, inputs_digest=digest, extra=extra
    )
    return 0


def drop_words(texts: Sequence[str], item_ids: Sequence[str], rate: float, seed: int = 0) -> list[str]:
    """UniSRec's word drop: each whitespace-separated word of texts[i] dropped with probability `rate`, the kept
    words joined by single spaces in their order; a text that loses no word is returned as it was.

    Item i's draws come from its own generator, seeded by (seed, item_ids[i]) through blake2b, so an item's
    result does not depend on which other items are in the call (shards, partitions, order). Python's
    `random.Random(int).random()` is the stream the standard library promises to keep across versions.
    A Python loop over items: string splitting has no vectorised form, and it costs ~8 s per million items
    next to the hours BERT takes for them.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"word drop rate {rate} is not in [0, 1)")
    if len(texts) != len(item_ids):
        raise ValueError(f"{len(texts)} texts but {len(item_ids)} item ids")
    if rate == 0:
        return list(texts)
    out = []
    for text, item_id in zip(texts, item_ids, strict=True):
        words = text.split()
        draw = random.Random(_item_seed(seed, item_id)).random
        kept = [word for word in words if draw() >= rate]  # P(keep) = 1 - rate
        out.append(text if len(kept) == len(words) else " ".join(kept))
    return out


def _item_seed(seed: int, item_id: str) -> int:
    """A 128-bit seed from (seed, item_id); the NUL cannot occur in a decimal seed, so pairs never collide."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{item_id}".encode(), digest_size=16).digest(), "big")


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    *,
    max_length: int,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    progress: Any = None,
) -> np.ndarray:
    """[CLS] of the last hidden layer for each text, float32 [len(texts), hidden], in the order given."""
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    if not texts:
        return out
    if tokenizer.pad_token_id is None:
        raise UserError("the text model's tokenizer has no padding token; use a BERT-like model")
    ids = tokenizer(
        texts, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False
    )["input_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")  # longest first; ties keep item order (deterministic)
    # CUDA attention kernels are set up once per sequence length (about 50 ms each on an H100 in bf16): padding
    # to a multiple of 8 cuts up to 512 lengths to 64 and keeps tensor-core shapes aligned.
    multiple = 8 if device.type == "cuda" else 1
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = _pad([ids[r] for r in rows], lengths[rows], tokenizer.pad_token_id, multiple)
            hidden = model(
                input_ids=torch.from_numpy(input_ids).to(device, non_blocking=True),
                attention_mask=torch.from_numpy(mask).to(device, non_blocking=True),
            ).last_hidden_state
            out[rows] = hidden[:, 0].float().cpu().numpy()
            if progress is not None:
                progress.update(len(rows))
    return out


def _pad(ids: list[list[int]], lengths: np.ndarray, pad_id: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into [B, longest rounded up to `multiple`] int64 ids and attention mask, without a
    loop over rows."""
    width = -(-int(lengths.max()) // multiple) * multiple
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full(mask.shape, pad_id, dtype=np.int64)
    input_ids[mask] = np.concatenate(ids)  # row-major fill: row by row, each row's tokens in order
    return input_ids, mask.astype(np.int64)


def check_max_length(config: Any, max_length: int) -> None:
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and max_length > positions:
        raise UserError(f"--max-length {max_length} exceeds the text model's {positions} position embeddings")
