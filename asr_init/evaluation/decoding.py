"""Hybrid decoding: 3-state left-to-right phone HMMs, a phone bigram, Viterbi, and scoring.

Scores are DNN posteriors turned into scaled likelihoods, log p(x|s) ~ log p(s|x) -
alpha log p(s). Each phone p has states 3p, 3p+1, 3p+2 entered left to right; state s
loops with probability a_s and moves on with 1 - a_s, where 1 / (1 - a_s) is the mean
run length of s in the training alignments. Leaving a phone's last state and entering
phone q scores lm_weight * log P(q | p) - insertion_penalty, with P from a phone bigram of
the training transcripts (add-k smoothing). Viterbi runs over a batch of utterances at
once (numpy, one vectorised step per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_init.errors import UserError
from asr_init.features.store import FeatureStore, UttRecord

STATES = 3
_NEG = -1e30


@dataclass(frozen=True)
class PhoneHmm:
    """Transition and language-model scores (natural logs)."""

    loop: np.ndarray  # (S,) log a_s
    advance: np.ndarray  # (S,) log (1 - a_s)
    initial: np.ndarray  # (P,) log P(first phone)
    bigram: np.ndarray  # (P, P) log P(q | p), rows p

    @property
    def num_phones(self) -> int:
        return len(self.initial)


def phone_states(phones: np.ndarray) -> np.ndarray:
    """(frames,) 3 * phone + position: each run of a phone split into three equal parts, as
    extract makes its states (for a store of phone alignments only)."""
    phones = np.asarray(phones, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(phones)) + 1] if len(phones) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[starts, len(phones)])
    offset = np.arange(len(phones)) - np.repeat(starts, lengths)
    return phones * STATES + (offset * STATES) // np.repeat(lengths, lengths)


def transcript_ids(store: FeatureStore, rec: UttRecord, index: dict[str, int]) -> list[int]:
    """`rec`'s transcript as ids into the store's phone list (`index`: label -> id); a label the
    list lacks (an edited or damaged manifest) is a UserError naming the utterance and the label."""
    try:
        return [index[p] for p in rec.transcript]
    except KeyError as exc:
        raise UserError(
            f"{store.path / 'manifest.jsonl'}: utterance {rec.id}'s transcript has the phone {exc.args[0]!r}, which "
            f"{store.path / 'phones.txt'} does not list; the store is damaged (make it again)"
        ) from None


def estimate_hmm(store: FeatureStore, smoothing: float = 1.0) -> PhoneHmm:
    """Self-loop probabilities from the train state alignments (or phone alignments split into
    three), bigram from train transcripts."""
    num_phones = len(store.phones)
    num_states = STATES * num_phones
    frames = np.zeros(num_states)
    runs = np.zeros(num_states)
    index = {p: i for i, p in enumerate(store.phones)}
    first = np.full(num_phones, smoothing)
    pairs = np.full((num_phones, num_phones), smoothing)
    for rec in store.split("train"):
        if "states" in store.target_kinds:
            s = np.asarray(store.targets("states", rec), dtype=np.int64)
        else:
            s = phone_states(store.targets("phones", rec))
        frames += np.bincount(s, minlength=num_states)
        starts = np.r_[True, s[1:] != s[:-1]]
        runs += np.bincount(s[starts], minlength=num_states)
        ids = transcript_ids(store, rec, index)
        if ids:
            first[ids[0]] += 1
            np.add.at(pairs, (ids[:-1], ids[1:]), 1)
    store.release()
    mean_run = np.where(runs > 0, frames / np.maximum(runs, 1), 3.0)  # unseen state: 3 frames
    mean_run = np.maximum(mean_run, 1.0 + 1e-3)
    loop = 1.0 - 1.0 / mean_run
    return PhoneHmm(
        np.log(loop), np.log1p(-loop), np.log(first / first.sum()), np.log(pairs / pairs.sum(1, keepdims=True))
    )


def viterbi_batch(
    logliks: list[np.ndarray], hmm: PhoneHmm, lm_weight: float = 1.0, insertion_penalty: float = 0.0
) -> list[list[int]]:
    """Best phone sequence of each utterance; logliks[u] is (frames, 3 * phones)."""
    if not logliks:
        return []
    P = hmm.num_phones
    S = STATES * P
    U = len(logliks)
    lengths = np.array([len(x) for x in logliks])
    T = int(lengths.max())
    scores = np.full((T, U, S), 0.0, dtype=np.float64)
    for u, x in enumerate(logliks):
        scores[: len(x), u] = x
    entry = (lm_weight * hmm.bigram - insertion_penalty).T.copy()  # (q, p): from p's last state into q
    first, last = slice(0, S, STATES), slice(STATES - 1, S, STATES)  # each phone's first and last state
    last_state = np.arange(P) * STATES + STATES - 1
    back = np.zeros((T, U, S), dtype=np.int32)
    delta = np.full((U, S), _NEG)
    delta[:, first] = lm_weight * hmm.initial - insertion_penalty
    delta += scores[0]
    back[0] = -1
    within = np.arange(S)
    is_first = np.zeros(S, dtype=bool)
    is_first[first] = True
    move, shortest = np.full((U, S), _NEG), lengths.min()
    for t in range(1, T):
        stay = delta + hmm.loop
        move[:, 1:] = delta[:, :-1] + hmm.advance[:-1]
        move[:, first] = _NEG  # state 0 of a phone is not entered from the previous index
        leave = delta[:, last] + hmm.advance[last]  # (U, p)
        cand = leave[:, None, :] + entry[None]  # (U, q, p)
        best_p = cand.argmax(2)  # (U, q)
        enter = np.take_along_axis(cand, best_p[:, :, None], 2)[:, :, 0]
        new = np.maximum(stay, move)
        prev = np.where(stay >= move, within, within - 1)
        take = enter > new[:, first]
        new[:, first] = np.where(take, enter, new[:, first])
        prev[:, first] = np.where(take, last_state[best_p], prev[:, first])
        if t < shortest:  # every utterance still runs
            delta = new + scores[t]
            back[t] = prev
        else:
            active = (t < lengths)[:, None]
            delta = np.where(active, new + scores[t], delta)
            back[t] = np.where(active, prev, within)
    path = np.empty((T, U), dtype=np.int64)  # past an utterance's end its back pointers keep the state
    path[T - 1] = last_state[delta[:, last].argmax(1)]
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, np.arange(U), path[t]]
    results = []
    for u, n in enumerate(lengths):
        p = path[:n, u]
        entered = is_first[p[1:]] & (p[1:] != p[:-1])  # a phone's first state, entered from another
        results.append([int(p[0]) // STATES, *(p[1:][entered] // STATES).tolist()] if n else [])
    return results


def align_counts(ref: list, hyp: list) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit-distance alignment."""
    m = len(hyp)
    # cell (i, j) = (edits, subs, dels, ins) of ref[:i] against hyp[:j]; of the fewest edits the first of
    # substitution, deletion, insertion (min's order)
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i, r in enumerate(ref, 1):
        left = (i, 0, i, 0)
        cur = [left]
        for j in range(1, m + 1):
            s, d = prev[j - 1], prev[j]
            miss = r != hyp[j - 1]
            if s[0] + miss <= d[0] + 1 and s[0] + miss <= left[0] + 1:
                left = (s[0] + miss, s[1] + miss, s[2], s[3])
            elif d[0] <= left[0]:
                left = (d[0] + 1, d[1], d[2] + 1, d[3])
            else:
                left = (left[0] + 1, left[1], left[2], left[3] + 1)
            cur.append(left)
        prev = cur
    _, s, d, i = prev[m]
    return s, d, i


def decode(
    logliks: list[np.ndarray], hmm: PhoneHmm, lm_weight: float = 1.0, insertion_penalty: float = 0.0, batch: int = 64
) -> list[list[int]]:
    """viterbi_batch over length-sorted groups of `batch` utterances (bounded memory)."""
    order = sorted(range(len(logliks)), key=lambda u: len(logliks[u]))
    out: list[list[int]] = [[] for _ in logliks]
    for i in range(0, len(order), batch):
        group = order[i : i + batch]
        for u, phones in zip(group, viterbi_batch([logliks[u] for u in group], hmm, lm_weight, insertion_penalty)):
            out[u] = phones
    return out
