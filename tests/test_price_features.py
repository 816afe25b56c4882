"""Price features: the sinusoidal formula of spec section 2, element by element; global scale; missing prices."""

import math

import numpy as np
import pytest
from features_helpers import write_items
from hypothesis import given
from hypothesis import strategies as st

from ant.cli import main
from ant.features.price import price_features
from ant.features.store import load_features
from ant.versions import STAGES

prices = st.one_of(st.none(), st.floats(min_value=-10, max_value=1e7), st.sampled_from([math.nan, math.inf]))


def spec_vector(price, dim=64, max_usd=1000.0, scale=10_000.0, base=50_000.0):
    """Spec section 2, written out with math, one element at a time."""
    if price is None or not math.isfinite(price) or price < 0:
        return [0.0] * dim
    p = min(price, max_usd) / max_usd * scale
    out = []
    for i in range(dim // 2):
        out += [math.sin(p / base ** (2 * i / dim)), math.cos(p / base ** (2 * i / dim))]
    return out


@given(st.lists(prices, max_size=30), st.sampled_from([2, 8, 64]))
def test_vectors_follow_the_formula(values, dim):
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    vectors, present = price_features(array, dim=dim)
    assert vectors.dtype == np.float32 and vectors.shape == (len(values), dim)
    for row, value in zip(vectors, values, strict=True):
        np.testing.assert_allclose(row, spec_vector(value, dim=dim), atol=2e-7)
    assert present.tolist() == [v is not None and math.isfinite(v) and v >= 0 for v in values]


@given(st.floats(0, 5000), st.lists(st.floats(0, 5000), max_size=10))
def test_scale_is_global(price, others):
    alone = price_features(np.array([price]))[0][0]
    among = price_features(np.array([*others, price]))[0][-1]
    np.testing.assert_array_equal(alone, among)  # the same dollars give the same vector in any task


def test_clipping_and_distinctness():
    vectors, _ = price_features(np.array([1000.0, 5000.0, 12.99, 13.0]))
    np.testing.assert_array_equal(vectors[0], vectors[1])  # clipped at max_usd
    assert not np.allclose(vectors[2], vectors[3], atol=1e-3)  # one cent apart is still distinguishable
    with pytest.raises(ValueError):
        price_features(np.array([1.0]), dim=3)


def test_cli_store_round_trip(tmp_path, caplog):
    values = [12.99, None, 1299.0, 0.0, -5.0]
    items = write_items(tmp_path / "items.parquet", prices=values)
    out = tmp_path / "price"
    args = [
        "embed-price",
        "--task",
        "T",
        "--items",
        str(items),
        "--out-dir",
        str(out),
        "--dim",
        "64",
        "--max-usd",
        "1000",
        "--scale",
        "10000",
        "--base",
        "50000",
    ]
    assert main(args) == 0
    features = load_features(out / "manifest.json", items)
    assert features.present.tolist() == [True, False, True, True, False]
    np.testing.assert_allclose(features.values, np.array([spec_vector(v) for v in values]), atol=2e-7)
    encoder = {"name": "sinusoidal", "dim": 64, "max_usd": 1000.0, "scale": 10000.0, "base": 50000.0}
    assert features.manifest["encoder"] == {**encoder, "code_version": STAGES["price"]}
    assert features.manifest["negative_prices"] == 1
    assert main([*args[:-2], "--base", "1"]) == 1 and "--base above 1" in caplog.text
