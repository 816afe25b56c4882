"""The download step against a real HTTP server on 127.0.0.1 with injected faults (tests/http_server.py)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from pathlib import Path

import pytest
from http_server import Drop, FaultyServer, Hangup, Stall, Status, WrongRange, refused_url
from hypothesis import given
from hypothesis import strategies as st

from ant.cli import main
from ant.data.download.mirrors import fetch
from ant.data.download.resume import ContentRange, parse_content_range, partial_paths
from ant.data.download.verify import GzipVerifier
from ant.errors import UserError

FAST = {"retries": 3, "backoff_s": 0.01, "timeout_s": 2.0, "progress": False}
BODY = os.urandom(300_000)  # several network chunks, so a drop lands in the middle of the body
GZ = gzip.compress(os.urandom(50_000) + b"x" * 200_000)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FaultyServer:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never route the test server through a proxy
    with FaultyServer() as srv:
        yield srv


def leftovers(dest: Path) -> list[str]:
    """Everything in dest's folder: the output itself and any hidden temporary or partial file."""
    return sorted(p.name for p in dest.parent.iterdir())


def assert_nothing_at(dest: Path) -> None:
    assert not dest.exists(), f"{dest} exists after a failure"


# ---------------------------------------------------------------- plain success, mirrors ----------------
def test_downloads_byte_identical_and_leaves_no_temp_files(server, tmp_path):
    server.add("/f.bin", BODY)
    dest = tmp_path / "out" / "f.bin"
    assert fetch([server.url("/f.bin")], dest, **FAST) == server.url("/f.bin")
    assert dest.read_bytes() == BODY
    assert leftovers(dest) == ["f.bin"]
    (request,) = server.requests
    assert "Range" not in request.headers
    assert request.headers["Accept-Encoding"] == "identity"  # sizes and offsets are of the file's own bytes


def test_first_working_mirror_wins_and_later_ones_are_not_asked(server, tmp_path):
    server.add("/a", BODY)
    server.add("/b", b"other")
    assert fetch([server.url("/a"), server.url("/b")], tmp_path / "f", **FAST) == server.url("/a")
    assert server.requests_to("/b") == []


def test_404_on_first_mirror_moves_to_second_without_retrying(server, tmp_path):
    server.add("/good", BODY)
    dest = tmp_path / "f.bin"
    assert fetch([server.url("/missing"), server.url("/good")], dest, **FAST) == server.url("/good")
    assert dest.read_bytes() == BODY
    assert len(server.requests_to("/missing")) == 1  # a 404 is an answer, not a hiccup


def test_refused_connection_moves_to_next_mirror_at_once(server, tmp_path, caplog):
    server.add("/good", BODY)
    dest = tmp_path / "f.bin"
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        assert fetch([refused_url(), server.url("/good")], dest, **FAST) == server.url("/good")
    assert dest.read_bytes() == BODY
    # nothing listens there: retrying would only delay the next mirror (urllib3 logs each retry it makes)
    assert not [r for r in caplog.records if r.name.startswith("urllib3") and "Retrying" in r.getMessage()]


def test_connection_reset_before_the_response_is_retried(server, tmp_path, caplog):
    server.add("/f", BODY, faults=[Hangup()])
    dest = tmp_path / "f.bin"
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    assert [r for r in caplog.records if r.name.startswith("urllib3") and "Retrying" in r.getMessage()]


# ---------------------------------------------------------------- status retries ------------------------
def test_500_then_success(server, tmp_path):
    server.add("/f", BODY, faults=[Status(500), Status(502)])
    dest = tmp_path / "f"
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    assert len(server.requests_to("/f")) == 3


def test_503_with_retry_after_waits_as_told(server, tmp_path):
    server.add("/f", BODY, faults=[Status(503, {"Retry-After": "1"})])
    dest = tmp_path / "f"
    fetch([server.url("/f")], dest, **FAST)  # backoff 0.01 s: only Retry-After explains a 1 s pause
    assert dest.read_bytes() == BODY
    first, second = server.requests_to("/f")
    assert second.time - first.time >= 0.9


def test_exhausted_status_retries_move_to_next_mirror(server, tmp_path):
    server.add("/busy", b"", faults=[Status(503)] * 10)
    server.add("/good", BODY)
    dest = tmp_path / "f"
    assert fetch([server.url("/busy"), server.url("/good")], dest, **{**FAST, "retries": 2}) == server.url("/good")
    assert len(server.requests_to("/busy")) == 3  # the first try and 2 retries


# ---------------------------------------------------------------- resume --------------------------------
@pytest.mark.parametrize(
    ("etag", "last_modified", "if_range"),
    [
        ('"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", '"v1"'),
        ('W/"weak"', "Mon, 01 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 GMT"),  # weak ETag: not for If-Range
        (None, "Mon, 01 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 GMT"),
        (None, None, None),  # no validator: resumed within the run, checked by the total size
    ],
)
def test_dropped_connection_resumes_with_range(server, tmp_path, etag, last_modified, if_range):
    server.add("/f", BODY, etag=etag, last_modified=last_modified, faults=[Drop(after=123_456)])
    dest = tmp_path / "f.bin"
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    first, resumed = server.requests_to("/f")
    assert "Range" not in first.headers
    assert resumed.headers["Range"] == "bytes=123456-"  # exactly the bytes written before the drop
    assert resumed.headers.get("If-Range") == if_range
    assert leftovers(dest) == ["f.bin"]


def test_several_drops_each_resume_from_the_bytes_written(server, tmp_path):
    server.add("/f", BODY, faults=[Drop(after=70_000), Drop(after=70_000), Drop(after=70_000)])
    dest = tmp_path / "f.bin"
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    offsets = [r.headers.get("Range") for r in server.requests_to("/f")]
    assert offsets[0] is None and len(set(offsets[1:])) == 3  # every resume starts further on


def test_read_timeout_in_the_middle_of_the_body_resumes(server, tmp_path):
    server.add("/f", BODY, faults=[Stall(after=150_000, seconds=1.5)])
    dest = tmp_path / "f.bin"
    fetch([server.url("/f")], dest, **{**FAST, "timeout_s": 0.5})
    assert dest.read_bytes() == BODY
    resumed = server.requests_to("/f")[1]
    assert 0 < int(resumed.headers["Range"].removeprefix("bytes=").removesuffix("-")) <= 150_000


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.add("/f", BODY, honor_range=False, faults=[Drop(after=100_000)])
    dest = tmp_path / "f.bin"
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY  # the 200 body was written from byte 0, not appended
    first, second = server.requests_to("/f")  # and at once: no wasted third download
    assert "Range" in second.headers


def test_206_from_the_wrong_offset_restarts_from_zero(server, tmp_path):
    server.add("/f", BODY, faults=[Drop(after=100_000), WrongRange()])
    dest = tmp_path / "f.bin"
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    ranges = [r.headers.get("Range") for r in server.requests_to("/f")]
    assert ranges[0] is None and ranges[1] is not None and ranges[2] is None


def test_drops_without_progress_give_up_keep_the_partial_and_the_next_run_resumes(server, tmp_path):
    server.add("/f", BODY, faults=[Drop(after=100_000)] + [Drop(after=0)] * 3)
    dest = tmp_path / "f.bin"
    with pytest.raises(UserError, match="partial data is kept") as err:
        fetch([server.url("/f")], dest, **{**FAST, "retries": 2})
    assert server.url("/f") in str(err.value)
    assert_nothing_at(dest)
    part, _ = partial_paths(dest)
    kept = part.stat().st_size
    assert 0 < kept < len(BODY) and part.read_bytes() == BODY[:kept]

    server.requests.clear()
    fetch([server.url("/f")], dest, **FAST)  # a later run: the server works again
    assert dest.read_bytes() == BODY
    (request,) = server.requests
    assert request.headers["Range"] == f"bytes={kept}-" and request.headers["If-Range"] == '"v1"'
    assert leftovers(dest) == ["f.bin"]


def test_partial_of_a_changed_file_is_not_spliced(server, tmp_path):
    server.add("/f", BODY, faults=[Drop(after=100_000), Drop(after=0)])
    dest = tmp_path / "f.bin"
    with pytest.raises(UserError):
        fetch([server.url("/f")], dest, **{**FAST, "retries": 0})
    new_body = os.urandom(len(BODY))
    server.add("/f", new_body, etag='"v2"', last_modified="Tue, 02 Jan 2024 00:00:00 GMT")
    server.requests.clear()
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == new_body  # If-Range did not match: the server sent all of the new file
    assert server.requests[0].headers["If-Range"] == '"v1"'


def test_partial_from_another_mirror_is_not_resumed(server, tmp_path):
    server.add("/a", BODY, faults=[Drop(after=100_000), Drop(after=0)])
    server.add("/b", BODY)
    dest = tmp_path / "f.bin"
    with pytest.raises(UserError):
        fetch([server.url("/a")], dest, **{**FAST, "retries": 0})
    fetch([server.url("/b")], dest, **FAST)
    assert dest.read_bytes() == BODY
    assert "Range" not in server.requests_to("/b")[0].headers


def test_complete_partial_is_recognised_by_416(server, tmp_path):
    server.add("/f", BODY, faults=[Drop(after=100_000), Drop(after=0)])
    dest = tmp_path / "f.bin"
    with pytest.raises(UserError):
        fetch([server.url("/f")], dest, **{**FAST, "retries": 0})
    part, _ = partial_paths(dest)
    part.write_bytes(BODY)  # as if the body had arrived and the process died before verifying it
    server.requests.clear()
    fetch([server.url("/f")], dest, **FAST)
    assert dest.read_bytes() == BODY
    (request,) = server.requests  # one ranged request, answered 416: nothing downloaded again
    assert request.headers["Range"] == f"bytes={len(BODY)}-"


# ---------------------------------------------------------------- verification --------------------------
def test_truncated_gzip_is_rejected_and_nothing_is_left(server, tmp_path):
    server.add("/meta.json.gz", GZ[: len(GZ) // 2])  # served whole: the transfer is fine, the file is not
    dest = tmp_path / "meta.json.gz"
    with pytest.raises(UserError) as err:
        fetch([server.url("/meta.json.gz")], dest, **FAST)
    message = str(err.value)
    assert "meta.json.gz" in message and "truncated" in message and "retry" in message
    assert_nothing_at(dest)
    assert leftovers(dest) == []


def test_corrupt_gzip_on_first_mirror_falls_back_to_a_good_one(server, tmp_path):
    broken = bytearray(GZ)
    broken[-8] ^= 0xFF  # the CRC
    server.add("/a.gz", bytes(broken))
    server.add("/b.gz", GZ)
    dest = tmp_path / "meta.json.gz"
    assert fetch([server.url("/a.gz"), server.url("/b.gz")], dest, **FAST) == server.url("/b.gz")
    assert dest.read_bytes() == GZ


def test_multi_member_and_double_gzip_are_valid(server, tmp_path):
    multi = gzip.compress(b"first\n") + gzip.compress(b"second\n") + b"\0" * 16
    double = gzip.compress(gzip.compress(b'{"asin": "B0"}\n'))
    server.add("/multi.gz", multi)
    server.add("/double.gz", double)
    fetch([server.url("/multi.gz")], tmp_path / "multi.json.gz", **FAST)
    fetch([server.url("/double.gz")], tmp_path / "double.json.gz", **FAST)
    assert (tmp_path / "multi.json.gz").read_bytes() == multi
    assert (tmp_path / "double.json.gz").read_bytes() == double


def test_sha256_mismatch_is_an_error_and_a_match_passes(server, tmp_path):
    server.add("/f", BODY)
    dest = tmp_path / "f.bin"
    wrong = "0" * 64
    with pytest.raises(UserError, match=f"sha256 mismatch: expected {wrong}"):
        fetch([server.url("/f")], dest, sha256=wrong, **FAST)
    assert_nothing_at(dest)
    assert leftovers(dest) == []
    fetch([server.url("/f")], dest, sha256=hashlib.sha256(BODY).hexdigest().upper(), **FAST)
    assert dest.read_bytes() == BODY


def test_malformed_sha256_is_refused_before_any_request(server, tmp_path):
    server.add("/f", BODY)
    with pytest.raises(UserError, match="not a sha256"):
        fetch([server.url("/f")], tmp_path / "f", sha256="abc", **FAST)
    assert server.requests == []


# ---------------------------------------------------------------- local sources -------------------------
@pytest.mark.parametrize("form", ["path", "file_url"])
def test_local_copy_goes_through_the_same_verification(tmp_path, form):
    source = tmp_path / "src dir" / "meta_X.json.gz"
    source.parent.mkdir()
    source.write_bytes(GZ)
    location = str(source) if form == "path" else source.as_uri()
    dest = tmp_path / "out" / "meta_X.json.gz"
    assert fetch([location], dest, sha256=hashlib.sha256(GZ).hexdigest(), **FAST) == location
    assert dest.read_bytes() == GZ
    assert leftovers(dest) == ["meta_X.json.gz"]

    source.write_bytes(GZ[:-3])
    dest.unlink()
    with pytest.raises(UserError, match="truncated"):
        fetch([location], dest, **FAST)
    assert_nothing_at(dest)
    assert leftovers(dest) == []


def test_missing_local_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "Food.csv"
    dest = tmp_path / "out" / "Food.csv"
    with pytest.raises(UserError) as err:
        fetch([str(missing), missing.as_uri()], dest, **FAST)
    message = str(err.value)
    assert message.count(f"local file {missing} does not exist") == 2
    assert "place it at" in message
    assert_nothing_at(dest)


def test_local_file_behind_a_failing_mirror(server, tmp_path):
    source = tmp_path / "Food.csv"
    source.write_bytes(b"item,user,rating,timestamp\n")
    dest = tmp_path / "out" / "Food.csv"
    assert fetch([server.url("/gone"), str(source)], dest, **FAST) == str(source)
    assert dest.read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- all sources fail ----------------------
def test_all_mirrors_failing_lists_every_url_and_what_to_do(server, tmp_path):
    server.add("/busy", b"", faults=[Status(503)] * 10)
    urls = [server.url("/missing"), refused_url(), server.url("/busy"), str(tmp_path / "absent.csv")]
    dest = tmp_path / "out" / "Food.csv"
    with pytest.raises(UserError) as err:
        fetch(urls, dest, **{**FAST, "retries": 1})
    message = str(err.value)
    lines = message.splitlines()
    for i, (url, reason) in enumerate(
        zip(urls, ["HTTP 404", "connection refused", "HTTP 503", "does not exist"], strict=True), start=1
    ):
        assert any(line.startswith(f"  {i}. {url}: ") and reason in line for line in lines), (url, message)
    assert "check the network" in message and "mirrors: [...]" in message and f"place it at {dest}" in message
    assert_nothing_at(dest)


# ---------------------------------------------------------------- CLI -----------------------------------
def test_cli_end_to_end(server, tmp_path, caplog):
    server.add("/meta.json.gz", GZ, faults=[Status(500), Drop(after=1000)])
    dest = tmp_path / "resources" / "amazon2018" / "meta_X.json.gz"
    flags = ["--retries", "3", "--backoff-s", "0.01", "--timeout-s", "5", "--no-progress"]
    ok = ["download", "--out", str(dest), f"--url={server.url('/missing')}", f"--url={server.url('/meta.json.gz')}"]
    assert main(ok + ["--sha256", hashlib.sha256(GZ).hexdigest(), *flags]) == 0
    assert dest.read_bytes() == GZ

    dest.unlink()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["download", "--out", str(dest), f"--url={server.url('/missing')}", *flags]) == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert server.url("/missing") in record.getMessage() and "HTTP 404" in record.getMessage()
    assert_nothing_at(dest)


def test_cli_rejects_bad_numbers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["download", "--out", str(tmp_path / "f"), "--url=x", "--retries", "-1"])
    assert "must be >= 0" in capsys.readouterr().err


# ---------------------------------------------------------------- pure functions ------------------------
@given(st.integers(0, 2**53), st.integers(0, 2**53), st.one_of(st.none(), st.integers(1, 2**53)))
def test_content_range_round_trip(start, length, total):
    end = start + length
    text = f"bytes {start}-{end}/{'*' if total is None else total}"
    parsed = parse_content_range(text)
    if total is not None and end >= total:
        assert parsed is None  # a range past the end of the file is malformed
    else:
        assert parsed == ContentRange(start, end, total)


@given(st.integers(0, 2**53))
def test_content_range_unsatisfied(total):
    assert parse_content_range(f"bytes */{total}") == ContentRange(None, None, total)


@given(st.text(max_size=40))
def test_content_range_never_crashes_and_only_accepts_byte_ranges(text):
    parsed = parse_content_range(text)
    assert parsed is None or "bytes" in text.lower()


@pytest.mark.parametrize("text", [None, "", "bytes 5-3/10", "bytes 0-9/5", "items 0-1/2", "bytes 1-2", "bytes */*"])
def test_content_range_rejects_malformed(text):
    assert parse_content_range(text) is None


def gzip_verdict(data: bytes, chunk: int) -> str | None:
    verifier = GzipVerifier()
    try:
        for i in range(0, len(data), chunk):
            verifier.feed(data[i : i + chunk])
        verifier.close()
    except ValueError as err:
        return str(err)
    return None


def reference_accepts(data: bytes) -> bool:
    try:
        gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False
    return True


@given(
    members=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    padding=st.sampled_from([b"", b"\0", b"\0" * 600]),
    cut=st.floats(0, 1),
    chunk=st.integers(1, 5000),
    level=st.integers(0, 9),
)
def test_gzip_verifier_agrees_with_the_gzip_module(members, padding, cut, chunk, level):
    whole = b"".join(gzip.compress(m, compresslevel=level, mtime=0) + padding for m in members)
    assert gzip_verdict(whole, chunk) is None
    prefix = whole[: int(len(whole) * cut)]
    if prefix.strip(b"\0"):  # an empty file is valid to gzip.decompress, not to us
        assert (gzip_verdict(prefix, chunk) is None) == reference_accepts(prefix)


@given(members=st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=3), chunk=st.integers(1, 4096))
def test_gzip_verifier_rejects_bad_checksums_and_trailing_garbage(members, chunk):
    whole = b"".join(gzip.compress(m, mtime=0) for m in members)
    for position in (-8, -5, -4, -1):  # inside the CRC32 and the length of the last member
        broken = bytearray(whole)
        broken[position] ^= 0x01
        assert gzip_verdict(bytes(broken), chunk) is not None
    assert "trailing data" in (gzip_verdict(whole + b"garbage", chunk) or "")
