"""A small generative grammar for the embedded corpus.

The sentences are made here, from the project's own word lists (data/words.json), so the
corpus needs no text corpus. The lists are chosen to cover the English phone inventory: every vowel,
diphthong, nasal, liquid, glide, stop, affricate and fricative of the 39-phone set occurs
in many words, in onsets, codas and clusters.
"""

from __future__ import annotations

import json
import random

from asr_init.config import DATA_DIR

_WORDS = json.loads((DATA_DIR / "words.json").read_text())
NAMES, DETERMINERS, ADJECTIVES, NOUNS = _WORDS["names"], _WORDS["determiners"], _WORDS["adjectives"], _WORDS["nouns"]
VERBS_PAST, VERBS_INTRANSITIVE, ADVERBS = _WORDS["verbs_past"], _WORDS["verbs_intransitive"], _WORDS["adverbs"]
PREPOSITIONS, NUMBERS, PLURAL_NOUNS = _WORDS["prepositions"], _WORDS["numbers"], _WORDS["plural_nouns"]
QUESTION_WORDS = _WORDS["question_words"]


def _noun_phrase(rng: random.Random) -> str:
    """A determiner, optional adjectives and a noun, or a name."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(NAMES)
    if r < 0.30:
        return f"{rng.choice(NUMBERS)} {rng.choice(ADJECTIVES)} {rng.choice(PLURAL_NOUNS)}"
    words = [rng.choice(DETERMINERS), *(rng.choice(ADJECTIVES) for _ in range(rng.choice((0, 1, 1, 2))))]
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
