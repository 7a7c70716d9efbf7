"""Checkpoints: round trip, every kind of bad file refused with one clear line, atomic writes."""

import json
import os
import zipfile

import numpy as np
import pytest

from lstm_from_scratch import atomic
from lstm_from_scratch.checkpoint import (FORMAT_VERSION, CheckpointError, check_compatible, load_checkpoint,
                                          save_checkpoint)
from lstm_from_scratch.errors import LstmMusicError

META = {"model_config": {"vocab_size": 5, "layers": [{"type": "lstm", "hidden_size": 4}]},
        "vocabulary": ["0_no_60_64", "0_nf_60_0", "4_no_62_64", "4_nf_62_0", "8_no_64_80"],
        "epoch": 3, "history": {"train_loss": [1.5, 1.2, 0.9]}}


def sample_arrays():
    rng = np.random.default_rng(0)
    return {"0.lstm.Wx": rng.standard_normal((5, 16)).astype(np.float32),
            "0.lstm.b": np.zeros(16, dtype=np.float64),
            "m/0.lstm.Wx": np.ones((5, 16), dtype=np.float32),
            "step": np.array(7, dtype=np.int64),
            "rng_state": np.arange(4, dtype=np.uint64),
            "file": np.array([True, False])}  # "file" would clash with np.savez's first parameter


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    path = tmp_path / "run.npz"
    arrays = sample_arrays()
    save_checkpoint(path, arrays, META)
    loaded, meta = load_checkpoint(path)
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    assert meta == {**META, "format_version": FORMAT_VERSION}
    assert files_in(tmp_path) == ["run.npz"]  # no temporary file left behind


def test_path_is_used_exactly_and_overwrites(tmp_path):
    path = tmp_path / "latest.ckpt"  # no ".npz" appended, unlike np.savez
    save_checkpoint(path, {"w": np.zeros(2)}, {"epoch": 1})
    save_checkpoint(path, {"w": np.ones(2)}, {"epoch": 2})
    arrays, meta = load_checkpoint(str(path))
    assert files_in(tmp_path) == ["latest.ckpt"]
    assert meta["epoch"] == 2 and arrays["w"].tolist() == [1.0, 1.0]


def assert_refused(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message
    assert isinstance(info.value, LstmMusicError)


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "nope.npz", "no such file")


def test_folder_is_not_a_file(tmp_path):
    assert_refused(tmp_path, "not a file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    assert_refused(path, "not a checkpoint")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "cut.npz"
    save_checkpoint(path, sample_arrays(), META)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert_refused(path)


def test_corrupted_bytes_inside(tmp_path):
    path = tmp_path / "flipped.npz"
    save_checkpoint(path, {"w": np.zeros(1000)}, META)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the array's bytes: the zip CRC catches it
    path.write_bytes(bytes(data))
    assert_refused(path, "damaged")


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.zeros(2), __meta__=np.frombuffer(json.dumps({"format_version": 1}).encode(), np.uint8),
             trap=np.array([{"a": 1}], dtype=object))  # np.savez pickles object arrays
    assert_refused(path, "pickle")


def test_saving_an_object_array_is_refused_and_leaves_nothing(tmp_path):
    path = tmp_path / "run.npz"
    with pytest.raises(CheckpointError, match="could not write"):
        save_checkpoint(path, {"trap": np.array([None, 1], dtype=object)}, META)
    assert files_in(tmp_path) == []


def test_plain_npz_without_metadata(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(2))
    assert_refused(path, "__meta__", "not a lstm_from_scratch checkpoint")


@pytest.mark.parametrize("meta_bytes, words", [
    (b"{not json", ("not valid JSON",)),
    (b"\xff\xfe", ("not valid JSON",)),
    (b"[1, 2]", ("not a JSON object",)),
    (json.dumps({"format_version": 99}).encode(), ("format version 99", f"version {FORMAT_VERSION}")),
    (json.dumps({"epoch": 1}).encode(), ("format version None",)),
])
def test_bad_metadata(tmp_path, meta_bytes, words):
    path = tmp_path / "bad.npz"
    np.savez(path, w=np.zeros(2), __meta__=np.frombuffer(meta_bytes, dtype=np.uint8))
    assert_refused(path, *words)


def test_metadata_of_the_wrong_type(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, __meta__=np.zeros(3, dtype=np.float32))
    assert_refused(path, "UTF-8")


def test_unserialisable_metadata_and_reserved_name(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "a.npz", {}, {"rng": np.random.default_rng(0)})
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(tmp_path / "b.npz", {"__meta__": np.zeros(1)}, {})
    assert files_in(tmp_path) == []


def test_failure_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.zeros(3)}, {"epoch": 1})
    before = path.read_bytes()

    real_write_array = np.lib.format.write_array
    calls = []

    def write_then_fail(file, array, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first array is already in the temporary file
            raise OSError("disk full (simulated)")
        real_write_array(file, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(path, {"w": np.ones(3), "v": np.ones(3)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["run.npz"]


def test_interrupt_before_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.zeros(3)}, {"epoch": 1})
    before = path.read_bytes()

    def interrupted(src, dst):
        assert os.path.getsize(src) > 0  # the new file was complete; only the rename is lost
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)  # save_checkpoint renames through atomic.py
    with pytest.raises(KeyboardInterrupt):  # not wrapped: Ctrl-C stays Ctrl-C
        save_checkpoint(path, {"w": np.ones(3)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["run.npz"]
    assert zipfile.is_zipfile(path)


def test_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot create a file"):
        save_checkpoint(tmp_path / "no" / "such" / "run.npz", {}, {})


def test_check_compatible_accepts_a_match():
    meta = {**META, "format_version": FORMAT_VERSION}
    # Tuples compare equal to the lists JSON gives back.
    check_compatible(meta, {"vocabulary": tuple(META["vocabulary"]), "model_config": META["model_config"]})


@pytest.mark.parametrize("expected, words", [
    ({"vocabulary": META["vocabulary"][:4]}, ["vocabulary differs", "5 entries", "4"]),
    ({"vocabulary": META["vocabulary"][:4] + ["8_no_65_80"]}, ["vocabulary differs", "entry 4", "8_no_65_80"]),
    ({"model_config": {**META["model_config"], "vocab_size": 6}}, ["model_config differs", "'vocab_size'", "5", "6"]),
    ({"model_config": {**META["model_config"], "input": "embedding"}}, ["model_config", "'input'", "missing"]),
    ({"epoch": 4}, ["epoch differs", "3", "4"]),
    ({"settings": {}}, ["no 'settings'"]),
])
def test_check_compatible_names_the_field(expected, words):
    with pytest.raises(CheckpointError) as info:
        check_compatible(META, expected, path="run.npz")
    message = str(info.value)
    assert message.startswith("run.npz: ") and "\n" not in message
    for word in words:
        assert word in message, message
