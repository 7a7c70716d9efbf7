"""A stack of layers built from a plain JSON config (``nn/config.py``), and its loss.

Shapes: T time steps, B sequences in a batch, V vocabulary size. Input ids are (T, B) integers.

The layers run in a line: ``forward`` calls each layer's ``forward`` in order, ``backward`` calls
each layer's ``backward`` in reverse order, handing every layer the gradient the layer above it
returned. That is all backpropagation through a stack is: the chain rule, one layer at a time.
A final ``Dense(V)`` producing the logits is always added after the config's ``layers``.

``"output": "sequence"`` predicts the next token at every position of a window: a window of T tokens
gives T training targets. ``"output": "last"`` predicts only the token after the window, from the last
LSTM's last step: that is the Keras formulation of the seed projects (``return_sequences=False`` on
the last LSTM), reproduced exactly, but it learns from T times fewer targets per window.

Parameters are named ``"<index>.<kind>.<key>"``, where index is the layer's position in
``model.layers`` (for example ``"0.lstm.Wx"``); ``model.params`` and ``model.grads`` are flat dicts with
those names, and ``model.params[name]`` is the very array the layer uses, so an optimizer that updates
it in place updates the layer.
"""
import numpy as np

from .config import (PRESET_TRAINING, PRESETS, ModelConfigError, preset_config,  # noqa: F401
                     validate_config)
from .layers import Dense, Dropout, Embedding, LastStep, OneHot
from .losses import softmax_cross_entropy
from .lstm import LSTM


class Model:
    """A stack of layers from a config (see the module docstring), ending in ``Dense(vocab_size)``.

    ``model.rng`` is the ``np.random.Generator`` every Dropout layer draws its masks from; a trainer can
    save and restore ``model.rng.bit_generator.state`` to resume exactly. The initial weights come from
    a separate generator, so they depend only on ``seed``.
    """

    # The class each LSTM layer is built from. The fast engine (lstm_from_scratch/fast/) subclasses
    # Model and puts its own LSTM here; this plain Model always trains with nn/lstm.py.
    lstm_class = LSTM

    def __init__(self, config, dtype=np.float32, seed=0):
        self.config = validate_config(config)
        self.dtype = np.dtype(dtype)
        init_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        init_rng = np.random.default_rng(init_seed)
        self.rng = np.random.default_rng(dropout_seed)
        self.layers = self._build(self.config, init_rng)
        self.params, self.grads = {}, {}
        for index, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                name = parameter_name(index, layer, key)
                self.params[name] = value
                self.grads[name] = layer.grads[key]
        self.training = False
        self.final_state = None

    def _build(self, config, rng):
        V, dtype = config["vocab_size"], self.dtype
        layers = []
        size = V  # features coming out of the last layer built so far
        if config["input"] == "embedding":
            layers.append(Embedding(V, config["embedding_dim"], dtype, rng))
            size = config["embedding_dim"]
        elif not config["layers"] or config["layers"][0]["type"] != "lstm":
            # An LSTM reads ids directly (row gather); anything else needs real one-hot vectors.
            layers.append(OneHot(V, dtype))
        specs = config["layers"]
        lstm_positions = [n for n, spec in enumerate(specs) if spec["type"] == "lstm"]
        # "last": cut to the last time step right after the last LSTM (or at once, if there is none).
        cut_after = lstm_positions[-1] if lstm_positions else -1
        if config["output"] == "last" and cut_after == -1:
            layers.append(LastStep())
        for n, spec in enumerate(specs):
            if spec["type"] == "lstm":
                layers.append(self.lstm_class(size, spec["hidden_size"], dtype, rng, spec["forget_bias"]))
                size = spec["hidden_size"]
            elif spec["type"] == "dense":
                layers.append(Dense(size, spec["units"], spec["activation"], dtype, rng))
                size = spec["units"]
            else:
                layers.append(Dropout(spec["rate"], self.rng))
            if config["output"] == "last" and n == cut_after:
                layers.append(LastStep())
        layers.append(Dense(size, V, "linear", dtype, rng))
        return layers

    @property
    def lstm_layers(self):
        """The LSTM layers, in order."""
        return [layer for layer in self.layers if isinstance(layer, LSTM)]

    def initial_state(self, batch_size):
        """Zero state: a list with one (h, c) per LSTM layer, each (B, H)."""
        return [layer.zero_state(batch_size) for layer in self.lstm_layers]

    def set_training(self, flag):
        """Switch every layer to training (dropout on) or evaluation (dropout off)."""
        self.training = bool(flag)
        for layer in self.layers:
            layer.training = self.training

    def num_params(self):
        """The number of trainable numbers."""
        return sum(value.size for value in self.params.values())

    def forward(self, ids, state=None, training=False):
        """ids (T, B) integers -> logits (T, B, V), or (B, V) when the config's output is "last".

        state: None (zeros) or a list with one (h0, c0) per LSTM layer, each (B, H). Keeps
        ``self.final_state``, the list of each LSTM's (h_T, c_T).
        """
        ids = self._check_input(ids, state, "Model.forward")
        self.set_training(training)
        out, lstm_index = ids, 0
        for layer in self.layers:
            if isinstance(layer, LSTM):
                out = layer.forward(out, None if state is None else state[lstm_index])
                lstm_index += 1
            else:
                out = layer.forward(out)
        self.final_state = [layer.final_state for layer in self.lstm_layers]
        return out

    def backward(self, dlogits):
        """dlogits (T, B, V) or (B, V) -> None; fills every layer's grads and ``self.grads``."""
        dout = dlogits
        for layer in reversed(self.layers):
            dout = layer.backward(dout)  # the gradient for the layer below (None below the ids)
        self.collect_grads()

    def collect_grads(self):
        """Each layer's backward put new arrays in its ``grads``: file them under the model's names."""
        for index, layer in enumerate(self.layers):
            for key, value in layer.grads.items():
                self.grads[parameter_name(index, layer, key)] = value

    def loss(self, ids, targets, training=True):
        """Mean cross-entropy of the next-token predictions and its gradients.

        ids: (T, B) integers; targets: (T, B) for output "sequence", (B,) for output "last".
        Returns (loss, grads): a float, and ``self.grads`` (name -> array like ``self.params[name]``).
        """
        logits = self.forward(ids, training=training)
        loss, dlogits = softmax_cross_entropy(logits, targets)
        self.backward(dlogits)
        return loss, self.grads

    def step(self, ids, state=None):
        """One time step for generation, dropout off.

        ids: (B,) integers; state: None or the list of (h, c) returned by the previous call.
        Returns (logits (B, V), new state): ``forward`` on a sequence of length 1.
        """
        self._check_input(np.zeros((1, 1)), state, "Model.step")
        ids = np.asarray(ids).reshape(1, -1)  # (1, B): one time step
        logits = self.forward(ids, state, training=False)
        return (logits if logits.ndim == 2 else logits[0]), self.final_state

    def _check_input(self, ids, state, where):
        """``ids`` as an array, after checking its shape (T, B) and that ``state`` has one (h, c) per LSTM."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"{where}: ids must be (T, B) integers, got shape {ids.shape}")
        lstms = len(self.lstm_layers)
        if state is not None and len(state) != lstms:
            raise ValueError(f"{where}: state needs {lstms} (h, c) pairs, got {len(state)}")
        return ids

    def load_params(self, arrays):
        """Copy ``arrays`` (name -> array, e.g. from a checkpoint) into ``self.params``, in place.

        Raises ``ValueError`` naming the first missing, extra or wrongly shaped parameter.
        """
        missing, extra = set(self.params) - set(arrays), set(arrays) - set(self.params)
        if missing or extra:
            raise ValueError(
                f"parameters do not match this model: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        for name, value in arrays.items():
            if np.shape(value) != self.params[name].shape:
                raise ValueError(
                    f"parameter {name}: shape {np.shape(value)} does not match {self.params[name].shape}"
                )
        for name, value in arrays.items():
            self.params[name][...] = value


def parameter_name(index, layer, key):
    """The model-wide name of parameter ``key`` of ``layer``, the ``index``-th layer: "0.lstm.Wx"."""
    kind = "lstm" if isinstance(layer, LSTM) else type(layer).__name__.lower()
    return f"{index}.{kind}.{key}"
