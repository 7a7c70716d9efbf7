"""A model as a plain JSON config, checked and completed; and the two presets of the seed projects.

A config is a JSON-serialisable dict::

    {"vocab_size": V,
     "input": "onehot",                 # or "embedding", with "embedding_dim": E
     "layers": [{"type": "lstm", "hidden_size": 128},
                {"type": "dropout", "rate": 0.3},
                {"type": "dense", "units": 64, "activation": "linear"}],   # or "relu" / "tanh"
     "output": "sequence"}              # or "last"

``nn/model.py`` builds the layers from it (and adds the final ``Dense(V)``). Checkpoints store it, so
it holds only numbers, strings, lists and dicts.
"""
import copy

import numpy as np

from ..errors import LstmMusicError

PRESETS = {
    # deep-improvisation: a single LSTM(128) reading one-hot chunks.
    "deep-improvisation": {
        "input": "onehot",
        "layers": [{"type": "lstm", "hidden_size": 128}],
        "output": "sequence",
    },
    # piano-composer: three stacked LSTMs with dropout, then a small dense layer.
    "piano-composer": {
        "input": "onehot",
        "layers": [
            {"type": "lstm", "hidden_size": 128},
            {"type": "dropout", "rate": 0.3},
            {"type": "lstm", "hidden_size": 64},
            {"type": "dropout", "rate": 0.3},
            {"type": "lstm", "hidden_size": 128},
            {"type": "dense", "units": 64, "activation": "linear"},
            {"type": "dropout", "rate": 0.3},
        ],
        "output": "sequence",
    },
}

# The optimizer, learning rate and batch size each seed project trained with.
PRESET_TRAINING = {
    "deep-improvisation": {"optimizer": "rmsprop", "lr": 0.01, "batch_size": 24},
    "piano-composer": {"optimizer": "adam", "lr": 0.001, "batch_size": 16},
}



class ModelConfigError(LstmMusicError, ValueError):
    """A model config that cannot be built; the message names the key or layer and the reason."""


# For each layer type: its required keys and its optional keys with their defaults.
LAYER_KEYS = {
    "lstm": ({"hidden_size"}, {"forget_bias": 1.0}),
    "dense": ({"units"}, {"activation": "linear"}),
    "dropout": ({"rate"}, {}),
}
TOP_KEYS = {"vocab_size", "input", "embedding_dim", "layers", "output"}


def preset_config(name, vocab_size):
    """The config dict of the preset ``name`` for a vocabulary of ``vocab_size`` tokens (a fresh copy)."""
    if name not in PRESETS:
        raise ModelConfigError(f"unknown preset {name!r}; the presets are: {', '.join(sorted(PRESETS))}")
    config = copy.deepcopy(PRESETS[name])
    config["vocab_size"] = vocab_size
    return validate_config(config)


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelConfigError(f"model config: {what} must be a positive integer, got {value!r}")
    return int(value)


def validate_config(config):
    """Check a model config and return a full copy with defaults filled in.

    Raises ``ModelConfigError`` (a ``ValueError``) naming the key or layer that is wrong.
    """
    if not isinstance(config, dict):
        raise ModelConfigError(f"model config must be a dict, got {type(config).__name__}")
    unknown = set(config) - TOP_KEYS
    if unknown:
        raise ModelConfigError(f"model config: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for key in ("vocab_size", "layers"):
        if key not in config:
            raise ModelConfigError(f"model config: missing key {key!r}")
    full = {"vocab_size": _positive_int(config["vocab_size"], "vocab_size")}
    full["input"] = config.get("input", "onehot")
    if full["input"] == "embedding":
        if "embedding_dim" not in config:
            raise ModelConfigError("model config: input 'embedding' needs the key 'embedding_dim'")
        full["embedding_dim"] = _positive_int(config["embedding_dim"], "embedding_dim")
    elif full["input"] != "onehot":
        raise ModelConfigError(f"model config: input must be 'onehot' or 'embedding', got {full['input']!r}")
    if not isinstance(config["layers"], list):
        raise ModelConfigError("model config: 'layers' must be a list of layer dicts")
    full["layers"] = [_validate_layer(layer, n) for n, layer in enumerate(config["layers"])]
    full["output"] = config.get("output", "sequence")
    if full["output"] not in ("sequence", "last"):
        raise ModelConfigError(f"model config: output must be 'sequence' or 'last', got {full['output']!r}")
    return full


def _validate_layer(layer, n):
    where = f"model config: layers[{n}]"
    if not isinstance(layer, dict) or "type" not in layer:
        raise ModelConfigError(f"{where} must be a dict with a 'type' key, got {layer!r}")
    kind = layer["type"]
    if kind not in LAYER_KEYS:
        raise ModelConfigError(f"{where}: unknown layer type {kind!r}; known types: {sorted(LAYER_KEYS)}")
    required, optional = LAYER_KEYS[kind]
    missing = required - set(layer)
    if missing:
        raise ModelConfigError(f"{where} ({kind}) is missing {sorted(missing)}")
    unknown = set(layer) - required - set(optional) - {"type"}
    if unknown:
        raise ModelConfigError(f"{where} ({kind}): unknown keys {sorted(unknown)}")
    full = {"type": kind, **optional, **layer}
    if kind == "lstm":
        full["hidden_size"] = _positive_int(full["hidden_size"], f"layers[{n}].hidden_size")
    elif kind == "dense":
        full["units"] = _positive_int(full["units"], f"layers[{n}].units")
        if full["activation"] not in ("linear", "relu", "tanh"):
            raise ModelConfigError(f"{where}: activation must be 'linear', 'relu' or 'tanh'")
    elif not isinstance(full["rate"], (int, float)) or not 0 <= full["rate"] < 1:
        raise ModelConfigError(f"{where}: dropout rate must be a number in [0, 1), got {full['rate']!r}")
    return full
