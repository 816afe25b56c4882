"""SASRec and the MoE adaptor against independent references that can fail for the right reason.

Each reference is written from the spec (ANT-method §3-4, baselines.md §2.2), in the plain padded layout with
standard torch pieces, and has switches for the plausible mistakes (pre-LN, wrong attention scale, no causal mask,
dropout after the whitening shift, one mask shared by the heads, routing noise without the 0.01 floor or with exp
instead of softplus, noise in evaluation, ...). The tests assert that the model matches the correct setting and
does *not* match any wrong one, so a bug of that kind in either the model or the reference shows up.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from ant.model.ant import ANT, ANTConfig
from ant.model.item_encoder import MoEAdaptor
from ant.model.transformer import SequenceEncoder, last_position


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is fastest, and a loaded 2-core machine makes a thread pool 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# SASRec (ANT-method §4, baselines.md §2.2)

D, HEADS, INNER, LAYERS, MAX_LENGTH = 16, 2, 24, 2, 9
# baselines.md §2.2: "ANT uses it with eps 1e-8" (RecBole's own is 1e-12, the module's default). In float32 at 1e-5
# the two are indistinguishable; in float64 they are not (test_layer_norm_eps_is_the_spec_value).
SPEC_EPS = 1e-8


@functools.cache
def perturbed_sasrec(seed: int, dtype: torch.dtype = torch.float32) -> SequenceEncoder:
    """A SASRec whose every parameter is random and matters: LayerNorm gains and biases too. Cached: callers must
    leave it as they found it (eval mode, weights untouched)."""
    torch.manual_seed(seed)
    model = SequenceEncoder(
        D, max_length=MAX_LENGTH, layers=LAYERS, heads=HEADS, inner_size=INNER, dropout=0.5, eps=SPEC_EPS
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif "qkv.weight" in name:
                p.normal_(0.0, 0.3)  # large enough that the attention weights are far from uniform
            elif name.endswith("weight"):
                p.normal_(0.0, 0.25)
            else:
                p.normal_(0.0, 0.2)  # biases, position table
    return model.to(dtype).eval()


@dataclass(frozen=True)
class Transformer:
    """Switches of the reference; the defaults are the spec."""

    post_ln: bool = True  # a = LN(h + Attn(h)) ...; False: pre-LN, a = h + Attn(LN(h)) ...
    scale: str = "sqrt_head"  # scores / sqrt(d / heads); "d": / d; "sqrt_d": / sqrt(d); "none"
    causal: bool = True
    key_padding: bool = True
    gelu: str = "none"  # F.gelu's approximate=: "none" is the erf form, "tanh" the approximation
    positions: str = "oldest"  # P[t] counted from the oldest item; "newest": from the last real item
    eps: float = SPEC_EPS  # every LayerNorm's


CORRECT = Transformer()
VARIANTS = {
    "correct": CORRECT,
    # with right padding the causal mask already hides every padded key from every real query, so dropping the
    # key-padding mask changes nothing at real positions (a fact about the layout, not a gap in the test)
    "no key-padding mask (redundant)": dataclasses.replace(CORRECT, key_padding=False),
    "pre-LN": dataclasses.replace(CORRECT, post_ln=False),
    "scale 1/d": dataclasses.replace(CORRECT, scale="d"),
    "scale 1/sqrt(d)": dataclasses.replace(CORRECT, scale="sqrt_d"),
    "no scaling": dataclasses.replace(CORRECT, scale="none"),
    "no causal mask": dataclasses.replace(CORRECT, causal=False),
    "no mask at all": dataclasses.replace(CORRECT, causal=False, key_padding=False),
    "tanh GELU": dataclasses.replace(CORRECT, gelu="tanh"),
    "positions from the newest item": dataclasses.replace(CORRECT, positions="newest"),
}
EQUIVALENT = {"correct", "no key-padding mask (redundant)"}


class ReferenceLayer(nn.Module):
    def __init__(self, variant: Transformer) -> None:
        super().__init__()
        self.variant = variant
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=variant.eps), nn.LayerNorm(D, eps=variant.eps)
        self.ff1, self.ff2 = nn.Linear(D, INNER), nn.Linear(INNER, D)

    def attention(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = h.shape

        def split(t):  # [B, T, d] -> [B, heads, T, d / heads]
            return t.view(batch, steps, HEADS, D // HEADS).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        scale = {"sqrt_head": (D // HEADS) ** -0.5, "d": 1.0 / D, "sqrt_d": D**-0.5, "none": 1.0}[self.variant.scale]
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        scores = scores + (~allowed).to(scores.dtype) * -10000.0  # RecBole's additive mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o(out.transpose(1, 2).reshape(batch, steps, D))

    def feed_forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.ff2(F.gelu(self.ff1(a), approximate=self.variant.gelu))

    def forward(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.variant.post_ln:
            a = self.ln1(h + self.attention(h, allowed))
            return self.ln2(a + self.feed_forward(a))
        a = h + self.attention(self.ln1(h), allowed)
        return a + self.feed_forward(self.ln2(a))


class ReferenceSASRec(nn.Module):
    """Plain padded-layout SASRec in eval mode (dropout is the identity), weights copied from an ant SASRec."""

    def __init__(self, model: SequenceEncoder, variant: Transformer = CORRECT) -> None:
        super().__init__()
        self.variant = variant
        self.position = nn.Embedding(MAX_LENGTH, D)
        self.ln0 = nn.LayerNorm(D, eps=variant.eps)
        self.layers = nn.ModuleList(ReferenceLayer(variant) for _ in range(LAYERS))
        with torch.no_grad():
            self.position.weight.copy_(model.position.weight)
            self.ln0.weight.copy_(model.input_norm.weight)
            self.ln0.bias.copy_(model.input_norm.bias)
            for ref, layer in zip(self.layers, model.layers, strict=True):
                # the packed projection is [W_Q; W_K; W_V], each d x d with the heads side by side (as in
                # nn.MultiheadAttention's in_proj_weight)
                for i, linear in enumerate((ref.q, ref.k, ref.v)):
                    linear.weight.copy_(layer.qkv.weight[i * D : (i + 1) * D])
                    linear.bias.copy_(layer.qkv.bias[i * D : (i + 1) * D])
                pairs = [
                    (ref.o, layer.attn_out),
                    (ref.ln1, layer.attn_norm),
                    (ref.ff1, layer.ffn_in),
                    (ref.ff2, layer.ffn_out),
                    (ref.ln2, layer.ffn_norm),
                ]
                for mine, theirs in pairs:
                    mine.weight.copy_(theirs.weight)
                    mine.bias.copy_(theirs.bias)
        self.double().eval()

    def forward(self, items: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = items.shape
        t = torch.arange(steps)
        real = t.unsqueeze(0) < length.unsqueeze(1)  # [B, T]
        if self.variant.positions == "oldest":
            position = t.expand(batch, steps)
        else:
            position = (length.unsqueeze(1) - 1 - t).clamp(min=0)
        allowed = torch.ones(batch, 1, steps, steps, dtype=torch.bool)
        if self.variant.causal:
            allowed = allowed & torch.tril(torch.ones(steps, steps, dtype=torch.bool))
        if self.variant.key_padding:
            allowed = allowed & real[:, None, None, :]
        h = self.ln0(items.double() + self.position(position))
        for layer in self.layers:
            h = layer(h, allowed)
        return h  # [B, T, d]; padded positions hold whatever the padded layout computes there


@functools.cache
def reference_for(seed: int) -> ReferenceSASRec:
    return ReferenceSASRec(perturbed_sasrec(seed))


def random_batch(lengths: list[int], steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    items = torch.randn(len(lengths), steps, D, generator=g)
    length = torch.tensor(lengths)
    padded = torch.arange(steps).unsqueeze(0) >= length.unsqueeze(1)
    items[padded] = 100.0 * torch.randn(int(padded.sum()), D, generator=g)  # garbage that must not matter
    return items, length


def real_positions(hidden: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    mask = torch.arange(hidden.shape[1]).unsqueeze(0) < length.unsqueeze(1)
    return hidden[mask]


@given(
    lengths=st.lists(st.integers(1, MAX_LENGTH), min_size=1, max_size=5),
    extra=st.integers(0, MAX_LENGTH),
    seed=st.integers(0, 2**16),
)
def test_sasrec_matches_the_padded_reference(lengths, extra, seed):
    steps = min(max(lengths) + extra, MAX_LENGTH)
    model = perturbed_sasrec(seed % 4)
    items, length = random_batch(lengths, steps, seed)
    with torch.no_grad():
        hidden = model(items, length)
        expected = reference_for(seed % 4)(items, length)
    torch.testing.assert_close(real_positions(hidden, length), real_positions(expected, length).float())
    torch.testing.assert_close(last_position(hidden, length), last_position(expected, length).float())
    # padded positions of the output are exactly zero
    assert not (hidden * (torch.arange(steps) >= length.unsqueeze(1)).unsqueeze(-1)).any()


def test_sasrec_matches_torch_transformer_encoder_layers():
    """A second, fully independent reference: torch's own post-LN nn.TransformerEncoderLayer, in float64.

    It takes the model's LayerNorm eps (the eps is checked on its own below), so that everything else can be held
    to float64 precision."""
    model = perturbed_sasrec(7, torch.float64)
    eps = model.input_norm.eps
    items, length = random_batch([9, 6, 3, 1, 2], 9, seed=7)
    items = items.double()
    steps = items.shape[1]
    reference = []
    for layer in model.layers:
        ref = nn.TransformerEncoderLayer(
            D, HEADS, INNER, dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True, norm_first=False
        )
        ref.double().eval()
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(layer.qkv.weight)
            ref.self_attn.in_proj_bias.copy_(layer.qkv.bias)
            for mine, theirs in [
                (ref.self_attn.out_proj, layer.attn_out),
                (ref.norm1, layer.attn_norm),
                (ref.linear1, layer.ffn_in),
                (ref.norm2, layer.ffn_norm),
                (ref.linear2, layer.ffn_out),
            ]:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        reference.append(ref)
    not_causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool), diagonal=1)  # True = masked
    padding = torch.arange(steps).unsqueeze(0) >= length.unsqueeze(1)
    with torch.no_grad():
        h = F.layer_norm(
            items + model.position.weight[:steps], (D,), model.input_norm.weight, model.input_norm.bias, eps
        )
        for ref in reference:
            h = ref(h, src_mask=not_causal, src_key_padding_mask=padding)
        hidden = model(items, length)
    torch.testing.assert_close(real_positions(hidden, length), real_positions(h, length), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_only_the_spec_setting_of_the_reference_matches(name):
    """The reference's switches have teeth: every wrong setting is far outside the matching tolerance."""
    model = perturbed_sasrec(3)
    items, length = random_batch([9, 7, 5, 3, 2, 1], 9, seed=3)
    with torch.no_grad():
        hidden = model(items, length)
        expected = ReferenceSASRec(model, VARIANTS[name])(items, length).float()
    got, want = real_positions(hidden, length), real_positions(expected, length)
    if name in EQUIVALENT:
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(last_position(hidden, length), last_position(expected, length))
    else:
        # at least 10x the matching tolerance (1e-5): tanh GELU is ~6e-4 away, every other variant more than 0.1
        gap = (got - want).abs().max().item()
        assert gap > 1e-4, f"the model also matches the wrong reference '{name}' (max |diff| {gap:.2e})"
        user_gap = (last_position(hidden, length) - last_position(expected, length)).abs().max().item()
        assert user_gap > 1e-4, f"the user vectors match the wrong reference '{name}' (max |diff| {user_gap:.2e})"


def test_layer_norm_eps_is_the_spec_value():
    """In float64 the eps is visible: the model matches the reference with the spec's eps to 1e-12, and ANT's user
    encoder uses that eps in every LayerNorm."""
    ant = ANT(ANTConfig(dims={"text": 4, "image": 4, "price": 2}, hidden_size=D, inner_size=INNER, experts=2))
    assert {m.eps for m in ant.users.modules() if isinstance(m, nn.LayerNorm)} == {SPEC_EPS}
    model = perturbed_sasrec(3, torch.float64)
    items, length = random_batch([9, 7, 5, 3, 2, 1], 9, seed=3)
    with torch.no_grad():
        hidden = model(items.double(), length)
        expected = ReferenceSASRec(model)(items, length)
    torch.testing.assert_close(real_positions(hidden, length), real_positions(expected, length), rtol=0, atol=1e-12)


def test_trimming_trailing_padding_and_padded_values_change_nothing():
    model = perturbed_sasrec(5)
    items, length = random_batch([5, 3, 1], 9, seed=5)
    with torch.no_grad():
        hidden = model(items, length)
        trimmed = model(items[:, :5], length)
        other = items.clone()
        other[torch.arange(9).unsqueeze(0) >= length.unsqueeze(1)] = -7.0  # other garbage in the padding
        repadded = model(other, length)
    torch.testing.assert_close(trimmed, hidden[:, :5], rtol=1e-6, atol=1e-6)
    assert not hidden[:, 5:].any()
    torch.testing.assert_close(repadded, hidden, rtol=1e-6, atol=1e-6)
    # in training too the padded positions stay zero
    torch.manual_seed(0)
    trained = copy.deepcopy(model).train()(items, length)
    assert not (trained * (torch.arange(9) >= length.unsqueeze(1)).unsqueeze(-1)).any()


# ---------------------------------------------------------------------------------------------------------------
# The MoE adaptor (ANT-method §3)

K, IN, OUT, P = 3, 6, 5, 0.5


@dataclass(frozen=True)
class MoE:
    """Switches of the adaptor reference; the defaults are the spec."""

    dropout_before_shift: bool = True  # h_k = W_k (dropout_k(x) - b_k); False: W_k dropout_k(x - b_k)
    own_masks: bool = True  # every head draws its own mask; False: all heads use head 1's
    rescale: bool = True  # kept values scaled by 1 / (1 - p)
    route_raw: bool = True  # the gate reads the raw x; False: the dropped x of head 1
    noise_floor: float = 0.01  # sigma = softplus(x W_noise) + 0.01
    noise_fn: str = "softplus"  # or "exp"
    noise_in_eval: bool = False


CORRECT_MOE = MoE()
MOE_VARIANTS = {
    "correct": CORRECT_MOE,
    "dropout after the shift": dataclasses.replace(CORRECT_MOE, dropout_before_shift=False),
    "one mask shared by the heads": dataclasses.replace(CORRECT_MOE, own_masks=False),
    "no 1/(1-p) rescaling": dataclasses.replace(CORRECT_MOE, rescale=False),
    "gate reads the dropped input": dataclasses.replace(CORRECT_MOE, route_raw=False),
    "noise std without +0.01": dataclasses.replace(CORRECT_MOE, noise_floor=0.0),
    "noise std exp instead of softplus": dataclasses.replace(CORRECT_MOE, noise_fn="exp"),
}


def moe_reference(
    adaptor: MoEAdaptor,
    x: torch.Tensor,
    uniforms: torch.Tensor | None,
    eps: torch.Tensor | None,
    variant: MoE = CORRECT_MOE,
) -> torch.Tensor:
    """sum_k g_k h_k written out head by head; uniforms [K, n, d_in] give the masks (keep iff u >= p, the rule of
    ant.model.dropout), eps [n, K] the routing noise; None for either = evaluation (no dropout / no noise)."""
    weight, shift, bias = adaptor.weight.detach(), adaptor.shift, adaptor.bias
    if uniforms is not None:
        keep = (uniforms >= adaptor.dropout).to(x.dtype)
        if not variant.own_masks:
            keep = keep[:1].expand_as(keep)
        keep = keep / (1.0 - adaptor.dropout) if variant.rescale else keep

    def drop(t, k):
        return t if uniforms is None else t * keep[k]

    heads = []
    for k in range(weight.shape[0]):
        if shift is None:
            heads.append(drop(x, k) @ weight[k] + bias[k])  # W_k dropout_k(x) + c_k
        elif variant.dropout_before_shift:
            heads.append((drop(x, k) - shift[k]) @ weight[k])  # W_k (dropout_k(x) - b_k)
        else:
            heads.append(drop(x - shift[k], k) @ weight[k])
    routed = x if variant.route_raw else drop(x, 0)
    logits = routed @ adaptor.gate
    if eps is not None:
        raw = routed @ adaptor.noise
        std = (F.softplus(raw) if variant.noise_fn == "softplus" else torch.exp(raw)) + variant.noise_floor
        logits = logits + eps * std
    g = torch.softmax(logits, dim=-1)
    return sum(g[:, k : k + 1] * heads[k] for k in range(len(heads)))


def perturbed_adaptor(whitening: bool, seed: int = 0) -> MoEAdaptor:
    torch.manual_seed(seed)
    adaptor = MoEAdaptor(IN, OUT, experts=K, dropout=P, whitening=whitening).double()
    with torch.no_grad():
        for p in adaptor.parameters():
            p.normal_()  # non-zero shift b_k / bias c_k, gate and noise weights
        adaptor.noise.sub_(1.0)  # some rows with small softplus (the 0.01 floor matters), some large
    return adaptor


@pytest.fixture
def draws(monkeypatch):
    """torch.rand_like / torch.randn_like replaced by known draws from a private generator, recorded in order."""
    g = torch.Generator().manual_seed(1234)
    record = {"rand_like": [], "randn_like": []}

    def rand_like(t, *, dtype=None, **_):
        out = torch.rand(t.shape, generator=g, dtype=dtype or t.dtype)
        record["rand_like"].append(out)
        return out

    def randn_like(t, *, dtype=None, **_):
        out = torch.randn(t.shape, generator=g, dtype=dtype or t.dtype)
        record["randn_like"].append(out)
        return out

    monkeypatch.setattr(torch, "rand_like", rand_like)
    monkeypatch.setattr(torch, "randn_like", randn_like)
    return record


def recorded(draws, n):
    """The adaptor's dropout uniforms as [K, n, d_in] (one draw per head or one for all) and its noise [n, K]."""
    assert draws["rand_like"], "the adaptor drew no dropout mask"
    uniforms = torch.cat([u.reshape(-1) for u in draws["rand_like"]]).reshape(K, n, IN).double()
    assert len(draws["randn_like"]) == 1, "one routing-noise draw expected"
    return uniforms, draws["randn_like"][0].double()


@pytest.mark.parametrize(
    ("whitening", "name"),
    [(True, name) for name in MOE_VARIANTS]
    + [(False, name) for name in MOE_VARIANTS if name != "dropout after the shift"],
    ids=lambda v: {True: "whitening heads", False: "price heads"}.get(v, v) if isinstance(v, bool) else v,
)
def test_adaptor_replays_the_draws_of_the_spec_and_no_wrong_variant(draws, whitening, name):
    """Train mode, with known draws: the output is the spec's formula for exactly those masks and that noise, and
    is far (> 1e-3; the match is to 1e-10) from every wrong variant computed from the same draws."""
    variant = MOE_VARIANTS[name]
    adaptor = perturbed_adaptor(whitening).train()
    x = torch.randn(8, IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out = adaptor(x)
        uniforms, eps = recorded(draws, len(x))
        expected = moe_reference(adaptor, x, uniforms, eps, variant)
    if name == "correct":
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    else:
        gap = (out - expected).abs().max().item()
        assert gap > 1e-3, f"the adaptor also matches the wrong variant '{name}' (max |diff| {gap:.2e})"


@pytest.mark.parametrize("whitening", [True, False], ids=["whitening heads", "price heads"])
def test_adaptor_replays_torch_seeded_draws(whitening):
    """The same with torch's own generator, unpatched: after the same seed, the module's draws are the dropout
    uniforms [K, n, d_in] (float32) and then the routing noise [n, K]; this pins the draw order, which the patched
    test above does not need."""
    adaptor = perturbed_adaptor(whitening).train()
    x = torch.randn(8, IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.manual_seed(9)
        out = adaptor(x)
        torch.manual_seed(9)
        uniforms = torch.rand(K, len(x), IN, dtype=torch.float32).double()
        eps = torch.randn(len(x), K, dtype=torch.float64)
    torch.testing.assert_close(out, moe_reference(adaptor, x, uniforms, eps), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("whitening", [True, False], ids=["whitening heads", "price heads"])
def test_adaptor_draws_nothing_in_evaluation(draws, whitening):
    adaptor = perturbed_adaptor(whitening).eval()
    x = torch.randn(8, IN, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        out = adaptor(x)
        assert draws == {"rand_like": [], "randn_like": []}, "evaluation must draw no dropout mask and no noise"
        torch.testing.assert_close(out, moe_reference(adaptor, x, None, None), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(adaptor.routing(x), torch.softmax(x @ adaptor.gate, dim=-1), rtol=0, atol=0)
        # the wrong variant "noise in evaluation too" is far from it
        eps = torch.randn(len(x), K, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        noisy = moe_reference(adaptor, x, None, eps, dataclasses.replace(CORRECT_MOE, noise_in_eval=True))
    assert (out - noisy).abs().max().item() > 1e-3


def test_routing_replays_the_noise_draw(draws):
    """The gate alone: g = softmax(x W_gate + eps * (softplus(x W_noise) + 0.01)), with the recorded eps."""
    adaptor = perturbed_adaptor(True).train()
    x = torch.randn(16, IN, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        g = adaptor.routing(x)
        (eps,) = draws["randn_like"]
        mu, raw = x @ adaptor.gate, x @ adaptor.noise
        torch.testing.assert_close(g, torch.softmax(mu + eps * (F.softplus(raw) + 0.01), -1), rtol=1e-12, atol=1e-12)
        for wrong in (F.softplus(raw), torch.exp(raw) + 0.01, torch.zeros_like(raw)):
            assert (g - torch.softmax(mu + eps * wrong, -1)).abs().max().item() > 1e-4


def routing_noise_std(adaptor: MoEAdaptor, x: torch.Tensor, draws_per_row: int) -> torch.Tensor:
    """Empirical std of each gate logit's noise, from the softmax alone: log g_k - log g_j = mu_k - mu_j +
    eps_k sigma_k - eps_j sigma_j, so Var_kj = sigma_k^2 + sigma_j^2 and sigma_k^2 = (Var_kj + Var_kl - Var_jl)/2."""
    with torch.no_grad():
        log_g = torch.log(adaptor.routing(x.repeat_interleave(draws_per_row, 0))).view(len(x), draws_per_row, K)
    var = torch.stack([torch.stack([(log_g[..., a] - log_g[..., b]).var(-1) for b in range(K)]) for a in range(K)])
    sigma2 = torch.stack(
        [(var[k, (k + 1) % K] + var[k, (k + 2) % K] - var[(k + 1) % K, (k + 2) % K]) / 2 for k in range(K)]
    )
    return sigma2.T.sqrt()  # [rows, K]


def test_routing_noise_std_statistically():
    """Second line of defence, with torch's real draws: the empirical std of the gate logits' noise equals
    softplus(x W_noise) + 0.01, and is far from the wrong formulas."""
    assert K == 3
    adaptor = MoEAdaptor(K, OUT, experts=K, dropout=P, whitening=True).double().train()
    with torch.no_grad():
        adaptor.gate.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(5))
        adaptor.noise.copy_(torch.eye(K))  # x W_noise = x
    x = torch.tensor([[-30.0, -30.0, -30.0], [-1.0, 0.0, 1.5]], dtype=torch.float64)  # floor-only; softplus range
    torch.manual_seed(6)
    std = routing_noise_std(adaptor, x, 40_000)
    spec = F.softplus(x) + 0.01
    torch.testing.assert_close(std, spec, rtol=0.03, atol=0.0)
    for wrong in (F.softplus(x), torch.exp(x) + 0.01):
        assert ((std - wrong).abs() / wrong.clamp(min=1e-3)).max() > 0.2
    adaptor.eval()
    assert torch.equal(adaptor.routing(x), torch.softmax(x @ adaptor.gate, -1))


def test_the_bidirectional_encoder_matches_the_reference_without_a_causal_mask():
    """BERT4Rec's and S3-Rec's pre-training setting: every real key, padding masked; the causal reference
    (and the reference without any mask) must not match."""
    causal = perturbed_sasrec(4)
    model = SequenceEncoder(
        D, max_length=MAX_LENGTH, layers=LAYERS, heads=HEADS, inner_size=INNER, dropout=0.5, eps=SPEC_EPS, causal=False
    ).eval()
    model.load_state_dict(causal.state_dict())
    items, length = random_batch([9, 7, 5, 3, 2, 1], 9, seed=4)
    with torch.no_grad():
        hidden = model(items, length)
        expected = {
            name: ReferenceSASRec(model, VARIANTS[name])(items, length).float()
            for name in ("no causal mask", "correct", "no mask at all")
        }
    got = real_positions(hidden, length)
    torch.testing.assert_close(got, real_positions(expected["no causal mask"], length))
    for wrong in ("correct", "no mask at all"):
        assert (got - real_positions(expected[wrong], length)).abs().max() > 1e-4, wrong
