"""saliency.py: the gradient of one prediction with respect to each input, checked numerically."""
import numpy as np
import pytest

from lstm_from_scratch.nn.gradcheck import numerical_gradient, relative_error
from lstm_from_scratch.nn.layers import Embedding
from lstm_from_scratch.nn.losses import log_softmax
from lstm_from_scratch.nn.model import Model
from lstm_from_scratch.saliency import gradient_sizes, input_gradients, step_gradients

V = 11
CONFIGS = {
    "one-hot LSTM": {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 5}]},
    "embedding, two LSTMs, dense": {
        "input": "embedding", "embedding_dim": 4,
        "layers": [{"type": "lstm", "hidden_size": 5}, {"type": "dropout", "rate": 0.5},
                   {"type": "lstm", "hidden_size": 3}, {"type": "dense", "units": 4, "activation": "tanh"}]},
    "dense first (one-hot vectors)": {"input": "onehot", "layers": [{"type": "dense", "units": 6, "activation": "relu"},
                                                                   {"type": "lstm", "hidden_size": 4}]},
    "output last": {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 5}], "output": "last"},
}


def random_model(config, seed=0):
    """A float64 model whose every parameter, biases included, is random (a zero bias hides bugs)."""
    model = Model({"vocab_size": V, **config}, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    for value in model.params.values():
        value[...] = rng.normal(scale=0.6, size=value.shape)
    return model


def log_prob_of_inputs(model, x, target):
    """log p(target) after the net reads input vectors x (T, 1, D): an independent forward pass."""
    layers = model.layers[1:] if isinstance(model.layers[0], Embedding) or model.layers[0].params == {} else model.layers
    out = x
    for layer in layers:
        out = layer.forward(out)
    logits = out[-1, 0] if out.ndim == 3 else out[0]
    return float(log_softmax(logits)[target])


def inputs_of(model, ids):
    """The vectors the first weighted layer reads: one-hot rows, or the embedding's rows."""
    if isinstance(model.layers[0], Embedding):
        return model.layers[0].params["W"][ids][:, None, :].copy()
    return np.eye(V)[ids][:, None, :]


@pytest.mark.parametrize("name", CONFIGS)
def test_input_gradients_match_centered_differences(name):
    model = random_model(CONFIGS[name])
    model.set_training(False)
    ids = np.random.default_rng(1).integers(0, V, 7)
    target = 3
    log_prob, grads = input_gradients(model, ids, target)
    x = inputs_of(model, ids)
    numeric = numerical_gradient(lambda: log_prob_of_inputs(model, x, target), x)[:, 0, :]
    assert log_prob == pytest.approx(log_prob_of_inputs(model, x, target))
    error = relative_error(grads, numeric)
    print(f"worst relative error input gradients, {name}: {error:.2e}")
    assert error < 1e-6


def test_the_float_one_hot_path_reads_the_same_net_as_ids():
    model = random_model(CONFIGS["one-hot LSTM"])
    ids = np.random.default_rng(2).integers(0, V, 9)
    logits = model.forward(ids[:-1, None])[-1, 0]
    log_prob, _ = input_gradients(model, ids[:-1], ids[-1])
    assert log_prob == pytest.approx(float(log_softmax(logits)[ids[-1]]))


@pytest.mark.parametrize("name", ["one-hot LSTM", "embedding, two LSTMs, dense", "output last"])
def test_many_predictions_in_one_pass_equal_one_at_a_time(name):
    model = random_model(CONFIGS[name])
    ids = np.random.default_rng(3).integers(0, V, 12)
    steps = [2, 5, 9]
    log_probs, grads = step_gradients(model, ids, steps)
    assert grads.shape == (3, 10, grads.shape[2])
    for k, t in enumerate(steps):
        log_prob, alone = input_gradients(model, ids[:t + 1], ids[t + 1])
        assert log_probs[k] == pytest.approx(log_prob)
        assert np.allclose(grads[k, :t + 1], alone, atol=1e-12)
        assert not grads[k, t + 1:].any()  # a prediction does not depend on the chunks after it


def test_sizes_are_the_lengths_and_the_weights_do_not_change():
    model = random_model(CONFIGS["embedding, two LSTMs, dense"])
    before = {name: value.copy() for name, value in model.params.items()}
    ids = np.random.default_rng(4).integers(0, V, 6)
    model.set_training(True)
    log_prob, sizes = gradient_sizes(model, ids, 0)
    _, grads = input_gradients(model, ids, 0)
    assert np.allclose(sizes, np.sqrt((grads ** 2).sum(axis=1)))
    assert model.training  # put back as it was
    assert all(np.array_equal(model.params[name], before[name]) for name in before)


def test_bad_arguments_are_refused():
    model = random_model(CONFIGS["one-hot LSTM"])
    with pytest.raises(ValueError, match="empty"):
        input_gradients(model, [], 0)
    with pytest.raises(ValueError, match="not an id"):
        input_gradients(model, [1, 2], V)
    with pytest.raises(ValueError, match="0..3"):
        step_gradients(model, [1, 2, 3, 4, 5], [4])
