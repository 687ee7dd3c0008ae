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

from asr_init.features.store import FeatureStore

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
        ids = [index[p] for p in rec.transcript]
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
    entry = lm_weight * hmm.bigram - insertion_penalty  # (P, P): from p's last state into q
    first_state = np.arange(P) * STATES
    last_state = first_state + STATES - 1
    back = np.zeros((T, U, S), dtype=np.int32)
    delta = np.full((U, S), _NEG)
    delta[:, first_state] = lm_weight * hmm.initial - insertion_penalty
    delta += scores[0]
    back[0] = -1
    within = np.arange(S)
    is_first = np.zeros(S, dtype=bool)
    is_first[first_state] = True
    for t in range(1, T):
        stay = delta + hmm.loop
        move = np.full((U, S), _NEG)
        move[:, 1:] = delta[:, :-1] + hmm.advance[:-1]
        move[:, first_state] = _NEG  # state 0 of a phone is not entered from the previous index
        leave = delta[:, last_state] + hmm.advance[last_state]  # (U, P)
        cand = leave[:, :, None] + entry[None]  # (U, p, q)
        best_p = cand.argmax(1)  # (U, q)
        enter = np.take_along_axis(cand, best_p[:, None, :], 1)[:, 0]
        new = np.maximum(stay, move)
        prev = np.where(stay >= move, within, within - 1)
        take = enter > new[:, first_state]
        new[:, first_state] = np.where(take, enter, new[:, first_state])
        prev[:, first_state] = np.where(take, last_state[best_p], prev[:, first_state])
        active = (t < lengths)[:, None]
        delta = np.where(active, new + scores[t], delta)
        back[t] = np.where(active, prev, within)
    results = []
    for u in range(U):
        n = lengths[u]
        s = int(last_state[np.argmax(delta[u, last_state])])
        path = [s]
        for t in range(n - 1, 0, -1):
            s = int(back[t, u, s])
            path.append(s)
        path.reverse()
        phones = [path[0] // STATES]
        for a, b in zip(path, path[1:]):
            if is_first[b] and a != b:
                phones.append(b // STATES)
        results.append(phones)
    return results


def align_counts(ref: list, hyp: list) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit-distance alignment."""
    n, m = len(ref), len(hyp)
    # cost[i][j] = (edits, subs, dels, ins); ties prefer fewer edits, then substitutions
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)] + [None] * m
        for j in range(1, m + 1):
            s = prev[j - 1]
            sub = (s[0] + (ref[i - 1] != hyp[j - 1]), s[1] + (ref[i - 1] != hyp[j - 1]), s[2], s[3])
            d = prev[j]
            dele = (d[0] + 1, d[1], d[2] + 1, d[3])
            a = cur[j - 1]
            ins = (a[0] + 1, a[1], a[2], a[3] + 1)
            cur[j] = min(sub, dele, ins, key=lambda c: c[0])
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
