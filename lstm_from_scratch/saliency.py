"""Which earlier chunks drove a prediction: the gradient of one log-probability with respect to each input.

After reading chunks ``x_0 .. x_t`` the net gives the next chunk ``y`` a probability ``p(y)``. Nudge the
input at an earlier step ``s`` a little: how much does ``log p(y)`` move? That is the gradient
``d log p(y) / d x_s``, one vector per step, and backpropagation through time computes all of them in
one backward pass, the same pass that trains the net (``nn/lstm.py``), started from one number
instead of the whole loss.

Its *size* at step s is the length (L2 norm) of that vector: how fast ``log p(y)`` changes when the
input at step s changes in the direction that matters most. A large size says "what was read at step
s matters for this prediction"; a size near 0 says the net has forgotten step s, or never cared. It
says nothing of the sign: the chunk may have made ``y`` likelier or less likely. (Distill's
"Visualizing memorization in RNNs", Madsen 2019, calls the same picture connectivity.)

What is x_s? The vector the net's first layer with weights reads at step s:

- one-hot input: the one-hot vector of the chunk, ``(V,)``. The model normally hands an LSTM the ids
  and gathers rows of ``Wx`` (the same numbers, see tutorial 2), and a layer given ids returns no input
  gradient, so here we hand it real one-hot vectors ``(T, 1, V)`` of floats;
- embedding input: the chunk's embedding vector, ``(E,)``, the output of the ``Embedding`` layer.

Only the layers' public methods are used: ``forward`` and ``backward`` of each layer in
``model.layers``, so this works with any engine that keeps that interface.

Shapes: T steps read, K predictions followed at once, V vocabulary size, D the size of x_s (V or E).
"""
import numpy as np

from .nn.layers import Embedding, OneHot
from .nn.losses import log_softmax


def _first_input(model, ids):
    """``(x, layers)``: the input vectors ``(T, B, D)`` of the first layer with weights, for ids
    ``(T, B)``, and the layers that read them, in order."""
    layers = list(model.layers)
    if isinstance(layers[0], (Embedding, OneHot)):
        return layers[0].forward(ids), layers[1:]
    # An LSTM (or another layer) reading ids: give it one-hot vectors of floats instead.
    return np.eye(model.config["vocab_size"], dtype=model.dtype)[ids], layers


def step_gradients(model, ids, steps):
    """For each step t in ``steps``: the gradient of ``log p(ids[t + 1])``, the probability the net
    gave the chunk that came next after reading ``ids[0..t]``, with respect to every input vector.

    - ``model``: an ``nn.model.Model`` (one-hot or embedding input, any stack of layers).
    - ``ids``: ``(N,)`` token ids of a piece, read from a zero state.
    - ``steps``: K steps, each in ``0 .. N - 2``.

    Returns ``(log_probs, grads)``: ``log_probs`` ``(K,)`` and ``grads`` ``(K, T, D)`` with
    ``T = max(steps) + 1``; ``grads[k, s]`` is the gradient with respect to the input vector read at
    step s (zero for s > steps[k]: a prediction cannot depend on what comes after it).

    All K predictions take one forward and one backward pass: the piece is read K times side by
    side, as a batch of K (T, K), and row k's gradient starts at its own step only. Dropout is off;
    the weights are not changed (``backward`` fills the layers' ``grads``, which only an optimizer
    would apply).
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    if len(steps) == 0 or steps.min() < 0 or steps.max() >= len(ids) - 1:
        raise ValueError(f"step_gradients: every step must lie in 0..{len(ids) - 2} (the chunk after it "
                         f"is the one predicted), got {steps.tolist()}")
    if model.config["output"] == "last":  # the logits of the last step only: one pass per step
        pairs = [step_gradients_last(model, ids[:t + 1], ids[t + 1]) for t in steps]
        T = int(steps.max()) + 1
        grads = np.zeros((len(steps), T, pairs[0][1].shape[1]), dtype=pairs[0][1].dtype)
        for k, (_, grad) in enumerate(pairs):
            grads[k, :len(grad)] = grad
        return np.array([log_prob for log_prob, _ in pairs]), grads
    T, K = int(steps.max()) + 1, len(steps)
    batch = np.repeat(ids[:T, None], K, axis=1)  # (T, K): the same chunks in every row
    targets = ids[steps + 1]  # (K,)
    was_training = getattr(model, "training", False)
    model.set_training(False)  # dropout off: the net as it generates
    try:
        x, layers = _first_input(model, batch)
        out = x
        for layer in layers:  # the forward pass, layer by layer: (T, K, D) -> ... -> logits (T, K, V)
            out = layer.forward(out)
        rows = np.arange(K)
        log_probs = log_softmax(out[steps, rows].astype(np.float64))  # (K, V): row k at its step
        # d log p(target) / d logits = onehot(target) - softmax(logits): the cross-entropy's
        # gradient with the sign flipped, at row k's step and nowhere else.
        dlogits = np.zeros(out.shape, dtype=out.dtype)
        dlogits[steps, rows] = -np.exp(log_probs)
        dlogits[steps, rows, targets] += 1.0
        dout = dlogits
        for layer in reversed(layers):  # backpropagation through time, down to the inputs
            dout = layer.backward(dout)
    finally:
        model.set_training(was_training)
    return log_probs[rows, targets], np.transpose(dout, (1, 0, 2))


def step_gradients_last(model, ids, target):
    """``step_gradients`` for a model whose config says ``"output": "last"`` (logits ``(B, V)`` after
    the last step only): one prediction, after ``ids`` ``(T,)``. Returns ``(log_prob, grads (T, D))``."""
    was_training = getattr(model, "training", False)
    model.set_training(False)
    try:
        x, layers = _first_input(model, np.asarray(ids, dtype=np.int64).reshape(-1, 1))
        out = x
        for layer in layers:
            out = layer.forward(out)
        log_probs = log_softmax(out.astype(np.float64))[0]  # (V,)
        dout = (-np.exp(log_probs))[None]
        dout[0, int(target)] += 1.0
        dout = dout.astype(out.dtype)
        for layer in reversed(layers):
            dout = layer.backward(dout)
    finally:
        model.set_training(was_training)
    return float(log_probs[int(target)]), dout[:, 0]


def input_gradients(model, ids, target):
    """One prediction: the gradient of ``log p(target)`` after reading ``ids`` ``(T,)``, with respect
    to every input vector. Returns ``(log_prob, grads)``, a float and ``(T, D)``."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise ValueError("input_gradients: ids is empty; the net must read at least one chunk")
    if not 0 <= int(target) < model.config["vocab_size"]:
        raise ValueError(f"input_gradients: target {target} is not an id in 0..{model.config['vocab_size'] - 1}")
    log_probs, grads = step_gradients(model, np.append(ids, int(target)), [len(ids) - 1])
    return float(log_probs[0]), grads[0]


def gradient_sizes(model, ids, target):
    """``(log_prob, sizes)``: ``input_gradients``, with each step's gradient reduced to its length.

    ``sizes`` is ``(T,)``: the L2 norm of ``d log p(target) / d x_s`` for each step s (see the module
    docstring for why the length, and what it does not say).
    """
    log_prob, grads = input_gradients(model, ids, target)
    return log_prob, np.linalg.norm(grads.astype(np.float64), axis=1)
