import warnings

import numpy as np
import pytest

from lstm_from_scratch.nn.gradcheck import check_layer_gradients
from lstm_from_scratch.nn.layers import OneHot
from lstm_from_scratch.nn.lstm import LSTM, sigmoid, split_gates

D, H, T, B = 5, 4, 4, 3


def random_lstm(rng, scale=0.5):
    """A float64 LSTM with every parameter random, biases included."""
    layer = LSTM(D, H, np.float64, rng)
    for value in layer.params.values():
        value[...] = scale * rng.standard_normal(value.shape)
    return layer


def random_state(rng, scale=0.5):
    return scale * rng.standard_normal((B, H)), scale * rng.standard_normal((B, H))


def test_one_step_by_hand():
    # D = 1, H = 1, one step, x = 1, h0 = 0.5, c0 = 0.4. The numbers are chosen so the gates are round:
    #   a = x * Wx + h0 * Wh + b
    #   a_i = ln3 + 0.5 * 0      + 0  = ln3   -> i = sigmoid(ln3) = 3/4
    #   a_f = 2   + 0.5 * (-2)   - 1  = 0     -> f = 1/2
    #   a_g = 0   + 0.5 * 2 ln3  + 0  = ln3   -> g = tanh(ln3) = (3 - 1/3) / (3 + 1/3) = 4/5
    #   a_o = 0   + 0.5 * -2 ln3 + 0  = -ln3  -> o = 1/4
    #   c1 = f * c0 + i * g = 0.2 + 0.6 = 0.8;  h1 = o * tanh(c1) = tanh(0.8) / 4 = 0.16600919...
    ln3 = np.log(3.0)
    layer = LSTM(1, 1, np.float64)
    layer.params["Wx"][...] = [[ln3, 2.0, 0.0, 0.0]]
    layer.params["Wh"][...] = [[0.0, -2.0, 2 * ln3, -2 * ln3]]
    layer.params["b"][...] = [0.0, -1.0, 0.0, 0.0]
    hs = layer.forward(np.ones((1, 1, 1)), (np.array([[0.5]]), np.array([[0.4]])))
    i, f, g, o = (gate.item() for gate in split_gates(layer.gates[0]))
    assert (i, f, g, o) == pytest.approx((0.75, 0.5, 0.8, 0.25))
    h1, c1 = layer.final_state
    assert c1.item() == pytest.approx(0.8)
    assert hs.item() == pytest.approx(0.16600919256696, rel=1e-12)
    assert h1.item() == hs.item()


def test_initialisation_and_shapes():
    layer = LSTM(D, H, rng=np.random.default_rng(0))
    assert layer.params["Wx"].shape == (D, 4 * H) and layer.params["Wh"].shape == (H, 4 * H)
    assert all(value.dtype == np.float32 for value in layer.params.values())
    b = layer.params["b"]
    assert np.all(b[H : 2 * H] == 1.0) and np.all(b[:H] == 0) and np.all(b[2 * H :] == 0)
    assert np.abs(layer.params["Wh"]).max() <= 1 / np.sqrt(H)
    assert np.all(LSTM(D, H, forget_bias=2.5).params["b"][H : 2 * H] == 2.5)
    hs = layer.forward(np.zeros((T, B, D), np.float32))
    assert hs.shape == (T, B, H) and hs.dtype == np.float32
    np.testing.assert_array_equal(layer.final_state[0], hs[-1])


@pytest.mark.parametrize("with_state", [True, False])
def test_gradients_float_input(with_state, rng):
    layer = random_lstm(rng)
    x = rng.standard_normal((T, B, D))
    state = random_state(rng) if with_state else None
    errors = check_layer_gradients(layer, x, state, eps=1e-5, rng=rng)
    print(f"worst relative error LSTM float input, state={with_state}: {errors}")
    expected = {"Wx", "Wh", "b", "x"} | ({"h0", "c0"} if with_state else set())
    assert set(errors) == expected
    assert max(errors.values()) < 1e-6


def test_gradients_id_input(rng):
    layer = random_lstm(rng)
    ids = rng.integers(0, D, (T, B))
    errors = check_layer_gradients(layer, ids, random_state(rng), eps=1e-5, rng=rng)
    print(f"worst relative error LSTM id input: {errors}")
    assert set(errors) == {"Wx", "Wh", "b", "h0", "c0"}
    assert max(errors.values()) < 1e-6


def test_id_input_equals_onehot_input(rng):
    layer = random_lstm(rng)
    ids = rng.integers(0, D, (T, B))
    state = random_state(rng)
    dhs = rng.standard_normal((T, B, H))
    dfinal = random_state(rng)

    hs_ids = layer.forward(ids, state)
    assert layer.backward(dhs, dfinal) is None
    grads_ids = {key: value.copy() for key, value in layer.grads.items()}
    dstate_ids = layer.dinitial_state

    hs_onehot = layer.forward(OneHot(D, np.float64).forward(ids), state)
    layer.backward(dhs, dfinal)
    np.testing.assert_allclose(hs_ids, hs_onehot, rtol=1e-12)
    for key in grads_ids:
        np.testing.assert_allclose(grads_ids[key], layer.grads[key], rtol=1e-10, atol=1e-14)
    for a, b in zip(dstate_ids, layer.dinitial_state):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_state_carries_across_calls(rng):
    # Running T steps at once equals running them in two pieces with the state handed over.
    layer = random_lstm(rng)
    x = rng.standard_normal((6, B, D))
    whole = layer.forward(x)
    first = layer.forward(x[:2])
    second = layer.forward(x[2:], layer.final_state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12)


def test_backward_leaves_weights_alone_and_overwrites_grads(rng):
    layer = random_lstm(rng)
    before = {key: value.copy() for key, value in layer.params.items()}
    x = rng.standard_normal((T, B, D))
    layer.forward(x)
    dhs = rng.standard_normal((T, B, H))
    layer.backward(dhs)
    first = {key: value.copy() for key, value in layer.grads.items()}
    layer.forward(x)
    layer.backward(dhs)
    for key in before:
        np.testing.assert_array_equal(layer.params[key], before[key])
        np.testing.assert_array_equal(layer.grads[key], first[key])  # not accumulated


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_inputs_raise_no_warnings(dtype):
    layer = LSTM(2, 3, dtype, np.random.default_rng(0))
    x = np.array([[[1e4, -1e4]], [[-1e4, 1e4]]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        hs = layer.forward(x)
        layer.backward(np.ones_like(hs))
        s = sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=dtype))
    assert np.all(np.isfinite(hs)) and np.all(np.abs(hs) <= 1)
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1], rtol=1e-6)


def test_bad_state_shape_is_rejected(rng):
    layer = random_lstm(rng)
    with pytest.raises(ValueError, match="state"):
        layer.forward(rng.standard_normal((T, B, D)), (np.zeros((B, H + 1)), np.zeros((B, H + 1))))
