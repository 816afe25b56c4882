"""The demo's fixed word lists: latent styles shared by every category, and one profile per category.

A *style* is the latent item factor of the demo. It fixes, identically in every category, the colour and
shape of an item's images, its price level and a few colour/material/adjective words of its title. A
*profile* holds what is specific to one category: the top-level category name, departments (category
paths with their nouns), brands, a title template and the task's size. Nothing here is random; the
generator draws from these lists with a seeded generator.

`vocabulary()` lists every lower-cased word that can appear in a generated title, category list or brand,
so the demo's tiny BERT can have a vocabulary that covers the demo exactly.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    colours: tuple[str, ...]  # title words naming the image colour
    rgb: tuple[int, int, int]  # base colour of the images
    adjectives: tuple[str, ...]
    materials: tuple[str, ...]
    shape: str  # what the images show (see render.SHAPES)
    price_usd: float  # median price, the same in every category


# Eight styles, well apart in hue, shape and (log) price, so that each modality alone can tell them apart.
STYLES: tuple[Style, ...] = (
    Style(("red", "crimson"), (200, 40, 40), ("bold", "spicy"), ("leather", "iron"), "circle", 35.0),
    Style(("orange", "amber"), (235, 140, 30), ("rustic", "warm"), ("bamboo", "cedar"), "square", 17.0),
    Style(("yellow", "golden"), (230, 210, 50), ("sunny", "bright"), ("brass", "linen"), "triangle", 8.0),
    Style(("green", "olive"), (50, 160, 60), ("organic", "natural"), ("hemp", "jute"), "diamond", 13.0),
    Style(("teal", "turquoise"), (30, 170, 170), ("coastal", "fresh"), ("glass", "ceramic"), "ring", 60.0),
    Style(("blue", "navy"), (40, 70, 200), ("classic", "modern"), ("steel", "denim"), "cross", 120.0),
    Style(("purple", "violet"), (140, 50, 180), ("royal", "deluxe"), ("velvet", "silk"), "hstripes", 420.0),
    Style(("pink", "rose"), (235, 120, 170), ("cute", "sweet"), ("cotton", "plush"), "vstripes", 25.0),
)


@dataclass(frozen=True)
class Profile:
    top: str  # first entry of every item's category list
    main_cat: str
    departments: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # (category path below top, nouns)
    brands: tuple[str, ...]  # may hold html entities, as scraped
    template: str  # title; fields {brand} {adj} {colour} {material} {noun} {size} {count}
    series: str  # appended to the titles of a series; field {k}
    sizes: tuple[int, ...]
    counts: tuple[int, ...]
    users: int  # regular users (>= 5 interactions) at scale 1
    items: int  # items that regular users choose from, at scale 1

    @property
    def nouns(self) -> tuple[str, ...]:
        return tuple(noun for _, nouns in self.departments for noun in nouns)

    def path_of(self, noun_index: int) -> tuple[str, ...]:
        for path, nouns in self.departments:
            if noun_index < len(nouns):
                return path
            noun_index -= len(nouns)
        raise IndexError(noun_index)


PROFILES: dict[str, Profile] = {
    "Food": Profile(
        "Grocery & Gourmet Food",
        "Grocery",
        (
            (("Snack Foods", "Chips & Crisps"), ("chips", "crackers", "pretzels", "popcorn")),
            (("Beverages", "Coffee, Tea & Cocoa"), ("coffee", "tea", "cocoa", "lemonade")),
            (("Pantry Staples", "Condiments & Salad Dressings"), ("sauce", "salsa", "mustard", "honey")),
            (("Candy & Chocolate",), ("chocolate", "caramels", "cookies", "granola")),
        ),
        (
            "Happy Valley",
            "Blue Ridge Farms",
            "Salt &amp; Stone",
            "Oakwood Kitchen",
            "Little Acre",
            "Northfield",
            "Sunrise Orchards",
            "Maple Lane",
            "Gourmet Roots",
            "Harvest Table",
        ),
        "{brand} {adj} {colour} {noun} with {material}, {size} Ounce (Pack of {count})",
        "Variety No. {k}",
        (4, 8, 12, 16, 24, 32),
        (1, 2, 3, 4, 6, 12),
        800,
        420,
    ),
    "Movies": Profile(
        "Movies & TV",
        "Movies & TV",
        (
            (("Genre for Featured Categories", "Comedy"), ("summer", "wedding", "neighbors", "holiday")),
            (("Genre for Featured Categories", "Drama"), ("legacy", "harbor", "promise", "letters")),
            (("Genre for Featured Categories", "Mystery & Thrillers"), ("detective", "secret", "night", "storm")),
            (("Genre for Featured Categories", "Science Fiction"), ("frontier", "empire", "voyage", "planet")),
        ),
        (
            "Warner Home Video",
            "Criterion Collection",
            "Lionsgate",
            "Paramount",
            "Universal Studios",
            "Sony Pictures",
            "Kino Lorber",
            "Shout Factory",
            "Mill Creek",
            "Acorn Media",
        ),
        "The {adj} {colour} {noun}: A {material} Story [DVD] ({size} Minutes, {count} Discs)",
        "Season {k}",
        (88, 95, 102, 110, 124, 148),
        (1, 2, 3, 4),
        900,
        480,
    ),
    "Home": Profile(
        "Home & Kitchen",
        "Amazon Home",
        (
            (("Kitchen & Dining", "Dining & Entertaining"), ("mug", "plate", "bowl", "teapot")),
            (("Bedding", "Blankets & Throws"), ("blanket", "pillow", "quilt", "sheets")),
            (("Home Décor Products", "Candles & Holders"), ("candle", "vase", "lantern", "clock")),
            (("Storage & Organization", "Baskets, Bins & Containers"), ("basket", "jar", "bin", "shelf")),
        ),
        (
            "Hearth &amp; Home",
            "Casa Nova",
            "Urban Loft",
            "Willow Creek",
            "Mainstays",
            "Homestead Co",
            "Cozy Nest",
            "Pinecone Living",
            "Blue Heron",
            "Stonewall Kitchen",
        ),
        "{brand} {adj} {material} {noun}, {colour}, {size} Inch, Set of {count}",
        "Collection {k}",
        (6, 8, 10, 12, 14, 18),
        (1, 2, 4, 6),
        850,
        460,
    ),
    "Clothing": Profile(
        "Clothing, Shoes & Jewelry",
        "AMAZON FASHION",
        (
            (("Women", "Clothing", "Dresses"), ("dress", "skirt", "blouse", "cardigan")),
            (("Men", "Clothing", "Shirts"), ("shirt", "sweater", "jacket", "hoodie")),
            (("Women", "Shoes"), ("boots", "sneakers", "sandals", "loafers")),
            (("Women", "Jewelry"), ("necklace", "bracelet", "earrings", "scarf")),
        ),
        (
            "Northwind Apparel",
            "Levis",
            "Ella &amp; Jo",
            "Summit Outfitters",
            "Coastline",
            "Fairweather",
            "Kensington",
            "Wild Fern",
            "Trailhead",
            "Metro Thread",
        ),
        "{brand} Women's {adj} {material} {noun}, {colour}, Size {size} ({count} Pack)",
        "Style {k}",
        (2, 4, 6, 8, 10, 12),
        (1, 2, 3),
        850,
        460,
    ),
    "Scientific": Profile(
        "Industrial & Scientific",
        "Industrial & Scientific",
        (
            (("Lab & Scientific Products", "Lab Supplies & Consumables"), ("beaker", "flask", "pipette", "funnel")),
            (("Test, Measure & Inspect",), ("thermometer", "caliper", "magnifier", "sensor")),
            (("Occupational Health & Safety Products",), ("gloves", "goggles", "respirator", "apron")),
            (("Industrial Hardware",), ("clamp", "tubing", "tape", "fastener")),
        ),
        (
            "LabPro",
            "Eisco",
            "Apex Instruments",
            "United Scientific",
            "Precision Works",
            "Gardner Bender",
            "Sci &amp; Tech",
            "Mettle",
            "Corning Labs",
            "Bench Mate",
        ),
        "{brand} {material} {noun}, {adj} {colour} Grade, {size} mm, Pack of {count}",
        "Kit {k}",
        (5, 10, 25, 50, 100, 250),
        (1, 5, 10, 25),
        380,
        220,
    ),
    "Office": Profile(
        "Office Products",
        "Office Products",
        (
            (("Office & School Supplies", "Writing & Correction Supplies"), ("pen", "pencil", "marker", "highlighter")),
            (("Office & School Supplies", "Paper"), ("notebook", "journal", "envelope", "labels")),
            (
                ("Office & School Supplies", "Desk Accessories & Workspace Organizers"),
                ("stapler", "organizer", "tray", "clipboard"),
            ),
            (
                ("Office & School Supplies", "Calendars, Planners & Personal Organizers"),
                ("planner", "calendar", "binder", "folder"),
            ),
        ),
        (
            "Paper Mill",
            "Inkwell",
            "DeskMate",
            "Pilot",
            "Avery",
            "Scholar &amp; Co",
            "Quillworks",
            "Brightline",
            "Staples",
            "Moleskine",
        ),
        "{brand} {adj} {colour} {noun}, {material} Cover, {size} Sheets, {count} Count",
        "Edition {k}",
        (50, 80, 100, 120, 160, 200),
        (1, 2, 3, 6, 12),
        480,
        260,
    ),
    "Pantry": Profile(
        "Prime Pantry",
        "Grocery",
        (
            (("Food", "Breakfast"), ("oatmeal", "pancake", "syrup", "cereal")),
            (("Household Supplies",), ("detergent", "sponge", "towels", "soap")),
        ),
        ("Pantry Basics", "Great Value", "Kitchen Pride", "Morning Sun"),
        "{brand} {adj} {colour} {noun}, {material} Blend, {size} Ounce, {count} Pack",
        "No. {k}",
        (8, 12, 16, 24),
        (1, 2, 4, 6),
        420,
        240,
    ),
    "Instruments": Profile(
        "Musical Instruments",
        "Musical Instruments",
        (
            (("Instrument Accessories", "Guitar & Bass Accessories"), ("strings", "picks", "capo", "strap")),
            (("Drums & Percussion",), ("drumsticks", "tambourine", "cymbal", "shaker")),
        ),
        ("Fender", "Dunlop", "Ernie Ball", "Meinl", "Vic Firth"),
        "{brand} {adj} {colour} {noun}, {material}, {size} Gauge, {count} Pack",
        "Series {k}",
        (9, 10, 11, 12),
        (1, 3, 6, 12),
        480,
        260,
    ),
    "Arts": Profile(
        "Arts, Crafts & Sewing",
        "Arts, Crafts & Sewing",
        (
            (("Painting, Drawing & Art Supplies",), ("paint", "brush", "canvas", "easel")),
            (("Sewing",), ("yarn", "thread", "fabric", "buttons")),
        ),
        ("Crafty Hands", "Artisan Loft", "Prismacolor", "Red Heart", "Liquitex"),
        "{brand} {adj} {colour} {material} {noun}, {size} Piece Set, {count} Pack",
        "Set {k}",
        (6, 12, 24, 36),
        (1, 2, 3),
        520,
        280,
    ),
}

MAX_SERIES = 5  # a series has 2..MAX_SERIES items, numbered 1..MAX_SERIES

# Words the generator writes into titles besides the fields of the template and the series label.
EXTRA_TITLE_WORDS = ("new", "improved", "value", "bundle")


def words(text: str) -> list[str]:
    """The lower-cased words of a raw field, as an uncased BERT sees them: html entities decoded, accents
    stripped, split at everything that is not a letter or a digit."""
    text = unicodedata.normalize("NFD", html.unescape(text).lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    return re.findall(r"[a-z0-9]+", text)


def vocabulary() -> list[str]:
    """Every lower-cased word a generated title, category list or brand can contain (sorted, unique)."""
    found: set[str] = set(EXTRA_TITLE_WORDS)
    for style in STYLES:
        for word in (*style.colours, *style.adjectives, *style.materials):
            found.update(words(word))
    for profile in PROFILES.values():
        fixed = re.sub(r"\{\w+\}", " ", profile.template + " " + profile.series)
        found.update(words(" ".join((profile.top, fixed, *profile.brands, *profile.nouns))))
        for path, _ in profile.departments:
            found.update(words(" ".join(path)))
        found.update(str(n) for n in (*profile.sizes, *profile.counts, *range(1, MAX_SERIES + 1)))
    return sorted(found)
