"""The small layers around the LSTM: OneHot, Embedding, Dense, Dropout, LastStep.

Shapes (time-major, as everywhere in ``nn/``): T time steps, B sequences in a batch, D input features,
V vocabulary size. Token ids are integer arrays of shape ``(T, B)``.

Every layer has ``params`` and ``grads`` (dicts with the same keys), ``forward(x)``, ``backward(dout)``
and a ``training`` flag. ``backward`` overwrites ``grads`` and returns the gradient with respect to the
layer's input, or ``None`` when the input was integer ids. Weights change only in the optimizer.

The two helpers ``gather_rows`` and ``scatter_add_rows`` are the heart of one-hot input: multiplying a
one-hot vector by a matrix just picks a row, so ``onehot(ids) @ W == W[ids]``, and the gradient of a
row pick is to add the upstream gradient back into the rows that were picked.
"""
import numpy as np


def check_ids(ids, vocab_size, where):
    """Return ``ids`` as an integer array, or raise ``ValueError`` if any id is outside ``[0, vocab_size)``.

    ids: any shape, usually (T, B); returned with the same shape. ``where`` names the caller in the error.

    NumPy would silently read ``W[-1]`` as the last row, so negative ids are checked here, not left to it.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{where}: token ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"{where}: token ids must lie in [0, {vocab_size}), got min {ids.min()} and max {ids.max()}"
        )
    return ids


def gather_rows(W, ids):
    """``W[ids]``: the rows of ``W`` (V, K) picked by ``ids`` (...), giving (..., K).

    This equals ``onehot(ids) @ W`` without building the (..., V) one-hot array.
    """
    return W[ids]


def scatter_add_rows(ids, dout, num_rows):
    """Gradient of ``gather_rows``: a (num_rows, K) array where row v sums every ``dout`` row whose id is v.

    ids: (...) integers; dout: (..., K). A token that appears five times in the batch gets five
    contributions, which is why this is an add and not an assignment.
    """
    dW = np.zeros((num_rows, dout.shape[-1]), dtype=dout.dtype)
    # np.add.at adds repeated indices one by one (plain dW[ids] += dout would keep only the last one).
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dW


class OneHot:
    """Token ids (T, B) -> one-hot vectors (T, B, V). No parameters.

    The model does not need this layer in front of an LSTM (the LSTM gathers rows of ``Wx`` directly);
    it is here to teach and to check that the gather is the same as the matrix product.
    """

    def __init__(self, vocab_size, dtype=np.float32):
        self.vocab_size = vocab_size
        self.dtype = np.dtype(dtype)
        self.params, self.grads = {}, {}
        self.training = True

    def forward(self, ids):
        """ids (T, B) integers -> (T, B, V) with a single 1 per position."""
        ids = check_ids(ids, self.vocab_size, "OneHot")
        return np.eye(self.vocab_size, dtype=self.dtype)[ids]

    def backward(self, dout):
        """Ids have no gradient: returns ``None``."""
        return None


class Embedding:
    """Token ids (T, B) -> learned vectors (T, B, E). Parameter ``W`` (V, E), one row per token.

    Initialised from a standard normal, as PyTorch's ``nn.Embedding`` does.
    """

    def __init__(self, vocab_size, embedding_dim, dtype=np.float32, rng=None):
        rng = np.random.default_rng(rng)
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.dtype = np.dtype(dtype)
        self.params = {"W": rng.standard_normal((vocab_size, embedding_dim)).astype(self.dtype)}
        self.grads = {"W": np.zeros_like(self.params["W"])}
        self.training = True

    def forward(self, ids):
        """ids (T, B) integers -> (T, B, E)."""
        self.ids = check_ids(ids, self.vocab_size, "Embedding")
        return gather_rows(self.params["W"], self.ids)

    def backward(self, dout):
        """dout (T, B, E) -> ``None`` (ids have no gradient); fills ``grads["W"]`` (V, E)."""
        self.grads["W"] = scatter_add_rows(self.ids, dout, self.vocab_size)
        return None


ACTIVATIONS = ("linear", "relu", "tanh")


class Dense:
    """A fully connected layer applied at every position: (..., D) -> (..., O).

    out = activation(x @ W + b), with ``W`` (D, O) and ``b`` (O,). Any leading dimensions, such as
    (T, B), are treated as a batch. ``W`` starts Glorot-uniform (Keras's default, which the seed projects
    used) and ``b`` at zero.
    """

    def __init__(self, input_size, output_size, activation="linear", dtype=np.float32, rng=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"Dense: activation must be one of {ACTIVATIONS}, got {activation!r}")
        rng = np.random.default_rng(rng)
        self.input_size, self.output_size, self.activation = input_size, output_size, activation
        self.dtype = np.dtype(dtype)
        limit = np.sqrt(6.0 / (input_size + output_size))
        self.params = {
            "W": rng.uniform(-limit, limit, (input_size, output_size)).astype(self.dtype),
            "b": np.zeros(output_size, dtype=self.dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.training = True

    def forward(self, x):
        """x (..., D) -> (..., O)."""
        x = np.asarray(x, dtype=self.dtype)
        self.x = x
        # One (N, D) @ (D, O) product over all positions: ``x @ W`` on a (T, B, D) array would run T
        # separate small products, which is slower.
        out = (x.reshape(-1, self.input_size) @ self.params["W"]).reshape(*x.shape[:-1], self.output_size)
        out += self.params["b"]
        if self.activation == "relu":
            out = np.maximum(out, 0)
        elif self.activation == "tanh":
            out = np.tanh(out)
        self.out = out
        return out

    def backward(self, dout):
        """dout (..., O) -> dx (..., D); fills ``grads["W"]`` (D, O) and ``grads["b"]`` (O,).

        First back through the activation to dz, the gradient of z = x @ W + b; then dW = x^T dz and
        db = the sum of dz, both over every position, and dx = dz @ W^T.
        """
        if self.activation == "relu":
            dz = dout * (self.out > 0)
        elif self.activation == "tanh":
            dz = dout * (1 - self.out**2)
        else:
            dz = dout
        x_flat = self.x.reshape(-1, self.input_size)  # (N, D), N = every position
        dz_flat = dz.reshape(-1, self.output_size)  # (N, O)
        self.grads["W"] = x_flat.T @ dz_flat
        self.grads["b"] = dz_flat.sum(axis=0)
        return (dz_flat @ self.params["W"].T).reshape(self.x.shape)


class Dropout:
    """Inverted dropout: while training, zero each value with probability ``rate`` and scale the rest by
    1 / (1 - rate), so that the expected output equals the input and evaluation needs no rescaling.
    Identity when ``training`` is False. No parameters.

    ``rng`` is the ``np.random.Generator`` the masks are drawn from; the model passes its own ``model.rng``
    so that a trainer can save and restore that one generator to resume a run exactly.
    """

    def __init__(self, rate, rng=None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.rng = np.random.default_rng(rng)
        self.params, self.grads = {}, {}
        self.training = True
        self.mask = None

    def forward(self, x):
        """x (...) -> same shape."""
        if not self.training or self.rate == 0.0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * self.mask

    def backward(self, dout):
        """dout (...) -> dx (...): the same mask, since out = x * mask."""
        return dout if self.mask is None else dout * self.mask


class LastStep:
    """Keep only the last time step: (T, B, H) -> (B, H). No parameters.

    This is the Keras formulation of the seed projects (``return_sequences=False``): the net reads a
    window and predicts only the token after it.
    """

    def __init__(self):
        self.params, self.grads = {}, {}
        self.training = True

    def forward(self, x):
        """x (T, B, H) -> x[-1] (B, H)."""
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return x[-1]

    def backward(self, dout):
        """dout (B, H) -> dx (T, B, H): zeros everywhere except the last step, which gets ``dout``."""
        dx = np.zeros(self.x_shape, dtype=self.x_dtype)
        dx[-1] = dout
        return dx
