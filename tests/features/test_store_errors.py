"""A damaged or foreign feature store: one UserError naming the file, never a misread."""

import json
import shutil

import numpy as np
import pytest

from asr_init.errors import UserError
from asr_init.features.store import STORE_FORMAT_VERSION, FeatureStore


@pytest.fixture
def store_copy(tiny_store, tmp_path):
    return shutil.copytree(tiny_store, tmp_path / "store")


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        (data[section] if field else data)[field or section] = value
    path.write_text(json.dumps(data))


def test_extract_records_the_format_version(tiny_store):
    assert json.loads((tiny_store / "config.json").read_text())["format_version"] == STORE_FORMAT_VERSION == 1


def test_other_format_version_is_refused(store_copy):
    _edit_json(store_copy / "config.json", format_version=99)
    with pytest.raises(UserError, match=r"config\.json has format_version 99, but this asr-init reads .* version 1"):
        FeatureStore(store_copy)


def test_store_without_format_version_is_version_1(store_copy):
    config = json.loads((store_copy / "config.json").read_text())
    del config["format_version"]
    (store_copy / "config.json").write_text(json.dumps(config))
    assert FeatureStore(store_copy).dim == 39


def test_edited_num_ceps_is_refused(store_copy):
    _edit_json(store_copy / "config.json", features__num_ceps=20)
    with pytest.raises(
        UserError, match=r"config\.json describes 60-dim frames \(kaldi-mfcc\), but .*stats\.json .* 39-dim"
    ):
        FeatureStore(store_copy)


def _manifest_records(store):
    return [json.loads(ln) for ln in (store / "manifest.jsonl").read_text().splitlines()]


def _write_manifest(store, records):
    (store / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_manifest_offset_past_the_shard_end(store_copy):
    records = _manifest_records(store_copy)
    shard_frames = len(np.load(store_copy / "shards" / "feats-00000.npy", mmap_mode="r"))
    records[-1]["offset"] = shard_frames - 2  # the last utterance now runs past the end
    _write_manifest(store_copy, records)
    store = FeatureStore(store_copy)
    rec = store.records[-1]
    with pytest.raises(UserError) as err:
        store.features(store.records[0])  # any read of that shard checks every utterance in it
    message = str(err.value)
    assert f"{store_copy / 'manifest.jsonl'}: utterance {rec.id} takes frames {shard_frames - 2} to" in message
    assert f"of shard {store_copy / 'shards' / 'feats-00000.npy'}, which has {shard_frames} frames" in message


@pytest.mark.parametrize("field, value", [("offset", -5), ("frames", "12"), ("shard", 0.5), ("frames", 0)])
def test_manifest_fields_must_be_non_negative_integers(store_copy, field, value):
    records = _manifest_records(store_copy)
    records[1][field] = value
    _write_manifest(store_copy, records)
    message = rf"manifest\.jsonl: utterance {records[1]['id']} has shard .* integer, at least 0 \(at least 1 frame\)"
    with pytest.raises(UserError, match=message):
        FeatureStore(store_copy)


def test_shard_of_another_width_is_refused(store_copy):
    path = store_copy / "shards" / "feats-00000.npy"
    np.save(path, np.load(path)[:, :20])
    store = FeatureStore(store_copy)
    with pytest.raises(UserError, match=r"feats-00000\.npy has shape \(\d+, 20\), but the store's frames are") as err:
        store.features(store.records[0])
    assert "or was replaced while this run read it; re-make it with 'asr-init extract --force'" in str(err.value)


@pytest.mark.parametrize("shard", ["feats-00000.npy", "states-00000.npy"])
def test_a_shard_that_is_a_folder_is_a_damaged_store(store_copy, shard):
    """A shard replaced by a folder: the line told the user to 'give the file in it', advice for a
    path one gives, not for a store asr-init wrote; it says the store is damaged and how to remake it."""
    path = store_copy / "shards" / shard
    path.unlink()
    path.mkdir()
    store = FeatureStore(store_copy)
    with pytest.raises(UserError) as err:
        store.features(store.records[0]) if shard.startswith("feats") else store.targets("states", store.records[0])
    assert str(err.value) == (
        f"shard {path} is a folder; the store is damaged, or was replaced while this run read it; re-make it with "
        "'asr-init extract --force' and run again"
    )


def test_corrupt_stats_is_refused(store_copy):
    (store_copy / "stats.json").write_text(json.dumps({"mean": [0.0] * 39}))
    with pytest.raises(UserError, match=r"stats\.json is corrupt"):
        FeatureStore(store_copy)


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_a_shard_that_cannot_be_written_whole_is_an_oserror_naming_it(tmp_path):
    """As on a full disk, a short write: the error carries its errno and the shard's name
    (numpy's own tofile() raises a bare 'N requested and M written'), so the command line
    reports it in one line."""
    import errno
    import resource
    import signal

    from asr_init.features.store import StoreWriter, shard_name

    writer = StoreWriter(tmp_path / "s", shard_frames=10)
    feats, targets = np.zeros((1000, 39), np.float32), np.zeros(1000, np.int16)  # a 156 kB shard
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        with pytest.raises(OSError) as err:
            writer.add("u1", "spk", "train", 10.0, feats, targets, targets, ("sil",))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert err.value.errno == errno.EFBIG
    assert err.value.filename == str(tmp_path / "s" / shard_name("feats", 0))
