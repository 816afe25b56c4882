"""One HTTP source, resumable: the body streams into a partial file, and a dropped connection resumes it.

A connection dropped in the middle of the body resumes with `Range: bytes=N-` (and `If-Range` with the
server's ETag or Last-Modified). A 206 that does not start at N, or whose total changed, and a 200 to a
ranged request restart from zero. The final size must match Content-Length / the Content-Range total.
Bytes in flight live in a hidden sibling `.<name>.part` (plus `.<name>.part.json`, what the server said
about them). After a failed transfer they are kept, and the next run resumes them, but only from the same
URL and only when the server confirms through If-Range that the file has not changed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from ant.data.download.failures import SourceFailed, describe_error, describe_status, short
from ant.data.download.session import BACKOFF_MAX_S, Settings
from ant.data.download.verify import publish
from ant.io import read_json, write_json

log = logging.getLogger(__name__)

_NET_CHUNK = 1 << 16  # reading the network: fine-grained progress, little lost when a connection breaks


def partial_paths(dest: Path) -> tuple[Path, Path]:
    """The hidden siblings of `dest` that hold an unfinished download and what the server said about it."""
    return dest.with_name(f".{dest.name}.part"), dest.with_name(f".{dest.name}.part.json")


@dataclass(frozen=True)
class ContentRange:
    """A parsed `Content-Range: bytes start-end/total` (start and end None for `bytes */total`)."""

    start: int | None
    end: int | None
    total: int | None  # None for `/*`: the server does not know


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-(\d+)|(\*))\s*/\s*(\d+|\*)\s*", re.IGNORECASE)


def parse_content_range(value: str | None) -> ContentRange | None:
    """The byte range of a 206 or 416 response; None when the header is missing or malformed."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if not match:
        return None
    first, last, unsatisfied, total_text = match.groups()
    total = None if total_text == "*" else int(total_text)
    if unsatisfied:
        return ContentRange(None, None, total) if total is not None else None
    start, end = int(first), int(last)
    if end < start or (total is not None and end >= total):
        return None
    return ContentRange(start, end, total)


class _Dropped(Exception):
    """The connection broke while the body was streaming: resume."""


@dataclass
class _Origin:
    """What the server said about the bytes in the partial file (kept next to it as JSON)."""

    url: str
    total: int | None
    etag: str | None
    last_modified: str | None

    def validator(self) -> str | None:
        """The If-Range value: a strong ETag, else Last-Modified (weak ETags are not allowed there)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @classmethod
    def from_response(cls, url: str, resp: requests.Response, total: int | None) -> _Origin:
        return cls(url, total, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))


def _load_origin(path: Path) -> _Origin | None:
    try:
        return _Origin(**read_json(path))
    except (OSError, ValueError, TypeError):
        return None


def fetch_http(
    session: requests.Session, url: str, dest: Path, sha256: str | None, settings: Settings, bar: tqdm
) -> None:
    part, meta = partial_paths(dest)
    origin = _load_origin(meta) if part.exists() else None
    # A partial file of an earlier run is resumed only from the same URL and with a validator for If-Range;
    # one written during this call may also resume without one (its total size is still checked).
    resume = origin is not None and origin.url == url and origin.validator() is not None
    fruitless = 0  # attempts in a row that added no bytes
    while True:
        offset = part.stat().st_size if resume and part.exists() else 0
        try:
            if _transfer(session, url, part, meta, offset, origin if resume else None, settings, bar):
                break
        except _Dropped as err:
            written = part.stat().st_size if part.exists() else 0
            fruitless = 0 if written > offset else fruitless + 1
            if fruitless > settings.retries:
                raise SourceFailed(
                    f"connection dropped at byte {written:,} ({err}), {fruitless} times in a row without "
                    f"progress; the partial data is kept in {part} and the next run resumes it"
                ) from err
            delay = min(BACKOFF_MAX_S, settings.backoff_s * 2 ** max(0, fruitless - 1))
            log.warning("connection dropped at byte %s (%s); resuming in %.2g s", f"{written:,}", err, delay)
            time.sleep(delay)
            origin, resume = _load_origin(meta), True
            continue
        fruitless += 1  # the server answered a ranged request wrongly: start again from zero
        if fruitless > settings.retries:
            raise SourceFailed(f"the server's answers to ranged requests do not fit together ({fruitless} tries)")
        resume = False
    publish(part, dest, sha256, source=url, cleanup=(part, meta))


def _transfer(
    session: requests.Session,
    url: str,
    part: Path,
    meta: Path,
    offset: int,
    origin: _Origin | None,
    settings: Settings,
    bar: tqdm,
) -> bool:
    """One GET that appends to (offset > 0) or rewrites the partial file; False: restart from zero."""
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if origin is not None and origin.validator():
            headers["If-Range"] = origin.validator()
        log.info("resuming %s from byte %s", url, f"{offset:,}")
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=(settings.timeout_s, settings.timeout_s))
    except requests.RequestException as err:
        raise SourceFailed(describe_error(err, settings)) from err
    with resp:
        if resp.status_code == 416 and offset:
            # If-Range matched (else the server would have sent the whole file) and nothing lies past `offset`:
            # the partial file is already complete when its size is the server's total.
            content_range = parse_content_range(resp.headers.get("Content-Range"))
            known_total = origin.total if origin is not None else None
            if content_range is not None and content_range.total == offset == (known_total or offset):
                return True
            log.warning("%s: range not satisfiable at byte %s; restarting from zero", url, f"{offset:,}")
            return False
        if resp.status_code == 206 and offset:
            content_range = parse_content_range(resp.headers.get("Content-Range"))
            expected_total = origin.total if origin is not None else None
            if content_range is None or content_range.start != offset or content_range.total != expected_total:
                log.warning(
                    "%s: asked for bytes %s-, got Content-Range %r; restarting from zero",
                    url,
                    offset,
                    resp.headers.get("Content-Range"),
                )
                return False
            total = content_range.total
        elif resp.status_code == 200:
            if offset:
                log.warning("%s: the server sent the whole file instead of a range; restarting from zero", url)
                offset = 0
            total = _content_length(resp)
            origin = _Origin.from_response(url, resp, total)
            write_json(asdict(origin), meta)
        else:
            raise SourceFailed(describe_status(resp, settings))
        bar.reset(total=total)
        bar.update(offset)
        with open(part, "ab" if offset else "wb") as fh:
            for block in _body(resp):
                fh.write(block)
                bar.update(len(block))
        size = part.stat().st_size
        if total is not None and size > total:
            log.warning("%s: got %s bytes of a %s-byte file; restarting from zero", url, f"{size:,}", f"{total:,}")
            return False
        if total is not None and size < total:
            raise _Dropped(f"the body ended at byte {size:,} of {total:,}")
        return True


def _body(resp: requests.Response) -> Iterator[bytes]:
    """The raw bytes of the body (never content-decoded); a broken connection becomes _Dropped."""
    try:
        yield from resp.raw.stream(_NET_CHUNK, decode_content=False)
    except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError) as err:
        raise _Dropped(short(err)) from err


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None
