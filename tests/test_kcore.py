"""k-core stage: the hand-made fixture end to end, k-core properties, order invariance, the helpers."""

import itertools
import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ant.bench.reference import pure_python
from ant.data.ingest import ITEMS_RAW_SCHEMA, ingest
from ant.data.kcore import encode, kcore, kcore_mask, sorted_rows
from ant.data.split import read_sequences
from ant.errors import UserError

FIXTURE = Path(__file__).parent / "fixtures" / "mini2018"


def run_pipeline(folder: Path, ratings: Path, meta: Path, k: int, **kcore_options):
    ingest("amazon2018", ratings, meta, folder / "i.parquet", folder / "ir.parquet", folder / "ingest.json",
           max_malformed_share=0.2)  # fmt: skip
    inputs = (folder / "i.parquet", folder / "ir.parquet", folder / "ingest.json")
    outputs = (folder / "sequences.parquet", folder / "items.parquet", folder / "stats.json")
    return kcore("T", *inputs, k, *outputs, **kcore_options)


# ---------------------------------------------------------------- the hand-made fixture ------------------
def test_fixture_end_to_end(tmp_path):
    stats = run_pipeline(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json", k=2)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert (stats["task"], stats["users"], stats["items"], stats["interactions"], stats["k"]) == ("T", 3, 4, 10, 2)
    # every row from raw line to final interaction, worked out by hand from the fixture
    assert [(s["step"], s["removed"], s["interactions"], s.get("users"), s.get("items")) for s in stats["steps"]] == [
        ("raw lines of the ratings file", None, 18, None, None),
        ("blank lines skipped", 1, 17, None, None),
        ("malformed lines skipped", 2, 15, 5, 7),  # line 11 (rating "abc"), line 14 (3 fields)
        ("1. exact duplicates collapsed", 1, 14, 5, 7),  # line 5 repeats line 2
        ("2. items without metadata dropped", 1, 13, 5, 6),  # B50 has no meta record
        ("3. 2-core round 1", 2, 11, 4, 5),  # AD1 (1 interaction) and B99 (1) go
        ("3. 2-core round 2", 1, 10, 3, 4),  # which leaves AE1 and B05 with 1 each
        ("4. final, ordered by (timestamp, item id)", 0, 10, 3, 4),
    ]
    assert stats["ingest"]["meta"]["duplicate_ids"] == 1

    seqs = pl.read_parquet(tmp_path / "sequences.parquet")
    assert seqs.schema == pl.Schema(
        {
            "user_idx": pl.Int32,
            "user_id": pl.String,
            "item_idx": pl.List(pl.Int32),
            "item_id": pl.List(pl.String),
            "timestamp": pl.List(pl.Int64),
        }  # fmt: skip
    )
    # users in id order (A10 < A2B < AX9); within a user by (timestamp, item id): at t=200 "0001" < "B01",
    # and AX9's two B01 lines at t=200 with different ratings are two interactions
    assert seqs.rows() == [
        (0, "A10", [0, 3], ["0001", "B10"], [50, 60]),
        (1, "A2B", [1, 2, 3], ["B01", "B07", "B10"], [150, 150, 170]),
        (2, "AX9", [2, 0, 1, 1, 2], ["B07", "0001", "B01", "B01", "B07"], [100, 200, 200, 200, 300]),
    ]
    items = pl.read_parquet(tmp_path / "items.parquet")
    assert items.columns == ["item_idx", *ITEMS_RAW_SCHEMA.names]
    assert items.select("item_idx", "item_id", "text", "price_usd").rows() == [
        (0, "0001", "A BookAbout Hats. Books.", None),
        (1, "B01", "Socks. Clothing, Shoes & Jewelry Socks. Knit Co.", 8.99),
        (2, "B07", "Classic & Slim Fit Shirt. Clothing, Shoes & Jewelry Men. Acme.", 1299.0),
        (3, "B10", "Zed.", None),
    ]


def test_too_sparse_for_k_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="nothing is left after the 5-core"):
        run_pipeline(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json", k=5)
    assert not (tmp_path / "sequences.parquet").exists()


def test_interactions_must_match_the_ingest_stats(tmp_path):
    run_pipeline(tmp_path, FIXTURE / "ratings.csv", FIXTURE / "meta.json", k=2)
    stats = json.loads((tmp_path / "ingest.json").read_text())
    stats["ratings"]["malformed_lines"] += 1
    (tmp_path / "ingest.json").write_text(json.dumps(stats))
    with pytest.raises(UserError, match="rerun the ingest"):
        kcore("T", tmp_path / "i.parquet", tmp_path / "ir.parquet", tmp_path / "ingest.json", 2,
              tmp_path / "s.parquet", tmp_path / "it.parquet", tmp_path / "st.json")  # fmt: skip


def test_hash_collisions_fall_back_to_exact_codes(tmp_path):
    def colliding(ids, seed):  # every id gets the same first hash: the check must catch it
        return np.zeros(len(ids), np.uint64) if seed == 0 else ids.hash(seed=seed).to_numpy()

    run_pipeline(tmp_path / "a", FIXTURE / "ratings.csv", FIXTURE / "meta.json", k=2)
    run_pipeline(tmp_path / "b", FIXTURE / "ratings.csv", FIXTURE / "meta.json", k=2, hasher=colliding)
    for name in ("sequences.parquet", "items.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ---------------------------------------------------------------- k-core properties -----------------------
def brute_force_kcore(user, item, k):
    """The largest set of interactions whose users and items all have >= k of them, by trying every
    (user subset, item subset) pair."""
    users, items = sorted(set(user)), sorted(set(item))
    best = set()
    for nu in range(len(users) + 1):
        for us in itertools.combinations(users, nu):
            for ni in range(len(items) + 1):
                for its in itertools.combinations(items, ni):
                    rows = {r for r, (u, i) in enumerate(zip(user, item, strict=True)) if u in us and i in its}
                    deg_u = [sum(1 for r in rows if user[r] == u) for u in us]
                    deg_i = [sum(1 for r in rows if item[r] == i) for i in its]
                    if all(d >= k for d in deg_u + deg_i) and len(rows) > len(best):
                        best = rows
    return best


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=24),
    st.integers(1, 4),
)
def test_kcore_is_the_largest_valid_subset(pairs, k):
    user = np.array([u for u, _ in pairs], dtype=np.int32)
    item = np.array([i for _, i in pairs], dtype=np.int32)
    keep, rounds = kcore_mask(user, item, k)
    kept = set(np.flatnonzero(keep).tolist())
    assert kept == brute_force_kcore(user.tolist(), item.tolist(), k)
    if kept:
        assert np.bincount(user[keep]).max() >= k
        assert all(c == 0 or c >= k for c in np.bincount(user[keep]))
        assert all(c == 0 or c >= k for c in np.bincount(item[keep]))
    assert [r["interactions"] for r in rounds] == sorted({r["interactions"] for r in rounds}, reverse=True)


def _random_dataset(seed: int):
    """A small messy data set: ties, exact duplicates, repeated pairs, items without meta, a junk line."""
    rng = random.Random(seed)
    users = [f"A{rng.randrange(36**3):03X}" for _ in range(rng.randint(3, 12))]
    items = [f"B{n:02d}" for n in rng.sample(range(100), rng.randint(3, 10))]
    lines = []
    for _ in range(rng.randint(20, 120)):
        line = f"{rng.choice(items)},{rng.choice(users)},{rng.choice('12345')}.0,{rng.choice([5, 6, 7, 8, 9])}"
        lines += [line] * rng.choice([1, 1, 1, 2])
    lines.append("junk")
    meta = [json.dumps({"asin": i, "title": f"item {i}"}) for i in items if rng.random() < 0.9]
    return lines, meta


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)
@given(st.integers(0, 10**6), st.integers(1, 3))
def test_shuffled_input_gives_byte_identical_outputs_and_matches_pure_python(tmp_path_factory, seed, k):
    lines, meta = _random_dataset(seed)
    shuffled = lines[:]
    random.Random(seed + 1).shuffle(shuffled)
    folder = tmp_path_factory.mktemp("shuffle")
    outputs = []
    for name, order in (("a", lines), ("b", shuffled)):
        (folder / name).mkdir()
        ratings = folder / name / "ratings.csv"
        ratings.write_text("\n".join(order) + "\n")
        (folder / name / "meta.json").write_text("\n".join(meta) + "\n")
        try:
            run_pipeline(folder / name, ratings, folder / name / "meta.json", k)
        except UserError as err:
            assert "nothing is left" in str(err)
            outputs.append(None)
            continue
        outputs.append(tuple((folder / name / f).read_bytes() for f in ("sequences.parquet", "items.parquet")))
    assert outputs[0] == outputs[1]
    expected = pure_python(folder / "a" / "ratings.csv", folder / "a" / "meta.json", k)
    if outputs[0] is None:
        assert expected == {}
    else:
        got = pl.read_parquet(folder / "a" / "sequences.parquet")
        assert dict(zip(got["user_id"].to_list(), got["item_id"].to_list(), strict=True)) == expected


# ---------------------------------------------------------------- helpers ----------------------------------
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 9)), max_size=40),
    st.booleans(),
    st.booleans(),
)
def test_sorted_rows_packed_and_lexsort_paths(rows, unique, huge):
    columns = [np.array([r[c] for r in rows], dtype=np.int64) for c in range(3)]
    sizes = [6, 4, 10] if not huge else [2**30, 2**30, 2**30]  # 90 bits: no packing, lexsort
    got = list(zip(*[c.tolist() for c in sorted_rows(columns, sizes, unique)], strict=True))
    assert got == (sorted(set(rows)) if unique else sorted(rows))


@given(st.lists(st.sampled_from(["a", "b", "B", "ab", "", "é", "x" * 30]), max_size=30), st.booleans())
def test_encode_codes_are_equal_iff_ids_are(ids, collide):
    def colliding(series, seed):
        return np.zeros(len(series), np.uint64) if seed == 0 else series.hash(seed=seed).to_numpy()

    if not ids:
        return
    codes = encode(pl.Series(ids, dtype=pl.String), colliding if collide else encode.__defaults__[0])
    assert codes.n == len(set(ids))
    for a, b in itertools.combinations(range(len(ids)), 2):
        assert (codes.codes[a] == codes.codes[b]) == (ids[a] == ids[b])
    assert [ids[r] for r in codes.row_of_code[codes.codes]] == ids


def test_sequences_are_written_in_row_groups_readable_by_split(tmp_path):
    user_ids = pa.array([f"U{n:04d}" for n in range(5)])
    table = pa.table({"user_idx": pa.array(range(5), pa.int32()), "user_id": user_ids,
                      "item_idx": pa.array([[0, 1, 2]] * 5, pa.list_(pa.int32()))})  # fmt: skip
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=2)
    assert read_sequences(tmp_path / "s.parquet").items.tolist() == [0, 1, 2] * 5
