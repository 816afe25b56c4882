"""The HTTP session every source of one download shares: retries, backoff, timeouts and headers.

HTTP status retries (429, 500, 502, 503, 504) and connection errors are retried by a urllib3 `Retry` mounted
on the session (exponential backoff, `Retry-After` respected); a refused connection is not retried (the next
mirror is what helps). Bodies are asked for as they are stored (`Accept-Encoding: identity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from ant import __version__

RETRY_STATUSES = (429, 500, 502, 503, 504)
BACKOFF_MAX_S = 120.0


@dataclass(frozen=True)
class Settings:
    """How hard one download tries: the CLI's --retries, --backoff-s, --timeout-s and --progress."""

    retries: int
    backoff_s: float
    timeout_s: float
    progress: bool


class _RefusedFastRetry(Retry):
    """Retry that gives up at once on a refused connection.

    Nothing listens on that host and port, so waiting will not help (curl and wget do not retry it either);
    moving on to the next mirror is what helps. Resets, timeouts and DNS failures are still retried.
    """

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):  # type: ignore[no-untyped-def]
        if isinstance(error, NewConnectionError) and isinstance(error.__cause__, ConnectionRefusedError):
            raise MaxRetryError(_pool, url, error) from error  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)


def http_session(settings: Settings) -> requests.Session:
    retry = _RefusedFastRetry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=settings.backoff_s,
        backoff_max=BACKOFF_MAX_S,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand back the last response so the report can name its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"ant/{__version__} python-requests/{requests.__version__}"
    # Offsets, sizes and checksums are about the bytes of the file itself, never a transfer-compressed form.
    session.headers["Accept-Encoding"] = "identity"
    return session
