"""Data parallelism: the loss of a batch as two halves, the second computed in a helper process.

Shapes: T time steps, B sequences in the batch, split into B1 = ceil(B / 2) and B2 = B - B1.

The loss of a batch is the mean over its targets, so it is the weighted mean of its two halves'
losses, and its gradient the same weighted mean of the halves' gradients (w = B1 / B)::

    loss = w * loss_1 + (1 - w) * loss_2          grads = w * grads_1 + (1 - w) * grads_2

That is how several GPUs train one model: each takes a slice of the batch, and the gradients are
averaged before the one update. ``DataParallel(model).loss(ids, targets)`` returns what
``model.loss`` returns, so a training step stays ``loss``, ``clip_grad_norm``, ``optimizer.step``.

**Why a process, not a thread.** The LSTM's loop over time makes a dozen small NumPy calls per step.
Two threads of one process take turns holding Python's lock at every call, so a second thread of
small calls slows the loop down; a process has its own interpreter and its own lock.

**What the processes share.** One block of ``multiprocessing.shared_memory`` holds the weights, the
second half's ids and targets, and the helper's gradients. Both models compute with the shared
weights themselves, so the optimizer's update in this process is seen by the helper at once and
nothing is copied at a step. Commands and replies go through a ``multiprocessing`` pipe (a socket
pair). The helper is a fresh Python started with ``subprocess``.

**The same numbers, with or without the helper.** The batch is always split, and the halves always
combined the same way; the helper only decides *where* the second half is computed. Without it (one
core, a small model, a BLAS running several threads, a helper that died) this process computes the
second half itself, after the first, to the same numbers, bit for bit. The second half's dropout masks
come from a generator seeded by one draw from ``model.rng``, in both cases.
"""
import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..nn.layers import Dropout
from ..nn.model import parameter_name
from . import background

MIN_STEP_SECONDS = 0.003  # steps faster than this do not pay for the helper's start and round trips
REPLY_SECONDS = 120.0  # a helper silent for this long is given up on


class HelperWarning(UserWarning):
    """The helper process failed; training goes on in this process, to the same numbers."""


def split_batch(ids, targets):
    """((ids_1, targets_1), (ids_2, targets_2), w): the halves of ids (T, B) and targets (T, B) (or
    (B,) for output "last"), and w = B1 / B, the first half's share."""
    first = -(-ids.shape[1] // 2)
    return (ids[:, :first], targets[..., :first]), (ids[:, first:], targets[..., first:]), first / ids.shape[1]


def combine(first, second, weight):
    """weight * first + (1 - weight) * second, in place in ``first`` (returned): (first * weight / (1 -
    weight) + second) * (1 - weight). The same steps whichever process computed a half."""
    if weight != 0.5:  # (a multiplication by exactly 1 changes nothing: skipped)
        first *= weight / (1 - weight)
    first += second
    first *= 1 - weight
    return first


def half_loss(model, ids, targets, seed=None):
    """``model.loss`` on one half, training; with a ``seed``, every Dropout draws from
    ``default_rng(seed)`` instead of ``model.rng``. Returns (loss, {name: gradient array})."""
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)] if seed is not None else []
    saved = [layer.rng for layer in dropouts]
    for layer in dropouts:
        layer.rng = np.random.default_rng(seed)
    try:
        loss, grads = model.loss(ids, targets, training=True)
    finally:
        for layer, rng in zip(dropouts, saved):
            layer.rng = rng
    return loss, dict(grads)


def shared_layout(model, batch_numbers):
    """{name: (shape, dtype)} of every array in the shared block: "param/<name>" and "grad/<name>" for
    each parameter, and "ids" and "targets" with room for ``batch_numbers`` numbers each."""
    layout = {}
    for name, value in model.params.items():
        layout[f"param/{name}"] = layout[f"grad/{name}"] = (value.shape, value.dtype.str)
    layout["ids"] = layout["targets"] = ((batch_numbers,), "<i8")
    return layout


def shared_arrays(buffer, layout):
    """(arrays, size): the arrays of ``layout`` one after the other in ``buffer`` (None: no arrays, to
    measure), each starting on 64 bytes; and the bytes they take."""
    arrays, offset = {}, 0
    for name, (shape, dtype) in layout.items():
        if buffer is not None:
            arrays[name] = np.ndarray(shape, dtype, buffer=buffer, offset=offset)
        offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    return arrays, offset


def use_arrays(model, arrays):
    """Make ``arrays[f"param/{name}"]`` the parameter ``name`` itself, in the model and in its layer."""
    for index, layer in enumerate(model.layers):
        for key in layer.params:
            name = parameter_name(index, layer, key)
            layer.params[key] = model.params[name] = arrays[f"param/{name}"]


def serve(handle):
    """The helper process: a model on the shared weights, computing second halves until told to stop.
    ``handle``: its end of the main process's socket pair; the first message says what to build."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which stops us
    background.ENABLED = False  # the main process has the other core
    connection = Connection(handle)
    (module, name), config, dtype, block_name, layout = connection.recv()
    try:  # the main process owns the block, and alone removes it at the end
        block = shared_memory.SharedMemory(block_name, track=False)  # Python 3.13 and newer
    except TypeError:  # older Pythons would remove it when this process ends: unless told not to
        block = shared_memory.SharedMemory(block_name)
        resource_tracker.unregister(block._name, "shared_memory")
    arrays, _ = shared_arrays(block.buf, layout)
    model = getattr(importlib.import_module(module), name)(config, dtype)
    use_arrays(model, arrays)
    connection.send("ready")
    try:
        while (command := connection.recv()) is not None:
            ids_shape, targets_shape, seed = command
            ids = arrays["ids"][:int(np.prod(ids_shape))].reshape(ids_shape)
            targets = arrays["targets"][:int(np.prod(targets_shape))].reshape(targets_shape)
            loss, grads = half_loss(model, ids, targets, seed)
            for name, grad in grads.items():
                arrays[f"grad/{name}"][...] = grad
            connection.send(loss)
    except EOFError:  # the main process went away
        pass


class DataParallel:
    """``loss(ids, targets)`` as two halves, the second in a helper process (see the module docstring).

    Use it as a context manager (or call ``close``): closing stops the helper and gives the model its
    own private weight arrays back, with the values they reached.
    """

    def __init__(self, model, start_helper=None):
        # start_helper None: start it once a step takes MIN_STEP_SECONDS, beside a one-thread BLAS on
        # two or more cores; True or False: start it at the first step, or never.
        self.model, self.start_helper, self.decided = model, start_helper, start_helper is False
        self.helper = self.connection = self.block = self.arrays = self.private_params = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def loss(self, ids, targets, training=True):
        """ids (T, B), targets (T, B) or (B,) -> (loss, grads), as ``model.loss`` on the whole batch."""
        ids, targets = np.asarray(ids), np.asarray(targets)
        if ids.shape[1] < 2:  # nothing to share
            return self.model.loss(ids, targets, training=training)
        (ids_1, targets_1), (ids_2, targets_2), weight = split_batch(ids, targets)
        seed = int(self.model.rng.integers(2**63))  # the second half's dropout masks
        if not self.decided and self.start_helper:
            self._start(ids.size)
        sent = self.helper is not None and self._send(ids_2, targets_2, seed)
        began = time.perf_counter()
        was_enabled = background.ENABLED
        background.ENABLED = was_enabled and not sent  # the helper has the other core
        try:
            loss_1, grads = half_loss(self.model, ids_1, targets_1)
        finally:
            background.ENABLED = was_enabled
        if sent:
            loss_2, grads_2 = self._reply(ids_2, targets_2, seed)
        else:
            loss_2, grads_2 = half_loss(self.model, ids_2, targets_2, seed)
        if not self.decided:
            self.decided = True
            if time.perf_counter() - began >= MIN_STEP_SECONDS and can_use_helper():
                self._start(ids.size)
        for name, grad in grads.items():
            grads[name] = combine(grad, grads_2[name], weight)
        self.model.grads.update(grads)
        return weight * loss_1 + (1 - weight) * loss_2, self.model.grads

    def _start(self, batch_numbers):
        self.decided = True
        layout = shared_layout(self.model, batch_numbers)
        try:
            self.block = shared_memory.SharedMemory(create=True, size=shared_arrays(None, layout)[1])
            self.arrays, _ = shared_arrays(self.block.buf, layout)
            # A fresh Python, as multiprocessing's spawn would start, but one that does not run this
            # program's main script again (a script without `if __name__ == "__main__":` would run
            # twice); the two ends of a socket pair are multiprocessing Connections.
            self.connection, theirs = multiprocessing.Pipe()
            paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
            code = f"from lstm_from_scratch.fast.data_parallel import serve; serve({theirs.fileno()})"
            with theirs:  # (closed here once the helper has its own copy)
                self.helper = subprocess.Popen(
                    [sys.executable, "-c", code], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))})
            model_class = (type(self.model).__module__, type(self.model).__qualname__)
            self.connection.send((model_class, self.model.config, self.model.dtype.str, self.block.name, layout))
            if not self.connection.poll(REPLY_SECONDS) or self.connection.recv() != "ready":
                raise OSError("it did not start")
        except (OSError, EOFError) as error:
            self._give_up(error)
            return
        self.private_params = dict(self.model.params)
        for name, value in self.model.params.items():
            self.arrays[f"param/{name}"][...] = value
        use_arrays(self.model, self.arrays)

    def _send(self, ids, targets, seed):
        """Write the second half into the shared block and tell the helper; False if it cannot."""
        if ids.size > self.arrays["ids"].size:  # a bigger batch than the block was made for
            return False
        self.arrays["ids"][:ids.size] = ids.reshape(-1)
        self.arrays["targets"][:targets.size] = targets.reshape(-1)
        try:
            self.connection.send((ids.shape, targets.shape, seed))
            return True
        except OSError as error:
            self._give_up(error)
            return False

    def _reply(self, ids, targets, seed):
        try:
            if not self.connection.poll(REPLY_SECONDS):
                raise OSError(f"no reply in {REPLY_SECONDS:.0f} s")
            loss = self.connection.recv()
            return loss, {name: self.arrays[f"grad/{name}"] for name in self.model.params}
        except (OSError, EOFError) as error:
            self._give_up(error)  # compute the half here instead: the same numbers
            return half_loss(self.model, ids, targets, seed)

    def _give_up(self, error):
        why = str(error) or type(error).__name__
        if self.helper is not None:
            self._stop()
            said = self.helper.stderr.read().decode(errors="replace").strip().splitlines()
            why += f"; it said: {said[-1]}" if said else ""  # the last line of its own error
        warnings.warn(HelperWarning(f"the helper process failed ({why}); training goes on in one "
                                    f"process, to the same numbers"))
        self.close()

    def _stop(self):  # tell the helper to end, and end it if it does not
        try:
            self.connection.send(None)
        except OSError:
            pass
        try:
            self.helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.helper.kill()
            self.helper.wait()

    def close(self):
        """Stop the helper and give the model its private weight arrays back, with the shared values."""
        if self.helper is not None:
            if self.helper.poll() is None:
                self._stop()
            self.helper.stderr.close()
            self.helper = None
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.private_params is not None:
            for name, private in self.private_params.items():
                private[...] = self.model.params[name]
            use_arrays(self.model, {f"param/{name}": value for name, value in self.private_params.items()})
            self.private_params = None
        if self.block is not None:
            self.arrays = None
            self.block.close()
            self.block.unlink()
            self.block = None


def can_use_helper():
    """True on two or more usable cores when NumPy's BLAS computes on one thread (``lstm-music`` sets
    ``OPENBLAS_NUM_THREADS=1``): a BLAS spreading each product over every core would fight the helper.
    (And on POSIX systems only, where a new process can be handed one end of a socket pair.)"""
    if os.name != "posix":
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    one_thread = any(os.environ.get(name, "").strip() == "1"
                     for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    return cores >= 2 and one_thread
