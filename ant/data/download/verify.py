"""Verify a complete file and only then publish it at its destination (an atomic rename).

One pass over the file: the optional sha256, and for names ending in `.gz` a full stream decompression of
every gzip member (CRC and length). A file that fails is deleted with its partial data (SourceFailed), so
nothing is ever at the destination after a failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from pathlib import Path

from ant.data.download.failures import SourceFailed

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # reading local files


class GzipVerifier:
    """Stream-decompress one or more concatenated gzip members and check each one's CRC and length.

    Feed the file in chunks, then call `close()`. Raises ValueError for a file that is not gzip, a bad
    checksum, a truncated member or trailing garbage. Zero bytes after a member are padding (as in the
    `gzip` module). A member that decompresses to gzip again (a double-gzipped file) is valid gzip.
    """

    _MAX_OUT = 1 << 22  # bound memory however well the data compresses

    def __init__(self) -> None:
        self.members = 0
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._in_member = False  # bytes of the current member have been fed

    def feed(self, data: bytes) -> None:
        while data:
            if not self._in_member:
                data = data.lstrip(b"\0")
                if not data:
                    return
                self._in_member = True
            try:
                self._inflate.decompress(data, self._MAX_OUT)
                while self._inflate.unconsumed_tail:
                    self._inflate.decompress(self._inflate.unconsumed_tail, self._MAX_OUT)
            except zlib.error as err:
                raise ValueError(self._where(err)) from err
            if not self._inflate.eof:
                return
            data = self._inflate.unused_data
            self.members += 1
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._in_member = False

    def close(self) -> None:
        if self._in_member:
            try:
                self._inflate.flush()  # input may be consumed with output still pending inside zlib
            except zlib.error as err:
                raise ValueError(self._where(err)) from err
            if not self._inflate.eof:
                raise ValueError(f"gzip member {self.members + 1} is truncated (the file ends inside it)")
            self.members += 1
            self._in_member = False
        if self.members == 0:
            raise ValueError("the file is empty")

    def _where(self, err: zlib.error) -> str:
        if self.members and "header" in str(err):
            return f"trailing data after gzip member {self.members} is not gzip ({err})"
        return f"gzip member {self.members + 1} is corrupt ({err})"


def publish(tmp: Path, dest: Path, sha256: str | None, *, source: str, cleanup: tuple[Path, ...]) -> None:
    """Verify the complete file `tmp` and rename it onto `dest`; on failure delete `cleanup` and say why."""
    try:
        digest = _verify(tmp, dest, sha256)
    except SourceFailed:
        for path in cleanup:
            path.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    for path in cleanup:
        path.unlink(missing_ok=True)
    log.info("saved %s from %s (%s bytes, verified, sha256 %s)", dest, source, f"{dest.stat().st_size:,}", digest)


def _verify(path: Path, dest: Path, sha256: str | None) -> str:
    """One pass over the file: its sha256 and, for .gz outputs, a full decompression. Returns the digest."""
    digest = hashlib.sha256()
    gzip = GzipVerifier() if dest.name.endswith(".gz") else None
    try:
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
                if gzip is not None:
                    gzip.feed(block)
        if gzip is not None:
            gzip.close()
    except ValueError as err:
        raise SourceFailed(
            f"{dest.name} is not a valid gzip file: {err}. The download is truncated or corrupt; its partial "
            f"data was deleted, so retrying starts afresh (delete any leftover {dest.parent}/.{dest.name}.* too)"
        ) from err
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise SourceFailed(f"sha256 mismatch: expected {sha256.lower()}, got {digest.hexdigest()}")
    return digest.hexdigest()
