"""Image fetch: Pillow verification and re-encoding, a real HTTP server with every kind of dead link, resume."""

import io
import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from features_helpers import ImageServer, bomb_png, jpeg, png, write_items
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageOps

from ant.cli import main
from ant.images import fetch_images
from ant.images.process import BadImage, process_image
from ant.images.settings import FetchSettings
from ant.images.shards import read_manifest, read_ok_images

PROCESS = {"max_pixels": 1_000_000, "max_side": 64, "quality": 90}


def decode(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# ---------------------------------------------------------------- one image -----------------------------
@given(width=st.integers(1, 300), height=st.integers(1, 300), fmt=st.sampled_from(["JPEG", "PNG"]))
@example(width=284, height=257, fmt="JPEG")  # JPEG draft decoding rounds 71x65 up: the aspect must not follow it
def test_resize_keeps_aspect_and_never_upscales(width, height, fmt):
    source = jpeg(width, height) if fmt == "JPEG" else png(width, height)
    out = decode(process_image(source, **PROCESS))
    assert out.format == "JPEG" and out.mode == "RGB"
    long_side = max(width, height)
    assert max(out.size) == min(long_side, 64)
    if long_side > 64:  # aspect ratio kept to the pixel
        assert abs(out.width / 64 * long_side - width) <= long_side / 64
        assert abs(out.height / 64 * long_side - height) <= long_side / 64
    else:
        assert out.size == (width, height)


def test_exif_orientation_is_applied_before_resizing():
    stored = Image.new("RGB", (1200, 400), (200, 30, 30))
    stored.paste((30, 30, 200), (0, 0, 600, 400))  # left half blue, right half red
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned 90 degrees clockwise: a portrait, blue on top
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    out = decode(process_image(buffer.getvalue(), **PROCESS))
    assert out.size == (21, 64)  # 400x1200 shown, long side 64
    expected = ImageOps.exif_transpose(decode(buffer.getvalue())).resize(out.size, Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(out, dtype=float) - np.asarray(expected, dtype=float)).mean() < 4
    top, bottom = np.asarray(out)[5].mean(0), np.asarray(out)[-5].mean(0)
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]


def test_reencoding_is_deterministic_and_flattens_transparency():
    source = png(100, 50, seed=3, mode="RGBA")
    assert process_image(source, **PROCESS) == process_image(source, **PROCESS)
    clear = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(clear, "PNG")
    pixels = np.asarray(decode(process_image(clear.getvalue(), **PROCESS)))
    assert pixels.min() >= 250  # a fully transparent image comes out white, not black


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (jpeg(200, 200)[:1500], "truncated_image"),
        (b"<!doctype html><html><body>Sorry, this page is not available</body></html>", "invalid_image"),
        (b"", "invalid_image"),
        (bomb_png(1100, 1000), "decompression_bomb"),
    ],
)
def test_bad_images_are_classified(data, status):
    with pytest.raises(BadImage) as err:
        process_image(data, **PROCESS)
    assert err.value.status == status


# ---------------------------------------------------------------- the server ----------------------------
SETTINGS = FetchSettings(
    per_item=4,
    max_side=64,
    max_bytes=200_000,
    max_pixels=1_000_000,
    timeout_s=0.4,
    retries=1,
    backoff_s=0.01,
    workers=4,
    per_host=2,
    shard_items=4,
)


def serve_every_case(server, other, tmp_path):
    """One item per case; returns the items' slots and the exact per-path request counts expected."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(20, 20))
    server.route("/good.jpg", body=jpeg(300, 200, seed=1))
    server.route("/good.png", body=png(40, 40, seed=2))
    server.route("/slow.jpg", body=jpeg(10, 10), delay=1.5)
    server.route("/truncated.jpg", body=jpeg(300, 300, seed=4)[:3000])
    server.route("/page.html", body=b"<html><body>captcha</body></html>", headers={"Content-Type": "text/html"})
    server.route("/bomb.png", body=bomb_png(2000, 2000))
    server.route("/huge.jpg", body=b"\xff" * 300_000)
    server.route("/error.jpg", status=500)
    server.route("/moved.jpg", status=301, headers={"Location": "/good.png"})
    server.route("/to-file.jpg", status=302, headers={"Location": secret.as_uri()})
    server.route("/to-other.jpg", status=302, headers={"Location": other.url("/good.jpg")})
    server.route("/loop.jpg", status=302, headers={"Location": "/loop.jpg"})
    other.route("/good.jpg", body=jpeg(50, 60, seed=5))
    u = server.url
    items = [
        [(u("/good.jpg"), None), (u("/good.png"), None)],  # two images
        [(u("/missing.jpg"), u("/good.png"))],  # 404, saved by its fallback
        [(u("/slow.jpg"), None)],  # timeout, retried once
        [(u("/truncated.jpg"), None)],
        [(u("/page.html"), None)],
        [(u("/bomb.png"), None)],
        [(u("/huge.jpg"), None)],
        [(u("/error.jpg"), None)],  # 500, retried once
        [(u("/moved.jpg"), None)],  # same-host redirect: followed
        [(u("/to-file.jpg"), None)],  # redirect to file://: refused, the file is never read
        [(u("/to-other.jpg"), None)],  # redirect to another host: followed by default
        [(u("/loop.jpg"), None)],
        [("ftp://127.0.0.1/x.jpg", None), ("gopher://127.0.0.1/x", None)],  # never contacted
        [],  # no image URLs at all
    ]
    expected_requests = Counter(
        {
            "/good.jpg": 1,
            "/good.png": 3,
            "/missing.jpg": 1,
            "/slow.jpg": 2,
            "/truncated.jpg": 1,
            "/page.html": 1,
            "/bomb.png": 1,
            "/huge.jpg": 1,
            "/error.jpg": 2,
            "/moved.jpg": 1,
            "/to-file.jpg": 1,
            "/to-other.jpg": 1,
            "/loop.jpg": 6,
        }
    )
    return items, expected_requests


def test_every_dead_link_is_counted_by_cause(tmp_path):
    with ImageServer() as server, ImageServer() as other:
        items, expected_requests = serve_every_case(server, other, tmp_path)
        write_items(tmp_path / "items.parquet", images=items)
        manifest = fetch_images(
            tmp_path / "items.parquet", tmp_path / "out", SETTINGS, stats_path=tmp_path / "stats.json"
        )
        assert Counter(server.paths()) == expected_requests  # nothing else was ever asked for
        assert {r.host for r in server.requests} == {server.netloc}
        assert other.paths() == ["/good.jpg"]  # exactly the one cross-host redirect

    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats == manifest["stats"]
    assert stats["by_status"] == {
        "ok": 5,
        "http_404": 1,
        "timeout": 1,
        "truncated_image": 1,
        "invalid_image": 1,
        "decompression_bomb": 1,
        "too_large": 1,
        "http_500": 1,
        "redirect_refused": 1,
        "too_many_redirects": 1,
        "scheme_refused": 2,
    }
    assert (stats["items"], stats["items_with_image"], stats["items_without_urls"]) == (14, 4, 1)
    assert (stats["slots"], stats["slots_ok"], stats["slots_ok_by_fallback"], stats["urls_tried"]) == (15, 5, 1, 16)

    rows = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    first = [r for r in rows if r["item_idx"] == 0]
    assert [(r["slot"], r["status"]) for r in first] == [(0, "ok"), (1, "ok")]
    assert decode(first[0]["bytes"]).size == (64, 43)  # 300x200 -> long side 64, JPEG
    saved = [r for r in rows if r["item_idx"] == 1]
    attempts = [(r["fallback"], r["status"], r["bytes"] is None) for r in saved]
    assert attempts == [(False, "http_404", True), (True, "ok", False)]


def test_cross_host_redirects_can_be_refused(tmp_path):
    with ImageServer() as server, ImageServer() as other:
        other.route("/good.jpg", body=jpeg(30, 30))
        server.route("/to-other.jpg", status=307, headers={"Location": other.url("/good.jpg")})
        server.route("/same.jpg", status=302, headers={"Location": server.url("/good.jpg")})
        server.route("/good.jpg", body=jpeg(30, 30))
        slots = [[(server.url("/to-other.jpg"), None)], [(server.url("/same.jpg"), None)]]
        write_items(tmp_path / "items.parquet", images=slots)
        settings = FetchSettings(**{**SETTINGS.__dict__, "cross_host_redirects": False})
        manifest = fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings)
        assert other.requests == []
        assert manifest["stats"]["by_status"] == {"ok": 1, "redirect_refused": 1}


def test_schemes_not_allowed_are_never_read(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg(10, 10))
    write_items(tmp_path / "items.parquet", images=[[(image.as_uri(), None)], [(image.as_uri() + ".missing", None)]])
    web_only = FetchSettings(**{**SETTINGS.__dict__, "schemes": ("http", "https")})
    web = fetch_images(tmp_path / "items.parquet", tmp_path / "web", web_only)["stats"]["by_status"]
    assert web == {"scheme_refused": 2}
    local = fetch_images(tmp_path / "items.parquet", tmp_path / "local", SETTINGS)["stats"]["by_status"]
    assert local == {"ok": 1, "not_found": 1}


def test_per_host_limit_holds_under_load(tmp_path):
    with ImageServer() as server:
        server.route("/a.jpg", body=jpeg(8, 8), delay=0.05)
        write_items(tmp_path / "items.parquet", images=[[(server.url("/a.jpg"), None)]] * 16)
        settings = FetchSettings(**{**SETTINGS.__dict__, "workers": 8, "per_host": 3})
        assert fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings)["stats"]["slots_ok"] == 16
        assert server.max_in_flight == 3  # the pool had 8 threads; the host never saw more than 3 at once


# ---------------------------------------------------------------- resume --------------------------------
class Interrupted(Exception):
    pass


def test_resume_fetches_only_missing_shards_and_ends_identical(tmp_path):
    with ImageServer() as server:
        for i in range(10):
            server.route(f"/{i}.jpg", body=jpeg(70 + i, 50, seed=i))
        items = [[(server.url(f"/{i}.jpg"), None)] for i in range(10)]
        write_items(tmp_path / "items.parquet", images=items)
        settings = FetchSettings(**{**SETTINGS.__dict__, "shard_items": 2})  # 5 shards

        fetch_images(tmp_path / "items.parquet", tmp_path / "full", settings, stats_path=tmp_path / "full.json")
        server.requests.clear()

        done = []

        def stop_after_two(shard):
            done.append(shard.number)
            if len(done) == 2:
                raise Interrupted

        with pytest.raises(Interrupted):
            fetch_images(tmp_path / "items.parquet", tmp_path / "resumed", settings, on_shard=stop_after_two)
        assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
        kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed").iterdir()}
        server.requests.clear()

        fetch_images(tmp_path / "items.parquet", tmp_path / "resumed", settings, stats_path=tmp_path / "resumed.json")
        assert sorted(server.paths()) == [f"/{i}.jpg" for i in range(4, 10)]  # only shards 2..4
        assert {n: (tmp_path / "resumed" / n).stat().st_mtime_ns for n in kept} == kept

    for name in [f"part-0000{i}.parquet" for i in range(5)] + ["manifest.json"]:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "full.json").read_bytes()


def test_changed_urls_refetch_only_their_shard_and_transient_failures_can_be_retried(tmp_path):
    with ImageServer() as server:
        for i in range(4):
            server.route(f"/{i}.jpg", body=jpeg(20, 20, seed=i))
        server.route("/flaky.jpg", status=503)
        items = [[(server.url(f"/{i}.jpg"), None)] for i in range(4)] + [[(server.url("/flaky.jpg"), None)]]
        write_items(tmp_path / "items.parquet", images=items)
        settings = FetchSettings(**{**SETTINGS.__dict__, "shard_items": 2, "retries": 0})
        fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings)

        items[1] = [(server.url("/3.jpg"), None)]  # shard 0 changes
        write_items(tmp_path / "items.parquet", images=items)
        server.requests.clear()
        fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings)
        assert sorted(server.paths()) == ["/0.jpg", "/3.jpg"]

        server.route("/flaky.jpg", body=jpeg(20, 20))  # the server is back
        server.requests.clear()
        manifest = fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings, retry_transient=True)
        assert server.paths() == ["/flaky.jpg"]  # only the shard holding the 503
        assert manifest["stats"]["by_status"] == {"ok": 5}


def test_reader_gives_ok_images_in_item_order(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg(30, 30))
    slots = [[(good.as_uri(), None), ("file:///nope.jpg", good.as_uri())], [], [(good.as_uri(), None)]]
    write_items(tmp_path / "items.parquet", images=slots)
    settings = FetchSettings(**{**SETTINGS.__dict__, "shard_items": 2})
    fetch_images(tmp_path / "items.parquet", tmp_path / "out", settings)
    manifest = read_manifest(tmp_path / "out" / "manifest.json")
    owner, blobs = read_ok_images(tmp_path / "out" / "manifest.json", manifest, 0, 3)
    assert owner.tolist() == [0, 0, 2] and all(decode(b).size == (30, 30) for b in blobs)
    assert read_ok_images(tmp_path / "out" / "manifest.json", manifest, 1, 2)[0].tolist() == []


# ---------------------------------------------------------------- CLI -----------------------------------
def test_cli_writes_manifest_and_stats_and_rejects_bad_input(tmp_path, caplog):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg(300, 100))
    write_items(tmp_path / "items.parquet", images=[[(good.as_uri(), None)]])
    out = tmp_path / "images"
    args = [
        "fetch-images",
        "--items",
        str(tmp_path / "items.parquet"),
        "--out-dir",
        str(out),
        "--stats",
        str(out / "stats.json"),
        "--max-side",
        "32",
        "--schemes",
        "file",
        "--no-cross-host-redirects",
    ]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["max_side"] == 32 and manifest["settings"]["schemes"] == ["file"]
    assert json.loads((out / "stats.json").read_text())["items_with_image"] == 1
    assert main(["fetch-images", "--items", str(tmp_path / "nowhere.parquet"), "--out-dir", str(out)]) == 1
    assert "items table not found" in caplog.text
