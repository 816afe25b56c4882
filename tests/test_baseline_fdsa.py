"""FDSA (spec baselines.md section 6): the upstream forward, its two streams and shared pieces, causality, the
all-positions rows, the candidates, and a run through `train-baseline` that beats most-popular."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ant.baselines import fdsa
from ant.baselines.base import TaskShape, text_table
from ant.methods import METHODS
from ant.model.transformer import SequenceEncoder, TransformerLayer, last_position
from ant.train.batches import Batch
from tests.train_helpers import make_world, padded_histories, perturb_, run_cli

N, TEXT, L, D = 11, 12, 8, 16
SMALL = fdsa.Settings(hidden_size=D, layers=2, attention_heads=2, inner_size=24, text_table="features")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task(seed: int = 0) -> TaskShape:
    text = np.random.default_rng(seed).normal(size=(N, TEXT)).astype(np.float32)
    return TaskShape(n_items=N, n_users=4, max_history=L, features={"text": text})


def perturbed(seed: int = 0) -> fdsa.Model:
    """An FDSA in eval mode whose every parameter matters (LayerNorm gains and biases too)."""
    torch.manual_seed(seed)
    model = fdsa.Model(SMALL, task(seed))
    return perturb_(model, 0.3).eval()


def batch(lengths: list[int], steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return padded_histories(lengths, steps, N, seed)


def stream(model: fdsa.Model, layers: nn.ModuleList) -> SequenceEncoder:
    """A stand-alone RecBole encoder holding FDSA's shared P and LN and one stream's layers."""
    encoder = SequenceEncoder(D, L, SMALL.layers, SMALL.attention_heads, SMALL.inner_size, 0.0, causal=True)
    encoder.position, encoder.input_norm, encoder.layers = model.position, model.input_norm, layers
    return encoder.eval()


def upstream_user(model: fdsa.Model, history: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """UniSRec's FDSA.forward: both streams, pooled at len - 1, concatenated, Linear, the shared LN (eval)."""
    x = history + 1  # RecBole ids, 0 = padding
    item_out = stream(model, model.item_layers)(model.items(x), length)
    feature_out = stream(model, model.feature_layers)(model.adapter(model.text[x]), length)
    joint = torch.cat([last_position(item_out, length), last_position(feature_out, length)], dim=-1)
    return model.input_norm(model.concat(joint))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, L), min_size=1, max_size=5), st.integers(0, 3))
def test_the_user_vector_is_upstream_forward(lengths, seed):
    model = perturbed(seed)
    history, length = batch(lengths, max(lengths), seed)
    with torch.no_grad():
        expected = upstream_user(model, history, length) @ model.items.weight[1:].T
        torch.testing.assert_close(model.scores(history, length, None), expected, rtol=1e-5, atol=1e-5)


def test_shared_position_table_and_layer_norm_serve_both_streams_and_the_head():
    model = perturbed()
    # one position table and one LayerNorm outside the Transformer layers, and they are the ones upstream shares
    layers = [m for m in model.modules() if isinstance(m, TransformerLayer)]
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(layers) == 2 * SMALL.layers and layers[0] is not layers[SMALL.layers]
    assert [m for m in norms if not any(m is n for layer in layers for n in layer.modules())] == [model.input_norm]
    assert [m for m in model.modules() if isinstance(m, nn.Embedding)] == [model.items, model.position]
    calls = []
    model.input_norm.register_forward_hook(lambda *_: calls.append(1))
    outputs = {}
    for name in ("item_layers", "feature_layers"):
        getattr(model, name)[-1].register_forward_hook(lambda m, i, out, name=name: outputs.__setitem__(name, out))
    history, length = batch([3, 5], 5)
    with torch.no_grad():
        model.encode(history, length, None)
        assert len(calls) == 3  # item input, feature input, output head
        before = dict(outputs)
        model.position.weight[0] += 1.0
        model.encode(history, length, None)
    for name in before:  # the one P feeds both streams
        assert not torch.allclose(outputs[name], before[name]), name
    # separate layer weights: the two stacks start from independent draws
    assert not torch.equal(model.item_layers[0].qkv.weight, model.feature_layers[0].qkv.weight)


def test_text_shapes_the_user_vector_but_never_the_candidates():
    model = perturbed()
    history, length = batch([4, 2], 4)
    with torch.no_grad():
        candidates, scores = model.candidates().clone(), model.scores(history, length, None)
        unseen = sorted(set(range(N)) - set(history[history >= 0].tolist()))[0]
        model.text[unseen + 1] += 5.0  # an item no history holds: only its candidate row could change, and won't
        torch.testing.assert_close(model.scores(history, length, None), scores)
        model.text[int(history[0, 1]) + 1] += 5.0  # an item of row 0's history
        changed = model.scores(history, length, None)
        assert not torch.allclose(changed[0], scores[0])  # u read the text
        torch.testing.assert_close(model.candidates(), candidates)  # the candidates are id-only


def test_streams_are_causal():
    model = perturbed()
    history, length = batch([6], 6)
    with torch.no_grad():
        before = model.encode(history, length, None)
        later = history.clone()
        later[0, 4] = (later[0, 4] + 1) % N  # another item (another id and another text) at position 4
        after = model.encode(later, length, None)
    torch.testing.assert_close(after[:, :4], before[:, :4])
    assert not torch.allclose(after[:, 4], before[:, 4])


def test_all_positions_equal_the_prefix_rows():
    assert fdsa.Model.exact_all_positions
    model = perturbed()
    history, length = batch([7, 4], 7)
    with torch.no_grad():
        hidden = model.encode(history, length, None)
        for row in range(2):
            for j in range(int(length[row])):  # the prefix row of the first j + 1 items
                prefix = history[row : row + 1, : j + 1]
                state = last_position(model.encode(prefix, torch.tensor([j + 1]), None), torch.tensor([j + 1]))
                torch.testing.assert_close(hidden[row, j], state[0], rtol=1e-5, atol=1e-5)
        # the inherited loss: an all-positions row is the mean over its prefix rows' losses
        target = torch.full((1, 6), -1)
        target[0, :5] = torch.tensor([3, 1, 4, 1, 5])
        whole = model.loss(Batch(history[:1, :6], torch.tensor([6]), target, torch.zeros(1, dtype=torch.long)))
        prefixes = [
            model.loss(
                Batch(
                    history[:1, : j + 1], torch.tensor([j + 1]), target[0, j : j + 1], torch.zeros(1, dtype=torch.long)
                )
            )
            for j in range(5)
        ]
    torch.testing.assert_close(whole, torch.stack(prefixes).mean())


def test_shapes_and_padding_is_never_a_candidate():
    model = perturbed()
    history, length = batch([3, 1, 5], 5)
    assert model.encode(history, length, None).shape == (3, 5, D)
    assert model.candidates().shape == (N, D) and model.scores(history, length, None).shape == (3, N)
    with torch.no_grad():
        scores = model.scores(history, length, None)
        model.items.weight[0] = 100.0  # the padding row: never looked up by a real token, never a candidate
        torch.testing.assert_close(model.scores(history, length, None), scores)
    assert model.text.shape == (N + 1, TEXT) and not model.text[0].any()  # row 0: the padding item's zero text
    assert "text" not in model.state_dict()  # a frozen input, not a weight


def test_defaults_are_the_spec():
    assert fdsa.Settings() == fdsa.Settings(256, 2, 2, 256, 0.5, 0.5, "upstream")
    model = fdsa.Model(fdsa.Settings(hidden_size=64, inner_size=256), task())
    assert model.adapter[0].in_features == TEXT and model.adapter[0].out_features == 64  # the adapter follows d
    assert isinstance(model.adapter[1], nn.ReLU) and model.concat.in_features == 128


def test_fdsa_trains_through_train_baseline_above_most_popular(tmp_path):
    world = make_world(tmp_path, {"Target": (120, 48)})
    data, manifests = world.tasks["Target"]
    flags = ["--sequences", f"Target={data / 'sequences.parquet'}", "--items", f"Target={data / 'items.parquet'}"]
    flags += ["--features", f"Target.text={manifests['text']}"]  # FDSA reads ids and text only
    hp = {
        "model": {"hidden_size": 32, "inner_size": 32, "layers": 1},
        "optim": {"epochs": 6, "batch_size": 64, "lr": 3e-3},
        "train": {"device": "cpu", "eval_batch_size": 128, "threads": 1, "rows": "all_positions"},
    }
    out = tmp_path / "fdsa"
    argv = ["train-baseline", "--method", "fdsa", *flags, "--hparams", json.dumps(hp), "--out-dir", str(out)]
    assert run_cli(*argv, "--no-progress") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["method"], metrics["rows"], metrics["variant"]) == ("fdsa", "all_positions", "default")
    popular = metrics["reference_test"]["most_popular_history_kept"]["recall@10"]
    assert metrics["test_history_kept"]["recall@10"] > popular, metrics
    assert (out / "ranks.parquet").exists() and (out / "model.safetensors").exists()


def test_the_upstream_text_table_is_frozen_noise_and_the_fix_is_the_bert_table():
    """UniSRec's FDSA and S3-Rec re-draw their frozen copy of the BERT table with RecBole's init (N(0, 0.02)):
    the default reproduces that, `text_table: features` reads the features (ant.baselines.base.text_table)."""
    shape = task()
    torch.manual_seed(3)
    upstream = text_table(shape, "upstream")
    torch.manual_seed(3)
    again = text_table(shape, "upstream")
    features = text_table(shape, "features")
    assert upstream.shape == features.shape == (N + 1, TEXT) and torch.equal(upstream, again)  # seeded
    assert 0.015 < upstream.std().item() < 0.025 and upstream[0].any()  # the padding row re-drawn too
    torch.testing.assert_close(features[1:], torch.as_tensor(shape.features["text"]))
    assert not features[0].any()
    other = TaskShape(shape.n_items, shape.n_users, shape.max_history, {"text": shape.features["text"] * 5 + 1})
    torch.manual_seed(3)
    assert torch.equal(text_table(other, "upstream"), upstream)  # the features never reach the upstream table
    assert fdsa.Settings(text_table="bert").problems() and not fdsa.Settings().problems()
    assert METHODS["fdsa"].variant_of(vars(fdsa.Settings(text_table="features"))) == "text_table-features"
