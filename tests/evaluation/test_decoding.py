"""Viterbi decoding, the phone HMM, and phone error rate."""

import itertools
import math

import numpy as np
import pytest

from asr_init.corpora.readers import merge_repeats
from asr_init.errors import UserError
from asr_init.evaluation.decoding import PhoneHmm, align_counts, decode, estimate_hmm, viterbi_batch
from asr_init.evaluation.evaluate import phone_error_rate
from asr_init.features.store import FeatureStore


def _hmm(P, loop=0.6, seed=0):
    rng = np.random.default_rng(seed)
    bigram = rng.dirichlet(np.ones(P), size=P)
    return PhoneHmm(
        np.full(3 * P, np.log(loop)),
        np.full(3 * P, np.log(1 - loop)),
        np.log(rng.dirichlet(np.ones(P))),
        np.log(bigram),
    )


def test_viterbi_recovers_known_sequence():
    P = 5
    truth = [0, 3, 1, 4, 2, 0]
    frames = []
    for p in truth:
        frames += [3 * p] * 4 + [3 * p + 1] * 3 + [3 * p + 2] * 4
    post = np.full((len(frames), 3 * P), 0.01)
    post[np.arange(len(frames)), frames] = 0.9
    ll = np.log(post / post.sum(1, keepdims=True))
    (hyp,) = viterbi_batch([ll], _hmm(P))
    assert hyp == truth


def _brute_force(ll, hmm, lm_weight, pen):
    """Best phone sequence by enumerating every state path allowed by the topology."""
    T, S = ll.shape
    best, best_phones = -np.inf, None
    for path in itertools.product(range(S), repeat=T):
        if path[0] % 3 != 0 or path[-1] % 3 != 2:
            continue
        score = lm_weight * hmm.initial[path[0] // 3] - pen + ll[0, path[0]]
        phones = [path[0] // 3]
        ok = True
        for t in range(1, T):
            a, b = path[t - 1], path[t]
            if b == a:
                score += hmm.loop[a]
            elif b == a + 1 and b % 3 != 0:
                score += hmm.advance[a]
            elif a % 3 == 2 and b % 3 == 0:
                score += hmm.advance[a] + lm_weight * hmm.bigram[a // 3, b // 3] - pen
                phones.append(b // 3)
            else:
                ok = False
                break
            score += ll[t, b]
        if ok and score > best:
            best, best_phones = score, phones
    return best_phones


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_viterbi_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    hmm = _hmm(2, loop=0.5, seed=seed)
    ll = np.log(rng.dirichlet(np.ones(6), size=7))
    for lm_weight, pen in ((1.0, 0.0), (3.0, 1.5), (0.5, -2.0)):
        (hyp,) = viterbi_batch([ll], hmm, lm_weight, pen)
        assert hyp == _brute_force(ll, hmm, lm_weight, pen)


def test_batched_decoding_equals_one_by_one():
    rng = np.random.default_rng(5)
    hmm = _hmm(4)
    lls = [np.log(rng.dirichlet(np.ones(12), size=n)) for n in (9, 20, 3, 15)]
    assert decode(lls, hmm, 2.0, 1.0, batch=3) == [viterbi_batch([x], hmm, 2.0, 1.0)[0] for x in lls]
    empty = decode([lls[0], np.zeros((0, 12)), lls[2]], hmm, 2.0, 1.0)  # 0 frames: no phones, the others as alone
    assert empty == [viterbi_batch([lls[0]], hmm, 2.0, 1.0)[0], [], viterbi_batch([lls[2]], hmm, 2.0, 1.0)[0]]


@pytest.mark.parametrize(
    "ref,hyp,expected",
    [
        ("a b c d", "a b c d", (0, 0, 0)),
        ("a b c d", "a x c d", (1, 0, 0)),
        ("a b c d", "a c d", (0, 1, 0)),
        ("a b c d", "a b y c d", (0, 0, 1)),
        ("a b c d e", "x b d e f g", (1, 1, 2)),
        ("a b", "", (0, 2, 0)),
        ("", "a", (0, 0, 1)),
    ],
)
def test_edit_counts(ref, hyp, expected):
    assert align_counts(ref.split(), hyp.split()) == expected


def test_per_merges_repeats():
    res = phone_error_rate([[1, 1, 2, 3, 3]], [[1, 2, 2, 4]])
    # ref 1 2 4 (3 phones), hyp 1 2 3: one substitution
    assert res == {"per": pytest.approx(1 / 3), "substitutions": 1, "deletions": 0, "insertions": 0, "ref_phones": 3}
    assert merge_repeats([1, 1, 2, 1]) == [1, 2, 1]


def test_estimated_hmm(blob_store):
    hmm = estimate_hmm(FeatureStore(blob_store))
    # Phones last 6-12 frames over 3 states: 2-4 frames per state, loop prob ~ 1 - 1/3.
    loops = np.exp(hmm.loop)
    assert 0.5 < loops.mean() < 0.8
    np.testing.assert_allclose(np.exp(hmm.bigram).sum(1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(np.exp(hmm.initial).sum(), 1.0, rtol=1e-9)
    assert np.argmax(hmm.initial) == 0  # every blob utterance starts with sil


def test_a_class_of_prior_zero_is_never_decoded(blob_store, tmp_path, monkeypatch):
    """A state without a train frame (priors of --prior-floor 0) has likelihood 0, as Kaldi's
    pdf-prior.cc makes it (log-prior sqrt(FLT_MAX)): it used to score +inf and win every frame."""
    from conftest import write_tiny_model

    from asr_init.evaluation import evaluate as evaluation
    from asr_init.evaluation.config import EvalConfig
    from asr_init.models.dnn import load_model, save_model

    model_dir = write_tiny_model(blob_store, tmp_path / "m")
    model, meta = load_model(model_dir)
    silent = range(3, 6)  # the states of phone 1
    meta["priors"] = [0.0 if s in silent else 1 / (len(meta["priors"]) - 3) for s in range(len(meta["priors"]))]
    save_model(model_dir, model, meta)
    decoded = []
    per = evaluation.phone_error_rate
    monkeypatch.setattr(evaluation, "phone_error_rate", lambda hyps, refs: decoded.extend(hyps) or per(hyps, refs))
    result = evaluation.evaluate(blob_store, model_dir, EvalConfig(), tmp_path / "eval")
    assert decoded and all(1 not in hyp for hyp in decoded)
    assert sum(map(len, decoded)) > 0 and 0 <= result["per"] < 1


@pytest.mark.parametrize("penalty", [-1e6, 1e6])
def test_the_largest_decoding_weights_keep_every_score_finite(blob_store, tmp_path, monkeypatch, penalty):
    """The largest --prior-scale, --lm-weights and --penalties that evaluate takes (1e6 each) decode
    without an overflow, a model with a class of prior 0 too (its log-prior sqrt(FLT_MAX) times the
    scale); 1e308 overflowed into numpy warnings and a result tuned on infinite scores."""
    from conftest import write_tiny_model

    from asr_init.evaluation import decoding
    from asr_init.evaluation import evaluate as evaluation
    from asr_init.evaluation.config import MAX_WEIGHT, EvalConfig
    from asr_init.models.dnn import load_model, save_model

    model_dir = write_tiny_model(blob_store, tmp_path / "m")
    model, meta = load_model(model_dir)
    meta["priors"] = [0.0 if s in range(3, 6) else 1 / (len(meta["priors"]) - 3) for s in range(len(meta["priors"]))]
    save_model(model_dir, model, meta)
    viterbi, calls = decoding.viterbi_batch, []

    def finite_viterbi(logliks, hmm, lm_weight, penalty):
        assert all(np.isfinite(x).all() for x in logliks)
        with np.errstate(all="raise"):
            calls.append(lm_weight)
            return viterbi(logliks, hmm, lm_weight, penalty)

    monkeypatch.setattr(decoding, "viterbi_batch", finite_viterbi)
    config = EvalConfig(prior_scale=MAX_WEIGHT, lm_weights=[MAX_WEIGHT], penalties=[penalty])
    result = evaluation.evaluate(blob_store, model_dir, config, tmp_path / "eval")
    assert calls and set(calls) == {MAX_WEIGHT} and math.isfinite(result["per"])
    for bad in (dict(prior_scale=1.000001e6), dict(lm_weights=[1, 2e6]), dict(penalties=[-1e308])):
        with pytest.raises(UserError, match=r"^invalid --(prior-scale|lm-weights|penalties) .*1e6 \(larger ones"):
            EvalConfig(**bad).validate()


def test_results_name_the_model_and_store_by_absolute_path(blob_store, tmp_path, monkeypatch):
    """results.json names the model and the store as pretrain.json and finetune.json name theirs,
    absolute: given relative, they were relative to the folder evaluate ran from, and so named
    nothing once read from another."""
    import os
    from pathlib import Path

    from conftest import write_tiny_model

    from asr_init.evaluation.config import EvalConfig
    from asr_init.evaluation.evaluate import evaluate

    model_dir = write_tiny_model(blob_store, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    result = evaluate(Path(os.path.relpath(blob_store)), Path("m"), EvalConfig(decode=False))
    assert (result["model"], result["store"]) == (str(model_dir.resolve()), str(blob_store.resolve()))


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_transcript_label_the_phone_list_lacks_names_the_manifest_the_utterance_and_the_label(
    blob_store, tmp_path, split
):
    """A manifest edited or damaged so that a transcript holds a phone phones.txt does not list:
    one error line naming it (the train transcripts feed the bigram, the test ones are the
    references), no traceback, nothing written."""
    import json
    import shutil

    from conftest import write_tiny_model
    from typer.testing import CliRunner

    from asr_init.cli import app

    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    model_dir = write_tiny_model(store, tmp_path / "m")
    lines = (store / "manifest.jsonl").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["split"] == split)
    record = json.loads(lines[at])
    lines[at] = json.dumps(record | {"transcript": "zz " + record["transcript"]})
    (store / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    before = sorted(p.name for p in model_dir.iterdir())
    res = CliRunner().invoke(app, ["evaluate", str(store), "--model", str(model_dir), "--out", str(tmp_path / "ev")])
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    expected = (
        f"{store / 'manifest.jsonl'}: utterance {record['id']}'s transcript has the phone 'zz', which "
        f"{store / 'phones.txt'} does not list; the store is damaged (make it again)"
    )
    assert res.exit_code == 1 and len(errors) == 1 and expected in " ".join(res.output.split()), res.output
    assert sorted(p.name for p in model_dir.iterdir()) == before and not (tmp_path / "ev").exists()


def test_another_evaluation_in_the_output_folder_is_refused_and_the_same_one_is_made_again(blob_store, tmp_path):
    """evaluate of another store into MODEL/eval-test, or -o EV with another --split, replaced the
    evaluation there without a word (and report could not tell them apart): it is refused, naming
    the difference, and the results are kept; the same evaluation (on another --device too, of the
    model fine-tuned further) is made again, and --force replaces another."""
    import json
    import shutil

    from conftest import write_tiny_model

    from asr_init.errors import UserError
    from asr_init.evaluation.config import EvalConfig
    from asr_init.evaluation.evaluate import evaluate

    model, other = write_tiny_model(blob_store, tmp_path / "m"), tmp_path / "other"
    shutil.copytree(blob_store, other)
    results = model / "eval-test" / "results.json"
    first = evaluate(blob_store, model, EvalConfig(decode=False))["inputs"]["model"]
    write_tiny_model(blob_store, model, hidden=5)  # fine-tuned further: the same evaluation of another model.pt
    evaluate(blob_store, model, EvalConfig(decode=False, device="cpu"))
    assert json.loads(results.read_text())["inputs"]["model"] != first
    with pytest.raises(UserError, match="eval-test holds evaluation results made with other settings \\(store: '"):
        evaluate(other, model, EvalConfig(decode=False))
    assert json.loads(results.read_text())["store"] == str(blob_store)
    evaluate(blob_store, model, EvalConfig(decode=False), tmp_path / "ev")
    with pytest.raises(UserError, match="made with other settings \\(split: 'test' then, 'dev' now\\); use --force"):
        evaluate(blob_store, model, EvalConfig(decode=False, split="dev"), tmp_path / "ev")
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["split"] == "test"
    assert evaluate(other, model, EvalConfig(decode=False), force=True)["store"] == str(other)
    assert json.loads(results.read_text())["store"] == str(other)
    old = {k: v for k, v in json.loads(results.read_text()).items() if k not in ("inputs", "config")}
    results.write_text(json.dumps(old))  # as an older asr-init wrote it, recording no store: made again, as then
    assert evaluate(blob_store, model, EvalConfig(decode=False))["store"] == str(blob_store)


@pytest.mark.parametrize(
    "change, said",
    [
        (
            lambda meta: meta | {"outputs": meta["outputs"][:6] + meta["outputs"][9:12] + meta["outputs"][6:9]},
            "model {m} has 12 states but store {s} lists 12, differing first at id 6: 'c_0' in the model, 'b_0' in "
            "the store; evaluate on a store made with the same inventory",
        ),
        (
            lambda meta: meta | {"phones": ["sil", "a", "c", "b"]},
            "model {m} was trained on 4 phones but store {s} has 4, differing first at id 2: 'c' in the model, 'b' "
            "in the store; evaluate on a store extracted with the same phone set",
        ),
    ],
)
def test_a_label_inventory_in_another_order_names_the_first_id_that_differs(blob_store, tmp_path, change, said):
    """A store whose labels are the model's in another order was refused showing the first three
    labels of each, the same on both sides: the error names the first id where they part."""
    from conftest import write_tiny_model
    from typer.testing import CliRunner

    from asr_init.cli import app
    from asr_init.models.dnn import load_model, save_model

    model_dir = write_tiny_model(blob_store, tmp_path / "m")
    model, meta = load_model(model_dir)
    assert meta["outputs"][6:12] == ["b_0", "b_1", "b_2", "c_0", "c_1", "c_2"] and meta["phones"] == [
        "sil",
        "a",
        "b",
        "c",
    ]
    save_model(model_dir, model, change(meta))
    res = CliRunner().invoke(
        app, ["evaluate", str(blob_store), "--model", str(model_dir), "--out", str(tmp_path / "ev")]
    )
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    expected = said.format(m=model_dir, s=blob_store)
    assert res.exit_code == 1 and len(errors) == 1 and expected in " ".join(res.output.split()), res.output
    assert not (tmp_path / "ev").exists()


def test_label_lists_of_other_lengths_name_the_first_id_one_lacks():
    from asr_init.evaluation.evaluate import _first_difference

    assert (
        _first_difference(["a", "b", "c"], ["a", "b"]) == "differing first at id 2: 'c' in the model, none in the store"
    )
    assert _first_difference(["a"], ["b", "c"]) == "differing first at id 0: 'a' in the model, 'b' in the store"
