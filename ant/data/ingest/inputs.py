"""Opening an ingest input: plain, gzip or gzip inside gzip, told apart by the bytes, never by the file name.

`open_input` gives the decompressed stream of every layer and the number of layers (for the statistics);
`sniff` says whether the content is empty and whether it is JSON lines (it starts with `{`) or CSV. A file
that cannot be decompressed (a truncated download) fails with one clear UserError, not a zlib traceback.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from ant.errors import UserError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_LAYERS = 3


class _Decompressed(io.RawIOBase):
    """A readable stream whose decompression errors become one clear UserError (truncated download...)."""

    def __init__(self, path: Path, layers: int) -> None:
        self._path = path
        self._files: list[BinaryIO] = [open(path, "rb")]
        for _ in range(layers):
            self._files.append(gzip.GzipFile(fileobj=self._files[-1], mode="rb"))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._files[-1].read(size)
        except (EOFError, OSError, zlib.error) as err:
            raise UserError(
                f"{self._path}: cannot decompress ({err}); the file is truncated or corrupt: "
                "delete it and download it again"
            ) from err

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        for f in reversed(self._files):
            f.close()
        super().close()


def gzip_layers(path: Path) -> int:
    """How many times the file is gzipped (0 = plain); a gzip inside a gzip is seen by its magic bytes."""
    layers = 0
    while True:
        with _Decompressed(path, layers) as stream:
            head = stream.read(2)
        if head != GZIP_MAGIC:
            return layers
        layers += 1
        if layers > MAX_GZIP_LAYERS:
            raise UserError(f"{path}: more than {MAX_GZIP_LAYERS} nested gzip layers; this is not a data file")


def open_input(path: str | Path) -> tuple[_Decompressed, int]:
    """The decompressed content of `path` and its number of gzip layers."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    layers = gzip_layers(path)
    if layers > 1:
        log.warning("%s is gzipped %d times; decompressing every layer", path, layers)
    return _Decompressed(path, layers), layers


def sniff(path: Path, layers: int) -> tuple[bool, bool]:
    """(is empty, is JSON lines): JSON lines start with `{` after any whitespace, anything else is CSV."""
    with _Decompressed(path, layers) as stream:
        head = stream.read(4096)
    return head == b"", head.lstrip().startswith(b"{")
