"""`python -m ant bench features`: text and image embedding items/s, ours vs a naive batch-of-4 loop.

    python -m ant bench features                                   # CPU, tiny + base-shaped models
    python -m ant bench features --device cuda --precision bf16 --batch-sizes 64 128 256 --text-items 20000

Models are built from configs with random weights (no download): the tiny BERT/Swin of the demo, and
bert-base- (768-d, 12 layers) and swin-base-shaped (embed 128, depths 2-2-18-2, 224 px) models; the
speed of a network does not depend on its weights. Texts are synthetic item texts with an Amazon-like,
long-tailed length (median ~30 tokens, up to 512), images are 256 px JPEGs like the fetch stage stores.

"naive" is UniSRec's script (dataset/preprocessing/process_amazon.py): batches of 4 texts in item order,
padded to the batch's longest, no inference_mode/no_grad; for images the same loop with decoding and
preprocessing in the main process. "ours" is ant.features.text.encode_texts (length-sorted batches,
inference_mode, autocast) and ant.features.image.embed_images (DataLoader workers decode and preprocess).
Every configuration is warmed up on one batch first; CUDA is synchronised before the clock stops.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ant.device import resolve_device, resolve_precision, set_threads
from ant.features import encoders as rt
from ant.features.image import embed_images
from ant.features.text import encode_texts
from ant.features.tiny_models import build_bert, demo_words

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
DEFAULT_ITEMS = {("text", "tiny"): 2000, ("text", "base"): 256, ("image", "tiny"): 512, ("image", "base"): 32}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--precision", "--dtype", default="auto", help="auto (bf16 on CUDA), fp32, bf16, fp16")
    parser.add_argument("--models", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    parser.add_argument("--modalities", nargs="+", default=["text", "image"], choices=["text", "image"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 128])
    parser.add_argument("--text-items", type=int, default=None, help="texts per run (default: 2000 tiny, 256 base)")
    parser.add_argument("--image-items", type=int, default=None, help="images per run (default: 512 tiny, 32 base)")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline (slow on big models)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(device, args.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"features benchmark: {device} ({name}), precision {precision}, torch {torch.__version__}")
    print(
        f"{'modality':8} {'model':5} {'method':6} {'batch':>5} {'items':>6} {'seconds':>8} {'items/s':>9} "
        f"{'x naive':>8} {'padding':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for modality in args.modalities:
            for size in args.models:
                n = getattr(args, f"{modality}_items") or DEFAULT_ITEMS[(modality, size)]
                bench = text_bench if modality == "text" else image_bench
                bench(size, n, args, device, precision, Path(tmp))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"peak process memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


def _report(
    modality: str, size: str, method: str, batch: int, n: int, seconds: float, naive: float | None, pad: str = ""
) -> float:
    rate = n / seconds
    ratio = f"{rate / naive:8.1f}" if naive else f"{'':8}"
    print(f"{modality:8} {size:5} {method:6} {batch:5d} {n:6d} {seconds:8.2f} {rate:9.1f} {ratio} {pad:>7}", flush=True)
    return rate


def padding(lengths: np.ndarray, batch: int, sort: bool) -> str:
    """Tokens the model processes per real token: batches are padded to their longest text."""
    ordered = np.sort(lengths)[::-1] if sort else lengths
    padded = sum(ordered[i : i + batch].max() * len(ordered[i : i + batch]) for i in range(0, len(ordered), batch))
    return f"{padded / lengths.sum():.2f}"


def _timed(device: torch.device, work: Callable[[], Any]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------- text ----------------------------------
def synthetic_texts(n: int, seed: int) -> list[str]:
    """Item texts of log-normal length in words (median 30, long tail), from the demo catalogue's words."""
    rng = np.random.default_rng(seed)
    words = np.array(demo_words() or ["red", "cotton", "shirt", "guitar", "strings", "set", "of", "steel"])
    lengths = np.clip(rng.lognormal(np.log(30), 0.8, size=n).astype(int), 3, 600)
    return [" ".join(rng.choice(words, size=k)) + "." for k in lengths]


def text_model(size: str, vocab_size: int, device: torch.device) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    if size == "tiny":
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    else:
        config = BertConfig()  # bert-base-uncased's shape: 30522 tokens, 768-d, 12 layers, 12 heads
    return BertModel(config).to(device).eval()


def text_bench(size: str, n: int, args: argparse.Namespace, device: torch.device, precision: str, tmp: Path) -> None:
    from transformers import AutoTokenizer

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(build_bert(tmp / f"bert-{size}", args.seed, demo_words()))
    model = text_model(size, len(tokenizer), device)
    texts = synthetic_texts(n, args.seed)
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]])
    print(
        f"# text {size}: {model.config.num_hidden_layers} layers, {model.config.hidden_size}-d; "
        f"tokens per text: median {int(np.median(lengths))}, mean {lengths.mean():.0f}, max {lengths.max()}; "
        "padding = tokens computed per real token"
    )
    naive = None
    if not args.no_naive:
        naive_loop(model, tokenizer, texts[:4], device)  # warm-up
        seconds = _timed(device, lambda: naive_loop(model, tokenizer, texts, device))
        naive = _report("text", size, "naive", 4, n, seconds, None, padding(lengths, 4, sort=False))
    for batch in args.batch_sizes:
        kw = {"max_length": 512, "batch_size": batch, "device": device, "precision": precision}
        # warm-up over every text: CUDA sets attention kernels up once per sequence length, a cost a real
        # embedding job pays once and then amortises over its hundreds of thousands of items
        cold = _timed(device, lambda kw=kw: encode_texts(model, tokenizer, texts, **kw))
        seconds = _timed(device, lambda kw=kw: encode_texts(model, tokenizer, texts, **kw))
        print(f"# batch {batch}: first pass {cold:.2f} s (warm-up), timed pass below")
        _report("text", size, "ours", batch, n, seconds, naive, padding(lengths, batch, sort=True))


def naive_loop(model: torch.nn.Module, tokenizer: Any, texts: list[str], device: torch.device) -> np.ndarray:
    """UniSRec's generate_item_embedding: item order, 4 at a time, autograd left on."""
    out = []
    for start in range(0, len(texts), 4):
        encoded = tokenizer(
            texts[start : start + 4], padding=True, max_length=512, truncation=True, return_tensors="pt"
        ).to(device)
        out.append(model(**encoded).last_hidden_state[:, 0].detach().cpu())
    return torch.cat(out).numpy()


# ---------------------------------------------------------------- image ---------------------------------
def synthetic_images(n: int, seed: int) -> list[bytes]:
    """JPEGs as the fetch stage stores them: long side 256, smooth content, mixed aspect ratios."""
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        width, height = (256, int(rng.integers(128, 257))) if rng.random() < 0.5 else (int(rng.integers(128, 257)), 256)
        small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=90)
        blobs.append(out.getvalue())
    return blobs


def image_model(size: str, device: torch.device, tmp: Path) -> tuple[Any, torch.nn.Module]:
    from transformers import AutoImageProcessor, SwinConfig, SwinModel, ViTImageProcessor

    if size == "tiny":
        config = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4)
    else:  # microsoft/swin-base-patch4-window7-224's shape
        config = SwinConfig(
            image_size=224, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=7
        )
    side = config.image_size
    # saved and loaded back as embed-image loads it: the PIL backend, whether or not torchvision is installed
    ViTImageProcessor(size={"height": side, "width": side}, resample=3, **IMAGENET).save_pretrained(tmp / size)
    processor = AutoImageProcessor.from_pretrained(tmp / size, **rt.pil_backend())
    return processor, SwinModel(config).to(device).eval()


def image_bench(size: str, n: int, args: argparse.Namespace, device: torch.device, precision: str, tmp: Path) -> None:
    torch.manual_seed(args.seed)
    processor, model = image_model(size, device, tmp)
    blobs = synthetic_images(n, args.seed)
    print(
        f"# image {size}: {model.config.image_size} px, {model.config.hidden_size}-d, "
        f"{sum(model.config.depths)} blocks; {args.loader_workers} loader workers"
    )
    naive = None
    if not args.no_naive:
        naive_image_loop(model, processor, blobs[:4], device)  # warm-up
        seconds = _timed(device, lambda: naive_image_loop(model, processor, blobs, device))
        naive = _report("image", size, "naive", 4, n, seconds, None)
    for batch in args.batch_sizes:
        kw = {"batch_size": batch, "workers": args.loader_workers, "device": device, "precision": precision}
        embed_images(model, processor, blobs[:batch], **kw)  # warm-up
        seconds = _timed(device, lambda kw=kw: embed_images(model, processor, blobs, **kw))
        _report("image", size, "ours", batch, n, seconds, naive)


def naive_image_loop(model: torch.nn.Module, processor: Any, blobs: list[bytes], device: torch.device) -> np.ndarray:
    """The same loop for images: decode + preprocess 4 images in the main process, then the model."""
    out = []
    for start in range(0, len(blobs), 4):
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[start : start + 4]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        out.append(model(pixel_values=pixels).pooler_output.detach().cpu())
    return torch.cat(out).numpy()
