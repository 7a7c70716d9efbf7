"""The fast engine's parts (fast/lstm.py, fast/model.py, fast/losses.py) give the plain engine's numbers.

FastLSTM is checked the same way as the readable LSTM in test_lstm.py and test_torch_parity.py: float64,
centered differences, every parameter and both initial states with random biases and random upstream
gradients into h_T and c_T, worst relative error < 1e-6. test_torch_parity.py checks it against
torch.nn.LSTM beside the readable LSTM (skipped when torch is absent).
"""
import numpy as np
import pytest

from lstm_from_scratch.fast.lstm import FastLSTM, scatter_add_rows_fast
from lstm_from_scratch.nn.gradcheck import check_layer_gradients
from lstm_from_scratch.nn.layers import scatter_add_rows
from lstm_from_scratch.nn.lstm import LSTM
from lstm_from_scratch.fast.model import FastModel

D, H, T, B = 5, 4, 6, 3


def random_pair(rng, scale=0.5):
    """A readable LSTM and a FastLSTM holding the same random float64 weights, biases included."""
    slow, fast = LSTM(D, H, np.float64), FastLSTM(D, H, np.float64)
    for key, value in slow.params.items():
        value[...] = scale * rng.standard_normal(value.shape)
        fast.params[key][...] = value
    return slow, fast


def random_state(rng, scale=0.5):
    return scale * rng.standard_normal((B, H)), scale * rng.standard_normal((B, H))


def assert_same_grads(fast, slow):
    """The FastLSTM's gradients equal the readable LSTM's, to float64 rounding."""
    for key in slow.grads:
        np.testing.assert_allclose(fast.grads[key], slow.grads[key], rtol=1e-12, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("id_input", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_fast_lstm_gradients(id_input, with_state, rng):
    _, fast = random_pair(rng)
    x = rng.integers(0, D, (T, B)) if id_input else rng.standard_normal((T, B, D))
    state = random_state(rng) if with_state else None
    errors = check_layer_gradients(fast, x, state, eps=1e-5, rng=rng)
    print(f"worst relative error FastLSTM id_input={id_input} state={with_state}: {errors}")
    expected = {"Wx", "Wh", "b"} | (set() if id_input else {"x"}) | ({"h0", "c0"} if with_state else set())
    assert set(errors) == expected
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("id_input", [False, True])
def test_fast_lstm_matches_readable_lstm(id_input, rng):
    slow, fast = random_pair(rng)
    x = rng.integers(0, D, (T, B)) if id_input else rng.standard_normal((T, B, D))
    state, dfinal = random_state(rng), random_state(rng)
    dhs = rng.standard_normal((T, B, H))
    outputs = {}
    for name, layer in (("slow", slow), ("fast", fast)):
        hs = layer.forward(x, state)
        dx = layer.backward(dhs, dfinal)
        outputs[name] = {"hs": hs, "gates": layer.gates, "cs": layer.cs, "h_T": layer.final_state[0],
                         "c_T": layer.final_state[1], "dh0": layer.dinitial_state[0],
                         "dc0": layer.dinitial_state[1], **layer.grads}
        if not id_input:
            outputs[name]["dx"] = dx
        else:
            assert dx is None
    assert outputs["slow"].keys() == outputs["fast"].keys()
    for key, value in outputs["slow"].items():
        np.testing.assert_allclose(outputs["fast"][key], value, rtol=1e-12, atol=1e-13, err_msg=key)


def test_fast_lstm_returns_fresh_arrays(rng):
    # Outputs must not be overwritten by the next call (tutorial 3 compares two calls' hs).
    _, fast = random_pair(rng)
    x = rng.standard_normal((T, B, D))
    first = fast.forward(x[:2])
    first_copy = first.copy()
    second = fast.forward(x[2:], state=fast.final_state)
    whole = fast.forward(x)
    np.testing.assert_array_equal(first, first_copy)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12)


def test_fast_lstm_keeps_float32_and_handles_empty_sequence(rng):
    fast = FastLSTM(D, H, rng=rng)
    hs = fast.forward(rng.integers(0, D, (T, B)))
    assert hs.dtype == np.float32 and fast.gates.dtype == np.float32
    fast.backward(rng.standard_normal((T, B, H)))
    assert all(g.dtype == np.float32 for g in fast.grads.values())
    state = random_state(rng)
    empty = fast.forward(np.zeros((0, B), dtype=np.int64), state)
    assert empty.shape == (0, B, H)
    np.testing.assert_allclose(fast.final_state[0], state[0], rtol=1e-6)


@pytest.mark.parametrize("vocab", [1, 3, 50])
@pytest.mark.parametrize("positions", [1, 7, 300])
def test_fast_scatter_add_matches_add_at(vocab, positions, rng):
    ids = rng.integers(0, vocab, (positions, 2))
    dout = rng.standard_normal((positions, 2, 9))
    expected = scatter_add_rows(ids, dout, vocab + 2)
    np.testing.assert_allclose(scatter_add_rows_fast(ids, dout, vocab + 2), expected, rtol=1e-12, atol=1e-12)


def test_fast_model_uses_fast_lstm_with_the_same_names():
    model = FastModel({"vocab_size": 7, "layers": [{"type": "lstm", "hidden_size": 4}]})
    assert isinstance(model.layers[0], FastLSTM) and isinstance(model.layers[0], LSTM)
    assert list(model.params) == ["0.lstm.Wx", "0.lstm.Wh", "0.lstm.b", "1.dense.W", "1.dense.b"]


def test_lean_step_refuses_bad_ids():
    model = FastModel({"vocab_size": 9, "layers": [{"type": "lstm", "hidden_size": 5}]})
    for bad in ([9], [-1], [0, 9]):
        with pytest.raises(ValueError, match="token ids"):
            model.step(np.array(bad))


def test_loss_in_place_gives_the_same_numbers(rng):
    from lstm_from_scratch.fast.losses import softmax_cross_entropy

    logits = rng.standard_normal((4, 3, 11)) * 5
    targets = rng.integers(0, 11, (4, 3))
    loss, dlogits = softmax_cross_entropy(logits, targets)
    kept = logits.copy()
    np.testing.assert_array_equal(logits, kept)  # the default leaves the logits alone
    loss_in_place, dlogits_in_place = softmax_cross_entropy(logits, targets, overwrite_logits=True)
    assert loss_in_place == loss
    np.testing.assert_array_equal(dlogits_in_place, dlogits)
    assert np.shares_memory(dlogits_in_place, logits)


@pytest.mark.parametrize("scale", [0.1, 30.0, 1e4])  # below SAFE_LOGIT (no shift), around it, far above
@pytest.mark.parametrize("overwrite", [False, True])
def test_loss_matches_log_softmax_with_and_without_the_shift(scale, overwrite, rng):
    from lstm_from_scratch.fast.losses import softmax_cross_entropy
    from lstm_from_scratch.nn.losses import log_softmax

    logits = rng.standard_normal((5, 4, 13)) * scale
    targets = rng.integers(0, 13, (5, 4))
    log_probs = log_softmax(logits)
    expected_loss = -np.mean(np.take_along_axis(log_probs, targets[..., None], axis=-1))
    expected_grad = (np.exp(log_probs) - np.eye(13)[targets]) / targets.size
    loss, dlogits = softmax_cross_entropy(logits.copy() if overwrite else logits, targets, overwrite)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dlogits, expected_grad, rtol=1e-10, atol=1e-15)


def test_loss_of_unsigned_integer_logits():
    # Was: uint8 logits above SAFE_LOGIT wrapped around in the shift and gave a wrong loss.
    from lstm_from_scratch.fast.losses import softmax_cross_entropy

    logits, targets = np.array([[200, 0, 3], [7, 90, 1]], np.uint8), np.array([1, 1])
    loss, dlogits = softmax_cross_entropy(logits, targets, overwrite_logits=True)
    expected_loss, expected_grad = softmax_cross_entropy(logits.astype(np.float64), targets)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(dlogits, expected_grad, rtol=1e-12, atol=1e-300)
    assert logits[0, 0] == 200  # left alone


@pytest.mark.parametrize("overwrite", [False, True])
def test_loss_with_every_logit_far_below_zero(overwrite, rng):
    # No logit is above SAFE_LOGIT, but in float32 exp(-200) is 0: without the shift every row's sum
    # would be 0 and the loss infinite. The targets' logits show that the shift is needed.
    from lstm_from_scratch.fast.losses import softmax_cross_entropy
    from lstm_from_scratch.nn.losses import log_softmax

    logits = (rng.standard_normal((5, 4, 13)) - 200).astype(np.float32)
    targets = rng.integers(0, 13, (5, 4))
    log_probs = log_softmax(logits.astype(np.float64))
    expected_loss = -np.mean(np.take_along_axis(log_probs, targets[..., None], axis=-1))
    loss, dlogits = softmax_cross_entropy(logits.copy() if overwrite else logits, targets, overwrite)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    expected_grad = (np.exp(log_probs) - np.eye(13)[targets]) / targets.size
    np.testing.assert_allclose(dlogits, expected_grad, rtol=1e-4, atol=1e-7)


def test_row_blocks(monkeypatch):
    from lstm_from_scratch.fast import lstm as fast_lstm

    monkeypatch.setattr(fast_lstm, "SPLIT_SMALL_PRODUCTS", True)
    assert fast_lstm.row_blocks(24, 128, 512) == [slice(0, 12), slice(12, 24)]  # 12 * 128 * 512 < 10^6
    assert fast_lstm.row_blocks(1, 128, 512) == [slice(0, 1)]
    assert fast_lstm.row_blocks(200, 128, 512) == [slice(0, 200)]  # would need too many blocks
    monkeypatch.setattr(fast_lstm, "SPLIT_SMALL_PRODUCTS", False)
    assert fast_lstm.row_blocks(24, 128, 512) == [slice(0, 24)]


@pytest.mark.parametrize("split", [False, True])
def test_fast_lstm_same_numbers_with_or_without_row_blocks(split, rng, monkeypatch):
    from lstm_from_scratch.fast import lstm as fast_lstm

    monkeypatch.setattr(fast_lstm, "SMALL_PRODUCT", 2 * 4 * H * H)  # 2-row blocks at this tiny size
    monkeypatch.setattr(fast_lstm, "SPLIT_SMALL_PRODUCTS", split)
    slow, fast = random_pair(rng)
    ids = rng.integers(0, D, (T, 5))
    dhs = rng.standard_normal((T, 5, H))
    np.testing.assert_allclose(fast.forward(ids), slow.forward(ids), rtol=1e-12, atol=1e-14)
    fast.backward(dhs)
    slow.backward(dhs)
    assert_same_grads(fast, slow)


def test_background_thread_works_in_a_forked_process():
    import multiprocessing
    import os

    from lstm_from_scratch.fast.background import background

    assert background().submit(os.getpid).result() == os.getpid()  # started here, in the parent
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        # the child's first call would hang on the parent's thread if the worker were not per process
        assert pool.apply_async(_child_uses_background).get(timeout=20) == 6


def _child_uses_background():
    from lstm_from_scratch.fast.background import background

    return background().submit(sum, [1, 2, 3]).result(timeout=10)


@pytest.mark.parametrize("id_input", [False, True])
def test_backward_factors_from_the_worker_thread(id_input, rng, monkeypatch):
    # Force the worker path (real sizes use it; these tiny ones would not), then check against the
    # readable LSTM, also after a second forward that replaced the first before backward.
    from lstm_from_scratch.fast import lstm as fast_lstm

    monkeypatch.setattr(fast_lstm, "BACKGROUND_SIZE", 0)
    slow, fast = random_pair(rng)
    x = rng.integers(0, D, (T, B)) if id_input else rng.standard_normal((T, B, D))
    other = rng.integers(0, D, (T, B)) if id_input else rng.standard_normal((T, B, D))
    state, dfinal, dhs = random_state(rng), random_state(rng), rng.standard_normal((T, B, H))
    fast.forward(other, state)  # its factors job is superseded by the next forward
    fast.forward(x, state)
    assert fast._factors_job is not None
    dx_fast = fast.backward(dhs, dfinal)
    slow.forward(x, state)
    dx_slow = slow.backward(dhs, dfinal)
    assert_same_grads(fast, slow)
    if not id_input:
        np.testing.assert_allclose(dx_fast, dx_slow, rtol=1e-12, atol=1e-13)
    errors = check_layer_gradients(fast, x, state, eps=1e-5, rng=rng)
    assert max(errors.values()) < 1e-6


def test_a_new_forward_waits_for_the_factors_of_the_last(rng, monkeypatch):
    # A training forward hands backward's factors to the worker thread, in work arrays the next
    # forward of the same shape reuses: that forward must wait for them. Was: a training forward,
    # then an evaluation forward, then backward sometimes gave wrong gradients.
    import threading
    import time

    from lstm_from_scratch.fast import lstm as fast_lstm

    real = fast_lstm._backward_factors
    started = threading.Event()

    def slow_factors(*args):
        started.set()
        time.sleep(0.2)
        return real(*args)

    monkeypatch.setattr(fast_lstm, "BACKGROUND_SIZE", 0)
    monkeypatch.setattr(fast_lstm, "_backward_factors", slow_factors)
    slow, fast = random_pair(rng)
    x, other = rng.integers(0, D, (2, T, B))
    state, dfinal, dhs = random_state(rng), random_state(rng), rng.standard_normal((T, B, H))
    fast.training = True
    fast.forward(other, state)
    job = fast._factors_job
    assert started.wait(5)
    fast.training = False
    fast.forward(x, state)
    assert job.done()  # it finished before this forward wrote over its arrays
    fast.backward(dhs, dfinal)
    slow.forward(x, state)
    slow.backward(dhs, dfinal)
    assert_same_grads(fast, slow)


def test_gates_are_laid_out_once_per_forward(rng):
    # FastLSTM keeps its gates gate by gate and lays them out as LSTM's (T, B, 4H) when asked: the
    # same array on every use, until the next forward, which brings its own values.
    slow, fast = random_pair(rng)
    x, other = rng.integers(0, D, (2, T, B))
    fast.forward(x)
    first = fast.gates
    assert fast.gates is first and first.shape == (T, B, 4 * H)
    fast.forward(other)
    slow.forward(other)
    assert fast.gates is not first
    np.testing.assert_allclose(fast.gates, slow.gates, rtol=1e-12, atol=1e-14)
    slow.forward(x)
    np.testing.assert_allclose(first, slow.gates, rtol=1e-12, atol=1e-14)  # the old values, kept


@pytest.mark.parametrize("id_input", [False, True])
def test_an_empty_batch(id_input, rng):
    # B = 0: no sequences, so every gradient is zero, with the shapes of a real batch.
    slow, fast = random_pair(rng)
    x = np.zeros((T, 0), int) if id_input else np.zeros((T, 0, D))
    for layer in (slow, fast):
        assert layer.forward(x).shape == (T, 0, H)
        dx = layer.backward(np.zeros((T, 0, H)))
        assert (dx is None) if id_input else dx.shape == (T, 0, D)
        for key, grad in layer.grads.items():
            assert grad.shape == layer.params[key].shape and not grad.any()


@pytest.mark.parametrize("bad", ["state of another batch size", "floats of another width", "stopped part-way"])
@pytest.mark.parametrize("id_input", [False, True])
def test_a_forward_that_fails_leaves_the_last_one_to_backward(bad, id_input, rng):
    # FastLSTM's loops read views of its work arrays, made with them for each shape. A forward that
    # fails on its input must fail before it touches them, and one stopped part-way (here by the
    # layer above, in on_step; Ctrl-C would do the same) must not leave backward reading work arrays
    # made for its shape: backward still belongs to the last forward that finished.
    slow, fast = random_pair(rng)
    x = rng.integers(0, D, (T, B)) if id_input else rng.standard_normal((T, B, D))
    state, dhs = random_state(rng), rng.standard_normal((T, B, H))
    for layer in (slow, fast):
        layer.forward(x, state)

    def stop(hs, step):
        raise KeyboardInterrupt

    other_x = rng.standard_normal((T - 1, B + 1, D))
    if bad == "state of another batch size":
        call, expected, message = dict(x=other_x, state=random_state(rng)), ValueError, "state must be"
    elif bad == "floats of another width":
        call, expected, message = dict(x=rng.standard_normal((T - 1, B + 1, D + 1))), ValueError, f"{D} features"
    else:
        call, expected, message = dict(x=other_x, on_step=(2, stop)), KeyboardInterrupt, None
    with pytest.raises(expected, match=message):
        fast.forward(**call)
    dx_slow, dx_fast = slow.backward(dhs), fast.backward(dhs)
    assert_same_grads(fast, slow)
    if not id_input:
        np.testing.assert_allclose(dx_fast, dx_slow, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("after", ["forward", "backward"])
def test_a_copied_layer_computes_with_its_own_work_arrays(after, rng):
    # A copy of a FastLSTM that has run must not share its work arrays, nor keep views that were
    # windows on the original's (copy.deepcopy turns each view into an array of its own).
    import copy

    slow, fast = random_pair(rng)
    x, new_x = rng.standard_normal((2, T, B, D))
    dhs = rng.standard_normal((T, B, H))
    fast.forward(x)
    if after == "backward":
        fast.backward(dhs)
    twin = copy.deepcopy(fast)
    slow.forward(x)
    twin.backward(dhs)  # the copy's first call: a backward for the forward it was copied after
    slow.backward(dhs)
    assert_same_grads(twin, slow)
    for layer in (twin, slow):
        layer.forward(new_x)
        layer.backward(dhs)
    np.testing.assert_allclose(twin.hs, slow.hs, rtol=1e-12, atol=1e-13)
    assert_same_grads(twin, slow)
    fast.forward(new_x)  # the original is untouched by its copy's calls, and its calls by the copy's
    fast.backward(dhs)
    assert_same_grads(fast, slow)


@pytest.mark.parametrize("vocab", [3, 40])  # fewer table rows than T * B = 18, and more
def test_id_input_scaled_in_the_table_or_in_the_rows(vocab, rng):
    # FastLSTM scales the (D, 4H) table or the (T, B, 4H) rows gathered from it, whichever has fewer
    # rows; the readable LSTM does neither. The gates must agree, and the gradients check out.
    slow, fast = LSTM(vocab, H, np.float64), FastLSTM(vocab, H, np.float64)
    for key, value in slow.params.items():
        value[...] = 0.5 * rng.standard_normal(value.shape)
        fast.params[key][...] = value
    x, state = rng.integers(0, vocab, (T, B)), random_state(rng)
    slow.forward(x, state)
    fast.forward(x, state)
    np.testing.assert_allclose(fast.gates, slow.gates, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fast.hs, slow.hs, rtol=1e-12, atol=1e-14)
    assert max(check_layer_gradients(fast, x, state, eps=1e-5, rng=rng).values()) < 1e-6


@pytest.mark.parametrize("steps_per_chunk", [1, 4, T])
def test_backward_factors_in_chunks_of_steps(steps_per_chunk, rng, monkeypatch):
    # The factors are computed a few steps at a time; any chunk size gives the very same numbers,
    # and then the readable LSTM's gradients.
    from lstm_from_scratch.fast import lstm as fast_lstm

    slow, fast = random_pair(rng)
    x, state = rng.integers(0, D, (T, B)), random_state(rng)
    dhs, dfinal = rng.standard_normal((T, B, H)), random_state(rng)
    monkeypatch.setattr(fast_lstm, "FACTORS_CHUNK", 10**9)  # one chunk
    fast.forward(x, state)
    scratch = fast._scratch(T, B)
    whole = [a.copy() for a in fast_lstm._backward_factors(fast.by_step, fast.cs_all, fast.tanh_cs, scratch)]
    monkeypatch.setattr(fast_lstm, "FACTORS_CHUNK", steps_per_chunk * B * 4 * H)
    names = ("K", "L", "M")
    for name in names:
        scratch[name][...] = np.nan  # nothing may be left over from the call above
    chunked = fast_lstm._backward_factors(fast.by_step, fast.cs_all, fast.tanh_cs, scratch)
    assert len(chunked) == len(names)
    for name, expected, got in zip(names, whole, chunked):
        np.testing.assert_array_equal(got, expected, err_msg=name)
    fast.backward(dhs, dfinal)
    slow.forward(x, state)
    slow.backward(dhs, dfinal)
    assert_same_grads(fast, slow)


def test_training_step_is_the_same_with_or_without_the_worker_thread(monkeypatch):
    from lstm_from_scratch.fast import background as fast_background, lstm as fast_lstm, losses

    monkeypatch.setattr(fast_lstm, "BACKGROUND_SIZE", 0)  # every job, even at this tiny size
    monkeypatch.setattr(losses, "PARALLEL_SIZE", 0)
    config = {"vocab_size": 11, "input": "embedding", "embedding_dim": 3,
              "layers": [{"type": "lstm", "hidden_size": 6}, {"type": "dense", "units": 5, "activation": "tanh"},
                         {"type": "lstm", "hidden_size": 4}]}
    ids, targets = np.random.default_rng(0).integers(0, 11, (2, 7, 3))
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(fast_background, "ENABLED", enabled)
        loss, grads = FastModel(config, dtype=np.float64, seed=1).loss(ids, targets)
        results.append((loss, {name: grad.copy() for name, grad in grads.items()}))
    assert results[0][0] == results[1][0]
    for name, grad in results[0][1].items():
        np.testing.assert_array_equal(grad, results[1][1][name], err_msg=name)


class _LateRows:
    """A stand-in for the worker's job in ``FastLSTM.backward(wait_for=...)``: the rows it guards
    hold NaN until ``result()`` writes them, so reading them too early shows up in the gradients."""

    def __init__(self, dhs, step, rows):
        self.dhs, self.step, self.rows, self.waited = dhs, step, rows, False

    def result(self):
        self.dhs[: self.step] = self.rows
        self.waited = True


@pytest.mark.parametrize("step", [1, 3, T])
def test_fast_lstm_backward_waits_for_the_rows_still_being_written(step, rng):
    _, fast = random_pair(rng)
    x = rng.standard_normal((T, B, D))
    fast.forward(x)
    dhs = rng.standard_normal((T, B, H))
    dx_expected = fast.backward(dhs.copy())
    expected = {key: grad.copy() for key, grad in fast.grads.items()}
    late = dhs.copy()
    late[:step] = np.nan  # not written yet
    job = _LateRows(late, step, dhs[:step])
    dx = fast.backward(late, wait_for=(step, job))
    assert job.waited
    np.testing.assert_array_equal(dx, dx_expected)
    for key, grad in expected.items():
        np.testing.assert_array_equal(fast.grads[key], grad, err_msg=key)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_model_backward_splits_the_dense_input_gradient_without_changing_it(steps, monkeypatch):
    """FastModel.backward computes the Dense-above-FastLSTM input gradient in two halves on two threads
    (``_input_grad_halves``); the gradients equal those of the whole product in one call."""
    from lstm_from_scratch.fast import lstm as fast_lstm, model as model_module

    monkeypatch.setattr(fast_lstm, "BACKGROUND_SIZE", 0)
    config = {"vocab_size": 9, "layers": [{"type": "lstm", "hidden_size": 5},
                                          {"type": "lstm", "hidden_size": 4},
                                          {"type": "dense", "units": 3, "activation": "tanh"}]}
    ids, targets = np.random.default_rng(2).integers(0, 9, (2, steps, 4))
    calls = []
    real = model_module._input_grad_halves
    monkeypatch.setattr(model_module, "_input_grad_halves", lambda *a: calls.append(1) or real(*a))
    split = FastModel(config, dtype=np.float64, seed=3)
    loss_split, grads = split.loss(ids, targets)
    grads_split = {name: grad.copy() for name, grad in grads.items()}
    assert len(calls) == (0 if steps == 1 else 1)  # the output Dense sits on the Dense(3), not on an LSTM

    def whole(dense, dz):  # the unsplit product, already done
        dx = model_module._dense_input_grad(dense, dz)
        done = model_module.background().submit(lambda: None)
        return dx, (dz.shape[0], done)

    monkeypatch.setattr(model_module, "_input_grad_halves", whole)
    loss_whole, grads_whole = FastModel(config, dtype=np.float64, seed=3).loss(ids, targets)
    assert loss_split == loss_whole
    for name, grad in grads_whole.items():
        np.testing.assert_allclose(grads_split[name], grad, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("step", [0, 2, T, T + 3])
def test_fast_lstm_forward_calls_on_step_once_the_rows_are_final(step, rng):
    _, fast = random_pair(rng)
    x = rng.standard_normal((T, B, D))
    expected = fast.forward(x).copy()
    seen = []
    hs = fast.forward(x, on_step=(step, lambda rows, at: seen.append((at, rows[:at].copy(), rows))))
    np.testing.assert_array_equal(hs, expected)
    [(at, rows_then, rows)] = seen  # called exactly once
    assert at == min(step, T) and rows is not None
    np.testing.assert_array_equal(rows_then, expected[:at])  # the rows it was promised were final


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_model_forward_splits_the_dense_above_an_lstm_without_changing_it(activation, steps, monkeypatch):
    """With FORWARD_SPLIT_SIZE at 0, every Dense above a FastLSTM runs its forward in two halves on two
    threads (``_DenseHalves``); logits, loss and gradients equal the unsplit ones."""
    from lstm_from_scratch.fast import model as model_module

    config = {"vocab_size": 9, "layers": [{"type": "lstm", "hidden_size": 5},
                                          {"type": "dense", "units": 3, "activation": activation},
                                          {"type": "lstm", "hidden_size": 4}]}
    ids, targets = np.random.default_rng(4).integers(0, 9, (2, steps, 4))
    starts = []
    real_start = model_module._DenseHalves.start
    monkeypatch.setattr(model_module._DenseHalves, "start", lambda self, *a: starts.append(1) or real_start(self, *a))
    results = []
    for size in (0, 10**9):
        monkeypatch.setattr(model_module, "FORWARD_SPLIT_SIZE", size)
        model = FastModel(config, dtype=np.float64, seed=5)
        logits = model.forward(ids, training=True).copy()
        dense_out = model.layers[1].out.copy()
        loss, grads = model.loss(ids, targets)
        results.append((logits, dense_out, loss, {name: grad.copy() for name, grad in grads.items()}))
    # split in the first round only: two Dense layers above an LSTM, in forward and again in loss
    assert len(starts) == (0 if steps == 1 else 4)
    (logits, dense_out, loss, grads), (logits1, dense_out1, loss1, grads1) = results
    np.testing.assert_allclose(logits, logits1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dense_out, dense_out1, rtol=1e-12, atol=1e-14)
    assert loss == pytest.approx(loss1, rel=1e-12)
    for name, grad in grads1.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-10, atol=1e-13, err_msg=name)


def test_model_backward_embedding_gradient_equals_the_readable_scatter(rng):
    """FastModel.backward fills the Embedding's gradient with scatter_add_rows_fast; the same sums as
    Embedding.backward (np.add.at), with ids that repeat more than its 16 rounds."""
    config = {"vocab_size": 5, "input": "embedding", "embedding_dim": 3,
              "layers": [{"type": "lstm", "hidden_size": 4}]}
    model = FastModel(config, dtype=np.float64, seed=6)
    ids = rng.integers(0, 5, (40, 3))  # 120 positions, 5 ids: every id repeats about 24 times
    dlogits = rng.standard_normal(model.forward(ids, training=True).shape)
    model.backward(dlogits)
    fast = model.grads["0.embedding.W"].copy()
    embedding, lstm, dense = model.layers
    embedding.backward(lstm.backward(dense.backward(dlogits)))  # layer by layer: the np.add.at path
    np.testing.assert_allclose(fast, embedding.grads["W"], rtol=1e-12, atol=1e-13)
