import json

import numpy as np
import pytest

from lstm_from_scratch.nn.gradcheck import (
    check_model_directions,
    check_model_parameters,
)
from lstm_from_scratch.nn.losses import softmax_cross_entropy
from lstm_from_scratch.nn.model import (
    PRESET_TRAINING,
    PRESETS,
    Model,
    ModelConfigError,
    preset_config,
)

V, T, B = 7, 5, 3


def randomise_biases(model, rng):
    for name, value in model.params.items():
        if name.endswith(".b"):
            value[...] = 0.5 * rng.standard_normal(value.shape)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("training", [False, True])
def test_presets_whole_model_gradients_along_random_directions(name, training, rng):
    model = Model(preset_config(name, V), np.float64, seed=1)
    randomise_biases(model, rng)
    ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    # training=True: dropout on, with the masks held fixed by restoring model.rng for every evaluation
    error = check_model_directions(model, ids, targets, n_directions=3, rng=rng, training=training)
    print(f"worst relative error {name} (training={training}) along 3 random directions: {error:.2e}")
    assert error < 1e-6


def test_small_model_every_parameter(rng):
    config = {
        "vocab_size": 5,
        "input": "embedding",
        "embedding_dim": 3,
        "layers": [
            {"type": "lstm", "hidden_size": 4},
            {"type": "dropout", "rate": 0.2},
            {"type": "lstm", "hidden_size": 3},
            {"type": "dense", "units": 4, "activation": "tanh"},
        ],
    }
    model = Model(config, np.float64, seed=3)
    randomise_biases(model, rng)
    ids, targets = rng.integers(0, 5, (4, 2)), rng.integers(0, 5, (4, 2))
    errors = check_model_parameters(model, ids, targets, rng=rng, training=True)
    print(f"worst relative error per parameter (one random direction each): {errors}")
    assert set(errors) == {"0.embedding.W", "1.lstm.Wx", "1.lstm.Wh", "1.lstm.b", "3.lstm.Wx",
                           "3.lstm.Wh", "3.lstm.b", "4.dense.W", "4.dense.b", "5.dense.W", "5.dense.b"}
    assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fresh_model_loss_is_close_to_log_vocab_size(name, rng):
    vocab_size = 50
    model = Model(preset_config(name, vocab_size))
    ids = rng.integers(0, vocab_size, (20, 4))
    loss, grads = model.loss(ids, rng.integers(0, vocab_size, (20, 4)))
    assert abs(loss - np.log(vocab_size)) < 0.05 * np.log(vocab_size)
    assert all(g.dtype == np.float32 for g in grads.values())


def test_model_overfits_a_tiny_sequence():
    sequence = np.array([0, 1, 2, 3, 4, 2, 0, 3, 1, 4, 4, 2, 1, 0, 3, 2])
    ids, targets = sequence[:-1, None], sequence[1:, None]  # (T, 1)
    model = Model({"vocab_size": 5, "layers": [{"type": "lstm", "hidden_size": 32}]}, seed=0)
    # Plain Adam, written here so this test depends only on the model.
    lr, beta1, beta2, eps = 0.03, 0.9, 0.999, 1e-8
    m = {name: np.zeros_like(p) for name, p in model.params.items()}
    v = {name: np.zeros_like(p) for name, p in model.params.items()}
    for step in range(1, 301):
        loss, grads = model.loss(ids, targets)
        if loss < 0.05:
            break
        for name, p in model.params.items():
            m[name] = beta1 * m[name] + (1 - beta1) * grads[name]
            v[name] = beta2 * v[name] + (1 - beta2) * grads[name] ** 2
            p -= lr * (m[name] / (1 - beta1**step)) / (np.sqrt(v[name] / (1 - beta2**step)) + eps)
    print(f"overfit: loss {loss:.4f} after {step} steps")
    assert loss < 0.05


def test_last_output_is_the_sequence_models_last_step(rng):
    sequence_model = Model(preset_config("piano-composer", V), np.float64, seed=5)
    config = preset_config("piano-composer", V)
    config["output"] = "last"
    last_model = Model(config, np.float64, seed=5)
    ids = rng.integers(0, V, (T, B))
    logits = last_model.forward(ids)
    assert logits.shape == (B, V)
    # Same seed, same weights (dropout is off, and each dense layer acts on each step on its own).
    np.testing.assert_allclose(logits, sequence_model.forward(ids)[-1], rtol=1e-10)
    targets = rng.integers(0, V, B)
    loss, _ = last_model.loss(ids, targets, training=False)
    assert loss == pytest.approx(softmax_cross_entropy(logits, targets)[0])
    error = check_model_directions(last_model, ids, targets, rng=rng)
    print(f"worst relative error output='last' along 3 random directions: {error:.2e}")
    assert error < 1e-6


def test_step_by_step_generation_equals_forward(rng):
    model = Model(preset_config("piano-composer", V), np.float64, seed=2)
    ids = rng.integers(0, V, (T, B))
    all_at_once = model.forward(ids)
    state = None
    for t in range(T):
        logits, state = model.step(ids[t], state)
        np.testing.assert_allclose(logits, all_at_once[t], rtol=1e-10)
    assert [h.shape for h, c in state] == [(B, 128), (B, 64), (B, 128)]
    assert [h.shape for h, c in model.initial_state(B)] == [(B, 128), (B, 64), (B, 128)]


def test_parameters_are_named_and_shared_with_the_layers():
    model = Model(preset_config("deep-improvisation", V))
    assert list(model.params) == ["0.lstm.Wx", "0.lstm.Wh", "0.lstm.b", "1.dense.W", "1.dense.b"]
    assert set(model.grads) == set(model.params)
    assert model.params["0.lstm.Wx"] is model.layers[0].params["Wx"]
    H = 128
    assert model.num_params() == 4 * H * (V + H + 1) + H * V + V
    model.params["1.dense.b"] += 1.0  # an optimizer's in-place update reaches the layer
    assert np.all(model.layers[1].params["b"] == 1.0)


def test_dropout_draws_from_model_rng_so_a_run_can_resume_exactly(rng):
    model = Model(preset_config("piano-composer", V), seed=0)
    ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    saved = model.rng.bit_generator.state
    first, _ = model.loss(ids, targets, training=True)
    second, _ = model.loss(ids, targets, training=True)
    assert first != second  # fresh masks
    model.rng.bit_generator.state = saved
    assert model.loss(ids, targets, training=True)[0] == first
    evaluation = model.loss(ids, targets, training=False)[0]
    assert model.loss(ids, targets, training=False)[0] == evaluation


def test_same_seed_same_weights_and_json_round_trip():
    config = preset_config("piano-composer", V)
    config["output"] = "last"
    text = json.dumps(config)
    a, b = Model(json.loads(text), seed=4), Model(json.loads(text), seed=4)
    assert a.config == json.loads(json.dumps(a.config)) == config
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(Model(config, seed=5).params["0.lstm.Wx"], a.params["0.lstm.Wx"])


def test_load_params_copies_in_place_and_checks_names():
    config = preset_config("deep-improvisation", V)
    a, b = Model(config, seed=0), Model(config, seed=1)
    array = b.params["0.lstm.Wx"]
    b.load_params(a.params)
    assert b.params["0.lstm.Wx"] is array
    np.testing.assert_array_equal(array, a.params["0.lstm.Wx"])
    with pytest.raises(ValueError, match="missing"):
        b.load_params({"0.lstm.Wx": array})


def test_presets_and_training_defaults():
    assert set(PRESETS) == set(PRESET_TRAINING) == {"deep-improvisation", "piano-composer"}
    assert PRESET_TRAINING["deep-improvisation"] == {"optimizer": "rmsprop", "lr": 0.01, "batch_size": 24}
    kinds = [layer["type"] for layer in preset_config("piano-composer", V)["layers"]]
    assert kinds == ["lstm", "dropout", "lstm", "dropout", "lstm", "dense", "dropout"]
    preset_config("deep-improvisation", V)["layers"].append({"type": "dropout", "rate": 0.1})
    assert len(PRESETS["deep-improvisation"]["layers"]) == 1  # presets hand out copies


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layers": [{"type": "gru", "hidden_size": 4}]}, "unknown layer type 'gru'"),
        ({"layers": [{"type": "lstm"}]}, r"missing \['hidden_size'\]"),
        ({"layers": [{"type": "lstm", "hidden": 4}]}, "hidden"),
        ({"layers": [{"type": "dense", "units": 4, "activation": "sigmoid"}]}, "activation"),
        ({"layers": [{"type": "dropout", "rate": 1.5}]}, "rate"),
        ({"input": "embedding"}, "embedding_dim"),
        ({"input": "words"}, "input"),
        ({"output": "first"}, "output"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": 3}, "unknown keys"),
    ],
)
def test_bad_configs_raise_clear_errors(change, message):
    config = {"vocab_size": V, "layers": [{"type": "lstm", "hidden_size": 4}], **change}
    with pytest.raises(ModelConfigError, match=message):
        Model(config)


def test_missing_keys_and_unknown_preset():
    with pytest.raises(ValueError, match="missing key 'layers'"):
        Model({"vocab_size": V})
    with pytest.raises(ValueError, match="missing key 'vocab_size'"):
        Model({"layers": []})
    with pytest.raises(ValueError, match="deep-improvisation, piano-composer"):
        preset_config("mozart", V)


def test_models_without_lstm_and_with_embedding_work(rng):
    # A bigram model: one-hot -> Dense(V). Needs a real OneHot layer, since no LSTM gathers rows.
    model = Model({"vocab_size": V, "layers": []}, np.float64, seed=0)
    assert list(model.params) == ["1.dense.W", "1.dense.b"]
    ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    assert check_model_directions(model, ids, targets, rng=rng) < 1e-6
    last = Model({"vocab_size": V, "layers": [], "output": "last"}, np.float64)
    assert last.forward(ids).shape == (B, V)
    embedded = Model({"vocab_size": V, "input": "embedding", "embedding_dim": 4,
                      "layers": [{"type": "lstm", "hidden_size": 6}]}, np.float64)
    assert embedded.forward(ids).shape == (T, B, V)
    assert check_model_directions(embedded, ids, targets, rng=rng) < 1e-6
