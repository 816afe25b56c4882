"""`python -m ant download`: one raw file from an ordered list of mirrors, verified, resumable and atomic.

    python -m ant download --out resources/amazon2018/X.csv --url https://mirror-a/X.csv --url /local/copy/X.csv

The flags are those of `ant.data.download.mirrors.fetch`, whose docstring is the contract.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ant.data.download.mirrors import fetch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="where the verified file goes")
    parser.add_argument(
        "--url",
        dest="urls",
        action="append",
        required=True,
        metavar="URL",
        help="a source (http(s) URL, file:// URL or path); repeat for mirrors, tried in order",
    )
    parser.add_argument("--sha256", help="expected sha256 of the file (hex); a mismatch is an error")
    parser.add_argument("--retries", type=_non_negative(int), default=5, help="retries per source (default 5)")
    parser.add_argument(
        "--backoff-s", type=_non_negative(float), default=2.0, help="backoff factor in seconds (default 2.0)"
    )
    parser.add_argument(
        "--timeout-s", type=_positive_float, default=60.0, help="connect and read timeout in seconds (default 60)"
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar on stderr"
    )


def run(args: argparse.Namespace) -> int:
    fetch(
        args.urls,
        args.out,
        sha256=args.sha256,
        retries=args.retries,
        backoff_s=args.backoff_s,
        timeout_s=args.timeout_s,
        progress=args.progress,
    )
    return 0


def _non_negative(kind: Callable[[str], float]) -> Callable[[str], float]:
    def convert(text: str) -> float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value
