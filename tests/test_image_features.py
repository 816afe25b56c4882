"""Image features: the stored vector is the mean of Swin's pooled output over the item's loaded images."""

import io

import numpy as np
import pytest
import torch
from features_helpers import jpeg, png, tiny_models, write_items
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from ant.cli import main
from ant.features.encoders import pil_backend
from ant.features.image import Normaliser, StoredImages, item_means
from ant.features.store import load_features
from ant.images import fetch_images
from ant.images.settings import FetchSettings
from ant.images.shards import read_manifest, read_ok_images


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def fetched(tmp_path):
    """Items with 2, 0 (dead link), 1, 0 (no URL), 3 images, fetched from file:// URLs."""
    files = {}
    for name, data in {
        "a.jpg": jpeg(120, 80, 1),
        "b.png": png(30, 50, 2, "RGBA"),
        "c.jpg": jpeg(64, 64, 3),
        "d.png": png(200, 90, 4),
        "e.jpg": jpeg(17, 33, 5),
        "f.jpg": jpeg(90, 90, 6),
    }.items():
        files[name] = (tmp_path / name).as_uri()
        (tmp_path / name).write_bytes(data)
    dead = (tmp_path / "missing.jpg").as_uri()
    slots = [
        [(files["a.jpg"], None), (files["b.png"], None)],
        [(dead, None)],
        [(dead, files["c.jpg"])],
        [],
        [(files["d.png"], None), (files["e.jpg"], None), (files["f.jpg"], None), (files["a.jpg"], None)],
    ]
    items = write_items(tmp_path / "items.parquet", images=slots)
    settings = FetchSettings(per_item=3, max_side=96, shard_items=2)
    fetch_images(items, tmp_path / "images", settings)
    return items, tmp_path / "images" / "manifest.json"


def embed(items, manifest, out, swin, *extra):
    return main(
        [
            "embed-image",
            "--task",
            "T",
            "--items",
            str(items),
            "--images",
            str(manifest),
            "--out-dir",
            str(out),
            "--model",
            str(swin),
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--shard-items",
            "2",
            *extra,
        ]
    )


def direct_mean(swin, blobs):
    processor, model = AutoImageProcessor.from_pretrained(swin, **pil_backend()), AutoModel.from_pretrained(swin).eval()
    vectors = []
    with torch.no_grad():
        for blob in blobs:
            pixels = processor(images=Image.open(io.BytesIO(blob)).convert("RGB"), return_tensors="pt")["pixel_values"]
            vectors.append(model(pixel_values=pixels).pooler_output[0].numpy())
    return np.mean(vectors, axis=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_item_vector_is_the_mean_of_direct_calls_on_its_images(tmp_path, fetched, models, workers):
    items, manifest = fetched
    _, swin = models
    assert embed(items, manifest, tmp_path / "feat", swin, "--loader-workers", str(workers)) == 0
    features = load_features(tmp_path / "feat" / "manifest.json", items)
    assert features.values.shape == (5, 32) and features.values.dtype == np.float32
    assert features.present.tolist() == [True, False, True, False, True]
    np.testing.assert_array_equal(features.values[[1, 3]], 0.0)
    images = read_manifest(manifest)
    for item in (0, 2, 4):
        owner, blobs = read_ok_images(manifest, images, item, item + 1)
        assert len(blobs) == {0: 2, 2: 1, 4: 3}[item]  # per_item=3 drops item 4's fourth image
        np.testing.assert_allclose(features.values[item], direct_mean(swin, blobs), rtol=1e-4, atol=1e-5)
    assert features.manifest["encoder"]["pooling"] == "pooler_output"


def test_stale_image_manifest_is_refused(tmp_path, fetched, models, caplog):
    items, manifest = fetched
    _, swin = models
    write_items(items, texts=[f"other {i}" for i in range(6)])  # the task's items changed since the fetch
    assert embed(items, manifest, tmp_path / "feat", swin) == 1
    assert "another item list" in caplog.text


@given(
    owner=st.lists(st.integers(0, 5), min_size=0, max_size=20).map(sorted),
    seed=st.integers(0, 2**16),
)
def test_item_means_match_a_plain_loop(owner, seed):
    rng = np.random.default_rng(seed)
    owner = np.asarray(owner, dtype=np.int64)
    vectors = rng.normal(size=(len(owner), 3)).astype(np.float32)
    ok = rng.random(len(owner)) > 0.2
    values, present = item_means(vectors, ok, owner, 6)
    for item in range(6):
        mine = vectors[(owner == item) & ok]
        assert present[item] == (len(mine) > 0)
        np.testing.assert_allclose(values[item], mine.mean(axis=0) if len(mine) else 0.0, rtol=1e-6, atol=1e-6)


def test_resized_uint8_pixels_normalised_on_the_device_equal_the_processor(models):
    _, swin = models
    processor = AutoImageProcessor.from_pretrained(swin, **pil_backend())
    normalise = Normaliser.of(processor)
    assert normalise is not None and normalise.mean is not None and normalise.scale == pytest.approx(1 / 255)
    blobs = [jpeg(120, 80, 1), png(30, 50, 2, "RGBA"), png(200, 90, 4, "L"), b"not an image"]
    raw, full = StoredImages(blobs, processor, raw_pixels=True), StoredImages(blobs, processor)
    for i in range(3):
        pixels = raw[i][1]
        assert pixels.dtype == torch.uint8
        torch.testing.assert_close(normalise(pixels[None])[0], full[i][1], rtol=0, atol=2e-6)
    assert raw[3] == (3, None) and full[3] == (3, None)


def test_processors_that_pad_after_normalising_keep_their_own_arithmetic(models):
    _, swin = models
    processor = AutoImageProcessor.from_pretrained(swin, **pil_backend())
    processor.do_pad = True
    assert Normaliser.of(processor) is None
