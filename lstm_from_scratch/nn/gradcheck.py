"""Gradient checking: compare backward's gradients with centered finite differences.

The centered difference (f(x + eps) - f(x - eps)) / (2 eps) has an error of order eps^2, against eps
for the one-sided difference, so with float64 and eps around 1e-6 it agrees with a correct analytic
gradient to about 1e-9 relative error. Use float64 layers and models: in float32 rounding swamps it.
See cs231n's notes, "Gradient checks" (cs231n.github.io/neural-networks-3).
"""
import numpy as np

from .losses import softmax_cross_entropy
from .lstm import LSTM


def numerical_gradient(f, x, eps=1e-6):
    """Centered-difference gradient of the scalar function ``f()`` with respect to the array ``x``.

    ``f`` takes no arguments and must read ``x`` (for example a layer parameter). Each entry of ``x`` is
    perturbed in place by +-eps and then restored, so ``x`` is unchanged afterwards.
    Returns an array shaped like ``x``.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + eps
        f_plus = f()
        x[index] = old - eps
        f_minus = f()
        x[index] = old
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """The worst elementwise relative error max |a - b| / max(1e-8, |a| + |b|), as a float.

    a, b: arrays of the same shape (any), or two scalars; 0.0 when they are empty.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def check_layer_gradients(layer, x, state=None, eps=1e-6, rng=None):
    """Check a layer's backward against numerical gradients.

    layer: any layer (build it with dtype=np.float64). x: its input, e.g. (T, B, D) floats or (T, B) ids.
    state: for an LSTM, None or (h0, c0) each (B, H).
    The scalar objective is sum(out * dout) with a random upstream gradient ``dout``; for an LSTM it
    also adds sum(h_T * dh_T) + sum(c_T * dc_T), so random gradients flow into the final state too.
    Returns a dict name -> worst relative error for every parameter, for ``"x"`` when x is floats, and
    for ``"h0"`` and ``"c0"`` when ``state`` is given.
    """
    rng = np.random.default_rng(rng)
    recurrent = isinstance(layer, LSTM)
    x = np.array(x)  # a private copy, perturbed in place below
    state = None if state is None else tuple(np.array(s, dtype=np.float64) for s in state)

    def run():
        return layer.forward(x, state) if recurrent else layer.forward(x)

    out = run()
    dout = rng.standard_normal(out.shape)
    dfinal = tuple(rng.standard_normal(s.shape) for s in layer.final_state) if recurrent else None

    def objective():
        total = np.sum(run() * dout)
        if recurrent:
            total += sum(np.sum(s * d) for s, d in zip(layer.final_state, dfinal))
        return total

    run()
    dx = layer.backward(dout, dfinal) if recurrent else layer.backward(dout)
    analytic = {key: value.copy() for key, value in layer.grads.items()}
    errors = {key: relative_error(analytic[key], numerical_gradient(objective, layer.params[key], eps))
              for key in layer.params}
    if np.issubdtype(x.dtype, np.floating):
        errors["x"] = relative_error(dx, numerical_gradient(objective, x, eps))
    if recurrent and state is not None:
        dh0, dc0 = (d.copy() for d in layer.dinitial_state)
        errors["h0"] = relative_error(dh0, numerical_gradient(objective, state[0], eps))
        errors["c0"] = relative_error(dc0, numerical_gradient(objective, state[1], eps))
    return errors


def check_model_directions(model, ids, targets, n_directions=3, eps=1e-5, rng=None, training=False):
    """Cheap whole-model check: directional derivatives of the loss along a few random directions.

    For a random direction d (one array per parameter), the derivative of the loss along d is
    sum over parameters of grads * d analytically, and (L(p + eps d) - L(p - eps d)) / (2 eps)
    numerically: two loss evaluations per direction instead of two per weight.
    ids, targets: as for ``model.loss``, both (T, B) (targets (B,) for ``"output": "last"``).
    With ``training=True`` the dropout masks are held fixed by restoring ``model.rng`` before
    every evaluation. The parameters are restored afterwards.
    Returns the worst relative error over the directions.
    """
    rng = np.random.default_rng(rng)
    errors = []
    for _ in range(n_directions):
        directions = {name: rng.standard_normal(p.shape) for name, p in model.params.items()}
        errors.append(_directional_error(model, ids, targets, directions, eps, training))
    return max(errors)


def check_model_parameters(model, ids, targets, eps=1e-5, rng=None, training=False):
    """Like ``check_model_directions``, but one random direction inside each parameter array alone.

    Returns a dict name -> relative error, so a wrong gradient is traced to the parameter that has it.
    """
    rng = np.random.default_rng(rng)
    return {
        name: _directional_error(model, ids, targets, {name: rng.standard_normal(p.shape)}, eps, training)
        for name, p in model.params.items()
    }


def _directional_error(model, ids, targets, directions, eps, training):
    """Relative error between the analytic and numerical derivative of the loss along ``directions``.

    directions: dict parameter name -> array of that parameter's shape (parameters left out stay put).
    """
    rng_state = model.rng.bit_generator.state

    def loss():
        model.rng.bit_generator.state = rng_state  # the same dropout masks every time
        return softmax_cross_entropy(model.forward(ids, training=training), targets)[0]

    model.rng.bit_generator.state = rng_state
    _, grads = model.loss(ids, targets, training=training)
    analytic = sum(np.sum(grads[name] * d) for name, d in directions.items())
    originals = {name: model.params[name].copy() for name in directions}
    losses = []
    for sign in (1, -1):
        for name, d in directions.items():
            model.params[name][...] = originals[name] + sign * eps * d
        losses.append(loss())
    for name in directions:
        model.params[name][...] = originals[name]
    model.rng.bit_generator.state = rng_state
    numeric = (losses[0] - losses[1]) / (2 * eps)
    return relative_error(analytic, numeric)
