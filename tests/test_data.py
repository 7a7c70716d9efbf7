"""Tests for data.py: windows and their targets, the split by file, batches, the unigram baseline."""
import ast
import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_from_scratch import data
from lstm_from_scratch.data import (
    DataError,
    count_windows,
    iterate_batches,
    make_windows,
    num_batches,
    split_by_file,
    unigram_baseline,
    windows_from_sequences,
)
from lstm_from_scratch.errors import LstmMusicError


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 80), st.integers(1, 12), st.integers(1, 5))
def test_targets_are_inputs_shifted_by_one(num_tokens, seq_len, step):
    ids = np.arange(100, 100 + num_tokens)  # distinct values: every position is identifiable
    if num_tokens < seq_len + 1:
        with pytest.raises(DataError):
            make_windows(ids, seq_len, step)
        return
    X, Y = make_windows(ids, seq_len, step)
    assert X.shape == Y.shape == (count_windows(num_tokens, seq_len, step), seq_len)
    assert X.dtype == Y.dtype == np.int64
    np.testing.assert_array_equal(Y[:, :-1], X[:, 1:])
    for k in range(len(X)):
        start = k * step
        np.testing.assert_array_equal(X[k], ids[start:start + seq_len])
        assert Y[k, -1] == ids[start + seq_len]  # the token right after the window
    # No window is missed: the next start, len(X) * step, would have no token after its window.
    assert len(X) * step + seq_len >= num_tokens


def test_make_windows_small_example():
    X, Y = make_windows([5, 6, 7, 8, 9], seq_len=3, step=1)
    assert X.tolist() == [[5, 6, 7], [6, 7, 8]]
    assert Y.tolist() == [[6, 7, 8], [7, 8, 9]]
    ids = np.arange(10)
    X, Y = make_windows(ids, seq_len=3, step=3)
    assert X.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert Y[:, -1].tolist() == [3, 6, 9]
    X[0, 0] = 99  # the result is a writable copy, not a view into ids
    Y[0, 0] = 98
    assert ids.tolist() == list(range(10)) and X[0, 1] == 1  # X and Y do not share memory either


def test_windows_never_cross_pieces():
    # Piece p holds the values p*1000 + 0, 1, 2, ...: a window crossing pieces would mix thousands.
    pieces = [np.arange(n) + 1000 * p for p, n in enumerate([7, 3, 12, 5])]
    X, Y = windows_from_sequences(pieces, seq_len=4, step=1)
    expected = sum(count_windows(len(p), 4, 1) for p in pieces)
    assert len(X) == expected == 3 + 0 + 8 + 1
    both = np.concatenate([X, Y[:, -1:]], axis=1)
    assert np.all(both // 1000 == both[:, :1] // 1000)
    np.testing.assert_array_equal(Y[:, :-1], X[:, 1:])


def test_too_small_corpus_says_what_it_has_what_it_needs_and_what_to_do():
    with pytest.raises(DataError) as caught:
        make_windows(np.arange(10), seq_len=64)
    message = str(caught.value)
    assert isinstance(caught.value, LstmMusicError)
    assert "10 tokens" in message and "65" in message and "--seq-len" in message
    with pytest.raises(DataError, match=r"longest of 2 piece\(s\) \(30 tokens in all\) has 20 tokens"):
        windows_from_sequences([np.arange(20), np.arange(10)], seq_len=20)
    with pytest.raises(DataError, match="0 tokens"):
        windows_from_sequences([], seq_len=4)


def test_bad_arguments_raise_data_errors():
    with pytest.raises(DataError, match="seq_len"):
        make_windows(np.arange(10), seq_len=0)
    with pytest.raises(DataError, match="step"):
        make_windows(np.arange(10), seq_len=2, step=0)
    with pytest.raises(DataError, match="step"):
        count_windows(10, seq_len=2, step=0)  # was a ZeroDivisionError
    with pytest.raises(DataError, match=r"\(N,\)"):
        make_windows(np.zeros((3, 3), dtype=int), seq_len=2)
    with pytest.raises(DataError, match="integer"):
        make_windows(np.linspace(0, 1, 10), seq_len=2)
    with pytest.raises(DataError, match="val_fraction"):
        split_by_file([1, 2], val_fraction=1.0)


def test_split_by_file_is_disjoint_complete_and_deterministic():
    pieces = [f"piece{i}.mid" for i in range(20)]
    train, val = split_by_file(pieces, val_fraction=0.25, rng=7)
    assert len(val) == 5 and len(train) == 15
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(pieces)
    assert train == sorted(train, key=pieces.index)  # original order kept
    assert split_by_file(pieces, 0.25, rng=7) == (train, val)
    assert split_by_file(pieces, 0.25, rng=np.random.default_rng(7)) == (train, val)
    others = {tuple(split_by_file(pieces, 0.25, rng=seed)[1]) for seed in range(10)}
    assert len(others) > 1  # the seed really chooses


def test_split_edge_cases():
    assert split_by_file(["only"], 0.5, rng=0) == (["only"], [])  # one piece: no validation
    assert split_by_file([], 0.5, rng=0) == ([], [])
    assert split_by_file(["a", "b", "c"], 0.0, rng=0) == (["a", "b", "c"], [])
    train, val = split_by_file(["a", "b"], 0.01, rng=0)  # rounds to 0, but 2 pieces -> 1 each
    assert len(train) == len(val) == 1
    train, val = split_by_file(["a", "b", "c"], 0.9, rng=0)  # training always keeps a piece
    assert len(train) == 1 and len(val) == 2


def test_split_then_window_keeps_validation_windows_out_of_training():
    pieces = [np.arange(30) + 1000 * p for p in range(6)]
    train, val = split_by_file(pieces, 0.34, rng=3)
    Xt, _ = windows_from_sequences(train, 5)
    Xv, _ = windows_from_sequences(val, 5)
    assert set((Xt // 1000).ravel()).isdisjoint((Xv // 1000).ravel())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 9), st.booleans(), st.integers(0, 2**32 - 1))
def test_batches_cover_every_window_once_per_epoch(num_windows, batch_size, drop_last, seed):
    seq_len = 3
    X = np.arange(num_windows * seq_len).reshape(num_windows, seq_len)
    Y = X + 1
    batches = list(iterate_batches(X, Y, batch_size, np.random.default_rng(seed), drop_last))
    assert len(batches) == num_batches(num_windows, batch_size, drop_last)
    seen = []
    for inputs, targets in batches:
        assert inputs.shape[0] == seq_len  # time-major (T, B)
        assert inputs.shape == targets.shape and inputs.shape[1] <= batch_size
        assert inputs.flags.c_contiguous
        np.testing.assert_array_equal(targets, inputs + 1)  # pairs stay together
        seen.extend((inputs[0] // seq_len).tolist())
    if drop_last:
        assert all(inputs.shape[1] == batch_size for inputs, _ in batches)
        assert len(seen) == (num_windows // batch_size) * batch_size and len(set(seen)) == len(seen)
    else:
        assert sorted(seen) == list(range(num_windows))


def test_batches_are_shuffled_and_reproducible_for_a_seed():
    X = np.arange(200).reshape(100, 2)
    first = [b[0].copy() for b in iterate_batches(X, X, 10, np.random.default_rng(1))]
    again = [b[0].copy() for b in iterate_batches(X, X, 10, np.random.default_rng(1))]
    other = [b[0].copy() for b in iterate_batches(X, X, 10, np.random.default_rng(2))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    in_order = np.concatenate([b[0][0] for b in iterate_batches(X, X, 10, rng=None)])
    np.testing.assert_array_equal(in_order, X[:, 0])
    assert not np.array_equal(np.concatenate([b[0] for b in first]), X[:, 0])


def test_num_batches():
    assert num_batches(10, 3) == 4 and num_batches(10, 3, drop_last=True) == 3
    assert num_batches(0, 3) == 0 and num_batches(9, 3) == 3
    with pytest.raises(DataError, match="batch_size"):
        num_batches(10, 0)


def test_unigram_baseline_by_hand():
    train = np.array([0, 0, 0, 1])  # counts 3, 1, 0 over V = 3; smoothed p = 4/7, 2/7, 1/7
    targets = np.array([[0, 1], [2, 0]])
    result = unigram_baseline(train, targets, vocab_size=3)
    expected = -(2 * math.log(4 / 7) + math.log(2 / 7) + math.log(1 / 7)) / 4
    assert result["cross_entropy"] == pytest.approx(expected)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["most_frequent"] == 0
    assert result["uniform_cross_entropy"] == pytest.approx(math.log(3))
    from_pieces = unigram_baseline([np.array([0, 0]), np.array([0, 1])], targets, 3)
    assert from_pieces == result


def test_unigram_baseline_edge_cases():
    result = unigram_baseline(np.array([1, 1]), np.array([], dtype=np.int64), vocab_size=4)
    assert result["cross_entropy"] is None and result["accuracy"] is None
    assert result["most_frequent"] == 1
    with pytest.raises(DataError, match="outside"):
        unigram_baseline(np.array([0, 5]), np.array([0]), vocab_size=3)


def test_data_does_not_import_nn():
    tree = ast.parse(inspect.getsource(data))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in modules if "nn" in name.split(".")]


def test_data_error_is_the_project_wide_one():
    from lstm_from_scratch import errors

    assert DataError is errors.DataError
