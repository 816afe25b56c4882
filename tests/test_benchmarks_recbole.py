"""benchmarks/recbole_crosscheck.py's weight mapping, without RecBole (which CI does not install).

RecBole-named state dicts are drawn here with the shapes RecBole 1.1.1's modules give them (separate query, key,
value Linear layers; item ids in RecBole's own order), mapped into our models by the benchmark's `recbole_to_ant`,
and our scores compared with an independent forward written in RecBole's terms (post-LN layers, additive -10000
masks, erf GELU) on those same RecBole-named tensors. The real cross-check against RecBole is the benchmark's
`exact` command.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ant.baselines import bert4rec, fdsa, sasrec
from ant.baselines.base import TaskShape

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "recbole_crosscheck.py"
_SPEC = importlib.util.spec_from_file_location("recbole_crosscheck", _PATH)
cc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cc)

D, HEADS, INNER, LAYERS, N, L, TEXT = 16, 2, 24, 2, 11, 7, 5
MODULES = {"sasrec": sasrec, "bert4rec": bert4rec, "fdsa": fdsa}


def _draw(g: torch.Generator, *shape: int, centre: float = 0.0) -> torch.Tensor:
    return centre + 0.3 * torch.randn(shape, generator=g)


def _norm(g: torch.Generator, name: str) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": _draw(g, D, centre=1.0), f"{name}.bias": _draw(g, D)}


def _linear(g: torch.Generator, name: str, out: int, inp: int) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": _draw(g, out, inp), f"{name}.bias": _draw(g, out)}


def _encoder(g: torch.Generator, prefix: str) -> dict[str, torch.Tensor]:
    """RecBole's TransformerEncoder parameters: layer.i.multi_head_attention / feed_forward."""
    s: dict[str, torch.Tensor] = {}
    for i in range(LAYERS):
        a, f = f"{prefix}.layer.{i}.multi_head_attention", f"{prefix}.layer.{i}.feed_forward"
        for part in ("query", "key", "value", "dense"):
            s |= _linear(g, f"{a}.{part}", D, D)
        s |= _norm(g, f"{a}.LayerNorm") | _linear(g, f"{f}.dense_1", INNER, D) | _linear(g, f"{f}.dense_2", D, INNER)
        s |= _norm(g, f"{f}.LayerNorm")
    return s


def _recbole_state(model: str, g: torch.Generator, text_in_recbole_ids: torch.Tensor | None) -> dict:
    items = N + 2 if model == "bert4rec" else N + 1  # BERT4Rec: the mask token after the items
    positions = L + 1 if model == "bert4rec" else L
    s = {"item_embedding.weight": _draw(g, items, D), "position_embedding.weight": _draw(g, positions, D)}
    s |= _norm(g, "LayerNorm")
    if model == "fdsa":
        s |= _encoder(g, "item_trm_encoder") | _encoder(g, "feature_trm_encoder")
        s |= _linear(g, "adapter.mlp_layers.1", D, TEXT) | _linear(g, "concat_layer", D, 2 * D)
        s["plm_embedding.weight"] = text_in_recbole_ids
    else:
        s |= _encoder(g, "trm_encoder")
    return s


def _ln(x: torch.Tensor, s: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), s[f"{name}.weight"], s[f"{name}.bias"], 1e-12)


def _lin(x: torch.Tensor, s: dict, name: str) -> torch.Tensor:
    return x @ s[f"{name}.weight"].T + s[f"{name}.bias"]


def _recbole_encoder(x: torch.Tensor, seq: torch.Tensor, s: dict, prefix: str, causal: bool) -> torch.Tensor:
    """RecBole's TransformerEncoder on [B, T, D] with get_attention_mask(seq, bidirectional=not causal)."""
    batch, steps, _ = x.shape
    allowed = (seq != 0)[:, None, None, :].expand(-1, 1, steps, -1)
    if causal:
        allowed = torch.tril(allowed)
    additive = torch.where(allowed, 0.0, -10000.0)
    for i in range(LAYERS):
        a, f = f"{prefix}.layer.{i}.multi_head_attention", f"{prefix}.layer.{i}.feed_forward"
        q, k, v = (
            _lin(x, s, f"{a}.{n}").view(batch, steps, HEADS, -1).transpose(1, 2) for n in ("query", "key", "value")
        )
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // HEADS) + additive, dim=-1)
        x = _ln(_lin((weights @ v).transpose(1, 2).reshape(batch, steps, D), s, f"{a}.dense") + x, s, f"{a}.LayerNorm")
        inner = _lin(x, s, f"{f}.dense_1")
        inner = inner * 0.5 * (1.0 + torch.erf(inner / math.sqrt(2.0)))
        x = _ln(_lin(inner, s, f"{f}.dense_2") + x, s, f"{f}.LayerNorm")
    return x


def _recbole_scores(model: str, s: dict, seq: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """full_sort_predict in RecBole's ids: [B, N + 1], column 0 = padding."""
    rows = torch.arange(seq.shape[0])
    table = s["item_embedding.weight"]
    if model == "bert4rec":  # reconstruct_test_data: a padding column, the mask token (N + 1) at len
        seq = F.pad(seq, (0, 1))
        seq[rows, length] = N + 1
        at, table = length, table[: N + 1]
    else:
        at = length - 1
    positions = s["position_embedding.weight"][: seq.shape[1]][None]
    x = _ln(s["item_embedding.weight"][seq] + positions, s, "LayerNorm")
    if model == "fdsa":
        text = torch.relu(_lin(s["plm_embedding.weight"][seq], s, "adapter.mlp_layers.1"))
        h_id = _recbole_encoder(x, seq, s, "item_trm_encoder", True)[rows, at]
        h_text = _recbole_encoder(_ln(text + positions, s, "LayerNorm"), seq, s, "feature_trm_encoder", True)[rows, at]
        u = _ln(_lin(torch.cat([h_id, h_text], -1), s, "concat_layer"), s, "LayerNorm")
    else:
        u = _recbole_encoder(x, seq, s, "trm_encoder", model == "sasrec")[rows, at]
    return u @ table.T


@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "fdsa"])
def test_recbole_weights_give_recbole_scores_in_ours(model: str) -> None:
    g = torch.Generator().manual_seed(7)
    # RecBole numbers tokens by first appearance: its id r holds our item_idx int(tokens[r]), in another order
    order = torch.randperm(N, generator=g)
    tokens = ["[PAD]"] + [str(int(i)) for i in order]
    rows, item_idx_of = cc.ant_rows(tokens, extra_rows=1 if model == "bert4rec" else 0)
    text = torch.randn(N, TEXT, generator=g)  # ours: row = item_idx
    in_recbole_ids = torch.cat([torch.zeros(1, TEXT), text[item_idx_of[1:]]])
    state = _recbole_state(model, g, in_recbole_ids if model == "fdsa" else None)
    module = MODULES[model]
    settings = module.Settings(
        hidden_size=D, layers=LAYERS, attention_heads=HEADS, inner_size=INNER, dropout=0.3, attn_dropout=0.3
    )
    if model == "fdsa":
        settings = dataclasses.replace(settings, text_table="features")  # the reference reads the text
    features = {"text": text.numpy().astype(np.float32)} if model == "fdsa" else {}
    ours = module.Model(settings, TaskShape(n_items=N, n_users=0, max_history=L, features=features))
    ours.load_state_dict(cc.recbole_to_ant(model, state, LAYERS, rows))
    ours.eval()

    length = torch.tensor([1, 3, L, 5, 2, L - 1])
    seq = torch.randint(1, N + 1, (len(length), L), generator=g) * (torch.arange(L) < length[:, None])
    expected = _recbole_scores(model, state, seq, length)[:, 1:]  # drop RecBole's padding column
    aligned = torch.empty_like(expected)
    aligned[:, item_idx_of[1:]] = expected  # RecBole id r -> our column item_idx_of[r]
    with torch.no_grad():
        got = ours.scores(item_idx_of[seq], length, torch.zeros_like(length))
    torch.testing.assert_close(got, aligned, atol=2e-5, rtol=1e-5)


def test_qkv_packs_query_key_value_in_that_order() -> None:
    keys = cc.transformer_keys("trm_encoder", "encoder.layers", 1)
    a = "trm_encoder.layer.0.multi_head_attention"
    assert keys["encoder.layers.0.qkv.weight"] == (f"{a}.query.weight", f"{a}.key.weight", f"{a}.value.weight")
    assert keys["encoder.layers.0.qkv.bias"] == (f"{a}.query.bias", f"{a}.key.bias", f"{a}.value.bias")


def test_rows_follow_recbole_tokens() -> None:
    rows, item_idx_of = cc.ant_rows(["[PAD]", "2", "0", "1"], extra_rows=1)
    assert item_idx_of.tolist() == [-1, 2, 0, 1]
    assert rows.tolist() == [0, 2, 3, 1, 4]  # our id a = item_idx + 1 <- RecBole's id of that item; mask -> mask
    with pytest.raises(ValueError, match="PAD"):
        cc.ant_rows(["0", "1"])
    with pytest.raises(ValueError, match="item_idx"):
        cc.ant_rows(["[PAD]", "0", "2"])


def test_an_unplaced_recbole_parameter_is_an_error() -> None:
    g = torch.Generator().manual_seed(0)
    state = _recbole_state("sasrec", g, None)
    rows, _ = cc.ant_rows(["[PAD]"] + [str(i) for i in range(N)])
    with pytest.raises(KeyError, match="without a place"):
        cc.recbole_to_ant("sasrec", state | {"output_ffn.weight": torch.zeros(D, D)}, LAYERS, rows)
    del state["trm_encoder.layer.1.feed_forward.dense_2.bias"]
    with pytest.raises(KeyError, match="lacks"):
        cc.recbole_to_ant("sasrec", state, LAYERS, rows)
