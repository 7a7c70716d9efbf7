"""Optimizers (SGD with momentum and Nesterov, Adam, RMSprop) and gradient clipping.

Gradients are computed in one place (``model.loss`` returns ``(loss, grads)``) and applied here, in
another. Every optimizer has the same interface:

- ``opt.step(params, grads)`` updates every array in ``params`` in place. ``params`` and ``grads`` are
  flat dicts with the same keys, for example ``"0.lstm.Wx"``; each gradient has its parameter's shape.
- ``opt.state_dict()`` returns a flat ``{str: np.ndarray}`` dict, ready for ``np.savez``: the step count
  as a 0-d array under ``"step"`` and one entry per parameter and buffer, for example ``"m/0.lstm.Wx"``.
  ``opt.load_state_dict(d)`` restores it, so a resumed run continues bit for bit.
- ``opt.lr`` is a plain attribute; a learning-rate schedule may change it between steps.

The buffers (velocity, moments) have their parameter's shape and dtype, so float32 training stays
float32 all the way through. They are created at the first step, named after the parameter.
"""

import numpy as np


class Optimizer:
    """The shared interface. Subclasses set ``name`` and ``buffer_names`` and write ``update_one``."""

    name = ""
    buffer_names = ()

    def __init__(self, lr):
        self.lr = float(lr)
        self.step_count = 0
        # One dict per buffer kind, each {param_name: array}.
        self.buffers = {kind: {} for kind in self.buffer_names}

    def step(self, params, grads):
        """Update each ``params[name]`` in place from ``grads[name]`` (same shape, any shape)."""
        self.step_count += 1
        # A NumPy float64 scalar would turn float32 arithmetic into float64; a Python float does not.
        self.lr = float(self.lr)
        for name, param in params.items():
            grad = grads[name]
            if grad.shape != param.shape:
                raise ValueError(f"gradient for {name!r} has shape {grad.shape}, parameter has {param.shape}")
            self.update_one(param, grad, **{kind: self._buffer(kind, name, param) for kind in self.buffer_names})

    def _buffer(self, kind, name, param):
        buffer = self.buffers[kind].get(name)
        if buffer is None:
            buffer = self.buffers[kind][name] = np.zeros_like(param)
        elif buffer.shape != param.shape:
            raise ValueError(f"optimizer state {kind}/{name} has shape {buffer.shape}, parameter has {param.shape}")
        return buffer

    def update_one(self, param, grad, **buffers):
        """Update one parameter array in place, and its buffers (the subclass's rule)."""
        raise NotImplementedError

    def hyperparameters(self):
        """The settings as a JSON-friendly dict, for checkpoint metadata and plots."""
        return {"name": self.name, "lr": self.lr}

    def state_dict(self):
        """Flat ``{str: np.ndarray}``: ``"step"`` (0-d int64) and ``"<buffer>/<param name>"`` copies."""
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        for kind, arrays in self.buffers.items():
            for name, array in arrays.items():
                state[f"{kind}/{name}"] = array.copy()
        return state

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (copies the arrays; unknown keys raise ValueError)."""
        buffers = {kind: {} for kind in self.buffer_names}
        for key, array in state.items():
            if key == "step":
                continue
            kind, _, name = key.partition("/")
            if kind not in buffers or not name:
                raise ValueError(f"{type(self).__name__} state has an unexpected entry {key!r}")
            buffers[kind][name] = np.array(array, copy=True)
        if "step" not in state:
            raise ValueError(f"{type(self).__name__} state has no 'step' entry")
        self.step_count = int(state["step"])
        self.buffers = buffers


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, in PyTorch's formulation.

    With momentum ``mu``, learning rate ``lr``, gradient ``g`` and velocity ``v`` (starts at 0)::

        v = mu * v + g
        p = p - lr * v                  # classical (heavy-ball) momentum
        p = p - lr * (g + mu * v)       # nesterov=True

    This is ``torch.optim.SGD`` with ``dampening=0``. Sutskever et al. (2013) write the velocity with
    the learning rate inside it (``v = mu * v - lr * g``); the two agree while ``lr`` stays constant.
    With ``momentum=0`` it is plain ``p = p - lr * g`` and keeps no buffers.
    """

    name = "sgd"

    def __init__(self, lr, momentum=0.0, nesterov=False):
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.buffer_names = ("velocity",) if momentum > 0 else ()
        super().__init__(lr)

    def update_one(self, param, grad, velocity=None):
        if velocity is None:
            param -= self.lr * grad
            return
        velocity *= self.momentum
        velocity += grad
        if self.nesterov:
            # Look ahead: step along the gradient plus the velocity it is about to add to.
            param -= self.lr * (grad + self.momentum * velocity)
        else:
            param -= self.lr * velocity

    def hyperparameters(self):
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015, Algorithm 1), with bias correction.

    At step ``t = 1, 2, ...``, with gradient ``g``, first moment ``m`` and second moment ``v`` (both
    start at 0)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)      # bias correction: m and v start at 0, so early on they are
        v_hat = v / (1 - beta2**t)      # too small by exactly these factors
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    The correction divides the *moments*, each by its own beta's factor. At ``t = 1`` this gives
    ``m_hat = g`` and ``v_hat = g**2``, so every weight moves by almost exactly ``lr * sign(g)``.
    """

    name = "adam"
    buffer_names = ("m", "v")

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)

    def update_one(self, param, grad, m, v):
        t = self.step_count
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad**2
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), in Keras's convention.

    With gradient ``g`` and a running mean ``v`` of its square (starts at 0)::

        v = rho * v + (1 - rho) * g**2
        p = p - lr * g / (sqrt(v) + eps)

    Keras (2.x and tf.keras) and PyTorch write this same rule, but with different defaults: Keras uses
    ``rho=0.9, eps=1e-7``, PyTorch ``alpha=0.99, eps=1e-8`` (``alpha`` is PyTorch's name for ``rho``).
    We take Keras's defaults because the deep-improvisation seed trained with Keras ``RMSprop(lr=0.01)``,
    so its settings carry over unchanged; pass ``rho=0.99, eps=1e-8`` for PyTorch's. (TensorFlow's
    low-level ``ApplyRMSProp`` op puts eps inside the root, ``sqrt(v + eps)``; we do not.)
    There is no bias correction: the first steps are larger than later ones, by up to ``1/sqrt(1-rho)``.
    """

    name = "rmsprop"
    buffer_names = ("v",)

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-7):
        super().__init__(lr)
        self.rho = float(rho)
        self.eps = float(eps)

    def update_one(self, param, grad, v):
        v *= self.rho
        v += (1 - self.rho) * grad**2
        param -= self.lr * grad / (np.sqrt(v) + self.eps)

    def hyperparameters(self):
        return {**super().hyperparameters(), "rho": self.rho, "eps": self.eps}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def make_optimizer(name, lr, **settings):
    """Build an optimizer by name: ``"sgd"``, ``"adam"`` or ``"rmsprop"`` (any case).

    ``settings`` go to the class, e.g. ``make_optimizer("sgd", 0.1, momentum=0.9, nesterov=True)``.
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[key](lr=lr, **settings)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    The global norm is ``sqrt(sum over every array of sum(g**2))``: one number for the whole model, so
    clipping keeps the gradient's direction and only shortens it (Pascanu et al., 2013). ``grads`` is a
    flat dict of arrays of any shapes, scaled in place. Returns the norm *before* clipping, as a float,
    so the trainer can log it. ``max_norm`` of ``None`` or ``<= 0`` means no clipping (the norm is still
    returned). A non-finite norm (inf or NaN) leaves the gradients untouched: scaling cannot repair
    them, and the trainer's NaN check should report it instead.
    """
    total = sum(_sum_of_squares(g) for g in grads.values())
    norm = float(np.sqrt(total))
    if max_norm is not None and max_norm > 0 and np.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def _sum_of_squares(g):
    """sum(g**2) as a Python float. The BLAS dot product ``g . g`` is one fast pass; in float32 it
    overflows to inf once the squares pass about 3e38, so then we sum again with float64 squares."""
    flat = g.reshape(-1)
    with np.errstate(over="ignore"):  # an overflow is handled just below
        total = float(np.dot(flat, flat))
    if not np.isfinite(total):  # float32 overflow (or a real inf/NaN, which float64 keeps)
        total = float(np.sum(np.square(flat, dtype=np.float64)))
    return total
