"""The optimizers for the fast engine: the rules of ``nn/optim.py``, applied with fewer passes over memory.

Read ``nn/optim.py`` first: the same SGD, Adam and RMSprop, the same state (``state_dict`` names and
shapes, so a checkpoint goes from one engine to the other), the same numbers to rounding. A step of
Adam is a dozen elementwise passes over every weight array; for a big array (a (1500, 512) input
weight, say) each pass reads and writes main memory. What differs:

- every update writes into its buffers and one reused work array (``out=``), never into new arrays;
- Adam moves both bias corrections onto two scalars (Kingma and Ba, end of section 2), which saves
  two passes: ``lr * m_hat / (sqrt(v_hat) + eps) = step_size * m / (sqrt(v) + eps_hat)``, with
  ``step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` and ``eps_hat = eps * sqrt(1 - beta2**t)``;
- a big array is updated one slice of ``SLICE`` numbers at a time, so that the passes over a slice
  run in the CPU's cache. Each number's update reads only that number's gradient and buffers, so
  slices give exactly the numbers of the whole array at once.
"""
import numpy as np

from ..nn.optim import SGD, Adam, RMSprop

SLICE = 65536  # numbers per slice when an update runs over a big array


class _InSlices:
    """``step`` as in ``nn.optim.Optimizer``, but a big C-contiguous array goes slice by slice, and
    ``_scratch`` gives each update a work array made once per shape."""

    def step(self, params, grads):
        """Update each ``params[name]`` in place from ``grads[name]`` (same shape, any shape)."""
        self.step_count += 1
        self.lr = float(self.lr)  # a NumPy float64 would turn float32 arithmetic into float64
        for name, param in params.items():
            grad = grads[name]
            if grad.shape != param.shape:
                raise ValueError(f"gradient for {name!r} has shape {grad.shape}, parameter has {param.shape}")
            buffers = {kind: self._buffer(kind, name, param) for kind in self.buffer_names}
            if param.size <= SLICE or not all(a.flags.c_contiguous for a in (param, *buffers.values())):
                self.update_one(param, grad, **buffers)
                continue
            param_flat, grad_flat = param.reshape(-1), grad.reshape(-1)
            buffers_flat = {kind: buffer.reshape(-1) for kind, buffer in buffers.items()}
            for start in range(0, param.size, SLICE):
                piece = slice(start, start + SLICE)
                self.update_one(param_flat[piece], grad_flat[piece],
                                **{kind: buffer[piece] for kind, buffer in buffers_flat.items()})

    def _scratch(self, param):
        """A work array shaped like ``param``, reused from step to step (never part of the state)."""
        arrays = self.__dict__.setdefault("_scratch_arrays", {})
        key = (param.shape, param.dtype)
        if key not in arrays:
            arrays[key] = np.empty_like(param)
        return arrays[key]


class FastSGD(_InSlices, SGD):
    """``nn.optim.SGD``, in slices (its update already works in place)."""


class FastAdam(_InSlices, Adam):
    """``nn.optim.Adam``, in place and in slices, with the bias corrections on scalars."""

    def update_one(self, param, grad, m, v):
        t, work = self.step_count, self._scratch(param)
        m *= self.beta1
        np.multiply(grad, 1 - self.beta1, out=work)
        m += work  # m = beta1 * m + (1 - beta1) * g
        v *= self.beta2
        np.multiply(grad, grad, out=work)
        work *= 1 - self.beta2
        v += work  # v = beta2 * v + (1 - beta2) * g**2
        root = np.sqrt(1 - self.beta2**t)
        np.sqrt(v, out=work)
        work += self.eps * root  # sqrt(v) + eps_hat
        np.divide(m, work, out=work)
        work *= self.lr * root / (1 - self.beta1**t)  # times step_size
        param -= work


class FastRMSprop(_InSlices, RMSprop):
    """``nn.optim.RMSprop``, in place and in slices."""

    def update_one(self, param, grad, v):
        work = self._scratch(param)
        v *= self.rho
        np.multiply(grad, grad, out=work)
        work *= 1 - self.rho
        v += work  # v = rho * v + (1 - rho) * g**2
        np.sqrt(v, out=work)
        work += self.eps
        np.divide(grad, work, out=work)
        work *= self.lr
        param -= work  # p = p - lr * g / (sqrt(v) + eps)


OPTIMIZERS = {"sgd": FastSGD, "adam": FastAdam, "rmsprop": FastRMSprop}
