"""Shared pieces of the feature tests: items tables, real image bytes, tiny saved models, an HTTP server.

with ImageServer() as server:
    server.route("/a.jpg", body=jpeg(40, 30))
    server.route("/slow.jpg", body=jpeg(8, 8), delay=2.0)
    server.route("/moved", status=302, headers={"Location": "/a.jpg"})
    ... fetch server.url("/a.jpg") ...
    server.requests  # every request received, in order: (method, path, Host header)
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ant.data.ingest import ITEMS_RAW_SCHEMA
from ant.features.tiny_models import build_bert, build_swin

# items.parquet as `kcore` writes it: item_idx, then the columns of the ingest's items_raw
ITEMS_SCHEMA = pa.schema([pa.field("item_idx", pa.int32()), *ITEMS_RAW_SCHEMA])


def write_items(
    path: Path,
    texts: list[str] | None = None,
    prices: list[float | None] | None = None,
    images: list[list[tuple[str, str | None]]] | None = None,
) -> Path:
    """An items.parquet in the data stage's schema; `images` gives each item's (primary, fallback) slots."""
    n = len(next(x for x in (texts, prices, images) if x is not None))
    texts = texts if texts is not None else [f"item {i}." for i in range(n)]
    prices = prices if prices is not None else [None] * n
    images = images if images is not None else [[] for _ in range(n)]
    table = pa.table(
        {
            "item_idx": list(range(n)),
            "item_id": [f"B{i:08d}" for i in range(n)],
            "title": texts,
            "brand": [None] * n,
            "categories": [[] for _ in range(n)],
            "text": texts,
            "price_usd": prices,
            "image_urls": [[p for p, _ in slots] for slots in images],
            "image_fallback_urls": [[f for _, f in slots] for slots in images],
        },
        schema=ITEMS_SCHEMA,
    )
    pq.write_table(table, path)
    return path


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    return encode(picture(width, height, seed), "JPEG")


def png(width: int, height: int, seed: int = 0, mode: str = "RGB") -> bytes:
    return encode(picture(width, height, seed).convert(mode), "PNG")


def bomb_png(width: int, height: int) -> bytes:
    """A few kilobytes of PNG that decode to width x height pixels."""
    return encode(Image.new("1", (width, height)), "PNG")


def tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path]:
    bert = build_bert(root / "tiny-bert", seed, ["red", "cotton", "shirt", "guitar", "strings"])
    swin = build_swin(root / "tiny-swin", seed)
    return bert, swin


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the response line: a server that is too slow


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    host: str


class ImageServer:
    """A real ThreadingHTTPServer on 127.0.0.1 answering from a route table, recording every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests it was answering at one time
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"

    def route(self, path: str, **route: Any) -> None:
        self.routes[path] = Route(**route)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (the timeout tests) is expected, not a server error


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with server._lock:
                server.requests.append(Request("GET", self.path, self.headers.get("Host", "")))
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._answer(server.routes.get(self.path, Route(status=404, body=b"not found")))
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer(self, route: Route) -> None:
            if route.delay:
                time.sleep(route.delay)
            try:
                self.send_response(route.status)
                for key, value in route.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler
