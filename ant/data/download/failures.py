"""How one source's attempt fails: `SourceFailed` (try the next source), with a one-line reason for the report.

`describe_status` and `describe_error` name an HTTP status, or the innermost cause of a request that got no
response (refused, unresolved host, timeouts), and how many retries were spent on it.
"""

from __future__ import annotations

import requests
import urllib3
from urllib3.exceptions import MaxRetryError

from ant.data.download.session import RETRY_STATUSES, Settings


class SourceFailed(Exception):
    """This source cannot give us the file: try the next one."""


def describe_status(resp: requests.Response, settings: Settings) -> str:
    text = f"HTTP {resp.status_code} {resp.reason or ''}".rstrip()
    if resp.status_code in RETRY_STATUSES:
        text += f" (gave up after {settings.retries} retries)"
    return text


def describe_error(err: BaseException, settings: Settings) -> str:
    """A short reason for a request that got no response, from the innermost cause we recognise."""
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__ or _reason(cause)
    if any(isinstance(exc, ConnectionRefusedError) for exc in chain):
        return "connection refused"
    for exc in chain:
        if isinstance(exc, urllib3.exceptions.NameResolutionError):
            return f"cannot resolve the host name ({short(exc)})"
        if isinstance(exc, urllib3.exceptions.NewConnectionError):
            return f"cannot connect ({short(exc)}) (gave up after {settings.retries} retries)"
        if isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, requests.ConnectTimeout)):
            return f"connection timed out after {settings.timeout_s:g} s (gave up after {settings.retries} retries)"
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, requests.ReadTimeout)):
            return f"no response within {settings.timeout_s:g} s (gave up after {settings.retries} retries)"
    reason = next((exc.reason for exc in chain if isinstance(exc, MaxRetryError) and exc.reason), err)
    return f"{short(reason)} (gave up after {settings.retries} retries)"


def _reason(err: BaseException) -> BaseException | None:
    # requests wraps urllib3's MaxRetryError in its first argument; MaxRetryError keeps the error in .reason
    reason = getattr(err, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    return next((a for a in getattr(err, "args", ()) if isinstance(a, BaseException)), None)


def short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."
