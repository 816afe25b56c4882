"""The CUDA paths: encoders and training on a GPU agree with the CPU. Skipped where torch sees no GPU (CI has
none); run on a GPU machine with `python -m pytest -q tests/test_cuda.py`."""

import json

import numpy as np
import pytest
import torch
from features_helpers import tiny_models, write_items
from test_image_features import embed as embed_images
from test_image_features import fetched  # noqa: F401  (a fixture)
from test_text_features import TEXTS
from test_text_features import embed as embed_texts

from ant.features.store import load_features
from ant.train.evaluate import rank_targets
from tests.train_helpers import SMALL_MODEL, hparams, make_world, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_text_vectors_on_the_gpu_match_the_cpu(tmp_path, models):
    bert, _ = models
    items = write_items(tmp_path / "items.parquet", texts=TEXTS)
    runs = {
        "cpu": ("--device", "cpu"),
        "fp32": ("--device", "cuda", "--precision", "fp32"),
        "auto": ("--device", "cuda"),
    }
    vectors = {}
    for name, flags in runs.items():
        assert embed_texts(items, tmp_path / name, bert, *flags) == 0
        vectors[name] = load_features(tmp_path / name / "manifest.json", items)
    assert vectors["auto"].manifest["encoder"]["precision"] == "bf16"  # auto = bf16 autocast on CUDA
    assert vectors["auto"].values.dtype == np.float32
    np.testing.assert_allclose(vectors["fp32"].values, vectors["cpu"].values, rtol=1e-3, atol=1e-4)
    assert cosines(vectors["auto"].values, vectors["cpu"].values).min() > 0.99


def test_image_vectors_on_the_gpu_match_the_cpu(tmp_path, fetched, models):  # noqa: F811
    items, manifest = fetched
    _, swin = models
    assert embed_images(items, manifest, tmp_path / "cpu", swin) == 0
    assert embed_images(items, manifest, tmp_path / "gpu", swin, "--device", "cuda", "--loader-workers", "2") == 0
    cpu, gpu = (load_features(tmp_path / name / "manifest.json", items) for name in ("cpu", "gpu"))
    assert gpu.manifest["encoder"]["precision"] == "bf16"
    assert (gpu.present == cpu.present).all()
    assert cosines(gpu.values[gpu.present], cpu.values[cpu.present]).min() > 0.99
    np.testing.assert_array_equal(gpu.values[~gpu.present], 0.0)


@pytest.mark.parametrize("ties", ["pessimistic", "expected"])
def test_ranks_on_the_gpu_equal_the_cpu_ties_and_both_history_rules_included(ties):
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (300, 1000), generator=generator).float()  # five levels: ties everywhere
    target = torch.randint(0, 1000, (300,), generator=generator)
    history = torch.randint(0, 1000, (300, 50), generator=generator)
    history[:10, 3] = target[:10]  # some repeated targets
    length = torch.randint(1, 51, (300,), generator=generator)
    cpu = rank_targets(scores.clone(), target, history, length, ties)
    gpu = rank_targets(scores.cuda(), target.cuda(), history.cuda(), length.cuda(), ties)
    for key, value in cpu.items():
        assert torch.equal(gpu[key].cpu(), value), key


def test_training_on_the_gpu_learns_as_well_as_on_the_cpu(tmp_path):
    world = make_world(tmp_path, {"AuxA": (300, 128), "AuxB": (240, 96), "Target": (200, 96)}, clusters=16)
    recall = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert (
            run_cli(
                "pretrain",
                *world.flags("AuxA", "AuxB"),
                "--out-dir",
                str(out / "pretrain"),
                "--no-progress",
                "--hparams",
                hparams(epochs=3, batch_size=128, model=SMALL_MODEL, device=device),
            )
            == 0
        )
        assert (
            run_cli(
                "adapt",
                "--strategy",
                "relearn",
                *world.flags("Target"),
                "--no-progress",
                "--pretrained",
                str(out / "pretrain" / "model.safetensors"),
                "--out-dir",
                str(out / "relearn"),
                "--hparams",
                hparams(epochs=5, batch_size=64, model=SMALL_MODEL, device=device),
            )
            == 0
        )
        metrics = json.loads((out / "relearn" / "metrics.json").read_text())
        assert metrics["device"].startswith(device)
        recall[device] = metrics["test"]["recall@10"]
        assert recall[device] > 2 * metrics["reference_test"]["most_popular"]["recall@10"], (device, metrics)
    # bf16 autocast and other kernels change the trajectory, not what is learnt
    assert abs(recall["cuda"] - recall["cpu"]) < 0.1, recall
