"""A real HTTP server on 127.0.0.1 (ThreadingHTTPServer in a thread) that serves files with injected faults.

    with FaultyServer() as server:
        server.add("/f.gz", data, faults=[Status(503, {"Retry-After": "1"}), Drop(after=1000), Hangup()])
        fetch([server.url("/f.gz")], dest)
        server.requests  # every request received: path, headers, time

Each request to a path consumes that path's next fault (in order); once they are used up, the file is
served normally. Files support single `Range: bytes=N-` requests with `If-Range` (ETag or Last-Modified),
like nginx, unless added with `honor_range=False`.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Status:
    """Answer with this status (and headers), no body."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """Send the headers and `after` bytes of the body, then close the connection."""

    after: int


@dataclass(frozen=True)
class Stall:
    """Send `after` bytes of the body, then stall for `seconds` before closing (a read timeout)."""

    after: int
    seconds: float


@dataclass(frozen=True)
class Hangup:
    """Close the connection without answering."""


@dataclass(frozen=True)
class WrongRange:
    """Answer a ranged request with a 206 for a range that starts at 0 instead of the one asked for."""


Fault = Status | Drop | Stall | Hangup | WrongRange


@dataclass
class Route:
    body: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = "Mon, 01 Jan 2024 00:00:00 GMT"
    honor_range: bool = True
    faults: list[Fault] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    time: float


class FaultyServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    def add(self, path: str, body: bytes, **route: object) -> Route:
        self.routes[path] = Route(body, **route)  # type: ignore[arg-type]
        return self.routes[path]

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def refused_url(path: str = "/file") -> str:
    """A URL on a port where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def _handler(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            with server._lock:
                server.requests.append(Request(self.path, dict(self.headers.items()), time.monotonic()))
                route = server.routes.get(self.path)
                fault = route.faults.pop(0) if route and route.faults else None
            if route is None:
                return self._empty(404)
            if isinstance(fault, Status):
                return self._empty(fault.code, fault.headers)
            if isinstance(fault, Hangup):
                self.close_connection = True
                return self.connection.shutdown(socket.SHUT_RDWR)
            body, start = route.body, self._range_start(route)
            if isinstance(fault, WrongRange) and start is not None:
                start = 0
                status = 206
            elif start is None:
                status = 200
            elif start >= len(body):
                return self._empty(416, {"Content-Range": f"bytes */{len(body)}"})
            else:
                status = 206
            piece = body[start or 0 :]
            self.send_response(status)
            self.send_header("Content-Length", str(len(piece)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.send_header("Accept-Ranges", "bytes" if route.honor_range else "none")
            self.end_headers()
            if isinstance(fault, (Drop, Stall)):
                self.wfile.write(piece[: fault.after])
                self.wfile.flush()
                if isinstance(fault, Stall):
                    time.sleep(fault.seconds)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(piece)

        def _range_start(self, route: Route) -> int | None:
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if not route.honor_range or match is None:
                return None
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range not in (route.etag, route.last_modified):
                return None  # the file changed since the client's copy: send all of it
            return int(match.group(1))

        def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
