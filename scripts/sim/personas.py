"""Who the simulated product's users are: personas, acquisition channels, names and words.

The figures are a plausible learning app with a shop: most sign-ups never do much, a core of
learners comes back for months, a few buy a lot. Every number here is a knob of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Persona:
    """A kind of user. Probabilities are per user unless said otherwise.

    `engagement`: the chance of being active on a given day at first; each week it is multiplied
    by a draw from `decay` (lo, hi); below `quit_below` the user stops. `reactivate`: the chance
    that a user who stopped comes back after 30-70 days. `nps`: (lowest, highest) score given.
    """

    name: str
    share: float
    activate: float
    engagement: float
    decay: tuple[float, float]
    quit_below: float
    lessons: tuple[int, int]
    buy: float
    basket: tuple[int, int]
    check_in: float
    refer: float
    reactivate: float
    nps: tuple[int, int]
    answer_nps: float
    redeem: float


PERSONAS: Final = (
    Persona(
        "tourist",
        0.34,
        0.10,
        0.35,
        (0.25, 0.55),
        0.12,
        (0, 1),
        0.00,
        (5, 20),
        0.1,
        0.00,
        0.05,
        (0, 7),
        0.2,
        0.0,
    ),
    Persona(
        "casual",
        0.30,
        0.55,
        0.40,
        (0.70, 0.92),
        0.08,
        (1, 2),
        0.02,
        (10, 40),
        0.4,
        0.05,
        0.25,
        (5, 9),
        0.4,
        0.2,
    ),
    Persona(
        "learner",
        0.22,
        0.85,
        0.70,
        (0.85, 0.99),
        0.06,
        (1, 4),
        0.04,
        (15, 60),
        0.8,
        0.15,
        0.45,
        (7, 10),
        0.6,
        0.5,
    ),
    Persona(
        "shopper",
        0.10,
        0.90,
        0.45,
        (0.80, 0.97),
        0.06,
        (0, 2),
        0.25,
        (20, 180),
        0.3,
        0.10,
        0.40,
        (6, 10),
        0.5,
        0.6,
    ),
    Persona(
        "frustrated",
        0.04,
        0.60,
        0.50,
        (0.55, 0.80),
        0.10,
        (1, 2),
        0.05,
        (10, 50),
        0.2,
        0.00,
        0.05,
        (0, 5),
        0.9,
        0.0,
    ),
)


@dataclass(frozen=True, slots=True)
class Channel:
    """Where users come from: its share of sign-ups and how it shifts the persona mix."""

    name: str
    share: float
    utm_source: str | None
    persona_boost: tuple[tuple[str, float], ...] = ()


CHANNELS: Final = (
    Channel("organic", 0.35, None, (("learner", 1.3),)),
    Channel("paid_search", 0.25, "google", (("tourist", 1.4),)),
    Channel("social", 0.20, "tiktok", (("tourist", 1.6), ("learner", 0.7))),
    Channel("referral", 0.15, "invite", (("learner", 1.5), ("tourist", 0.6))),
    Channel("email", 0.05, "newsletter", (("shopper", 1.8),)),
)

TIMEZONES: Final = (
    ("America/New_York", 0.22),
    ("America/Los_Angeles", 0.12),
    ("America/Sao_Paulo", 0.08),
    ("Europe/London", 0.10),
    ("Europe/Berlin", 0.14),
    ("Asia/Shanghai", 0.12),
    ("Asia/Kolkata", 0.10),
    ("Asia/Tokyo", 0.06),
    ("Australia/Sydney", 0.06),
)

FIRST_NAMES: Final = (
    "Ada",
    "Zoë",
    "José",
    "Łukasz",
    "李娜",
    "Аня",
    "Søren",
    "Nguyễn",
    "Αλέξης",
    "محمد",
    "Aoife",
    "Priya",
    "Kenji",
    "Chloé",
    "Björn",
    "Fatima",
    "Mateo",
    "Ngozi",
    "Yuki",
    "Olúwaseun",
)
PLANS: Final = (("free", 0.7), ("pro", 0.25), ("team", 0.05))
COMPANIES: Final = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne & Co")
COURSES: Final = ("python-101", "sql-basics", "statistics", "spanish-a1", "日本語-入門", "design-thinking")
PRODUCTS: Final = (("course-pack", 29.0), ("pro-month", 12.0), ("certificate", 49.0), ("tutoring", 79.0))

COMMENTS: Final = {
    "detractor": (
        "The app keeps logging me out 😤",
        "Too slow on my phone, lessons freeze.",
        "太贵了\uff0c课程也不够多\u3002",
        "Les leçons sont trop courtes.",
        "Verwirrende Navigation, ich finde nichts.",
    ),
    "passive": (
        "Good, but I would like more advanced courses.",
        "Está bien, aunque a veces se cuelga.",
        "Nice streaks 🔥 but the shop is pricey.",
    ),
    "promoter": (
        "Love it! 🎉 Recommended it to my whole team.",
        "Best way to learn on the commute 🚇",
        "素晴らしいアプリです\uff01",
        "Die Streaks motivieren mich jeden Tag 💪",
    ),
}
FEEDBACK: Final = (
    ("bug", "Video does not load on Android 14 📱"),
    ("feature", "Please add a dark mode 🌙"),
    ("content", "Mehr Übungen zu SQL-Joins, bitte."),
    ("praise", "Die Erklärungen sind super klar 👏"),
    ("billing", "Я не могу изменить способ оплаты."),
)
