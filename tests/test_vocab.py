"""Tests for music/vocab.py: deterministic ids, encode/decode, unknown chunks, JSON and files."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.music.vocab import (
    UnknownTokenError,
    Vocabulary,
    VocabularyError,
    sort_key,
)

# Event-like chunks, DELTA_kind_PITCH_VELOCITY, plus the odd non-event token.
event_chunks = st.builds(
    lambda delta, kind, pitch, velocity: f"{delta}_{kind}_{pitch}_{velocity}",
    st.integers(0, 2000), st.sampled_from(["no", "nf"]), st.integers(0, 127), st.integers(0, 127),
)
chunks = st.one_of(event_chunks, st.text(min_size=1, max_size=6))


def test_build_sorts_numerically_by_delta_kind_pitch_velocity():
    pieces = [["10_no_60_80", "2_no_60_80", "0_no_61_80"], ["0_nf_60_0", "2_no_59_100", "END"]]
    vocab = Vocabulary.build(pieces)
    assert vocab.tokens == (
        "0_nf_60_0", "0_no_61_80", "2_no_59_100", "2_no_60_80", "10_no_60_80", "END",
    )
    assert vocab.index("0_nf_60_0") == 0
    assert vocab.index("END") == len(vocab) - 1


def test_sort_key_is_total_for_spellings_with_the_same_numbers():
    assert sort_key("01_no_60_80") != sort_key("1_no_60_80")
    vocab = Vocabulary.build([["1_no_60_80", "01_no_60_80"]])
    assert len(vocab) == 2


@settings(max_examples=50, deadline=None)
@given(st.lists(chunks, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_same_chunks_in_any_order_give_the_same_ids(tokens, random):
    shuffled = list(tokens)
    random.shuffle(shuffled)
    # Split the shuffled chunks into pieces differently too: only the set of chunks may matter.
    cut = len(shuffled) // 2
    a = Vocabulary.build([tokens])
    b = Vocabulary.build([shuffled[:cut], shuffled[cut:]])
    assert a == b
    assert a.tokens == tuple(sorted(set(tokens), key=sort_key))


@settings(max_examples=50, deadline=None)
@given(st.lists(chunks, min_size=1, max_size=60))
def test_encode_decode_round_trip(tokens):
    vocab = Vocabulary.build([tokens])
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int64 and ids.shape == (len(tokens),)
    assert ids.min() >= 0 and ids.max() < len(vocab)
    assert vocab.decode(ids) == tokens


def test_min_count_drops_rare_chunks():
    vocab = Vocabulary.build([["a", "b", "a"], ["a", "c", "c"]], min_count=2)
    assert vocab.tokens == ("a", "c")
    assert "b" not in vocab and "a" in vocab


def test_build_rejects_bad_input():
    with pytest.raises(VocabularyError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)
    with pytest.raises(VocabularyError, match="lower min_count"):
        Vocabulary.build([["a"]], min_count=2)
    with pytest.raises(VocabularyError, match="single string"):
        Vocabulary.build(["0_no_60_80"])
    with pytest.raises(VocabularyError, match="distinct"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(VocabularyError, match="at least one"):
        Vocabulary([])


def test_build_and_encode_accept_chunk_sequence_objects():
    class Piece:  # a stand-in for events.ChunkSequence
        def __init__(self, name, chunks):
            self.name, self.chunks, self.ticks_per_beat = name, chunks, 480

    piece = Piece("minuet.mid", ["0_no_60_80", "4_nf_60_0"])
    vocab = Vocabulary.build([piece])
    assert list(vocab.encode(piece)) == [0, 1]
    with pytest.raises(UnknownTokenError, match="minuet.mid"):
        Vocabulary(["0_no_60_80"]).encode(piece)


def test_unknown_error_names_the_chunk_and_its_position():
    vocab = Vocabulary(["a", "b"])
    with pytest.raises(UnknownTokenError) as caught:
        vocab.encode(["a", "b", "zz", "a"])
    error = caught.value
    assert isinstance(error, LstmMusicError) and not isinstance(error, KeyError)
    assert error.token == "zz" and error.position == 2
    assert "'zz'" in str(error) and "position 2" in str(error) and "unknown='skip'" in str(error)
    with pytest.raises(UnknownTokenError, match="'nope'"):
        vocab.index("nope")


def test_unknown_skip_drops_and_counts():
    vocab = Vocabulary(["a", "b"])
    assert list(vocab.encode(["x", "a", "y", "b", "x"], unknown="skip")) == [0, 1]
    ids, skipped = vocab.encode_skipping(["x", "a", "y", "b", "x"])
    assert list(ids) == [0, 1] and ids.dtype == np.int64 and skipped == 3
    ids, skipped = vocab.encode_skipping(["q"])
    assert ids.shape == (0,) and ids.dtype == np.int64 and skipped == 1
    with pytest.raises(VocabularyError, match="'error' or 'skip'"):
        vocab.encode(["a"], unknown="ignore")


def test_decode_rejects_out_of_range_and_non_integer_ids():
    vocab = Vocabulary(["a", "b", "c"])
    assert vocab.decode(np.array([2, 0], dtype=np.int32)) == ["c", "a"]
    assert vocab.decode([]) == []
    with pytest.raises(VocabularyError, match=r"id 3 at position 1 .* 0 \.\. 2"):
        vocab.decode([0, 3])
    with pytest.raises(VocabularyError, match="id -1"):
        vocab.decode([-1])  # never silently counted from the end
    with pytest.raises(VocabularyError, match="integer"):
        vocab.decode([0.0, 1.0])
    with pytest.raises(VocabularyError, match=r"\(N,\)"):
        vocab.decode([[0, 1]])


@settings(max_examples=30, deadline=None)
@given(st.lists(chunks, min_size=1, max_size=30, unique=True))
def test_json_round_trip_keeps_the_given_order(tokens):
    vocab = Vocabulary(tokens)  # not sorted: the ids must survive exactly as given
    again = Vocabulary.from_json(vocab.to_json())
    assert again.tokens == tuple(tokens)
    assert Vocabulary.from_json(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_from_json_rejects_bad_data():
    with pytest.raises(VocabularyError, match="not valid JSON"):
        Vocabulary.from_json("{oops")
    with pytest.raises(VocabularyError, match="not a saved vocabulary"):
        Vocabulary.from_json('{"tokens": ["a"]}')
    bad_version = {"format": "lstm_from_scratch.vocabulary", "version": 99, "tokens": ["a"]}
    with pytest.raises(VocabularyError, match="version 99"):
        Vocabulary.from_dict(bad_version)
    bad_tokens = {"format": "lstm_from_scratch.vocabulary", "version": 1, "tokens": ["a", 3]}
    with pytest.raises(VocabularyError, match="not a string"):
        Vocabulary.from_dict(bad_tokens)


def test_save_load_round_trip_is_atomic(tmp_path):
    vocab = Vocabulary.build([["2_no_60_80", "0_no_60_80", "0_nf_60_0"]])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    assert os.listdir(tmp_path) == ["vocab.json"]  # no temp file left behind
    Vocabulary(["x"]).save(path)  # overwriting replaces the whole file
    assert Vocabulary.load(path).tokens == ("x",)


def test_load_and_save_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(VocabularyError, match="missing.json.*does not exist"):
        Vocabulary.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("not json")
    with pytest.raises(VocabularyError, match="broken.json.*not valid JSON"):
        Vocabulary.load(broken)
    with pytest.raises(VocabularyError, match="cannot write vocabulary"):
        Vocabulary(["a"]).save(tmp_path / "no_such_folder" / "vocab.json")


def test_music_does_not_import_nn():
    import ast
    import inspect

    from lstm_from_scratch.music import vocab as module

    tree = ast.parse(inspect.getsource(module))
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names]
    assert not [name for name in imported if ".nn" in name or name.startswith("nn")]


def test_saved_file_follows_the_umask_not_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "vocab.json"
    Vocabulary(["a"]).save(path)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_unknown_token_error_survives_copying():
    import copy

    # copy rebuilds an exception from its args, as multiprocessing does when sending it back.
    error = UnknownTokenError("zz", 4, 10, "song.mid")
    clone = copy.copy(error)
    assert str(clone) == str(error) and clone.token == "zz" and clone.position == 4
