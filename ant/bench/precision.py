"""`python -m ant bench precision`: are bf16 (or fp16) text features good enough? The same texts, the same
batches, only the precision differs.

    python -m ant bench precision --model bert-base-uncased                     # demo texts, 2000 items
    python -m ant bench precision --model DIR --device cpu --threads 2 --texts 3000 --json out.json
    python -m ant bench precision --model DIR --items results/data/<task>/items.parquet --texts 20000

The texts are encoded with the project's own ant.features.text.encode_texts (length-sorted batches,
inference_mode) once in fp32 - the reference - and once per compared mode:
  bf16, fp16            autocast, exactly what `features.precision` selects (fp16 by default on CUDA only);
  bf16-cast, fp16-cast  the whole model cast to that dtype (weights, activations, layer norms): a stricter
                        case, for a device whose autocast does not reach the linear layers.
Before timing, a one-batch probe records the dtype the model's first Linear layer outputs under each mode:
"autocast applied" means it really computed in the lower precision (not a silent fp32 run).

Printed per mode, against fp32:
- per-item cosine between the fp32 and the low-precision vector: mean, min, 1st percentile; the same after
  subtracting the fp32 mean vector from both ("centered": ANT's parametric whitening learns such a shift,
  and BERT's [CLS] vectors share a large common component that makes the raw cosine look better than it is);
- nearest neighbours by cosine (itself excluded), for k = 10 and 50 (the ranking metrics' cut-offs): the
  overlap of an item's k neighbours under fp32 and under the mode (0..1; mean, share of items with all k
  equal, share with at most 70% equal, i.e. <= 7 of 10 or <= 35 of 50), the share whose nearest
  neighbour is unchanged, and the mean |rank change| of the fp32 top k within the mode's full ordering;
  for scale, the median fp32 gap between the k-th and (k+1)-th neighbour's cosine next to the median
  change of the cosine of a top-k pair;
- the spread of the fp32 vectors: mean (and std) pairwise cosine over all pairs i != j;
- seconds per pass (after an untimed warm-up: one batch on the CPU, a whole pass on CUDA, whose attention
  kernels are set up once per sequence length; on CUDA the two fp32 passes also give the run-to-run noise).

Texts: by default the demo's mini-Amazon (ant.data.demo, generated into a temporary folder, or read from
--demo DIR), item text = title + categories + brand exactly as ant.data.text builds it; or the `text`
column of any items.parquet (--items). Blank and duplicate texts are dropped (a duplicate is an exact
cosine tie, whose order means nothing), then --texts of them are drawn at random (seeded). Neighbours are
computed in float64 on the float32 vectors, in row blocks, so --texts 20000 is fine; it is quadratic.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ant.device import autocast, resolve_device, set_threads
from ant.errors import UserError

DEMO_CATEGORIES = ["Food", "Movies", "Home", "Clothing", "Scientific", "Office"]
MODES = {"bf16": ("autocast", torch.bfloat16), "fp16": ("autocast", torch.float16)}
MODES |= {f"{m}-cast": ("cast", dtype) for m, (_, dtype) in list(MODES.items())}
KS = (10, 50)
LOW_SHARE = 0.7  # "<= 70% equal": <= 7 of 10, <= 35 of 50
BLOCK_ELEMENTS = 2**24  # float64 similarity entries per row block (128 MiB)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bert-base-uncased", help="hub name or local folder of a BERT-like model")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit (ignored for a folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=None,
        help="compared to fp32 (default: bf16, and fp16 on CUDA); *-cast = the whole model cast to that dtype",
    )
    parser.add_argument("--texts", type=int, default=2000, help="distinct texts to encode (0: all there are)")
    parser.add_argument("--items", type=Path, default=None, help="an items.parquet whose `text` column to use")
    parser.add_argument("--demo", type=Path, default=None, help="an existing demo-data folder (default: generate)")
    parser.add_argument("--categories", nargs="+", default=DEMO_CATEGORIES, help="demo categories")
    parser.add_argument("--seed", type=int, default=2023, help="demo seed and the seed of the text sample")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ant.features import encoders as rt

    if args.texts < 0 or args.batch_size < 1 or args.max_length < 2:
        raise UserError("--texts must be >= 0, --batch-size >= 1 and --max-length >= 2")
    set_threads(args.threads)
    device = resolve_device(args.device)
    modes = args.modes or (["bf16", "fp16"] if device.type == "cuda" else ["bf16"])
    texts, source = load_texts(args)
    if len(texts) < 3:
        raise UserError(f"only {len(texts)} distinct non-blank texts: neighbours need at least 3")
    tokenizer, model = rt.load_text_encoder(args.model, args.revision, device)
    lengths = np.array([len(i) for i in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    cfg = model.config
    print(f"precision benchmark: {device} ({where}), torch {torch.__version__}")
    print(
        f"# model {args.model}: {type(model).__name__}, {cfg.num_hidden_layers} layers, {cfg.hidden_size}-d; "
        f"{len(texts)} texts ({source}); tokens per text median {int(np.median(lengths))}, max {lengths.max()}; "
        f"batch {args.batch_size}"
    )
    result: dict[str, Any] = {
        "model": args.model,
        "device": str(device),
        "device_name": where,
        "torch": torch.__version__,
        "texts": len(texts),
        "source": source,
        "dim": cfg.hidden_size,
        "layers": cfg.num_hidden_layers,
        "batch_size": args.batch_size,
        "tokens_median": float(np.median(lengths)),
        "tokens_max": int(lengths.max()),
        "modes": {},
    }

    ref, seconds, noise = encode_pass(model, tokenizer, texts, args, device, "fp32")
    spread = pairwise_cosine(ref)
    result |= {"fp32_seconds": seconds, "fp32_rerun_max_abs_diff": noise, "spread": spread}
    print(
        f"# spread of the fp32 vectors: mean pairwise cosine {spread['mean']:.4f} (std {spread['std']:.4f}); "
        f"fp32 pass {seconds:.2f} s"
        + (f", max |difference| between two fp32 passes {noise:.2e}" if noise is not None else "")
    )
    mean = ref.astype(np.float64).mean(axis=0)
    for mode in modes:
        kind, dtype = MODES[mode]
        runner = model if kind == "autocast" else copy.deepcopy(model).to(dtype)
        precision = mode if kind == "autocast" else "fp32"
        computed = probe_dtype(runner, tokenizer, texts[:1], device, precision)
        applied = computed == dtype
        vectors, seconds, _ = encode_pass(runner, tokenizer, texts, args, device, precision)
        entry = {
            "kind": kind,
            "linear_output_dtype": str(computed),
            "applied": applied,
            "seconds": seconds,
            "cosine": cosine_summary(row_cosine(ref, vectors)),
            "centered_cosine": cosine_summary(row_cosine(ref - mean, vectors - mean)),
            "neighbours": {
                "raw": neighbour_metrics(ref, vectors, KS),
                "centered": neighbour_metrics(ref - mean, vectors - mean, KS),
            },
        }
        result["modes"][mode] = entry
        print_mode(mode, entry, result["fp32_seconds"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_mode(mode: str, entry: dict[str, Any], fp32_seconds: float) -> None:
    what = "autocast" if entry["kind"] == "autocast" else "model cast to the dtype"
    verdict = "applied" if entry["applied"] else "NOT applied: this run computed in fp32; try --modes *-cast"
    print(f"\n## {mode} ({what}): first Linear layer outputs {entry['linear_output_dtype']} - {verdict}")
    print(f"   seconds per pass: fp32 {fp32_seconds:.2f}, {mode} {entry['seconds']:.2f}")
    for name in ("cosine", "centered_cosine"):
        c = entry[name]
        label = "cosine fp32 vs " + mode + (" (centered)" if name != "cosine" else "")
        print(f"   {label:38} mean {c['mean']:.6f}  min {c['min']:.6f}  p1 {c['p1']:.6f}")
    print(
        f"   {'space':8} {'k':>3} {'overlap':>8} {'all k':>7} {'<=70%':>7} {'top-1':>7} {'|drank|':>8} "
        f"{'max':>5} {'gap k/k+1':>10} {'|dcos|':>9}"
    )
    for space, per_k in entry["neighbours"].items():
        for k, m in per_k.items():
            print(
                f"   {space:8} {k:>3} {m['overlap_mean']:8.4f} {m['share_all_equal']:7.3f} {m['share_low']:7.3f} "
                f"{m['share_top1_equal']:7.3f} {m['rank_shift_mean']:8.3f} {m['rank_shift_max']:5d} "
                f"{m['gap_median']:10.2e} {m['pair_change_median']:9.2e}"
            )


# ---------------------------------------------------------------- texts ---------------------------------
def load_texts(args: argparse.Namespace) -> tuple[list[str], str]:
    """Distinct non-blank texts, --texts of them drawn at random (seeded), in their original order."""
    if args.items is not None:
        import pyarrow.parquet as pq

        if not args.items.is_file():
            raise UserError(f"--items {args.items} is not a file")
        raw = [t for t in pq.read_table(args.items, columns=["text"]).column("text").to_pylist() if t]
        source = f"text column of {args.items}"
    elif args.demo is not None:
        raw = demo_texts(args.demo, args.categories)
        source = f"demo in {args.demo}, {' '.join(args.categories)}"
    else:
        raw, scale = generated_demo_texts(args.seed, args.categories, args.texts)
        source = f"generated demo, seed {args.seed}, scale {scale:g}, {' '.join(args.categories)}"
    texts = distinct(raw)
    if 0 < args.texts < len(texts):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(texts), size=args.texts, replace=False))
        texts = [texts[i] for i in keep]
    return texts, f"{source}; {len(texts)} of {len(raw)} texts after dropping blanks and duplicates"


def distinct(texts: Sequence[str | None]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t and t.strip()))


def demo_texts(folder: Path, categories: Sequence[str]) -> list[str]:
    """Item texts of the demo's meta files, built as the ingest builds them (title, categories, brand)."""
    from ant.data.text import item_text

    texts = []
    for category in categories:
        path = Path(folder) / "metaFiles2" / f"meta_{category}.json.gz"
        if not path.is_file():
            raise UserError(f"{path} not found: give --demo a folder written by `python -m ant demo-data`")
        with gzip.open(path, "rt") as lines:
            for line in lines:
                rec = json.loads(line)
                categories_ = rec.get("category", rec.get("categories"))
                texts.append(item_text(rec.get("title"), categories_, rec.get("brand", rec.get("store"))))
    return texts


def generated_demo_texts(seed: int, categories: Sequence[str], wanted: int) -> tuple[list[str], float]:
    """Generate the demo into a temporary folder, at a larger scale when scale 1 has too few items."""
    from ant.data.demo import generate

    scale = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            generate(tmp, seed, categories, scale)
            texts = demo_texts(Path(tmp), categories)
            have = len(distinct(texts))
            if wanted == 0 or have >= wanted or scale >= 100:
                return texts, scale
            scale = min(100.0, math.ceil(scale * wanted / max(have, 1) * 1.1 * 10) / 10)


# ---------------------------------------------------------------- encoding ------------------------------
def encode_pass(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], args: argparse.Namespace, device: torch.device, mode: str
) -> tuple[np.ndarray, float, float | None]:
    """Warm up, then one timed pass of encode_texts; on CUDA the warm-up is a full pass, whose difference to
    the timed one (run-to-run noise) is returned for fp32."""
    from ant.features.text import encode_texts

    kw = {"max_length": args.max_length, "batch_size": args.batch_size, "device": device, "precision": mode}
    cuda = device.type == "cuda"
    warm = encode_texts(model, tokenizer, texts if cuda else texts[: args.batch_size], **kw)
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    vectors = encode_texts(model, tokenizer, texts, **kw)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    noise = float(np.abs(warm - vectors).max()) if cuda and mode == "fp32" else None
    return vectors, seconds, noise


def probe_dtype(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], device: torch.device, precision: str
) -> torch.dtype | None:
    """The dtype the model's first Linear layer outputs when run as encode_texts runs it."""
    linear = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if linear is None:
        return None
    seen: list[torch.dtype] = []
    hook = linear.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        encoded = tokenizer(texts, return_tensors="pt", truncation=True, max_length=32).to(device)
        with torch.inference_mode(), autocast(device, precision):
            model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
    finally:
        hook.remove()
    return seen[0] if seen else None


# ---------------------------------------------------------------- metrics (pure) ------------------------
def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in float64; a zero row stays zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between row i of a and row i of b, for every i."""
    return np.einsum("ij,ij->i", unit(a), unit(b))


def cosine_summary(cosines: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(np.mean(cosines)),
        "min": float(np.min(cosines)),
        "p1": float(np.percentile(cosines, 1)),
    }


def pairwise_cosine(x: np.ndarray) -> dict[str, float]:
    """Mean and std of cos(x_i, x_j) over all ordered pairs i != j, exactly, without the N x N matrix:
    the sum of all cosines is |sum of unit rows|^2 and the sum of their squares is |U^T U|_F^2."""
    u = unit(x)
    n = len(u)
    if n < 2:
        raise ValueError("pairwise cosine needs at least 2 vectors")
    diag = np.einsum("ij,ij->i", u, u)  # 1, or 0 for a zero row
    total = float(np.square(u.sum(axis=0)).sum() - diag.sum())
    squares = float(np.square(u.T @ u).sum() - np.square(diag).sum())
    pairs = n * (n - 1)
    mean = total / pairs
    return {"mean": mean, "std": math.sqrt(max(squares / pairs - mean**2, 0.0))}


def similarities(u: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of the unit rows `rows` with every row, each row's own entry set to -inf (itself excluded)."""
    sims = u[rows] @ u.T
    sims[np.arange(len(rows)), rows] = -np.inf
    return sims


def top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest entries, largest first; equal entries by lower index."""
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the share of a's indices that are also among b's (both [rows, k], no repeats within a row)."""
    if a.shape != b.shape:
        raise ValueError(f"neighbour lists differ in shape: {a.shape} vs {b.shape}")
    return (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1) / a.shape[1]


def ranks(sims: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """1-based rank of the columns idx [rows, k] within each row of sims (1 + entries strictly larger)."""
    vals = np.take_along_axis(sims, idx, axis=1)
    return 1 + (sims[:, None, :] > vals[:, :, None]).sum(axis=2)


def neighbour_metrics(ref: np.ndarray, other: np.ndarray, ks: Sequence[int] = KS) -> dict[int, dict[str, Any]]:
    """For each k: how far the cosine k nearest neighbours (itself excluded) under `other` agree with `ref`'s.

    overlap_mean / share_all_equal / share_low (at most 70% equal) / share_top1_equal over items;
    rank_shift_mean / _max: |rank in other's full ordering - rank in ref's| over each item's ref top k;
    gap_median: median over items of ref's cosine gap between the k-th and (k+1)-th neighbour;
    pair_change_median: median |cos_other - cos_ref| over the ref top-k pairs. k is capped at N - 1."""
    if ref.shape != other.shape:
        raise ValueError(f"vector sets differ in shape: {ref.shape} vs {other.shape}")
    n = len(ref)
    if n < 2:
        raise ValueError("neighbours need at least 2 vectors")
    ks = sorted({min(k, n - 1) for k in ks})
    deepest = min(max(ks) + 1, n - 1)
    u, v = unit(ref), unit(other)
    per_k: dict[int, dict[str, list[np.ndarray]]] = {k: {} for k in ks}
    block = max(1, BLOCK_ELEMENTS // (n * max(ks)))
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        s_ref, s_other = similarities(u, rows), similarities(v, rows)
        ref_top, other_top = top_k(s_ref, deepest), top_k(s_other, deepest)
        ref_vals = np.take_along_axis(s_ref, ref_top, axis=1)
        for k in ks:
            a, b = ref_top[:, :k], other_top[:, :k]
            gap = ref_vals[:, k - 1] - ref_vals[:, k] if deepest > k else np.full(len(rows), np.nan)
            parts = {
                "overlap": overlap(a, b),
                "top1": a[:, 0] == b[:, 0],
                "shift": np.abs(ranks(s_other, a) - np.arange(1, k + 1)),
                "gap": gap,
                "change": np.abs(np.take_along_axis(s_other, a, axis=1) - ref_vals[:, :k]).ravel(),
            }
            for key, value in parts.items():
                per_k[k].setdefault(key, []).append(value)
    out = {}
    for k, parts in per_k.items():
        got = {key: np.concatenate(values) for key, values in parts.items()}
        equal = np.rint(got["overlap"] * k).astype(int)
        gaps = got["gap"][~np.isnan(got["gap"])]
        out[k] = {
            "overlap_mean": float(got["overlap"].mean()),
            "share_all_equal": float((equal == k).mean()),
            "share_low": float((equal <= math.floor(LOW_SHARE * k + 1e-9)).mean()),
            "low_threshold": math.floor(LOW_SHARE * k + 1e-9),
            "share_top1_equal": float(got["top1"].mean()),
            "rank_shift_mean": float(got["shift"].mean()),
            "rank_shift_max": int(got["shift"].max()),
            "gap_median": float(np.median(gaps)) if len(gaps) else float("nan"),
            "pair_change_median": float(np.median(got["change"])),
        }
    return out
