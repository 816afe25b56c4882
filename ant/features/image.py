"""`embed-image`: the Swin pooled output of every stored image, averaged per item (spec section 2).

    python -m ant embed-image --task T --items items.parquet --images results/images/T/manifest.json \\
        --out-dir DIR --model microsoft/swin-base-patch4-window7-224 [--revision R] --batch-size 128 \\
        --loader-workers 4 --device auto --partitions 1 --shard-items 20000

Contract: a feature store (ant.features.store) of dimension hidden_size (1024 for Swin-B). Row i is the mean,
over item i's images fetched with status ok (ant.images), of the model's pooler_output (for Swin the
average of the last stage's tokens after the final LayerNorm) on AutoImageProcessor's pixels; present[i] says
whether at least one image of the item could be embedded. An item without one gets the zero vector and
present = False. Images are decoded and resized in --loader-workers DataLoader processes (the processor's PIL
backend, as on every machine), rescaled and normalised on the model's device (Normaliser), and the model runs
under torch.inference_mode and, on CUDA, bf16 autocast; the vectors are averaged in float64 and stored as float32.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ant.data.items import read_items
from ant.device import autocast, resolve_device, resolve_precision, set_threads
from ant.errors import UserError
from ant.features import encoders as rt
from ant.features.command import add_store_arguments, check_store_arguments, fill_store_from_arguments
from ant.features.store import Shard
from ant.images.shards import read_manifest, read_ok_images
from ant.versions import STAGES

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser, shard_items=20_000)
    parser.add_argument("--images", required=True, help="the task's image manifest (fetch-images)")
    rt.add_encoder_arguments(parser, model="microsoft/swin-base-patch4-window7-224", batch_size=128)
    parser.add_argument("--loader-workers", type=int, default=4, help="processes decoding images (0: in-process)")


def run(args: argparse.Namespace) -> int:
    check_store_arguments(args)
    if args.batch_size < 1 or args.loader_workers < 0:
        raise UserError("--batch-size must be at least 1 and --loader-workers at least 0")
    item_ids = read_items(args.items).column("item_id").to_pylist()
    images = read_manifest(args.images, item_ids)

    set_threads(args.threads)
    device = resolve_device(args.device, args.partition)
    precision = resolve_precision(device, args.precision)
    encoder = {
        **rt.encoder_identity("image", args.model, args.revision),
        "pooling": "pooler_output",
        "precision": precision,
        "code_version": STAGES["image"],  # a bumped stage version must not reuse old shards
    }
    loaded: dict[str, Any] = {}

    def compute(shard: Shard, progress: Any) -> tuple[np.ndarray, np.ndarray]:
        if not loaded:  # only when a shard is missing: a finished store never loads the model
            loaded["processor"], loaded["model"] = rt.load_image_encoder(args.model, args.revision, device)
            log.info(
                "encoding on %s (%s), batch size %d, %d loader workers",
                device,
                precision,
                args.batch_size,
                args.loader_workers,
            )
        owner, blobs = read_ok_images(args.images, images, shard.start, shard.stop)
        owner = owner - shard.start
        done = [0]

        def advance(items_finished: int) -> None:
            progress.update(items_finished - done[0])
            done[0] = items_finished

        vectors, ok = embed_images(
            loaded["model"],
            loaded["processor"],
            blobs,
            batch_size=args.batch_size,
            workers=args.loader_workers,
            device=device,
            precision=precision,
            # images come in item order: every item before the last one seen is finished
            on_batch=lambda last: advance(int(owner[last])),
        )
        advance(shard.stop - shard.start)
        if (~ok).any():
            log.warning(
                "shard %d: %d stored image(s) could not be decoded; left out of their items' means",
                shard.number,
                int((~ok).sum()),
            )
        return item_means(vectors, ok, owner, shard.stop - shard.start)

    dim = rt.model_config("image", args.model, args.revision).hidden_size
    digest = hashlib.sha256(json.dumps([s["sha256"] for s in images["shards"]]).encode()).hexdigest()
    fill_store_from_arguments(args, "image", compute, encoder=encoder, dim=dim, item_ids=item_ids, inputs_digest=digest)
    return 0


@dataclass(frozen=True)
class Normaliser:
    """The float arithmetic of a processor (rescale, then normalise), done on the model's device.

    Loader workers then hand over resized uint8 pixels: a quarter of the bytes to move between processes, pin and
    copy, and no float work per image on the CPU. Same arithmetic in float32 as the processor: equal to ~1e-6.
    """

    scale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def of(cls, processor: Any) -> Normaliser | None:
        """None where the processor's output cannot be split this way: not the PIL backend (whose resize keeps
        uint8 pixels), or padding after normalising."""
        try:
            from transformers.image_processing_backends import PilBackend  # transformers 5
        except ImportError:
            return None
        if not isinstance(processor, PilBackend) or getattr(processor, "do_pad", False):
            return None
        return cls(
            scale=float(processor.rescale_factor) if processor.do_rescale else None,
            mean=_channels(processor.image_mean) if processor.do_normalize else None,
            std=_channels(processor.image_std) if processor.do_normalize else None,
        )

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float()
        if self.scale is not None:
            x = x * self.scale
        if self.mean is not None and self.std is not None:
            shape = (1, -1, 1, 1)
            x = (x - x.new_tensor(self.mean).view(shape)) / x.new_tensor(self.std).view(shape)
        return x


def _channels(value: float | list[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else (float(value),)


class StoredImages(torch.utils.data.Dataset):
    """Encoded images -> (index, pixel tensor or None when the bytes do not decode). Runs in loader workers.

    With `raw_pixels`, the processor only resizes (and crops): the tensor is uint8 and a Normaliser finishes it.
    """

    def __init__(self, blobs: list[bytes], processor: Any, raw_pixels: bool = False) -> None:
        self.blobs, self.processor, self.raw_pixels = blobs, processor, raw_pixels

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None]:
        try:
            with Image.open(io.BytesIO(self.blobs[i])) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError, SyntaxError):
            return i, None
        if not self.raw_pixels:
            return i, self.processor(images=rgb, return_tensors="pt")["pixel_values"][0]
        pixels = self.processor(images=rgb, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"][
            0
        ]
        if pixels.dtype != np.uint8:  # Normaliser.of admits only processors that keep uint8; never guess
            raise TypeError(f"{type(self.processor).__name__} resized to {pixels.dtype}, not uint8 pixels")
        return i, torch.from_numpy(pixels)


def _collate(batch: list[tuple[int, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    good = [(i, p) for i, p in batch if p is not None]
    index = torch.tensor([i for i, _ in good], dtype=torch.long)
    return index, (torch.stack([p for _, p in good]) if good else None)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # N workers x all cores each would oversubscribe the machine


def embed_images(
    model: torch.nn.Module,
    processor: Any,
    blobs: list[bytes],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """pooler_output per image: float32 [n, hidden] and whether each image decoded (rows of failures are 0).

    `on_batch(last_index)` is called after each batch with the index of its last image.
    """
    out = np.zeros((len(blobs), model.config.hidden_size), dtype=np.float32)
    ok = np.zeros(len(blobs), dtype=bool)
    if not blobs:
        return out, ok
    normalise = Normaliser.of(processor)
    loader = torch.utils.data.DataLoader(
        StoredImages(blobs, processor, raw_pixels=normalise is not None),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=4 if workers else None,
    )
    start = 0
    with torch.inference_mode(), autocast(device, precision):
        for index, pixels in loader:
            if pixels is not None:
                pixels = pixels.to(device, non_blocking=True)
                if normalise is not None:
                    pixels = normalise(pixels)
                pooled = model(pixel_values=pixels).pooler_output
                out[index.numpy()] = pooled.float().cpu().numpy()
                ok[index.numpy()] = True
            start += batch_size
            if on_batch is not None:
                on_batch(min(start, len(blobs)) - 1)
    return out, ok


def item_means(vectors: np.ndarray, ok: np.ndarray, owner: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector of each item's decoded images (float64 sums), zero and present=False for items with none."""
    counts = np.bincount(owner[ok], minlength=n_items)
    sums = np.zeros((n_items, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, owner[ok], vectors[ok])
    present = counts > 0
    sums[present] /= counts[present, None]
    return sums.astype(np.float32), present
