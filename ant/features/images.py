"""`fetch-images`: every item's images fetched, verified with Pillow, resized and stored re-encoded.

    python -m ant fetch-images --items results/data/T/items.parquet --out-dir results/images/T \\
        --stats results/images/T/stats.json --per-item 4 --max-side 256 ...

Output, in --out-dir:
  part-NNNNN.parquet  one row per URL tried: item_idx i32, slot i16, fallback bool, url str, status str,
                      error str ("" when ok), bytes binary (the re-encoded image when ok, else null). A shard
                      covers a contiguous item_idx range; its Parquet metadata holds a fingerprint of its items'
                      URLs and of the settings that change what is stored.
  manifest.json       written last (the rule's output): settings, shards with checksums, the counts.
  stats.json          the counts by cause.

An item's first `per_item` slots are fetched (items.parquet: image_urls = each slot's primary URL, the high-res
one; image_fallback_urls = its low-res counterpart or null); a slot tries its primary URL and, only if that
fails, its fallback. The status of each URL tried is one of:
  ok, bad_url, scheme_refused (not in --schemes: never contacted), not_found (file:// path missing),
  http_<code>, timeout, connection_error, ssl_error, redirect_refused, too_many_redirects, too_large (over
  --max-bytes), invalid_image (HTML, text, an unknown format), truncated_image, decompression_bomb (over
  --max-pixels), io_error (a local file that cannot be read), unexpected_error (a bug; logged).
Transient failures (timeout, connection_error, http_429, http_5xx) are retried with exponential backoff
(Retry-After honoured, up to a minute). No URL ever fails the stage: an item whose slots all fail has no image,
and its image feature is the zero vector with present = False.

Politeness: a bounded thread pool (--workers) and at most --per-host requests in flight per host (host:port).
Redirects are followed by hand, hop by hop, at most 5: only to http or https (a redirect to file:// would let a
remote server make us read local files), and to another host only with --cross-host-redirects (the default,
as image CDNs redirect between their own hosts); each hop takes its own host's politeness slot.
Images are re-encoded as baseline JPEG (--jpeg-quality, EXIF orientation applied, transparency flattened on
white, metadata dropped) with the long side at most --max-side: one small format for every source, the same
bytes for the same input and Pillow.
Resume: a shard whose fingerprint matches is kept, so after a kill a rerun fetches only the missing shards;
--retry-transient also refetches shards that hold transient failures. Timeouts, retries, workers and per-host
limits are not in the fingerprint: they change how hard we try, not what a success stores.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests
import urllib3
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ant.data.items import items_digest, read_items
from ant.errors import UserError
from ant.io import read_json, sha256_file, write_json, write_parquet
from ant.versions import STAGES

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_REDIRECTS = 5
MAX_RETRY_AFTER_S = 60.0
WEB_SCHEMES = ("http", "https")
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # what Amazon serves, and nothing exotic to decode
USER_AGENT = "ant-fetch-images/1 (research; https://github.com/ant-recsys)"
_FINGERPRINT_KEY = b"ant.fingerprint"
_TRANSIENT_KEY = b"ant.transient"

Slots = list[tuple[str | None, str | None]]  # an item's image slots: (primary URL, fallback URL) each


ROW_SCHEMA = pa.schema(
    [
        ("item_idx", pa.int32()),
        ("slot", pa.int16()),
        ("fallback", pa.bool_()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("bytes", pa.binary()),
    ]
)


@dataclass(frozen=True)
class FetchSettings:
    per_item: int = 4
    max_side: int = 256
    max_bytes: int = 20_000_000
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb limit
    schemes: tuple[str, ...] = ("http", "https", "file")
    cross_host_redirects: bool = True
    jpeg_quality: int = 90
    timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 1.0
    workers: int = 32
    per_host: int = 8
    shard_items: int = 2000

    def stored(self) -> dict[str, Any]:
        """The settings that change what a shard stores (its fingerprint); the rest is how hard we try."""
        keys = ("per_item", "max_side", "max_bytes", "max_pixels", "schemes", "cross_host_redirects", "jpeg_quality")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str = ""
    data: bytes | None = None
    retry_after: float | None = None  # seconds a 429/503 asked us to wait

    @property
    def transient(self) -> bool:
        return is_transient(self.status)


def is_transient(status: str) -> bool:
    return status in ("timeout", "connection_error", "http_429") or status.startswith("http_5")


class BadImage(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- one image -----------------------------
def process_image(data: bytes, *, max_pixels: int, max_side: int, quality: int) -> bytes:
    """Verify an image with Pillow and re-encode it as RGB JPEG, long side at most max_side; raise BadImage."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise BadImage("decompression_bomb", f"{width}x{height} pixels, over max_pixels {max_pixels}")
            probe.verify()  # structure and checksums; the image must be opened again to decode it
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            if img.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):  # stored turned by 90 degrees
                width, height = height, width
            # JPEG: decode at a reduced scale, far faster for big photos. The reduced size is rounded up, so the
            # final size is computed from the full one: otherwise the aspect ratio drifts by a pixel or more.
            img.draft("RGB", (max_side, max_side))
            img.load()  # a truncated file fails here
            img = ImageOps.exif_transpose(img)
            img = _flatten_rgb(img)
            if max(width, height) > max_side:
                scale = max_side / max(width, height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                img = img.resize(size, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
            return out.getvalue()
    except BadImage:
        raise
    except Image.DecompressionBombError as err:
        raise BadImage("decompression_bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise BadImage("invalid_image", "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:  # what damaged files raise
        status = "truncated_image" if "truncat" in str(err).lower() else "invalid_image"
        raise BadImage(status, f"{type(err).__name__}: {err}") from err


def _flatten_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


# ---------------------------------------------------------------- fetching ------------------------------
class Fetcher:
    """Fetches URLs politely: thread-safe, one requests.Session per thread, a semaphore per host."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._hosts_lock = threading.Lock()

    def fetch_item(self, item_idx: int, slots: Slots) -> list[dict[str, Any]]:
        """Rows for one item: per slot its primary URL, then its fallback if the primary failed."""
        rows = []
        for slot, (primary, fallback) in enumerate(slots):
            for is_fallback, url in ((False, primary), (True, fallback)):
                if not url or (is_fallback and url == primary):
                    continue
                outcome = self.fetch_image(url)
                rows.append(
                    {
                        "item_idx": item_idx,
                        "slot": slot,
                        "fallback": is_fallback,
                        "url": url,
                        "status": outcome.status,
                        "error": outcome.error,
                        "bytes": outcome.data,
                    }
                )
                if outcome.status == "ok":
                    break
        return rows

    def fetch_image(self, url: str) -> Outcome:
        try:
            outcome = self.fetch(url)
            if outcome.status != "ok":
                return outcome
            s = self.settings
            data = process_image(
                outcome.data or b"", max_pixels=s.max_pixels, max_side=s.max_side, quality=s.jpeg_quality
            )
            return Outcome("ok", data=data)
        except BadImage as err:
            return Outcome(err.status, str(err))
        except Exception as err:
            log.warning("unexpected error for %s: %r", url, err)
            return Outcome("unexpected_error", repr(err))

    def fetch(self, url: str) -> Outcome:
        """The raw bytes behind a URL (http, https with retries; file), or the cause of the failure."""
        try:
            parts = urlsplit(url)
        except ValueError as err:
            return Outcome("bad_url", str(err))
        scheme = parts.scheme.lower()
        if scheme not in self.settings.schemes or scheme not in (*WEB_SCHEMES, "file"):
            return Outcome("scheme_refused", f"scheme {scheme or '(none)'!r} is not in {list(self.settings.schemes)}")
        if scheme == "file":
            return self._read_file(parts.netloc, parts.path)
        if not parts.hostname:
            return Outcome("bad_url", "no host")
        for attempt in range(self.settings.retries + 1):
            outcome = self._follow(url)
            if not outcome.transient or attempt == self.settings.retries:
                return outcome
            wait = self.settings.backoff_s * 2**attempt
            time.sleep(min(max(wait, outcome.retry_after or 0.0), MAX_RETRY_AFTER_S))
        raise AssertionError("unreachable")

    def _follow(self, url: str) -> Outcome:
        origin = urlsplit(url).netloc.lower()
        allowed = [s for s in WEB_SCHEMES if s in self.settings.schemes]
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            outcome, location = self._request(current)
            if location is None:
                return outcome
            target = urljoin(current, location)
            parts = urlsplit(target)
            if parts.scheme.lower() not in allowed:
                return Outcome("redirect_refused", f"redirect to {parts.scheme or 'a relative'!r} URL {target}")
            if not self.settings.cross_host_redirects and parts.netloc.lower() != origin:
                return Outcome("redirect_refused", f"redirect to another host: {target}")
            current = target
        return Outcome("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")

    def _request(self, url: str) -> tuple[Outcome, str | None]:
        """One GET, no redirect following: (outcome, None) or (_, Location of a redirect)."""
        s = self.settings
        with self._host_slot(urlsplit(url).netloc.lower()):
            try:
                with self._session().get(
                    url, stream=True, timeout=(s.timeout_s, s.timeout_s), allow_redirects=False
                ) as r:
                    if r.is_redirect:
                        return Outcome("redirect"), r.headers["location"]
                    if r.status_code != 200:
                        return Outcome(f"http_{r.status_code}", r.reason or "", retry_after=_retry_after(r)), None
                    declared = r.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > s.max_bytes:
                        return Outcome("too_large", f"{declared} bytes, over max_bytes {s.max_bytes}"), None
                    return self._read_body(r.iter_content(1 << 16)), None
            except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
                return Outcome(_request_failure(err), f"{type(err).__name__}: {err}"), None
            except (ValueError, UnicodeError) as err:  # e.g. a host name IDNA cannot encode
                return Outcome("bad_url", str(err)), None

    def _read_body(self, chunks: Iterator[bytes]) -> Outcome:
        # requests' read timeout is per read: a server trickling bytes is cut off by this total deadline
        s = self.settings
        deadline = time.monotonic() + 5 * s.timeout_s
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > s.max_bytes:
                return Outcome("too_large", f"over max_bytes {s.max_bytes}")
            if time.monotonic() > deadline:
                return Outcome("timeout", f"download took over {5 * s.timeout_s:g} s")
        return Outcome("ok", data=bytes(body))

    def _read_file(self, netloc: str, path: str) -> Outcome:
        if netloc not in ("", "localhost"):
            return Outcome("bad_url", f"file URL with a host ({netloc})")
        file = Path(url2pathname(path))
        try:
            if not file.is_file():
                return Outcome("not_found", f"no such file: {file}")
            size = file.stat().st_size
            if size > self.settings.max_bytes:
                return Outcome("too_large", f"{size} bytes, over max_bytes {self.settings.max_bytes}")
            return Outcome("ok", data=file.read_bytes())
        except OSError as err:
            return Outcome("io_error", str(err))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.settings.per_host, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def _host_slot(self, host: str) -> threading.BoundedSemaphore:
        with self._hosts_lock:
            if host not in self._hosts:
                self._hosts[host] = threading.BoundedSemaphore(self.settings.per_host)
            return self._hosts[host]


_BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)


def _request_failure(err: Exception) -> str:
    if isinstance(err, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return "timeout"
    if isinstance(err, requests.exceptions.SSLError):
        return "ssl_error"
    if isinstance(err, _BAD_URL_ERRORS):
        return "bad_url"
    # a read timeout while streaming the body surfaces as a ConnectionError wrapping urllib3's ReadTimeoutError
    if isinstance(err, requests.ConnectionError) and any(
        isinstance(a, urllib3.exceptions.TimeoutError) for a in err.args
    ):
        return "timeout"
    return "connection_error"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


# ---------------------------------------------------------------- shards --------------------------------
@dataclass(frozen=True)
class ImageShard:
    number: int
    start: int
    stop: int
    fingerprint: str

    @property
    def file(self) -> str:
        return f"part-{self.number:05d}.parquet"


def item_slots(table: pa.Table, per_item: int) -> list[Slots]:
    """Per item, its first per_item (primary, fallback) URL pairs."""
    primaries = table.column("image_urls").to_pylist()
    fallbacks = (
        table.column("image_fallback_urls").to_pylist()
        if "image_fallback_urls" in table.column_names
        else [None] * len(primaries)
    )
    slots = []
    for idx, (primary, fallback) in enumerate(zip(primaries, fallbacks, strict=True)):
        primary, fallback = primary or [], fallback or [None] * len(primary or [])
        if len(fallback) != len(primary):
            raise UserError(
                f"item_idx {idx}: {len(primary)} image_urls but {len(fallback)} image_fallback_urls; "
                "the two lists must be of the same length (rerun the data stage)"
            )
        slots.append(list(zip(primary, fallback, strict=True))[:per_item])
    return slots


def plan_shards(item_ids: list[str], slots: list[Slots], settings: FetchSettings) -> list[ImageShard]:
    shards = []
    stored = json.dumps(settings.stored(), sort_keys=True)
    for number, start in enumerate(range(0, len(item_ids), settings.shard_items)):
        stop = min(start + settings.shard_items, len(item_ids))
        digest = hashlib.sha256(f"{FORMAT_VERSION}\0{STAGES['images']}\0{stored}\0".encode())
        for item_id, item in zip(item_ids[start:stop], slots[start:stop], strict=True):
            digest.update(json.dumps([item_id, item]).encode())
        shards.append(ImageShard(number, start, stop, digest.hexdigest()))
    return shards


def shard_is_done(path: Path, shard: ImageShard, retry_transient: bool = False) -> bool:
    if not path.exists():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return False  # damaged: refetch, never trust
    if meta.get(_FINGERPRINT_KEY) != shard.fingerprint.encode():
        return False
    return not (retry_transient and int(meta.get(_TRANSIENT_KEY, b"0")) > 0)


def write_shard(path: Path, shard: ImageShard, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA) if rows else ROW_SCHEMA.empty_table()
    transient = sum(is_transient(r["status"]) for r in rows)
    table = table.replace_schema_metadata(
        {_FINGERPRINT_KEY: shard.fingerprint.encode(), _TRANSIENT_KEY: str(transient).encode()}
    )
    # JPEG bytes do not compress: store them plain, compress the small columns
    compression = {name: ("NONE" if name == "bytes" else "ZSTD") for name in ROW_SCHEMA.names}
    write_parquet(table, path, compression=compression, use_dictionary=["status", "error"])


def fetch_images(
    items_path: str | Path,
    out_dir: str | Path,
    settings: FetchSettings,
    *,
    stats_path: str | Path | None = None,
    retry_transient: bool = False,
    on_shard: Callable[[ImageShard], None] | None = None,
) -> dict[str, Any]:
    """Fetch every missing shard, then write stats and the manifest; returns the manifest."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    table = read_items(items_path, ["image_urls"] + _optional_fallback(items_path))
    item_ids = table.column("item_id").to_pylist()
    slots = item_slots(table, settings.per_item)
    shards = plan_shards(item_ids, slots, settings)
    todo = [s for s in shards if not shard_is_done(out_dir / s.file, s, retry_transient)]
    log.info(
        "%s: %d of %d shard(s) already done, %d to fetch", out_dir, len(shards) - len(todo), len(shards), len(todo)
    )
    fetcher = Fetcher(settings)
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="fetch")
    try:
        with tqdm(
            total=sum(s.stop - s.start for s in todo),
            unit=" items",
            file=sys.stderr,
            desc="images",
            mininterval=0.5 if sys.stderr.isatty() else 15,
            disable=not todo,
        ) as progress:
            for shard in todo:
                rows = []
                items = range(shard.start, shard.stop)
                for item_rows in pool.map(fetcher.fetch_item, items, slots[shard.start : shard.stop]):
                    rows += item_rows
                    progress.update(1)
                write_shard(out_dir / shard.file, shard, rows)
                if on_shard is not None:
                    on_shard(shard)
    finally:
        # on Ctrl-C, drop the shard's queued items instead of fetching them all before exiting
        pool.shutdown(wait=True, cancel_futures=True)
    return write_manifest(out_dir, shards, item_ids, slots, settings, stats_path)


def _optional_fallback(items_path: str | Path) -> list[str]:
    names = pq.read_schema(items_path).names if Path(items_path).exists() else []
    return ["image_fallback_urls"] if "image_fallback_urls" in names else []


def write_manifest(
    out_dir: Path,
    shards: list[ImageShard],
    item_ids: list[str],
    slots: list[Slots],
    settings: FetchSettings,
    stats_path: str | Path | None,
) -> dict[str, Any]:
    names = ["item_idx", "slot", "fallback", "status"]
    columns = [pq.read_table(out_dir / s.file, columns=names) for s in shards]
    rows = pa.concat_tables(columns) if columns else ROW_SCHEMA.empty_table().select(names)
    stats = count(rows, len(item_ids), slots)
    manifest = {
        "format_version": FORMAT_VERSION,
        "items": len(item_ids),
        "items_sha256": items_digest(item_ids),
        "settings": settings.stored(),
        "shards": [
            {
                "file": s.file,
                "start": s.start,
                "stop": s.stop,
                "fingerprint": s.fingerprint,
                "sha256": sha256_file(out_dir / s.file),
            }
            for s in shards
        ],
        "stats": stats,
    }
    if stats_path is not None:
        write_json(stats, stats_path)
    write_json(manifest, out_dir / MANIFEST)
    by_status = ", ".join(f"{k} {v}" for k, v in stats["by_status"].items())
    log.info(
        "%d of %d items have an image; URLs tried: %s", stats["items_with_image"], stats["items"], by_status or "none"
    )
    return manifest


def count(rows: pa.Table, n_items: int, slots: list[Slots]) -> dict[str, Any]:
    """Counts by cause: items with/without an image, slots, and every URL tried by status."""
    status = np.asarray(rows.column("status").to_pylist(), dtype=object)
    ok = status == "ok"
    item_idx = rows.column("item_idx").to_numpy()
    with_image = np.zeros(n_items, dtype=bool)
    with_image[item_idx[ok]] = True
    n_slots = sum(len(s) for s in slots)
    return {
        "items": n_items,
        "items_with_image": int(with_image.sum()),
        "items_without_image": int(n_items - with_image.sum()),
        "items_without_urls": sum(1 for s in slots if not s),
        "slots": n_slots,
        "slots_ok": int(ok.sum()),
        "slots_ok_by_fallback": int((ok & rows.column("fallback").to_numpy(zero_copy_only=False)).sum()),
        "urls_tried": len(status),
        "by_status": dict(sorted(Counter(status.tolist()).items())),
    }


# ---------------------------------------------------------------- reading -------------------------------
def read_manifest(manifest_path: str | Path, item_ids: list[str] | None = None) -> dict[str, Any]:
    """An image manifest, checked against the item list it must have been fetched for."""
    path = Path(manifest_path)
    if not path.exists():
        raise UserError(f"image manifest not found: {path} (run the fetch_images rule for this task)")
    manifest = read_json(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: format version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    if item_ids is not None and (
        manifest["items"] != len(item_ids) or manifest["items_sha256"] != items_digest(item_ids)
    ):
        raise UserError(f"{path} was fetched for another item list; rerun the fetch_images rule")
    return manifest


def read_ok_images(
    manifest_path: str | Path, manifest: dict[str, Any], start: int, stop: int
) -> tuple[np.ndarray, list[bytes]]:
    """(item_idx, JPEG bytes) of every image that loaded for items start..stop-1, in (item, slot) order."""
    folder = Path(manifest_path).parent
    idx: list[np.ndarray] = []
    data: list[bytes] = []
    for entry in manifest["shards"]:
        if entry["stop"] <= start or entry["start"] >= stop:
            continue
        table = pq.read_table(
            folder / entry["file"],
            columns=["item_idx", "bytes"],
            filters=[("status", "==", "ok"), ("item_idx", ">=", start), ("item_idx", "<", stop)],
        )
        idx.append(table.column("item_idx").to_numpy())
        data += table.column("bytes").to_pylist()
    return (np.concatenate(idx) if idx else np.zeros(0, dtype=np.int32)), data


# ---------------------------------------------------------------- CLI -----------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FetchSettings()
    parser.add_argument("--items", required=True, help="the task's items.parquet")
    parser.add_argument("--out-dir", required=True, help="folder of the shards and manifest.json")
    parser.add_argument("--stats", default=None, help="write the counts by cause here too")
    parser.add_argument("--retry-transient", action="store_true", help="refetch shards with transient failures")
    parser.add_argument("--per-item", type=int, default=d.per_item, help="image slots per item")
    parser.add_argument("--max-side", type=int, default=d.max_side, help="long side of a stored image, pixels")
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes, help="largest download accepted")
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels, help="decompression-bomb limit")
    parser.add_argument("--schemes", nargs="+", default=list(d.schemes), choices=[*WEB_SCHEMES, "file"])
    parser.add_argument("--cross-host-redirects", action=argparse.BooleanOptionalAction, default=d.cross_host_redirects)
    parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    parser.add_argument("--timeout-s", type=float, default=d.timeout_s, help="connect and read timeout")
    parser.add_argument("--retries", type=int, default=d.retries, help="retries of a transient failure")
    parser.add_argument("--backoff-s", type=float, default=d.backoff_s, help="first retry delay, doubled each time")
    parser.add_argument("--workers", type=int, default=d.workers, help="downloads in flight in all")
    parser.add_argument("--per-host", type=int, default=d.per_host, help="downloads in flight per host")
    parser.add_argument("--shard-items", type=int, default=d.shard_items, help="items per shard (resume unit)")


def run(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(FetchSettings)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["schemes"] = tuple(dict.fromkeys(values["schemes"]))
    settings = FetchSettings(**values)
    positive = ("per_item", "max_side", "max_bytes", "max_pixels", "workers", "per_host", "shard_items")
    bad = [k for k in positive if getattr(settings, k) < 1]
    if bad or settings.timeout_s <= 0 or settings.retries < 0 or settings.backoff_s < 0:
        raise UserError(f"fetch-images: {bad or 'timeout/retries/backoff'} must be positive")
    if not 1 <= settings.jpeg_quality <= 95:
        raise UserError("--jpeg-quality must be in 1..95")
    fetch_images(args.items, args.out_dir, settings, stats_path=args.stats, retry_transient=args.retry_transient)
    return 0
