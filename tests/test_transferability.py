"""Figure 2's transferability classifier: balancing and splits, the pair-batched probes against torch's own Adam and
nn.Linear, separable and inseparable item sets, absent items, determinism, and `python -m ant figure
transferability` end to end on a tiny world with a real saved ANT model, real item tables and feature stores."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ant.analysis.linear_probe import (
    MIN_PER_SIDE,
    ProbeSettings,
    balance,
    fit_probes,
    init_params,
    make_probe_set,
    split_sizes,
    train_probes,
)
from ant.analysis.transferability import load_embeddings, probe_modality
from ant.features.store import FeatureStore
from ant.model.ant import ANT, ANTConfig, save_model
from tests.train_helpers import DIMS, TINY_MODEL, make_world, perturb_, run_cli

CPU = torch.device("cpu")


# --- balancing and splits ---------------------------------------------------------------------------------------


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 2**31))
def test_balance_pairs_each_target_item_with_a_distinct_auxiliary_item(n_target: int, n_aux: int, seed: int) -> None:
    target, aux = balance(n_target, n_aux, torch.Generator().manual_seed(seed))
    n = min(n_target, n_aux)
    assert len(target) == len(aux) == n
    assert len(set(target.tolist())) == n and len(set(aux.tolist())) == n  # without replacement
    assert all(0 <= i < n_target for i in target.tolist()) and all(0 <= i < n_aux for i in aux.tolist())
    if n_aux >= n_target:
        assert sorted(target.tolist()) == list(range(n_target))  # every target item is used
    else:
        assert sorted(aux.tolist()) == list(range(n_aux))  # the target side is truncated to the auxiliary's size


def test_balance_shuffles_both_sides() -> None:
    target, aux = balance(50, 80, torch.Generator().manual_seed(0))
    assert target.tolist() != list(range(50)) and aux.tolist() != list(range(50))


@given(st.integers(0, 100_000))
def test_split_sizes_are_70_10_20(n: int) -> None:
    train, valid, test = split_sizes(n)
    assert train + valid + test == n
    assert 0 <= 7 * n - 10 * train < 10 and 0 <= n - 10 * valid < 10  # the floors of 70 % and 10 % (exact)
    assert 10 * test >= 2 * n


def test_split_sizes_of_round_numbers() -> None:
    assert split_sizes(10) == (7, 1, 2)
    assert split_sizes(1000) == (700, 100, 200)
    assert split_sizes(15) == (10, 1, 4)


@given(st.integers(MIN_PER_SIDE, 200), st.integers(MIN_PER_SIDE, 200), st.integers(0, 2**31))
def test_probe_set_splits_both_sides_into_disjoint_labelled_parts(n_target: int, n_aux: int, seed: int) -> None:
    target_rows = torch.arange(n_target) + 1000  # rows of some larger matrix
    aux_rows = torch.arange(n_aux) + 5000
    s = make_probe_set(target_rows, aux_rows, torch.Generator().manual_seed(seed))
    n = min(n_target, n_aux)
    assert s.per_side == n
    seen: list[int] = []
    for split, size in zip(("train", "valid", "test"), split_sizes(n), strict=True):
        rows, labels = s.rows[split].tolist(), s.labels[split].tolist()
        assert len(rows) == 2 * size and labels == [1.0] * size + [0.0] * size  # target first, label 1
        assert all(r in range(1000, 1000 + n_target) for r in rows[:size])
        assert all(r in range(5000, 5000 + n_aux) for r in rows[size:])
        seen += rows
    assert len(seen) == len(set(seen)) == 2 * n


# --- the classifier -----------------------------------------------------------------------------------------------


def gaussians(n: int, dim: int, shift: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings [2n, d]: n target rows around +shift/2 and n auxiliary rows around -shift/2 on every axis."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, dim, generator=g)
    x[:n] += shift / 2
    x[n:] -= shift / 2
    return x, torch.arange(n), torch.arange(n, 2 * n)


def one_pair(x: torch.Tensor, target: torch.Tensor, aux: torch.Tensor, settings: ProbeSettings, seed: int = 0):
    s = make_probe_set(target, aux, torch.Generator().manual_seed(seed))
    return s, train_probes(x, [s], [torch.Generator().manual_seed(seed + 1)], settings)[0]


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_well_separated_gaussians_are_told_apart(model: str) -> None:
    x, target, aux = gaussians(400, 16, shift=2.0)  # 4 standard deviations apart along the diagonal
    _, result = one_pair(x, target, aux, ProbeSettings(model=model, epochs=20, batch_size=128, hidden=32))
    assert result.test_accuracy > 0.95 and result.valid_accuracy > 0.95


def test_identical_distributions_stay_near_chance() -> None:
    x, target, aux = gaussians(2000, 8, shift=0.0)
    s, result = one_pair(x, target, aux, ProbeSettings(epochs=10, batch_size=256))
    assert s.size("test") == 800
    assert abs(result.test_accuracy - 0.5) < 0.1


def test_best_epoch_is_chosen_on_validation_accuracy() -> None:
    x, target, aux = gaussians(200, 4, shift=0.6)
    s = make_probe_set(target, aux, torch.Generator().manual_seed(3))
    settings = ProbeSettings(epochs=15, batch_size=32)
    fitted = fit_probes(x, [s], [torch.Generator().manual_seed(4)], settings)
    result = train_probes(x, [s], [torch.Generator().manual_seed(4)], settings)[0]
    curve = fitted.valid_correct[:, 0].tolist()
    best = curve.index(max(curve))  # the earliest of equal maxima
    assert result.best_epoch == best + 1
    assert result.valid_accuracy == curve[best] / s.size("valid")
    assert result.test_accuracy == fitted.test_correct[best, 0].item() / s.size("test")


def reference_fit(x: torch.Tensor, s, settings: ProbeSettings, seed: int):
    """One pair trained the plain way: nn.Linear / nn.Sequential, torch.optim.Adam, a DataLoader-like loop."""
    g = torch.Generator().manual_seed(seed)
    start = [p[0] for p in init_params(settings, x.shape[1], [g])]  # the same initial weights, drawn from g
    layers = [torch.nn.Linear(w.shape[0], w.shape[1]) for w in start[::2]]
    net = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.ReLU())][:-1])
    with torch.no_grad():
        for layer, w, b in zip(layers, start[::2], start[1::2], strict=True):
            layer.weight.copy_(w.T)
            layer.bias.copy_(b[0])
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    rows, labels = s.rows["train"], s.labels["train"]
    valid = []
    for _ in range(settings.epochs):
        order = torch.randperm(len(rows), generator=g)
        for lo in range(0, len(rows), settings.batch_size):
            batch = order[lo : lo + settings.batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[rows[batch]]).squeeze(1), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            predicted = net(x[s.rows["valid"]]).squeeze(1) > 0
        valid.append(int((predicted == (s.labels["valid"] > 0.5)).sum()))
    return [p.detach() for layer in layers for p in (layer.weight.T, layer.bias)], valid


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_pair_batched_training_is_torch_adam_on_each_pair_alone(model: str) -> None:
    """Three pairs of different sizes in one call (so that the small ones sit out steps) end where training each
    with torch.optim.Adam would, and report the same validation curve."""
    x, _, _ = gaussians(300, 6, shift=0.8)
    settings = ProbeSettings(model=model, epochs=4, batch_size=16, hidden=8)
    sizes = [(150, 150), (40, 90), (80, 25)]
    sets = [
        make_probe_set(torch.arange(nt), 300 + torch.arange(na), torch.Generator().manual_seed(i))
        for i, (nt, na) in enumerate(sizes)
    ]
    fitted = fit_probes(x, sets, [torch.Generator().manual_seed(10 + i) for i in range(3)], settings)
    for p, s in enumerate(sets):
        params, valid = reference_fit(x, s, settings, seed=10 + p)
        for ours, theirs in zip(fitted.params, params, strict=True):
            torch.testing.assert_close(ours[p], theirs.reshape(ours[p].shape), rtol=1e-4, atol=1e-5)
        assert fitted.valid_correct[:, p].tolist() == valid


def test_absent_rows_of_other_pairs_are_never_read() -> None:
    """Only the rows a pair sampled matter: NaN in every other row of the matrix changes nothing."""
    x, target, aux = gaussians(100, 4, shift=1.0)
    s = make_probe_set(target[:60], aux[:60], torch.Generator().manual_seed(0))
    settings = ProbeSettings(epochs=3, batch_size=32)
    poisoned = x.clone()
    unused = torch.ones(len(x), dtype=torch.bool)
    unused[torch.cat(list(s.rows.values()))] = False
    poisoned[unused] = float("nan")
    a = train_probes(x, [s], [torch.Generator().manual_seed(1)], settings)
    b = train_probes(poisoned, [s], [torch.Generator().manual_seed(1)], settings)
    assert a == b


# --- one modality's pairs -----------------------------------------------------------------------------------------


def synthetic_embeddings(sizes: dict[str, int], absent: dict[str, int], seed: int = 0):
    """{task: {modality: (vectors, kept)}} with task-specific means; `absent[task]` image items not kept."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (name, n) in enumerate(sizes.items()):
        vectors = torch.randn(n, 6, generator=g) + 0.3 * i  # close means: accuracies between chance and 1
        kept = torch.ones(n, dtype=torch.bool)
        kept[: absent.get(name, 0)] = False
        out[name] = {"text": (vectors, torch.ones(n, dtype=torch.bool)), "image": (vectors, kept)}
    return out


def test_pairs_use_kept_items_only_and_skip_tiny_ones() -> None:
    embeddings = synthetic_embeddings({"T1": 60, "T2": 50, "A1": 80, "A2": 40}, absent={"T1": 20, "A2": 31})
    settings = ProbeSettings(epochs=3, batch_size=32)
    rows = probe_modality("image", embeddings, ["T1", "T2"], ["A1", "A2"], settings, seed=0, device=CPU)
    by_pair = {(r["target"], r["auxiliary"]): r for r in rows}
    assert [(r["target"], r["auxiliary"]) for r in rows] == [("T1", "A1"), ("T1", "A2"), ("T2", "A1"), ("T2", "A2")]
    t1a1 = by_pair[("T1", "A1")]
    assert (t1a1["n_target"], t1a1["n_auxiliary"]) == (40, 80)
    assert (t1a1["n_train"], t1a1["n_valid"], t1a1["n_test"]) == (56, 8, 16)  # 40 per side: 28 / 4 / 8 each
    for target in ("T1", "T2"):  # A2 keeps 9 items: both its pairs are skipped, with a reason, not a crash
        row = by_pair[(target, "A2")]
        assert row["n_auxiliary"] == 9 and "skipped" in row["note"] and "test_accuracy" not in row
    assert by_pair[("T2", "A1")]["note"] == "" and 0.0 <= by_pair[("T2", "A1")]["test_accuracy"] <= 1.0


def test_same_seed_same_numbers_other_seed_other_draws() -> None:
    embeddings = synthetic_embeddings({"T1": 60, "T2": 50, "A1": 80}, absent={})
    settings = ProbeSettings(epochs=4, batch_size=16)
    runs = [probe_modality("text", embeddings, ["T1", "T2"], ["A1"], settings, seed, CPU) for seed in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    # a pair's numbers do not depend on which other pairs are run with it
    alone = probe_modality("text", embeddings, ["T2"], ["A1"], settings, 0, CPU)
    assert alone[0] == runs[0][1]


def write_store(root: Path, modality: str, values: np.ndarray, present: np.ndarray) -> tuple[Path, Path]:
    """A real items.parquet and one feature store for it; returns (items, manifest)."""
    import pyarrow as pa

    from ant.io import write_parquet

    ids = [f"i{i}" for i in range(len(values))]
    items = root / "items.parquet"
    write_parquet(pa.table({"item_idx": pa.array(np.arange(len(ids), dtype=np.int32)), "item_id": ids}), items)
    store = FeatureStore(root / modality, task="T", modality=modality, encoder={"name": "test"}, dim=values.shape[1],
                         item_ids=ids, inputs_digest="test", shard_rows=7)  # fmt: skip
    for shard in store.shards():
        store.write_shard(shard, values[shard.start : shard.stop], present[shard.start : shard.stop])
    store.write_manifest()
    return items, root / modality / "manifest.json"


def test_text_keeps_every_item_image_and_price_only_present_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    present = rng.random(20) < 0.5
    values = np.where(present[:, None], rng.normal(size=(20, 3)), 0).astype(np.float32)
    manifests = {}
    for m in ("text", "image", "price"):
        items, manifests[m] = write_store(tmp_path, m, values, present)
    loaded = load_embeddings("T", items, manifests, None, CPU)
    assert loaded["text"][1].all()
    for m in ("image", "price"):
        assert loaded[m][1].tolist() == present.tolist()
        assert np.array_equal(loaded[m][0].numpy(), values)  # raw: the vectors as stored


# --- the pre-trained item encoder's embeddings ---------------------------------------------------------------------


def tiny_ant(seed: int = 0) -> ANT:
    torch.manual_seed(seed)
    return perturb_(ANT(ANTConfig(dims=DIMS, max_history=10, **TINY_MODEL)), std=0.3)


def test_pretrained_embeddings_are_the_eval_mode_transformed_features(tmp_path: Path) -> None:
    """e_m = sum_k softmax(x W_gate)_k h_k, written out from the parameters: no dropout, no gate noise."""
    model = tiny_ant()
    rng = np.random.default_rng(1)
    manifests, raw = {}, {}
    for m, d in DIMS.items():
        raw[m] = rng.normal(size=(30, d)).astype(np.float32)
        items, manifests[m] = write_store(tmp_path / m, m, raw[m], np.ones(30, dtype=bool))
    loaded = load_embeddings("T", items, manifests, model, CPU)
    for m in DIMS:
        adaptor = model.items.adaptors[m]
        x = torch.from_numpy(raw[m])
        gates = torch.softmax(x @ adaptor.gate, dim=-1)  # [n, K]
        if adaptor.shift is not None:  # whitening heads: W_k (x - b_k)
            heads = torch.stack([(x - adaptor.shift[k]) @ adaptor.weight[k] for k in range(len(gates.T))])
        else:  # price: W_k x + c_k
            heads = torch.stack([x @ adaptor.weight[k] + adaptor.bias[k] for k in range(len(gates.T))])
        expected = (gates.T.unsqueeze(-1) * heads).sum(0)  # [n, d]
        torch.testing.assert_close(loaded[m][0], expected.detach(), rtol=1e-5, atol=1e-6)


# --- the command --------------------------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def present_count(manifest: Path) -> int:
    return sum(int(pq.read_table(p, columns=["present"]).column("present").to_numpy().sum())
               for p in manifest.parent.glob("part-*.parquet"))  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("transferability")
    world = make_world(root, {"AuxA": (40, 40), "AuxB": (40, 36), "TgtA": (40, 32), "TgtB": (40, 30)})
    model_path = root / "model.safetensors"
    save_model(tiny_ant(), model_path)
    return world, model_path


def command(world, out: Path, *extra: str) -> list[str]:
    flags = []
    for name, (data, manifests) in world.tasks.items():
        flags += ["--items", f"{name}={data / 'items.parquet'}"]
        flags += [x for m, p in manifests.items() for x in ("--features", f"{name}.{m}={p}")]
    tasks = ["--targets", "TgtA", "TgtB", "--auxiliary", "AuxA", "AuxB"]
    outputs = ["--csv", str(out / "t.csv"), "--md", str(out / "t.md")]
    return ["figure", "transferability", *flags, *tasks, "--epochs", "5", "--threads", "1", *outputs, *extra]


@pytest.mark.parametrize("kind", ["pretrained", "raw"])
def test_cli_writes_the_table_and_three_heatmaps(world, tmp_path: Path, kind: str) -> None:
    world, model_path = world
    figures = [x for m in ("text", "image", "price") for x in ("--figure", f"{m}={tmp_path / f'{m}.png'}")]
    assert run_cli(*command(world, tmp_path, "--features-kind", kind, "--pretrained", str(model_path), *figures)) == 0
    for m in ("text", "image", "price"):
        assert png_size(tmp_path / f"{m}.png") == (840, 600)
    rows = read_csv(tmp_path / "t.csv")
    expected = [(m, t, a) for m in ("text", "image", "price") for t in ("TgtA", "TgtB") for a in ("AuxA", "AuxB")]
    assert [(r["modality"], r["target"], r["auxiliary"]) for r in rows] == expected
    items = {"AuxA": 40, "AuxB": 36, "TgtA": 32, "TgtB": 30}
    for r in rows:
        side = {name: items[name] if r["modality"] == "text" else present_count(world.tasks[name][1][r["modality"]])
                for name in (r["target"], r["auxiliary"])}  # fmt: skip
        assert (int(r["n_target"]), int(r["n_auxiliary"])) == (side[r["target"]], side[r["auxiliary"]])
        n = min(side.values())
        assert int(r["n_train"]) + int(r["n_valid"]) + int(r["n_test"]) == 2 * n
        assert 1 <= int(r["best_epoch"]) <= 5 and 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert (r["features_kind"], r["model"], r["note"]) == (kind, "linear", "")
    markdown = (tmp_path / "t.md").read_text()
    assert "## text" in markdown and "| TgtB |" in markdown and f"{kind} features" in markdown


@pytest.mark.parametrize(
    "extra",
    [
        [],  # pretrained features without --pretrained
        ["--features-kind", "raw", "--figure", "sound=x.png"],
        ["--features-kind", "raw", "--auxiliary", "AuxA", "TgtA"],
        ["--features-kind", "raw", "--targets", "TgtA", "Nope"],
    ],
)
def test_cli_refuses_bad_input_with_one_line(world, tmp_path: Path, extra: list[str], caplog) -> None:
    world, _ = world
    assert run_cli(*command(world, tmp_path, *extra)) == 1
    assert not (tmp_path / "t.csv").exists()
    assert any(r.levelname == "ERROR" for r in caplog.records)
