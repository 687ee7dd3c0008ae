"""A small generative grammar for the embedded corpus.

The sentences are made here, from the project's own word lists, so the corpus needs no
text corpus. The lists are chosen to cover the English phone inventory: every vowel,
diphthong, nasal, liquid, glide, stop, affricate and fricative of the 39-phone set occurs
in many words, in onsets, codas and clusters.
"""

from __future__ import annotations

import random

NAMES = (
    "Anna",
    "Bob",
    "Charles",
    "Dorothy",
    "Edward",
    "Fiona",
    "George",
    "Helen",
    "Isaac",
    "Judith",
    "Kevin",
    "Laura",
    "Martin",
    "Nora",
    "Oliver",
    "Paula",
    "Quentin",
    "Ruth",
    "Samuel",
    "Thelma",
    "Ursula",
    "Victor",
    "Wendy",
    "Xavier",
    "Yvonne",
    "Zachary",
)
DETERMINERS = ("the", "a", "this", "that", "every", "some", "one", "my", "your", "our", "their")
ADJECTIVES = (
    "quick",
    "lazy",
    "bright",
    "dark",
    "cheap",
    "thin",
    "thick",
    "smooth",
    "rough",
    "yellow",
    "orange",
    "purple",
    "huge",
    "tiny",
    "old",
    "young",
    "noisy",
    "quiet",
    "shiny",
    "wooden",
    "golden",
    "frozen",
    "wet",
    "dry",
    "brave",
    "shy",
    "jolly",
    "gentle",
    "strange",
    "usual",
    "pleasant",
    "ugly",
    "awkward",
    "clever",
    "foolish",
    "loyal",
    "boiling",
    "chilly",
    "vivid",
    "hollow",
    "measured",
    "genuine",
    "joyful",
    "azure",
    "beige",
    "crooked",
    "fuzzy",
    "sharp",
)
NOUNS = (
    "dog",
    "cat",
    "horse",
    "mouse",
    "owl",
    "fox",
    "goat",
    "sheep",
    "whale",
    "zebra",
    "judge",
    "teacher",
    "farmer",
    "nurse",
    "pilot",
    "sailor",
    "child",
    "king",
    "queen",
    "chair",
    "table",
    "window",
    "garden",
    "river",
    "mountain",
    "village",
    "bridge",
    "engine",
    "wagon",
    "ship",
    "boat",
    "book",
    "letter",
    "garage",
    "treasure",
    "vision",
    "measure",
    "cushion",
    "kitchen",
    "hedge",
    "thumb",
    "mouth",
    "path",
    "cloth",
    "bath",
    "ring",
    "song",
    "thing",
    "wing",
    "shoe",
    "juice",
    "cheese",
    "bread",
    "soup",
    "pearl",
    "bird",
    "earth",
    "nurse",
    "coin",
    "toy",
    "boy",
    "voice",
    "cow",
    "town",
    "house",
    "sound",
    "fire",
    "tower",
    "flower",
    "hour",
    "ear",
    "beard",
    "hair",
    "chair",
    "pear",
    "door",
    "floor",
    "tour",
    "cure",
    "jar",
    "star",
)
VERBS_PAST = (
    "saw",
    "found",
    "bought",
    "caught",
    "brought",
    "thought of",
    "washed",
    "watched",
    "pushed",
    "pulled",
    "judged",
    "changed",
    "measured",
    "painted",
    "carried",
    "buried",
    "borrowed",
    "offered",
    "showed",
    "chose",
    "threw",
    "drew",
    "grew",
    "knew",
    "heard",
    "loved",
    "hated",
    "joined",
    "enjoyed",
    "avoided",
    "thanked",
    "fetched",
    "visited",
    "repaired",
    "ignored",
    "examined",
    "rescued",
    "followed",
    "admired",
    "described",
)
VERBS_INTRANSITIVE = (
    "slept",
    "laughed",
    "coughed",
    "sneezed",
    "smiled",
    "waited",
    "vanished",
    "appeared",
    "shouted",
    "whispered",
    "arrived",
    "departed",
    "hurried",
    "wandered",
    "trembled",
    "yawned",
)
ADVERBS = (
    "quickly",
    "slowly",
    "quietly",
    "loudly",
    "happily",
    "sadly",
    "gently",
    "roughly",
    "usually",
    "rarely",
    "early",
    "yesterday",
    "today",
    "tonight",
    "there",
    "everywhere",
    "thoroughly",
    "eagerly",
    "jealously",
    "anxiously",
)
PREPOSITIONS = (
    "near",
    "behind",
    "under",
    "over",
    "beside",
    "through",
    "across",
    "inside",
    "without",
    "with",
    "toward",
    "beyond",
    "along",
    "among",
    "against",
    "underneath",
)
NUMBERS = (
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "a hundred",
    "a thousand",
)
PLURAL_NOUNS = (
    "dogs",
    "cats",
    "horses",
    "sheep",
    "judges",
    "teachers",
    "children",
    "chairs",
    "windows",
    "gardens",
    "rivers",
    "bridges",
    "ships",
    "books",
    "letters",
    "shoes",
    "birds",
    "coins",
    "toys",
    "boys",
    "voices",
    "towers",
    "flowers",
    "hours",
    "pears",
    "stars",
    "thumbs",
)
QUESTION_WORDS = ("why", "where", "when", "how")


def _noun_phrase(rng: random.Random) -> str:
    """A determiner, optional adjectives and a noun, or a name."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(NAMES)
    if r < 0.30:
        return f"{rng.choice(NUMBERS)} {rng.choice(ADJECTIVES)} {rng.choice(PLURAL_NOUNS)}"
    words = [rng.choice(DETERMINERS)]
    for _ in range(rng.choice((0, 1, 1, 2))):
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def _clause(rng: random.Random) -> str:
    subject = _noun_phrase(rng)
    if rng.random() < 0.3:
        clause = f"{subject} {rng.choice(VERBS_INTRANSITIVE)}"
    else:
        clause = f"{subject} {rng.choice(VERBS_PAST)} {_noun_phrase(rng)}"
    if rng.random() < 0.5:
        clause += f" {rng.choice(PREPOSITIONS)} {_noun_phrase(rng)}"
    if rng.random() < 0.4:
        clause += f" {rng.choice(ADVERBS)}"
    return clause


def make_sentence(rng: random.Random) -> str:
    """One sentence: a statement, a compound statement or a question.

    >>> make_sentence(random.Random(0))[:1].isupper()
    True
    """
    r = rng.random()
    if r < 0.6:
        text = _clause(rng) + "."
    elif r < 0.85:
        joiner = rng.choice(("and", "but", "because", "while", "so"))
        text = f"{_clause(rng)}, {joiner} {_clause(rng)}."
    else:
        question = rng.choice(QUESTION_WORDS)
        text = f"{question} did {_noun_phrase(rng)} {rng.choice(('wait', 'laugh', 'sleep', 'leave'))}?"
    return text[0].upper() + text[1:]
