"""`embed-price`: sinusoidal price features (spec section 2), one global scale for every task.

    python -m ant embed-price --task T --items items.parquet --out-dir DIR --dim 64 --max-usd 1000 \\
        --scale 10000 --base 50000

For an item with price x (USD): p = min(x, max_usd) / max_usd * scale, then for i = 0 .. dim/2 - 1
    e[2i] = sin(p / base^(2i/dim)),   e[2i+1] = cos(p / base^(2i/dim)),
computed in float64, stored as float32. A missing price (null, NaN, negative) is the zero vector with
present = False. The scale never depends on the task's prices, so one dollar amount has one vector everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import logging

import numpy as np
import pyarrow as pa

from ant.data.items import read_items
from ant.errors import UserError
from ant.features.command import add_store_arguments, check_store_arguments, fill_store_from_arguments
from ant.features.store import Shard
from ant.versions import STAGES

log = logging.getLogger(__name__)


def price_features(
    price_usd: np.ndarray, *, dim: int = 64, max_usd: float = 1000.0, scale: float = 10_000.0, base: float = 50_000.0
) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n, dim] sinusoidal vectors and the presence mask of an array of prices (NaN = missing)."""
    if dim < 2 or dim % 2 or max_usd <= 0 or scale <= 0 or base <= 1:
        raise ValueError("dim must be even and >= 2, max_usd and scale positive, base > 1")
    price = np.asarray(price_usd, dtype=np.float64)
    present = np.isfinite(price) & (price >= 0)
    p = np.minimum(np.where(present, price, 0.0), max_usd) / max_usd * scale
    angle = p[:, None] / base ** (2 * np.arange(dim // 2) / dim)[None, :]
    out = np.empty((len(price), dim), dtype=np.float64)
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    out[~present] = 0.0
    return out.astype(np.float32), present


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser, shard_items=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max-usd", type=float, default=1000.0, help="prices above this are clipped to it")
    parser.add_argument("--scale", type=float, default=10_000.0, help="p = min(price, max_usd) / max_usd * scale")
    parser.add_argument("--base", type=float, default=50_000.0, help="frequency coefficient")


def run(args: argparse.Namespace) -> int:
    check_store_arguments(args)
    if args.dim < 2 or args.dim % 2 or args.max_usd <= 0 or args.scale <= 0 or args.base <= 1:
        raise UserError("--dim must be even and >= 2, --max-usd and --scale positive, --base above 1")
    items = read_items(args.items, ["price_usd"])
    price = items.column("price_usd").cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
    item_ids = items.column("item_id").to_pylist()
    settings = {"dim": args.dim, "max_usd": args.max_usd, "scale": args.scale, "base": args.base}
    negative = int((price < 0).sum())
    if negative:
        log.warning("%d negative price(s) treated as missing", negative)
    extra = {"negative_prices": negative}

    def compute(shard: Shard, progress: object) -> tuple[np.ndarray, np.ndarray]:
        values, present = price_features(price[shard.start : shard.stop], **settings)
        progress.update(len(values))  # type: ignore[attr-defined]
        return values, present

    encoder = {"name": "sinusoidal", **settings, "code_version": STAGES["price"]}
    digest = hashlib.sha256(price.tobytes()).hexdigest()
    fill_store_from_arguments(
        args, "price", compute, encoder=encoder, dim=args.dim, item_ids=item_ids, inputs_digest=digest, extra=extra
    )
    return 0
