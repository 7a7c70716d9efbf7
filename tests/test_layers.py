import numpy as np
import pytest

from lstm_from_scratch.nn.gradcheck import check_layer_gradients, numerical_gradient, relative_error
from lstm_from_scratch.nn.layers import (
    Dense,
    Dropout,
    Embedding,
    LastStep,
    OneHot,
    gather_rows,
    scatter_add_rows,
)


def randomise(layer, rng, scale=0.5):
    """Random values for every parameter, biases included (a zero bias can hide a bias bug)."""
    for value in layer.params.values():
        value[...] = scale * rng.standard_normal(value.shape)


def test_onehot_gather_equals_matrix_product(rng):
    ids = rng.integers(0, 6, (4, 3))
    W = rng.standard_normal((6, 5))
    onehot = OneHot(6, np.float64).forward(ids)
    assert onehot.shape == (4, 3, 6)
    np.testing.assert_array_equal(onehot.sum(axis=-1), 1)
    np.testing.assert_array_equal(onehot.argmax(axis=-1), ids)
    np.testing.assert_allclose(gather_rows(W, ids), onehot @ W, rtol=1e-12)
    # The gradient of onehot @ W with respect to W is onehot.T @ dout; the scatter-add must match it,
    # repeated ids included.
    dout = rng.standard_normal((4, 3, 5))
    expected = onehot.reshape(-1, 6).T @ dout.reshape(-1, 5)
    np.testing.assert_allclose(scatter_add_rows(ids, dout, 6), expected, rtol=1e-12)
    assert OneHot(6).backward(dout) is None


def test_ids_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        OneHot(6).forward(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        Embedding(6, 3).forward(np.array([[6]]))
    with pytest.raises(ValueError, match="integers"):
        Embedding(6, 3).forward(np.array([[1.0]]))


def test_embedding_gradients(rng):
    layer = Embedding(6, 4, np.float64, rng)
    ids = rng.integers(0, 6, (5, 3))
    errors = check_layer_gradients(layer, ids, rng=rng)
    print(f"worst relative error Embedding: {errors}")
    assert set(errors) == {"W"}
    assert max(errors.values()) < 1e-6
    assert layer.forward(ids).shape == (5, 3, 4)


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_dense_gradients(activation, rng):
    layer = Dense(5, 4, activation, np.float64, rng)
    randomise(layer, rng)
    x = rng.standard_normal((3, 2, 5))  # any leading dimensions
    errors = check_layer_gradients(layer, x, rng=rng)
    print(f"worst relative error Dense({activation}): {errors}")
    assert set(errors) == {"W", "b", "x"}
    assert max(errors.values()) < 1e-6


def test_dense_shapes_and_activation_values(rng):
    layer = Dense(3, 2, "relu", np.float32, rng)
    assert layer.params["W"].dtype == np.float32
    out = layer.forward(rng.standard_normal((4, 3)))
    assert out.shape == (4, 2) and out.dtype == np.float32 and np.all(out >= 0)
    with pytest.raises(ValueError, match="activation"):
        Dense(3, 2, "sigmoid")


def test_dropout_is_inverted_and_off_in_evaluation():
    layer = Dropout(0.3, np.random.default_rng(0))
    x = np.ones((200, 50))
    out = layer.forward(x)
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7)  # survivors are scaled up...
    assert abs(out.mean() - 1.0) < 0.03  # ...so the expected value is unchanged
    np.testing.assert_array_equal(layer.backward(x), out)  # dx = dout * mask
    layer.training = False
    assert layer.forward(x) is x
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)


def test_dropout_gradient_with_a_fixed_mask(rng):
    layer = Dropout(0.5, np.random.default_rng(7))
    x = rng.standard_normal((4, 3))
    dout = rng.standard_normal((4, 3))

    def objective():
        layer.rng = np.random.default_rng(7)  # the same mask on every call
        return np.sum(layer.forward(x) * dout)

    objective()
    dx = layer.backward(dout)
    error = relative_error(dx, numerical_gradient(objective, x))
    print(f"worst relative error Dropout: {error:.2e}")
    assert error < 1e-6


def test_last_step_gradients(rng):
    layer = LastStep()
    x = rng.standard_normal((5, 3, 4))
    np.testing.assert_array_equal(layer.forward(x), x[-1])
    errors = check_layer_gradients(layer, x, rng=rng)
    print(f"worst relative error LastStep: {errors}")
    assert max(errors.values()) < 1e-6
    dx = layer.backward(np.ones((3, 4)))
    assert np.all(dx[:-1] == 0) and np.all(dx[-1] == 1)
