"""Download (or copy) one raw file from an ordered list of mirrors, verified, resumable and atomic.

Contract of `fetch(urls, dest)`:
  - Sources are tried in order: http(s) URLs, file:// URLs and plain paths. A 404, a refused connection,
    exhausted retries, a broken file or a checksum mismatch on one source moves on to the next; when every
    source failed, `UserError` lists each one with its failure and says what to do.
  - An HTTP source is fetched by one session (ant.data.download.session: retries, backoff, timeouts) and
    resumes a dropped connection (ant.data.download.resume); a local one is copied.
  - Every file is verified before it is published (ant.data.download.verify): the optional sha256, and for
    names ending in `.gz` every gzip member. After any failure nothing is at `dest`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ant.data.download.failures import SourceFailed
from ant.data.download.resume import fetch_http
from ant.data.download.session import Settings, http_session
from ant.data.download.verify import CHUNK, publish
from ant.data.sources import local_path
from ant.errors import UserError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> str:
    """Put the file from the first working source of `urls` at `dest`, verified; return that source."""
    dest = Path(dest)
    if not urls:
        raise UserError(f"{dest}: no source given (pass at least one --url)")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise UserError(f"{dest}: --sha256 {sha256!r} is not a sha256 digest (64 hexadecimal characters)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the folder of {dest}: {err}") from err
    settings = Settings(retries, backoff_s, timeout_s, progress)
    failures: list[tuple[str, str]] = []
    with http_session(settings) as session, _progress_bar(dest, settings) as bar:
        for url in urls:
            try:
                source = local_path(url)
            except ValueError as err:
                failures.append((url, str(err).removeprefix(f"{url}: ")))
                continue
            log.info("%s <- %s", dest, url)
            try:
                if source is None:
                    fetch_http(session, url, dest, sha256, settings, bar)
                else:
                    _fetch_local(source, dest, sha256, settings, bar)
            except SourceFailed as err:
                log.warning("%s failed: %s", url, err)
                failures.append((url, str(err)))
                continue
            except OSError as err:  # our own disk (full, read-only): another mirror would not help
                raise UserError(f"cannot write {dest} (or its partial file next to it): {err}") from err
            return url
    raise UserError(_all_failed_message(dest, failures))


def _fetch_local(source: Path, dest: Path, sha256: str | None, settings: Settings, bar: tqdm) -> None:
    if not source.exists():
        raise SourceFailed(f"local file {source.resolve()} does not exist")
    if not source.is_file():
        raise SourceFailed(f"{source.resolve()} is not a file")
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            bar.reset(total=source.stat().st_size)
            while block := src.read(CHUNK):
                out.write(block)
                bar.update(len(block))
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SourceFailed(f"cannot copy {source}: {err}") from err
    publish(tmp, dest, sha256, source=str(source), cleanup=(tmp,))


def _progress_bar(dest: Path, settings: Settings) -> tqdm:
    """A bar in bytes on stderr (the rule's log); sparse updates when stderr is a file, not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(
        desc=dest.name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not settings.progress,
        mininterval=0.5 if interactive else 30.0,
        delay=2.0,  # only downloads that take a while get a bar
        dynamic_ncols=interactive,
    )


def _all_failed_message(dest: Path, failures: list[tuple[str, str]]) -> str:
    lines = [f"could not get {dest} from any of its {len(failures)} source(s):"]
    lines += [f"  {i}. {url}: {reason}" for i, (url, reason) in enumerate(failures, 1)]
    lines.append(
        "What to do: check the network connection (and any proxy settings); if a mirror moved, put a working one "
        "first in the config, `releases: {<release>: {mirrors: [...]}}` (or give the task its own "
        f"`ratings:`/`meta:` location); or download the file by hand and place it at {dest}."
    )
    return "\n".join(lines)
