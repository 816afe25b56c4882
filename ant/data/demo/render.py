"""A World as the raw Amazon 2018 files: ratings CSV, meta JSON lines (gzip) and item images.

Everything the real files get wrong is reproduced on purpose: prices in every string shape (plain,
thousands, ranges, empty, scraped CSS), html entities, trailing dots, an over-long title, empty category
lists, duplicate asin records, and images that are missing, not images, or truncated JPEGs.
Output bytes depend only on the world, the seed and the output folder (gzip mtime 0, fixed key order).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ant.data.demo.catalog import STYLES, Style
from ant.data.demo.world import World, stream
from ant.io import atomic_path

PRICE_SHAPES = ("plain", "thousands", "range", "empty", "junk")
SCRAPED_JUNK = (
    ".a-box-inner{background-color:#fff}#alohaBuyBoxWidget .selected{background-color:#fffbf3;"
    "border-color:#e77600;box-shadow:0 0 3px rgba(228,121,17,.5)}",
    ".a-section.a-spacing-mini{display:none;}#productDetails_techSpec_section_1 .a-price{color:#B12704}",
    "\n\n\n\n\n\n\n\n\n\nCurrently unavailable.",
)
BROKEN_KINDS = ("missing", "not_image", "truncated")
NOT_AN_IMAGE = b"<html><head><title>404 Not Found</title></head><body>Image not found</body></html>\n"
IMAGE_COUNTS = np.arange(7)
IMAGE_COUNT_P = (0.08, 0.35, 0.20, 0.15, 0.10, 0.07, 0.05)  # some items without images, some with up to 6


@dataclass
class Written:
    """What was written for one category: the manifest's counts and file list."""

    counts: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def write_category(world: World, out: Path, seed: int) -> Written:
    out = out.resolve()
    image_dir = out / "images" / world.name
    text_rng, image_rng = stream(seed, world.name, "text"), stream(seed, world.name, "images")
    images = _plan_images(world, image_rng)
    image_counts = _write_images(world, images, image_dir, image_rng)
    records, meta_counts = _meta_records(world, text_rng, images, image_dir)

    ratings = out / "categoryFilesSmall" / f"{world.name}.csv"
    meta = out / "metaFiles2" / f"meta_{world.name}.json.gz"
    lines = "".join(
        f"{world.asin[i]},{world.user_id[u]},{r:.1f},{t}\n"
        for i, u, r, t in zip(
            world.line_item.tolist(),
            world.line_user.tolist(),
            world.line_rating.tolist(),
            world.line_timestamp.tolist(),
            strict=True,
        )
    )
    _write_bytes(ratings, lines.encode())
    payload = "".join(json.dumps(record) + "\n" for record in records).encode()
    _write_bytes(meta, gzip.compress(payload, compresslevel=9, mtime=0))

    counts = {
        "rating_lines": len(world.line_user),
        "users": int(len(np.unique(world.line_user))),
        "rated_items": int(world.rated.sum()),
        "rated_items_without_meta": int((world.rated & ~world.has_meta).sum()),
        "meta_records": len(records),
        **meta_counts,
        **image_counts,
        "noise": world.noise,
    }
    return Written(counts, [ratings, meta])


# ---------------------------------------------------------------- images ---------------------------------
@dataclass(frozen=True)
class ImagePlan:
    names: list[str]  # file names, in URL order
    broken: str | None  # kind of the last image's defect, or None
    high_res: bool  # False: listed in imageURL only (the stage must fall back to it)


def _plan_images(world: World, rng: np.random.Generator) -> dict[int, ImagePlan]:
    items = np.flatnonzero(world.has_meta)
    n_images = rng.choice(IMAGE_COUNTS, size=len(items), p=IMAGE_COUNT_P)
    png = rng.random(int(n_images.sum())) < 0.2
    with_images = items[n_images > 0]
    broken_items = rng.choice(with_images, size=max(3, round(0.02 * len(with_images))), replace=False)
    broken = {int(item): BROKEN_KINDS[j % len(BROKEN_KINDS)] for j, item in enumerate(broken_items)}
    low_res_only = rng.random(len(items)) < 0.06
    plans, taken = {}, 0
    for item, n, low in zip(items.tolist(), n_images.tolist(), low_res_only.tolist(), strict=True):
        exts = ["png" if p else "jpg" for p in png[taken : taken + n]]
        taken += n
        if item in broken:
            exts[-1] = "jpg"
        names = [f"{world.asin[item]}_{k}.{ext}" for k, ext in enumerate(exts)]
        plans[item] = ImagePlan(names, broken.get(item), high_res=not low)
    return plans


def _write_images(world: World, plans: dict[int, ImagePlan], image_dir: Path, rng: np.random.Generator):
    """All images of a category into a fresh temporary folder that then replaces `image_dir` in one rename."""
    tmp = image_dir.with_name(f".{image_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = dict.fromkeys(BROKEN_KINDS, 0)
    for item, plan in plans.items():
        for k, name in enumerate(plan.names):
            data = _draw(STYLES[world.style[item]], rng, name.endswith(".png"))
            if plan.broken and k == len(plan.names) - 1:
                written[plan.broken] += 1
                if plan.broken == "missing":
                    continue
                data = NOT_AN_IMAGE if plan.broken == "not_image" else _truncate_jpeg(data)
            (tmp / name).write_bytes(data)
    files, digest = folder_digest(tmp)
    shutil.rmtree(image_dir, ignore_errors=True)
    os.replace(tmp, image_dir)
    return {"image_files": files, "images_sha256": digest, "broken_images": written}


def _truncate_jpeg(data: bytes) -> bytes:
    """Cut a JPEG in the middle of its scan data: the header still parses, decoding fails."""
    scan = data.index(b"\xff\xda")  # start-of-scan marker
    return data[: scan + (len(data) - scan) // 2]


def folder_digest(folder: Path) -> tuple[int, str]:
    """Number of files and one sha256 over the sorted (name, sha256 of content) lines of a flat folder."""
    lines = [f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in sorted(folder.iterdir())]
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def _draw(style: Style, rng: np.random.Generator, png: bool) -> bytes:
    """A small product shot: the style's colour as background and its shape in a darker shade, jittered."""
    width, height = (int(v) for v in rng.choice(np.arange(48, 97, 8), size=2))
    background = tuple(int(c) for c in np.clip(np.array(style.rgb) + rng.integers(-20, 21, 3), 0, 255))
    shade = tuple(int(c * 0.35) for c in background)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    side = min(width, height) * rng.uniform(0.5, 0.8)
    cx = width / 2 + rng.uniform(-width / 8, width / 8)
    cy = height / 2 + rng.uniform(-height / 8, height / 8)
    _shape(draw, style.shape, cx, cy, side / 2, shade)
    if rng.random() < 0.5:  # an unrelated label in a random colour: noise the encoder must ignore
        x, y = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        draw.rectangle((x, y, x + 8, y + 6), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    buffer = io.BytesIO()
    if png:
        (image.convert("RGBA") if rng.random() < 0.3 else image).save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    elif shape == "cross":
        draw.rectangle((cx - r, cy - r / 3, cx + r, cy + r / 3), fill=fill)
        draw.rectangle((cx - r / 3, cy - r, cx + r / 3, cy + r), fill=fill)
    elif shape in ("hstripes", "vstripes"):
        for j in range(3):
            lo, hi = -r + j * 2 * r / 3, -r + j * 2 * r / 3 + r / 3
            bar = (cx - r, cy + lo, cx + r, cy + hi) if shape == "hstripes" else (cx + lo, cy - r, cx + hi, cy + r)
            draw.rectangle(bar, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


# ---------------------------------------------------------------- meta -----------------------------------
def _meta_records(world: World, rng: np.random.Generator, images: dict[int, ImagePlan], image_dir: Path):
    """One record per item with meta (in asin order), a second, different record for a few asins."""
    items = np.flatnonzero(world.has_meta)
    shapes = _price_shapes(world, items, rng)
    long_title = set(rng.choice(items, size=max(1, round(0.003 * len(items))), replace=False).tolist())
    twins = set(rng.choice(items, size=max(2, round(0.02 * len(items))), replace=False).tolist())
    records = []
    for item in sorted(items.tolist(), key=lambda i: world.asin[i]):
        plan = images[item]
        urls = [(image_dir / name).as_uri() for name in plan.names]
        title = _title(world, item, rng, long=item in long_title)
        record = _record(world, item, rng, title, format_price(world.price_usd[item], shapes[item], rng), urls, plan)
        records.append(record)
        if item in twins:  # the same asin again, scraped differently: the first record must win
            records.append(
                {**record, "title": title + " Value Bundle", "price": "", "imageURL": [], "imageURLHighRes": []}
            )
    counts = {
        "duplicate_asin_records": len(twins),
        "long_titles": len(long_title),
        "price_shapes": {shape: int(sum(s == shape for s in shapes.values())) for shape in PRICE_SHAPES},
    }
    return records, counts


def _price_shapes(world: World, items: np.ndarray, rng: np.random.Generator) -> dict[int, str]:
    draws = rng.choice(["plain", "range", "empty", "junk"], size=len(items), p=(0.75, 0.07, 0.14, 0.04))
    shapes = dict(zip(items.tolist(), draws.tolist(), strict=True))
    for item in items.tolist():
        if world.price_usd[item] >= 1000:  # world.py plants at least one such item
            shapes[item] = "thousands"
    plain = [i for i in items.tolist() if shapes[i] == "plain"]
    for shape in ("range", "empty", "junk"):  # every shape at least once, whatever the draws
        if shape not in shapes.values():
            shapes[plain.pop()] = shape
    return shapes


def format_price(usd: float, shape: str, rng: np.random.Generator) -> str:
    if shape in ("plain", "thousands"):
        return f"${usd:,.2f}"
    if shape == "range":
        return f"${usd:,.2f} - ${usd * rng.uniform(1.2, 2.0):,.2f}"
    if shape == "junk":
        return SCRAPED_JUNK[int(rng.integers(len(SCRAPED_JUNK)))]
    return ""


def _style_word(words_of_style: tuple[str, ...], attribute: str, rng: np.random.Generator) -> str:
    """A word of the item's style, or (15%) of a random style: the text signal is strong but not perfect."""
    if rng.random() < 0.15:
        words_of_style = getattr(STYLES[int(rng.integers(len(STYLES)))], attribute)
    return words_of_style[int(rng.integers(len(words_of_style)))]


def _title(world: World, item: int, rng: np.random.Generator, long: bool) -> str:
    profile, style = world.profile, STYLES[world.style[item]]
    brand = profile.brands[world.brand[item]] if world.brand[item] >= 0 else ""
    fields = {
        "brand": brand,
        "adj": _style_word(style.adjectives, "adjectives", rng).capitalize(),
        "colour": _style_word(style.colours, "colours", rng).capitalize(),
        "material": _style_word(style.materials, "materials", rng).capitalize(),
        "noun": profile.nouns[world.noun[item]].capitalize(),
        "size": profile.sizes[int(rng.integers(len(profile.sizes)))],
        "count": profile.counts[int(rng.integers(len(profile.counts)))],
    }
    if rng.random() < 0.03:
        fields["noun"] = f"&quot;{fields['noun']}&quot;"
    title = " ".join(profile.template.format(**fields).split())
    if world.series_pos[item] > 0:
        title += ", " + profile.series.format(k=world.series_pos[item])
    if rng.random() < 0.04:
        title = "New &amp; Improved " + title
    if rng.random() < 0.05:
        title += "..." if rng.random() < 0.5 else "."
    if long:  # >= 2000 characters: the text stage must drop this field
        title = " ".join([title] * (2000 // len(title) + 1))
    return title


def _record(
    world: World, item: int, rng: np.random.Generator, title: str, price: str, urls: list[str], plan: ImagePlan
) -> dict[str, Any]:
    """A meta record with the keys of the 2018 files, in their order."""
    profile = world.profile
    noun = profile.nouns[world.noun[item]]
    category = [profile.top, *profile.path_of(int(world.noun[item]))] if rng.random() > 0.02 else []
    brand = profile.brands[world.brand[item]] if world.brand[item] >= 0 else ""
    if brand and rng.random() < 0.03:
        brand = f"\n    {brand}\n    "
    description = [f"Everyday {noun}, made with care.", "<b>Care:</b> wipe clean.<br>Imported."]
    description = description[: int(rng.integers(0, len(description) + 1))]
    if rng.random() < 0.01:
        description.append("Specifications. " * 150)  # a long field the text stage ignores
    same_style = np.flatnonzero((world.style == world.style[item]) & world.has_meta)
    related = [str(world.asin[j]) for j in rng.choice(same_style, size=min(4, len(same_style)), replace=False)]
    record: dict[str, Any] = {
        "category": category,
        "tech1": "",
        "description": description,
        "fit": "",
        "title": title,
        "also_buy": related[:2],
        "tech2": "",
        "brand": brand,
        "feature": [f"{noun.capitalize()} you will love"] if rng.random() < 0.5 else [],
        "rank": f"{int(rng.integers(1, 900_000)):,} in {profile.top} (",
        "also_view": related[2:],
    }
    if rng.random() < 0.3:
        record["details"] = {
            "\n    Product Dimensions: \n    ": "4 x 3 x 2 inches ; 6.4 ounces",
            "Shipping Weight:": "6.4 ounces",
            "ASIN:": str(world.asin[item]),
        }
    record.update(
        {
            "main_cat": profile.main_cat,
            "similar_item": "",
            "date": "",
            "price": price,
            "asin": str(world.asin[item]),
            "imageURL": urls,
            "imageURLHighRes": urls if plan.high_res else [],
        }
    )
    return record


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
