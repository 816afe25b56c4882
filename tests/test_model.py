"""ANT's modules: the MoE item encoder, SASRec, the fused model, its parts and its file format."""

import math

import pytest
import torch
import torch.nn.functional as F

from ant.model.ant import ANT, PARTS, ANTConfig, load_model, parameters_by_part, save_model
from ant.model.item_encoder import ItemEncoder, MoEAdaptor
from ant.model.transformer import SequenceEncoder, last_position

DIMS = {"text": 6, "image": 5, "price": 4}


def features(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}


def config(**kw):
    base = {
        "dims": DIMS,
        "hidden_size": 8,
        "experts": 3,
        "layers": 2,
        "attention_heads": 2,
        "inner_size": 8,
        "max_history": 7,
    }
    return ANTConfig(**(base | kw))


def test_whitening_and_linear_heads_compute_the_formulas():
    torch.manual_seed(0)
    white = MoEAdaptor(6, 4, experts=3, dropout=0.0, whitening=True)
    linear = MoEAdaptor(6, 4, experts=3, dropout=0.0, whitening=False)
    for module in (white, linear):
        for p in module.parameters():
            torch.nn.init.normal_(p)  # non-trivial shift, bias and gates
        module.eval()
    x = torch.randn(5, 6)
    for module in (white, linear):
        g = torch.softmax(x @ module.gate, dim=-1)
        heads = []
        for k in range(3):
            if module.shift is not None:
                heads.append((x - module.shift[k]) @ module.weight[k])  # W_k (x - b_k)
            else:
                heads.append(x @ module.weight[k] + module.bias[k])  # W_k x + c_k
        expected = sum(g[:, k : k + 1] * heads[k] for k in range(3))
        torch.testing.assert_close(module(x), expected)


def test_routing_is_uniform_at_initialisation_and_noisy_only_in_training():
    torch.manual_seed(0)
    adaptor = MoEAdaptor(6, 4, experts=4, dropout=0.0, whitening=True)
    x = torch.randn(10, 6)
    adaptor.eval()
    torch.testing.assert_close(adaptor.routing(x), torch.full((10, 4), 0.25))
    torch.nn.init.normal_(adaptor.gate)
    torch.nn.init.normal_(adaptor.noise)
    assert torch.equal(adaptor.routing(x), adaptor.routing(x))
    adaptor.train()
    assert not torch.equal(adaptor.routing(x), adaptor.routing(x))


def test_each_head_draws_its_own_dropout_mask():
    torch.manual_seed(0)
    adaptor = MoEAdaptor(64, 64, experts=2, dropout=0.5, whitening=True)
    with torch.no_grad():
        adaptor.weight.copy_(torch.eye(64).expand(2, 64, 64))  # both heads are the identity
        adaptor.noise.fill_(-10.0)  # routing noise ~0: g = (1/2, 1/2)
    adaptor.train()
    out = adaptor(torch.ones(1, 64))  # = (mask_1 + mask_2) / 2 * 2 (dropout rescales kept values by 2)
    values = set(torch.round(out).flatten().tolist())
    assert values <= {0.0, 1.0, 2.0}
    assert 1.0 in values, "one shared mask would give only 0 or 2"


def test_initialisation_follows_the_spec():
    torch.manual_seed(0)
    model = ANT(config(hidden_size=64, inner_size=64, dims={"text": 256, "image": 256, "price": 64}))
    adaptor = model.items.adaptors["text"]
    assert abs(adaptor.weight.std().item() - 0.02) < 0.002
    assert not adaptor.shift.any() and not adaptor.gate.any() and not adaptor.noise.any()
    assert not model.items.adaptors["price"].bias.any()
    layer = model.users.layers[0]
    assert abs(layer.qkv.weight.std().item() - 0.02) < 0.002 and not layer.qkv.bias.any()
    assert torch.equal(layer.attn_norm.weight, torch.ones(64)) and not layer.attn_norm.bias.any()
    assert abs(model.users.position.weight.std().item() - 0.02) < 0.005


def test_fusion_and_dropped_modalities():
    torch.manual_seed(0)
    enc = ItemEncoder(DIMS, 8, experts=2, dropout=0.0, fusion_beta=0.1).eval()
    feats = features(4)
    v, parts = enc(feats)
    torch.testing.assert_close(
        v, parts["text"] + parts["image"] + parts["price"] + 0.1 * parts["image"] * parts["text"]
    )

    enc.fusion_beta = 0.0
    v, parts = enc(feats)
    torch.testing.assert_close(v, parts["text"] + parts["image"] + parts["price"])

    no_text = ItemEncoder(DIMS, 8, experts=2, dropout=0.0, fusion_beta=0.1, modalities=("image", "price")).eval()
    other = dict(feats, text=torch.randn(4, DIMS["text"]) * 100)
    torch.testing.assert_close(no_text(feats)[0], no_text(other)[0])  # text is not read at all
    # e_text is exactly zero (not the adaptor's output on a zero feature), so v = e_v + e_p and no fusion term
    torch.nn.init.normal_(no_text.adaptors["text"].shift)  # a zero feature would now map to a non-zero vector
    v, parts = no_text(feats)
    assert torch.count_nonzero(parts["text"]) == 0
    torch.testing.assert_close(v, parts["image"] + parts["price"])
    with pytest.raises(ValueError, match="unknown modalities"):
        ItemEncoder(DIMS, 8, 2, 0.0, 0.1, modalities=("sound",))


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    enc = SequenceEncoder(8, max_length=7, layers=2, heads=2, inner_size=8, dropout=0.5).eval()
    items = torch.randn(3, 7, 8)
    length = torch.tensor([7, 4, 1])
    hidden = enc(items, length)
    changed = items.clone()
    changed[:, 5:] = torch.randn(3, 2, 8)  # later positions (and padding) must not change earlier outputs
    torch.testing.assert_close(enc(changed, length)[:, :5], hidden[:, :5])
    # trimming the padding (the batches' speed-up) changes nothing
    torch.testing.assert_close(enc(items[1:, :4], length[1:])[:, :4], hidden[1:, :4])
    last = last_position(hidden, length)
    torch.testing.assert_close(last, hidden[[0, 1, 2], [6, 3, 0]])
    with pytest.raises(ValueError, match="longer than max_history"):
        enc(torch.randn(1, 8, 8), torch.tensor([8]))


def test_every_parameter_has_a_part_and_ant_id_adds_the_id_embedding():
    model = ANT(config(id_items=11))
    groups = parameters_by_part(model)
    assert set(groups) == set(PARTS.values())
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert groups["id_embedding"]["item_ids.weight"].shape == (11, 8)
    assert "id_embedding" not in parameters_by_part(ANT(config()))
    feats = features(11)
    with pytest.raises(ValueError, match="item_idx"):
        model.item_vectors(feats)
    model.eval()
    with_ids, _ = model.item_vectors(feats, torch.arange(11))
    without, _ = model.items(feats)
    torch.testing.assert_close(with_ids - without, model.item_ids.weight)


def test_logits_are_cosine_over_temperature():
    model = ANT(config(temperature=0.5))
    u, v = torch.randn(3, 8), torch.randn(4, 8)
    expected = F.cosine_similarity(u[:, None], v[None], dim=-1) / 0.5
    torch.testing.assert_close(model.logits(u, v), expected)
    assert model.logits(u * 7, v).max() <= 1 / 0.5 + 1e-5


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ANT(config(id_items=5, modalities=("text", "price"), fusion_beta=0.0)).eval()
    save_model(model, tmp_path / "m.safetensors", {"note": "x"})
    loaded, meta = load_model(tmp_path / "m.safetensors")
    loaded.eval()
    assert loaded.config == model.config and meta["note"] == "x"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    feats = features(5)
    torch.testing.assert_close(
        loaded.item_vectors(feats, torch.arange(5))[0], model.item_vectors(feats, torch.arange(5))[0]
    )


def test_load_refuses_other_files(tmp_path):
    from ant.errors import UserError

    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match="not an ANT model"):
        load_model(tmp_path / "other.safetensors")


def test_model_runs_end_to_end_with_gradients():
    torch.manual_seed(0)
    model = ANT(config())
    feats = features(9)
    v, _ = model.item_vectors(feats)
    history = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    length = torch.tensor([4, 2])
    u = last_position(model.user_states(v[history], length), length)
    loss = F.cross_entropy(model.logits(u, v), torch.tensor([6, 7]))
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.endswith(("gate", "noise")))


def test_fast_dropout_keeps_one_minus_p_and_rescales():
    from ant.model.dropout import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    out = dropout(x, 0.3, training=True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    assert not dropout(x, 1.0, training=True).any()
    y = torch.ones(10, requires_grad=True)
    dropout(y, 0.5, training=True).sum().backward()
    assert set(y.grad.tolist()) <= {0.0, 2.0}


def test_forward_and_backward_under_bf16_autocast():
    """The CUDA training path runs under bf16 autocast; CPU autocast exercises the same dtype mixing."""
    torch.manual_seed(0)
    model = ANT(config(id_items=9))
    feats = features(9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v, parts = model.item_vectors(feats, torch.arange(9))
        length = torch.tensor([4, 2, 1])
        hidden = model.user_states(v[torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0], [7, 0, 0, 0]])], length)
        logits = model.logits(last_position(hidden, length), v)
        loss = F.cross_entropy(logits, torch.tensor([0, 1, 2]))
    assert logits.dtype == torch.float32 and hidden.dtype in (torch.float32, torch.bfloat16)
    loss.backward()
    assert math.isfinite(loss.item()) and model.users.layers[0].qkv.weight.grad is not None
