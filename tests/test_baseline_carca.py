"""CARCA (spec baselines.md section 10): the forward against upstream's written out plainly, the exact chunked CE
and its gradients against the unchunked one, memory that never holds B x N x d, padding, bidirectionality, the
time6 context, and runs through `train-baseline` (both contexts) that beat most-popular."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from ant.baselines import carca
from ant.baselines.base import TaskShape
from ant.data.split import read_sequences, read_timestamps
from ant.methods import METHODS
from ant.train.batches import Batch
from tests.train_helpers import make_world, run_cli

N, L, D, USERS = 40, 8, 16, 6
DIMS = {"text": 12, "image": 10, "price": 4}
DAY = 86_400
MARCH_9_2014 = 1_394_323_200  # 2014-03-09 00:00:00 UTC, a Sunday


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def features(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n, k)).astype(np.float32) for m, k in DIMS.items()}


def timestamps(users: int = USERS, per_user: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each user's interactions 0-40 days apart, from around March 2014 over about two years."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 40 * DAY, size=(users, per_user))
    seconds = (MARCH_9_2014 + rng.integers(0, 300 * DAY, size=(users, 1)) + gaps.cumsum(1)).ravel()
    return np.arange(0, users * per_user + 1, per_user, dtype=np.int64), seconds.astype(np.int64)


def model(context: str = "none", use_res: bool = True, chunk: int = 7, dropout: float = 0.0, n: int = N, d: int = D):
    settings = carca.Settings(d, 2, 2, dropout, use_res=use_res, context=context, candidate_chunk=chunk)
    shape = TaskShape(n, USERS, L, features(n), timestamps() if context == "time6" else None)
    torch.manual_seed(0)
    return carca.Model(settings, shape)


def perturbed(context: str = "none", use_res: bool = True, chunk: int = 7, dropout: float = 0.0) -> carca.Model:
    """A CARCA whose every parameter matters (LayerNorm gains and biases, the logit layer at a useful scale)."""
    m = model(context, use_res, chunk, dropout)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(p))
            elif p.dim() == 2:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
            else:
                p.normal_(0.0, 0.1)
        m.items.weight[0] = 0.0
    return m


def rows(lengths: list[int], steps: int, seed: int = 0):
    """Right-padded item_idx histories (PAD = -1), their lengths, users and target positions (within 12)."""
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(0, N, (len(lengths), steps), generator=g)
    length = torch.tensor(lengths)
    history[torch.arange(steps).unsqueeze(0) >= length.unsqueeze(1)] = -1
    user = torch.arange(len(lengths)) % USERS
    position = length + torch.randint(0, 12 - steps, (len(lengths),), generator=g)  # >= length, < 12
    return history, length, user, position


def contexts_by_hand(context: str, length, user, position, steps):
    """time6 of each history interaction and of the target, gathered row by row from the timestamps."""
    if context == "none":
        return None, None
    offsets, seconds = timestamps()
    table = carca.time6(seconds)
    hist = torch.zeros(len(length), steps, 6)
    for r, (n, u, p) in enumerate(zip(length.tolist(), user.tolist(), position.tolist(), strict=True)):
        for j in range(n):
            hist[r, j] = torch.from_numpy(table[offsets[u] + p - n + j])
    target = torch.stack(
        [torch.from_numpy(table[offsets[u] + p]) for u, p in zip(user.tolist(), position.tolist(), strict=True)]
    )
    return hist, target


# ---------------------------------------------------------------- upstream, written out plainly
def lrelu(x):
    return F.leaky_relu(x, 0.2)


def tf_normalize(x, norm: nn.LayerNorm):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return norm.weight * (x - mean) / (var + 1e-8) ** 0.5 + norm.bias


def tf_attention(queries, keys, att, heads, key_real, query_real, res):
    """Upstream multihead_attention: heads split and stacked along the batch (tf.split / tf.concat)."""
    q, k, v = lrelu(att.query(queries)), lrelu(att.key(keys)), lrelu(att.value(keys))
    q_, k_, v_ = (torch.cat(torch.chunk(x, heads, dim=2), dim=0) for x in (q, k, v))  # [h*B, T, d/h]
    out = q_ @ k_.transpose(1, 2) / k_.shape[-1] ** 0.5
    out = torch.where(key_real.repeat(heads, 1).unsqueeze(1), out, torch.tensor(-(2.0**32) + 1))
    out = torch.softmax(out, dim=-1) * query_real.repeat(heads, 1).unsqueeze(-1)
    out = torch.cat(torch.chunk(out @ v_, heads, dim=0), dim=2)  # [B, T_q, d]
    return out * queries if res else out


def embed(m: carca.Model, tokens, context):
    """e(i, c) = embComp([sqrt(d) E[i] ; D_f([f_i ; c])]), directly."""
    f = m.features[tokens]
    if context is not None:
        f = torch.cat([f, context], dim=-1)
    return m.compress(torch.cat([m.items(tokens) * m.settings.hidden_size**0.5, m.feature_dense(f)], dim=-1))


def reference_logits(m: carca.Model, history, length, hist_ctx, target_ctx):
    """[B, N] logits the way upstream computes them, materialising B x N x d candidates (no dropout)."""
    s = m.settings
    tokens = history + 1
    real = tokens != 0
    seq = embed(m, tokens, hist_ctx)
    if hist_ctx is None:
        seq = seq + m.position.weight[: history.shape[1]]
    seq = seq * real.unsqueeze(-1)
    for block in m.blocks:
        x = tf_normalize(seq, block.norm_query)
        seq = tf_attention(x, seq, block.attention, s.attention_heads, real, real, True)
        y = tf_normalize(seq, block.norm_ffn)
        seq = (block.ffn_out(lrelu(block.ffn_in(y))) + y) * real.unsqueeze(-1)
    seq = tf_normalize(seq, m.final_norm)
    batch = history.shape[0]
    candidates = torch.arange(1, N + 1).expand(batch, N)
    ctx = None if target_ctx is None else target_ctx.unsqueeze(1).expand(batch, N, 6)
    q = embed(m, candidates, ctx)  # [B, N, d]
    out = tf_attention(q, seq, m.scorer, s.attention_heads, real, torch.ones(batch, N, dtype=torch.bool), s.use_res)
    return m.logit(out).squeeze(-1)


CASES = [("none", True), ("none", False), ("time6", True), ("time6", False)]


@pytest.mark.parametrize("context,use_res", CASES)
def test_scores_are_upstreams_forward(context, use_res):
    m = perturbed(context, use_res).eval()
    history, length, user, position = rows([5, 1, 8, 3], 8)
    with torch.no_grad():
        expected = reference_logits(m, history, length, *contexts_by_hand(context, length, user, position, 8))
        torch.testing.assert_close(m.scores(history, length, user, position), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("context,use_res", CASES)
@pytest.mark.parametrize("chunk", [1, 7, 16, N, 64])
def test_chunked_ce_and_its_gradients_equal_the_unchunked(context, use_res, chunk):
    """In training mode (checkpointed chunks), dropout 0 so both sides compute the same function."""
    m = perturbed(context, use_res, chunk).train()
    history, length, user, position = rows([5, 2, 8, 3, 6], 8, seed=1)
    target = torch.tensor([3, 0, 39, 17, 3])
    loss = m.loss(Batch(history, length, target, user, position))
    grads = torch.autograd.grad(loss, list(m.parameters()))
    ctx = contexts_by_hand(context, length, user, position, 8)
    expected = F.cross_entropy(reference_logits(m, history, length, *ctx), target)
    expected_grads = torch.autograd.grad(expected, list(m.parameters()))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for (name, _), got, want in zip(m.named_parameters(), grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)


def peak_bytes(fn) -> int:
    """Peak of the CPU allocator's live bytes while fn runs (allocations minus frees, in time order)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    return int(np.cumsum([e.self_cpu_memory_usage for e in events]).max())


@pytest.mark.parametrize("context", ["none", "time6"])
def test_the_scorer_never_holds_batch_by_items_by_hidden(context):
    # sizes where what CARCA legitimately holds (the [B, N] logits and their gradients, the [N, d] item table,
    # the encoder's [B, T, d] states, one chunk) is small next to B x N x d
    n, d, batch, steps = 4096, 128, 128, 4
    m = model(context, use_res=True, chunk=128, dropout=0.5, n=n, d=d).train()
    g = torch.Generator().manual_seed(0)
    length = torch.randint(1, steps + 1, (batch,), generator=g)
    history = torch.randint(0, n, (batch, steps), generator=g).masked_fill(torch.arange(steps) >= length[:, None], -1)
    user = torch.arange(batch) % USERS
    b = Batch(history, length, torch.randint(0, n, (batch,), generator=g), user, length.clone())
    full = batch * n * d * 4  # bytes of one float32 B x N x d tensor

    def train_step():
        m.loss(b).backward()

    def evaluate():
        with torch.no_grad():
            m.eval().scores(history, length, user, b.position)

    train_step()  # warm-up: the allocator's first blocks, gradients allocated
    assert peak_bytes(train_step) < full / 4
    assert peak_bytes(evaluate) < full / 4
    # the measure sees a B x N x d tensor where there is one
    assert peak_bytes(lambda: torch.randn(batch, n, d).mul(2.0)) >= full


def test_trimming_or_adding_padding_changes_nothing():
    for context in ("none", "time6"):
        m = perturbed(context).eval()
        history, length, user, position = rows([3, 2, 1], 8)
        with torch.no_grad():
            scores = m.scores(history, length, user, position)
            trimmed = m.scores(history[:, :3], length, user, position)
            padded = m.scores(F.pad(history[:, :3], (0, 2), value=-1), length, user, position)
        torch.testing.assert_close(trimmed, scores, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(padded, scores, rtol=1e-5, atol=1e-6)


def test_the_encoder_is_bidirectional_and_the_loss_reads_no_target():
    m = perturbed().eval()
    history, length, user, position = rows([6], 6)
    with torch.no_grad():
        before = m.encode(history, length, user, position)
        later = history.clone()
        later[0, 5] = (later[0, 5] + 1) % N  # the newest item
        after = m.encode(later, length, user, position)
        assert not torch.allclose(after[0, 0], before[0, 0])  # the oldest position sees it
        scores = m.scores(history, length, user, position)
        for target in (0, 7, 39):  # the loss is CE over the same logits whatever the target
            batch = Batch(history, length, torch.tensor([target]), user, position)
            torch.testing.assert_close(m.loss(batch), F.cross_entropy(scores, torch.tensor([target])))
    with pytest.raises(ValueError, match="prefix rows"):
        m.loss(Batch(history, length, torch.full((1, 6), -1), user))


def test_time6_of_a_hand_made_date_and_of_random_ones():
    seconds = np.array([MARCH_9_2014, MARCH_9_2014 - 2 * 365 * DAY, MARCH_9_2014 + 3 * 365 * DAY + 4321], np.int64)
    got = carca.time6(seconds)
    # 2014-03-09: a Sunday (weekday 6), day 68 of the year, ISO week 10; years 2012..2017
    np.testing.assert_allclose(got[0], [2 / 5, 3 / 12, 9 / 31, 6 / 7, 68 / 365, 10 / 4], rtol=1e-6)
    rng = np.random.default_rng(0)
    seconds = rng.integers(0, 2_000_000_000, size=200)
    got = carca.time6(seconds)
    years = [datetime.datetime.fromtimestamp(int(t), datetime.UTC).year for t in seconds]
    for row, t in zip(got, seconds, strict=True):
        day = datetime.datetime.fromtimestamp(int(t), datetime.UTC)
        year = (day.year - min(years)) / (max(years) - min(years))
        want = [year, day.month / 12, day.day / 31, day.weekday() / 7, day.timetuple().tm_yday / 365]
        np.testing.assert_allclose(row, [*want, day.isocalendar().week / 4], rtol=1e-5, atol=1e-7)
    assert not carca.time6(np.array([MARCH_9_2014, MARCH_9_2014 + DAY]))[:, 0].any()  # one year: 0, not 0/0


def test_the_model_reads_each_interactions_context_and_the_targets():
    m = perturbed("time6").eval()
    history, length, user, position = rows([4, 2, 7], 7)
    hist, target = m.contexts(7, length, user, position)
    want_hist, want_target = contexts_by_hand("time6", length, user, position, 7)
    torch.testing.assert_close(hist, want_hist)
    torch.testing.assert_close(target, want_target)
    with torch.no_grad():
        scores = m.scores(history, length, user, position)
        m.context[m.context_offsets[user[0]] + position[0]] += 0.5  # row 0's target interaction: its candidates
        changed = m.scores(history, length, user, position)
        assert not torch.allclose(changed[0], scores[0])
        torch.testing.assert_close(changed[1:], scores[1:])
        m.context[m.context_offsets[user[2]] + position[2] - 7] += 0.5  # row 2's oldest history interaction
        assert not torch.allclose(m.scores(history, length, user, position)[2], changed[2])
    with pytest.raises(ValueError, match="user and target position"):
        m.scores(history, length, user)


def test_structure_init_and_settings():
    assert carca.Settings() == carca.Settings(256, 2, 2, 0.5, 0.0, True, "none", 1024)
    assert METHODS["carca"].preset == "ant" and not carca.Model.exact_all_positions
    assert METHODS["carca"].variant_of(vars(carca.Settings(context="time6"))) == "context-time6"
    assert carca.Settings(context="time").problems() and carca.Settings(candidate_chunk=0).problems()
    assert carca.Settings(candidate_chunk=True).problems() and carca.Settings(use_res=1).problems()
    assert carca.Settings(l2_emb=-1.0).problems() and not carca.Settings().problems()
    m = carca.Model(carca.Settings(hidden_size=64), TaskShape(3000, USERS, 50, features(3000)))
    assert m.feature_dense.in_features == sum(DIMS.values()) and m.feature_dense.out_features == 5 * 64
    assert m.compress.in_features == 6 * 64 and m.position.weight.shape == (50, 64)
    for layer in (m.feature_dense, m.compress, m.logit):  # N(0, 0.01), as the official code
        assert 0.009 < layer.weight.std().item() < 0.011
    for layer in (m.blocks[0].attention.query, m.blocks[1].ffn_out, m.scorer.value):  # Glorot-uniform
        bound = (6 / (layer.in_features + layer.out_features)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    assert not m.items.weight[0].any() and m.items.weight[1:].abs().max() <= (6 / (3001 + 64)) ** 0.5
    assert all(not b.bias.any() for b in m.modules() if isinstance(b, nn.Linear))
    assert not m.features[0].any() and "features" not in m.state_dict()  # frozen input, not a weight
    assert carca.Model(carca.Settings(hidden_size=16, context="time6"), task_with_times()).position is None
    with pytest.raises(ValueError, match="timestamps"):
        carca.Model(carca.Settings(hidden_size=16, context="time6"), TaskShape(N, USERS, L, features()))
    with pytest.raises(ValueError, match="image"):
        carca.Model(carca.Settings(hidden_size=16), TaskShape(N, USERS, L, {"text": features()["text"]}))


def task_with_times() -> TaskShape:
    return TaskShape(N, USERS, L, features(), timestamps())


def test_l2_emb_adds_half_the_squared_tables():
    m = perturbed(dropout=0.0).eval()
    history, length, user, position = rows([3, 5], 6)
    batch = Batch(history, length, torch.tensor([1, 2]), user, position)
    with torch.no_grad():
        plain = m.loss(batch)
        m.settings = carca.Settings(**{**m.settings.__dict__, "l2_emb": 0.1})
        tables = m.items.weight.pow(2).sum() + m.position.weight.pow(2).sum()
        torch.testing.assert_close(m.loss(batch), plain + 0.05 * tables)


# ---------------------------------------------------------------- through the command
def with_dates(data_dir, seed: int = 0) -> np.ndarray:
    """Give the synthetic world's sequences real dates: the interactions of each user 0-20 days apart from 2013."""
    path = data_dir / "sequences.parquet"
    table = pq.read_table(path)
    offsets = read_sequences(path).offsets
    gaps = np.random.default_rng(seed).integers(0, 20 * DAY, size=offsets[-1])
    stamps = 1_356_998_400 + np.concatenate(
        [np.cumsum(gaps[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    )
    column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(stamps.astype(np.int64)))
    pq.write_table(table.set_column(table.schema.get_field_index("timestamp"), "timestamp", column), path)
    return stamps


@pytest.mark.parametrize("context", ["none", "time6"])
def test_carca_trains_through_train_baseline_above_most_popular(tmp_path, context):
    world = make_world(tmp_path, {"Target": (120, 48)})
    data, _ = world.tasks["Target"]
    stamps = with_dates(data)
    sequences = read_sequences(data / "sequences.parquet")
    offsets, seconds = read_timestamps(data / "sequences.parquet", sequences)
    np.testing.assert_array_equal(offsets, sequences.offsets)
    np.testing.assert_array_equal(seconds, stamps)  # what the model's context is built from
    hp = {
        "model": {"hidden_size": 32, "layers": 1, "dropout": 0.2, "context": context},
        "optim": {"epochs": 8, "batch_size": 64, "lr": 3e-3},
        "train": {"device": "cpu", "eval_batch_size": 128, "threads": 1},
    }
    out = tmp_path / "carca"
    argv = ["train-baseline", "--method", "carca", *world.flags("Target"), "--hparams", json.dumps(hp)]
    assert run_cli(*argv, "--out-dir", str(out), "--no-progress") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["method"], metrics["rows"], metrics["preset"]) == ("carca", "prefixes", "ant")
    assert metrics["variant"] == ("default" if context == "none" else "context-time6")
    for rule in ("kept", "excluded"):
        popular = metrics["reference_test"][f"most_popular_history_{rule}"]["recall@10"]
        assert metrics[f"test_history_{rule}"]["recall@10"] > popular, metrics
