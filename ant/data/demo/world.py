"""The latent world of one demo category: items with a hidden style, users with hidden tastes, and the
rating lines they produce, noise included. Pure numpy, no files; `render` turns a world into raw files.

How the learnable structure is planted:
- every item has one latent style (catalog.STYLES); its images, price level and some title words follow
  the style in the same way in every category, its noun follows it in a category-specific way;
- 40% of the items form *series* (2-5 items of one style, brand and noun, numbered);
- a user has a Dirichlet taste over styles; each next item is, in this order of checks: the next item of
  the current item's series (p_series), a uniformly random item (p_random), or a popularity-weighted item of
  the current style (p_stay) or of a style drawn from the user's taste;
- timestamps are whole days (as in the real files), increasing along the sequence, with some ties.
Noise that the data stage must remove is added on top: sparse users, rare items, items without a meta record,
the same (user, item) at a later time, exact duplicate lines.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ant.data.demo.catalog import MAX_SERIES, STYLES, Profile

DAY = 86_400
FIRST_DAY = 15_340  # 2012-01-01
LAST_DAY = 17_805  # 2018-10-01, the end of the 2018 crawl
ALPHANUMERIC = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@dataclass(frozen=True)
class Knobs:
    """How a category is generated. Shares are of the regular items / users / lines."""

    taste_concentration: float = 0.3  # Dirichlet parameter: small = users stick to one or two styles
    p_series: float = 0.5  # go on to the next item of the current series
    p_random: float = 0.08  # jump to a uniformly random item
    p_stay: float = 0.45  # otherwise: stay in the current style, else draw a style from the taste
    mean_extra_length: float = 4.0  # regular sequences: 5 + geometric extra items
    max_length: int = 60
    popularity_sigma: float = 1.0  # log-normal item popularity
    series_share: float = 0.4
    home_noun_share: float = 0.8  # an item's noun is one of its style's nouns in this category
    price_sigma: float = 0.25  # log-price spread around the style's median
    mean_gap_days: float = 25.0
    tie_share: float = 0.12  # consecutive interactions on the same day
    sparse_user_share: float = 0.2  # users with 1-4 interactions
    rare_item_share: float = 0.06  # items with 1-3 interactions
    no_meta_share: float = 0.03  # rated items without a meta record
    meta_only_share: float = 0.03  # meta records of items nobody rated
    repeat_share: float = 0.01  # the same (user, item) again at a later day
    duplicate_line_share: float = 0.015  # exact duplicate lines
    ratings: tuple[float, ...] = (0.06, 0.06, 0.10, 0.22, 0.56)  # P(1.0 .. 5.0 stars)


KNOBS = Knobs()


@dataclass
class World:
    name: str
    profile: Profile
    # items: core items (what regular users choose from), then rare items, then meta-only items
    asin: np.ndarray  # str
    style: np.ndarray
    noun: np.ndarray  # index into profile.nouns
    brand: np.ndarray  # index into profile.brands, -1 = no brand
    series: np.ndarray  # series number, -1 = not in a series
    series_pos: np.ndarray  # 1.. within the series, 0 = not in a series
    next_in_series: np.ndarray  # item, -1 = none
    popularity: np.ndarray
    price_usd: np.ndarray
    has_meta: np.ndarray  # bool
    rated: np.ndarray  # bool: appears in the ratings file
    # users
    user_id: np.ndarray  # str
    taste: np.ndarray  # (users, styles)
    # rating lines, in file order
    line_user: np.ndarray
    line_item: np.ndarray
    line_day: np.ndarray
    line_rating: np.ndarray
    noise: dict[str, int]

    @property
    def line_timestamp(self) -> np.ndarray:
        return self.line_day.astype(np.int64) * DAY


def stream(seed: int, name: str, purpose: str) -> np.random.Generator:
    """An independent random stream per (seed, category, purpose): a category's files do not depend on which
    other categories are generated, and changing how images are drawn does not change the sequences."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(purpose.encode())])


def build_world(name: str, profile: Profile, seed: int, scale: float = 1.0, knobs: Knobs = KNOBS) -> World:
    """One category's items, users and rating lines; `scale` multiplies the profile's users and items."""
    rng = stream(seed, name, "items")
    n_core = max(40, round(profile.items * scale))
    n_rare = max(3, round(knobs.rare_item_share * n_core))
    n_meta_only = max(2, round(knobs.meta_only_share * n_core))
    n_items = n_core + n_rare + n_meta_only
    n_styles = len(STYLES)

    # balanced over the core items, so that every style has items to choose from at any scale
    style = np.concatenate(
        [rng.permutation(np.arange(n_core) % n_styles), rng.integers(n_styles, size=n_items - n_core)]
    )
    popularity = rng.lognormal(0.0, knobs.popularity_sigma, n_items)
    noun = _nouns(rng, style, len(profile.nouns), knobs.home_noun_share)
    brand = np.where(rng.random(n_items) < 0.05, -1, rng.integers(len(profile.brands), size=n_items))
    series, series_pos, next_in_series = cut_series(rng, style[:n_core], knobs.series_share, n_items)
    first = _series_heads(series, series_pos)  # members share the brand and noun of their first item
    noun, brand = noun[first], brand[first]
    medians = np.array([s.price_usd for s in STYLES])
    price = np.exp(np.log(medians[style]) + rng.normal(0.0, knobs.price_sigma, n_items))
    price = np.where(rng.random(n_items) < 0.5, np.floor(price) + 0.99, np.round(price, 2))
    has_meta = np.ones(n_items, dtype=bool)
    has_meta[rng.choice(n_core, size=max(2, round(knobs.no_meta_share * n_core)), replace=False)] = False
    luxury = int(np.argmax(np.where(has_meta[:n_core], price[:n_core], 0.0)))
    price[luxury] = max(price[luxury], 1249.99)  # one outlier per category, so that "$1,249.99" shapes exist
    rated = np.arange(n_items) < n_core + n_rare
    asin = _ids(rng, n_items, prefix="B0", length=10)

    users = stream(seed, name, "users")
    n_regular = max(40, round(profile.users * scale))
    n_users = n_regular + max(5, round(knobs.sparse_user_share * n_regular))
    taste = users.dirichlet(np.full(n_styles, knobs.taste_concentration), size=n_users)
    extra = np.minimum(users.geometric(1.0 / (1.0 + knobs.mean_extra_length), n_regular) - 1, knobs.max_length - 5)
    lengths = np.concatenate([5 + extra, users.integers(1, 5, size=n_users - n_regular)])
    walk = _Walk(users, style[:n_core], popularity[:n_core], next_in_series, knobs)
    seq_user, seq_item, seq_day = [], [], []
    for u in range(n_users):
        items = walk.sequence(taste[u], lengths[u])
        seq_user.append(np.full(len(items), u))
        seq_item.append(np.array(items))
        seq_day.append(day_sequence(users, len(items), knobs))
    user, item, day = (np.concatenate(parts) for parts in (seq_user, seq_item, seq_day))

    noise_rng = stream(seed, name, "noise")
    user, item, day, noise = _add_noise(noise_rng, user, item, day, n_core, n_rare, n_users, knobs)
    rating = noise_rng.choice(np.arange(1.0, 6.0), size=len(user), p=knobs.ratings)
    duplicate = noise_rng.choice(len(user), size=max(3, round(knobs.duplicate_line_share * len(user))), replace=False)
    noise["duplicate_lines"] = len(duplicate)
    user, item, day, rating = (np.concatenate([a, a[duplicate]]) for a in (user, item, day, rating))

    user_id = _ids(users, n_users, prefix="A", length=13)
    order = np.lexsort((user_id[user], day, asin[item]))  # the real files are grouped by item
    return World(
        name=name,
        profile=profile,
        asin=asin,
        style=style,
        noun=noun,
        brand=brand,
        series=series,
        series_pos=series_pos,
        next_in_series=next_in_series,
        popularity=popularity,
        price_usd=price,
        has_meta=has_meta,
        rated=rated,
        user_id=user_id,
        taste=taste,
        line_user=user[order],
        line_item=item[order],
        line_day=day[order],
        line_rating=rating[order],
        noise=noise,
    )


class _Walk:
    """Users' item sequences: series continuation, random jumps, else taste- and popularity-driven."""

    def __init__(
        self,
        rng: np.random.Generator,
        style: np.ndarray,
        popularity: np.ndarray,
        next_in_series: np.ndarray,
        knobs: Knobs,
    ) -> None:
        self.rng, self.style, self.next, self.knobs = rng, style, next_in_series, knobs
        self.members = [np.flatnonzero(style == s) for s in range(len(STYLES))]
        self.cumulative = [np.cumsum(popularity[m]) / popularity[m].sum() for m in self.members]

    def popular_item(self, style: int) -> int:
        members = self.members[style]
        return int(members[min(np.searchsorted(self.cumulative[style], self.rng.random()), len(members) - 1)])

    def step(self, taste: np.ndarray, current: int | None) -> int:
        k, rng = self.knobs, self.rng
        if current is not None:
            if self.next[current] >= 0 and rng.random() < k.p_series:
                return int(self.next[current])
            if rng.random() < k.p_random:
                return int(rng.integers(len(self.style)))
            if rng.random() < k.p_stay:
                return self.popular_item(int(self.style[current]))
        return self.popular_item(int(rng.choice(len(taste), p=taste)))

    def sequence(self, taste: np.ndarray, length: int) -> list[int]:
        items: list[int] = []
        seen: set[int] = set()
        for _ in range(length):
            for _attempt in range(8):  # a user rates an item once; repeats are added later, as noise
                item = self.step(taste, items[-1] if items else None)
                if item not in seen:
                    items.append(item)
                    seen.add(item)
                    break
        return items


def _nouns(rng: np.random.Generator, style: np.ndarray, n_nouns: int, home_share: float) -> np.ndarray:
    """Each style owns a few of the category's nouns (a category-specific assignment)."""
    n_styles = len(STYLES)
    owner = rng.permutation(np.arange(n_nouns) % n_styles)  # noun -> style
    homes = [np.flatnonzero(owner == s) for s in range(n_styles)]
    home_pick = np.array([homes[s][rng.integers(len(homes[s]))] for s in style])
    return np.where(rng.random(len(style)) < home_share, home_pick, rng.integers(n_nouns, size=len(style)))


def cut_series(rng: np.random.Generator, style: np.ndarray, share: float, n_items: int):
    """Cut a share of each style's items into numbered series of 2..MAX_SERIES items."""
    series = np.full(n_items, -1)
    position = np.zeros(n_items, dtype=np.int64)
    next_item = np.full(n_items, -1)
    number = 0
    for s in range(len(STYLES)):
        members = rng.permutation(np.flatnonzero(style == s))
        members = members[: round(share * len(members))]
        start = 0
        while len(members) - start >= 2:
            size = min(int(rng.integers(2, MAX_SERIES + 1)), len(members) - start)
            chunk = members[start : start + size]
            series[chunk], position[chunk] = number, np.arange(1, size + 1)
            next_item[chunk[:-1]] = chunk[1:]
            number, start = number + 1, start + size
    return series, position, next_item


def _series_heads(series: np.ndarray, position: np.ndarray) -> np.ndarray:
    """For every item the first item of its series (itself when not in a series)."""
    head = np.arange(len(series))
    firsts = np.flatnonzero(position == 1)
    by_series = dict(zip(series[firsts].tolist(), firsts.tolist(), strict=True))
    members = np.flatnonzero(series >= 0)
    head[members] = [by_series[s] for s in series[members].tolist()]
    return head


def day_sequence(rng: np.random.Generator, n: int, knobs: Knobs) -> np.ndarray:
    gaps = np.where(rng.random(n) < knobs.tie_share, 0, rng.geometric(1.0 / knobs.mean_gap_days, n))
    gaps[0] = 0
    offsets = np.cumsum(gaps)
    span = LAST_DAY - FIRST_DAY
    if offsets[-1] > span:  # a very long sequence: squeeze it into the crawl's period, order kept
        offsets = offsets * span // offsets[-1]
    return FIRST_DAY + rng.integers(0, span - offsets[-1] + 1) + offsets


def _add_noise(rng, user, item, day, n_core, n_rare, n_users, knobs):
    """Rare items (1-3 lines each, random users) and repeats of a (user, item) at a later day."""
    rare_items = np.repeat(np.arange(n_core, n_core + n_rare), rng.integers(1, 4, size=n_rare))
    rare_users = rng.integers(n_users, size=len(rare_items))
    rare_days = rng.integers(FIRST_DAY, LAST_DAY, size=len(rare_items))
    repeat = rng.choice(len(user), size=max(3, round(knobs.repeat_share * len(user))), replace=False)
    repeat_days = np.minimum(day[repeat] + rng.integers(1, 366, size=len(repeat)), LAST_DAY)
    noise = {"rare_item_lines": len(rare_items), "repeated_pairs": len(repeat)}
    return (
        np.concatenate([user, rare_users, user[repeat]]),
        np.concatenate([item, rare_items, item[repeat]]),
        np.concatenate([day, rare_days, repeat_days]),
        noise,
    )


def _ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """`n` distinct Amazon-looking ids (ASINs 'B0XXXXXXXX', reviewer ids 'AXXXXXXXXXXXX')."""
    ids: list[str] = []
    taken: set[str] = set()
    while len(ids) < n:
        chars = ALPHANUMERIC[rng.integers(len(ALPHANUMERIC), size=(n - len(ids), length - len(prefix)))]
        for row in chars:
            candidate = prefix + "".join(row)
            if candidate not in taken:
                taken.add(candidate)
                ids.append(candidate)
    return np.array(ids)
