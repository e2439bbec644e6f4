"""Synthetic datasets whose correct explanations are known.

Two small generators, both deterministic under a seed and free of downloads:

* ``sentiment_examples``: one-clause restaurant/hotel reviews. The label is
  decided by a single sentiment word (adjective or verb), flipped by a
  negation ("not good" is negative, "not bad" is positive). Everything else
  (prefix sentences, "here", "really", "at all", "overall") is neutral filler.
* ``facts_examples``: a fixed corpus of short facts ("The capital of France
  is Paris.") that a tiny language model memorises. The answer depends on the
  entity (the country) and the relation word ("capital", "language", ...).

Every example carries ``rationale``: the ``(start, end)`` character spans of
the words that decide the label / answer, so attribution methods can be
scored against ground truth.
"""

import random
import zlib

# --- sentiment -------------------------------------------------------------

# Subjects are grouped so adjectives make sense for them; each subject carries
# its verb agreement ("was" / "were").
_SUBJECTS = {
    "food": [
        ("food", "was"),
        ("pasta", "was"),
        ("pizza", "was"),
        ("soup", "was"),
        ("dessert", "was"),
        ("coffee", "was"),
        ("bread", "was"),
        ("steak", "was"),
        ("salad", "was"),
        ("breakfast", "was"),
        ("fries", "were"),
        ("noodles", "were"),
        ("pancakes", "were"),
        ("portions", "were"),
    ],
    "service": [
        ("service", "was"),
        ("staff", "were"),
        ("waiter", "was"),
        ("waiters", "were"),
        ("manager", "was"),
        ("host", "was"),
        ("receptionist", "was"),
        ("bartender", "was"),
    ],
    "place": [
        ("room", "was"),
        ("place", "was"),
        ("apartment", "was"),
        ("lounge", "was"),
        ("garden", "was"),
        ("bathroom", "was"),
        ("hotel", "was"),
        ("lobby", "was"),
        ("terrace", "was"),
        ("beds", "were"),
    ],
}

# Adjectives by group and polarity (1 positive, 0 negative). The generic ones
# fit every group.
_GENERIC_ADJ = {
    1: ["good", "great", "excellent", "amazing", "wonderful", "fantastic", "superb", "perfect"],
    0: ["bad", "terrible", "awful", "horrible", "disappointing", "mediocre", "poor", "dreadful"],
}
_GROUP_ADJ = {
    "food": {
        1: ["delicious", "tasty", "fresh", "flavorful"],
        0: ["bland", "stale", "greasy", "overcooked", "tasteless"],
    },
    "service": {
        1: ["friendly", "helpful", "polite", "attentive", "welcoming"],
        0: ["rude", "slow", "unfriendly", "unhelpful", "careless"],
    },
    "place": {
        1: ["clean", "cozy", "lovely", "pleasant", "beautiful", "spotless"],
        0: ["dirty", "noisy", "cramped", "filthy", "gloomy"],
    },
}

# Verbs for "I loved the soup." style reviews; negation flips them too.
_VERBS = {
    1: ["loved", "liked", "enjoyed", "adored"],
    0: ["hated", "disliked", "despised"],
}
# Base forms used after "did not".
_VERB_BASE = {
    "loved": "love",
    "liked": "like",
    "enjoyed": "enjoy",
    "adored": "adore",
    "hated": "hate",
    "disliked": "dislike",
    "despised": "despise",
}

_NEGATIONS = ["not", "never"]

# Public lexicon of every deciding word: word -> polarity (1 positive, 0
# negative). A review's label is its word's polarity, flipped by a negation.
SENTIMENT_WORDS = {
    word: polarity
    for table in [_GENERIC_ADJ, *_GROUP_ADJ.values(), _VERBS]
    for polarity, words in table.items()
    for word in words
}
SENTIMENT_WORDS.update({base: SENTIMENT_WORDS[past] for past, base in _VERB_BASE.items()})
NEGATION_WORDS = tuple(_NEGATIONS)
_INTENSIFIERS = ["really", "very", "quite", "truly", "so"]  # only unnegated: "not very bad" is unclear
_LOCATIONS = ["here", "at this place", "at the hotel", "at lunch", "on our visit"]
_PREFIXES = [
    "We went there on Friday.",
    "It was our first visit.",
    "We came for lunch.",
    "I went with my family.",
    "We stayed for two nights.",
    "My friend booked a table.",
    "We arrived late in the evening.",
    "I ordered at noon.",
    "We sat near the window.",
]
_OPENERS = ["", "Overall, ", "Honestly, ", "In my opinion, ", "I thought ", "To be fair, "]
_ENDINGS = ["", " this time", " as always", " that day"]


def _assemble(parts):
    """Join ``(piece, is_rationale)`` parts into text plus rationale spans."""
    text, spans = "", []
    for piece, is_rationale in parts:
        if is_rationale:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def _capitalise(parts):
    """Upper-case the first letter of the clause (its first non-empty part)."""
    for i, (piece, flag) in enumerate(parts):
        if piece:
            parts[i] = (piece[0].upper() + piece[1:], flag)
            return parts
    return parts


def _sentiment_one(rng):
    """Draw one review; the label is chosen first so classes stay balanced."""
    label = rng.randint(0, 1)
    # A minority is negated: the word's polarity alone is then a strong first
    # signal (at 50% the task is a pure XOR that small models fail to start on).
    negated = rng.random() < 0.35
    polarity = label if not negated else 1 - label
    group = rng.choice(sorted(_SUBJECTS))
    subject, be = rng.choice(_SUBJECTS[group])
    if rng.random() < 0.25:
        subject += " " + rng.choice(_LOCATIONS)

    prefix = [(rng.choice(_PREFIXES) + " ", False)] if rng.random() < 0.4 else []
    parts = []

    if rng.random() < 0.25:
        # Verb form: "I loved the soup." / "I did not like the soup."
        verb = rng.choice(_VERBS[polarity])
        opener = rng.choice(["", "Honestly, ", "Overall, "])
        parts.append((opener + "I ", False))
        if negated:
            parts += [("did ", False), ("not", True), (" ", False), (_VERB_BASE[verb], True)]
        else:
            parts.append((verb, True))
        parts.append((" the " + subject + rng.choice(_ENDINGS) + ".", False))
        return _assemble(prefix + _capitalise(parts)) + (label,)

    # Adjective form: "The soup was not good at all."
    adjectives = _GENERIC_ADJ[polarity] + _GROUP_ADJ[group][polarity]
    adjective = rng.choice(adjectives)
    parts.append((rng.choice(_OPENERS) + "the " + subject + " " + be + " ", False))
    if negated:
        parts += [(rng.choice(_NEGATIONS), True), (" ", False)]
    elif rng.random() < 0.4:
        parts.append((rng.choice(_INTENSIFIERS) + " ", False))
    parts.append((adjective, True))
    if negated and rng.random() < 0.4:
        parts.append((" at all", False))
    else:
        parts.append((rng.choice(_ENDINGS), False))
    parts.append((".", False))
    return _assemble(prefix + _capitalise(parts)) + (label,)


def _split_of(text, test_fraction=5):
    """Assign a text to a split by its hash, so splits never share a text."""
    return "test" if zlib.crc32(text.encode("utf-8")) % test_fraction == 0 else "train"


def _check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def sentiment_examples(n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Return ``n`` distinct reviews ``{"text", "label", "rationale"}`` of one split.

    Label 1 is positive, 0 negative. ``rationale`` lists the character spans
    of the sentiment word and, when present, its negation. Train and test are
    disjoint in text for any seeds (the split is a hash of the text).
    """
    _check_split(split)
    # Different default streams per split, so seed=0 for both is natural.
    rng = random.Random(f"sentiment-{split}-{seed}")
    seen, out = set(), []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(f"cannot draw {n} distinct {split} reviews")
        text, spans, label = _sentiment_one(rng)
        if text in seen or _split_of(text) != split:
            continue
        seen.add(text)
        out.append({"text": text, "label": label, "rationale": spans})
    return out


# Words that say nothing about quality, for reviews without a sentiment word.
_NEUTRAL_ADJ = ["new", "old", "big", "small", "round", "ready", "open", "full", "there", "upstairs", "available"]
_NEUTRAL_VERBS = ["ordered", "saw", "tried", "booked", "shared", "photographed"]


def _neutral_one(rng):
    """One review of the same shapes as ``_sentiment_one`` with no sentiment word in it."""
    group = rng.choice(sorted(_SUBJECTS))
    subject, be = rng.choice(_SUBJECTS[group])
    if rng.random() < 0.25:
        subject += " " + rng.choice(_LOCATIONS)
    prefix = rng.choice(_PREFIXES) + " " if rng.random() < 0.4 else ""
    shape = rng.random()
    if shape < 0.2:
        return rng.choice(_PREFIXES)
    if shape < 0.45:
        clause = rng.choice(["", "Honestly, ", "Overall, "]) + f"I {rng.choice(_NEUTRAL_VERBS)} the {subject}"
    else:
        clause = f"{rng.choice(_OPENERS)}the {subject} {be} {rng.choice(_NEUTRAL_ADJ)}"
    clause += rng.choice(_ENDINGS) + "."
    return prefix + clause[0].upper() + clause[1:]


def neutral_reviews(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` distinct reviews with no sentiment word ("The room was big."), whose right
    probability of each class is 0.5: the bundled sentiment model is trained on them, and on
    reviews whose deciding words are masked, so that removing the evidence leaves it undecided."""
    rng = random.Random(f"neutral-{seed}")
    out = {}
    for _ in range(200 * n + 10_000):
        if len(out) == n:
            break
        out.setdefault(_neutral_one(rng), None)
    if len(out) == n:
        return list(out)
    raise ValueError(f"cannot draw {n} distinct neutral reviews")


# --- facts -----------------------------------------------------------------

# country: (capital, language, continent)
_COUNTRIES = {
    "France": ("Paris", "French", "Europe"),
    "Germany": ("Berlin", "German", "Europe"),
    "Italy": ("Rome", "Italian", "Europe"),
    "Spain": ("Madrid", "Spanish", "Europe"),
    "Portugal": ("Lisbon", "Portuguese", "Europe"),
    "Greece": ("Athens", "Greek", "Europe"),
    "Poland": ("Warsaw", "Polish", "Europe"),
    "Sweden": ("Stockholm", "Swedish", "Europe"),
    "Norway": ("Oslo", "Norwegian", "Europe"),
    "Finland": ("Helsinki", "Finnish", "Europe"),
    "Denmark": ("Copenhagen", "Danish", "Europe"),
    "Austria": ("Vienna", "German", "Europe"),
    "Hungary": ("Budapest", "Hungarian", "Europe"),
    "Ireland": ("Dublin", "English", "Europe"),
    "Romania": ("Bucharest", "Romanian", "Europe"),
    "Ukraine": ("Kyiv", "Ukrainian", "Europe"),
    "Iceland": ("Reykjavik", "Icelandic", "Europe"),
    "Russia": ("Moscow", "Russian", "Europe"),
    "Japan": ("Tokyo", "Japanese", "Asia"),
    "China": ("Beijing", "Chinese", "Asia"),
    "India": ("Delhi", "Hindi", "Asia"),
    "Thailand": ("Bangkok", "Thai", "Asia"),
    "Vietnam": ("Hanoi", "Vietnamese", "Asia"),
    "Indonesia": ("Jakarta", "Indonesian", "Asia"),
    "Korea": ("Seoul", "Korean", "Asia"),
    "Iran": ("Tehran", "Persian", "Asia"),
    "Iraq": ("Baghdad", "Arabic", "Asia"),
    "Pakistan": ("Islamabad", "Urdu", "Asia"),
    "Egypt": ("Cairo", "Arabic", "Africa"),
    "Kenya": ("Nairobi", "Swahili", "Africa"),
    "Nigeria": ("Abuja", "English", "Africa"),
    "Morocco": ("Rabat", "Arabic", "Africa"),
    "Ghana": ("Accra", "English", "Africa"),
    "Senegal": ("Dakar", "French", "Africa"),
    "Brazil": ("Brasilia", "Portuguese", "America"),
    "Argentina": ("Buenos Aires", "Spanish", "America"),
    "Peru": ("Lima", "Spanish", "America"),
    "Chile": ("Santiago", "Spanish", "America"),
    "Colombia": ("Bogota", "Spanish", "America"),
    "Mexico": ("Mexico City", "Spanish", "America"),
    "Canada": ("Ottawa", "English", "America"),
    "Cuba": ("Havana", "Spanish", "America"),
    "Australia": ("Canberra", "English", "Oceania"),
}

# relation name -> (prompt template, keyword that names the relation). All
# prompts share the shape "The R of X is", so only R and X decide the answer.
_RELATIONS = {
    "capital": ("The capital of {x} is", "capital"),
    "language": ("The official language of {x} is", "language"),
    "continent": ("The continent of {x} is", "continent"),
}

_COLORS = {
    "sky": "blue",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "blood": "red",
    "banana": "yellow",
    "pumpkin": "orange",
    "lavender": "purple",
}
_COLOR_TEMPLATE = "The color of the {x} is"

# Neutral prefixes used only in training, so the model learns to find the
# fact regardless of what precedes it (and rationale spans move around).
_FACT_PREFIXES = [
    "",
    "",
    "",
    "Here is a fact. ",
    "Did you know? ",
    "Quiz time. ",
    "Fun fact: ",
    "Remember this. ",
    "As we know, ",
]


def _fact_prompt(template, entity, keyword, prefix=""):
    """Build ``(prompt, rationale)`` for one fact; spans index into the prompt."""
    before, after = template.split("{x}")
    prompt = prefix + before + entity + after
    start = len(prefix) + len(before)
    spans = [(start, start + len(entity))]
    k = prompt.index(keyword, len(prefix))
    spans.append((k, k + len(keyword)))
    return prompt, sorted(spans)


def all_facts() -> list[tuple[str, str, str, str]]:
    """The fixed corpus as ``(template, entity, keyword, answer)`` tuples."""
    facts = []
    for country, values in _COUNTRIES.items():
        for (template, keyword), answer in zip(_RELATIONS.values(), values):
            facts.append((template, country, keyword, answer))
    for thing, color in _COLORS.items():
        facts.append((_COLOR_TEMPLATE, thing, "color", color))
    return facts


def facts_examples(n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Return ``n`` examples ``{"prompt", "answer", "text", "rationale"}``.

    The corpus is fixed (``all_facts()``); examples cycle through it in a
    seeded order, so ``n >= len(all_facts())`` covers every fact. The train
    split sometimes adds a neutral prefix sentence; the test split asks each
    fact bare. ``answer`` starts with a space (" Paris") as a continuation of
    the prompt; ``text`` is ``prompt + answer + "."``.
    """
    _check_split(split)
    rng = random.Random(f"facts-{split}-{seed}")
    facts = all_facts()
    out = []
    while len(out) < n:
        order = list(range(len(facts)))
        rng.shuffle(order)
        for i in order[: n - len(out)]:
            template, entity, keyword, answer = facts[i]
            prefix = rng.choice(_FACT_PREFIXES) if split == "train" else ""
            prompt, spans = _fact_prompt(template, entity, keyword, prefix)
            out.append(
                {
                    "prompt": prompt,
                    "answer": " " + answer,
                    "text": prompt + " " + answer + ".",
                    "rationale": spans,
                }
            )
    return out
