"""Fetching an item's images: per URL its bytes (http, https, file), processed, or the cause of the failure.

An item's first `per_item` slots are fetched (items.parquet: image_urls = each slot's primary URL, the high-res
one; image_fallback_urls = its low-res counterpart or null); a slot tries its primary URL and, only if that
fails, its fallback. The status of each URL tried is one of:
  ok, bad_url, scheme_refused (not in --schemes: never contacted), not_found (file:// path missing),
  http_<code>, timeout, connection_error, ssl_error, redirect_refused, too_many_redirects, too_large (over
  --max-bytes), io_error (a local file that cannot be read), unexpected_error (a bug; logged), or one of the
  image statuses of ant.images.process.
Transient failures (timeout, connection_error, http_429, http_5xx) are retried with exponential backoff
(Retry-After honoured, up to a minute).

Politeness: a bounded thread pool (--workers) and at most --per-host requests in flight per host (host:port).
Redirects are followed by hand, hop by hop, at most 5: only to http or https (a redirect to file:// would let a
remote server make us read local files), and to another host only with --cross-host-redirects (the default,
as image CDNs redirect between their own hosts); each hop takes its own host's politeness slot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
import urllib3

from ant.images.process import BadImage, process_image
from ant.images.settings import FetchSettings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_RETRY_AFTER_S = 60.0
WEB_SCHEMES = ("http", "https")
USER_AGENT = "ant-fetch-images/1 (research; https://github.com/ant-recsys)"

Slots = list[tuple[str | None, str | None]]  # an item's image slots: (primary URL, fallback URL) each


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
