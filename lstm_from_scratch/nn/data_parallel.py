"""Data parallelism: one training step on two halves of the batch, in two processes at once.

Shapes: T time steps, B sequences in the batch, split into B1 = ceil(B / 2) and B2 = B - B1.

The loss of a batch is the mean over its targets, so it is the weighted mean of its two halves'
losses, and its gradient the same weighted mean of the halves' gradients::

    loss = (B1 * loss_1 + B2 * loss_2) / B          grads = (B1 * grads_1 + B2 * grads_2) / B

That is how several GPUs train one model: each takes a slice of the batch, and the gradients are
averaged before the one update. Here the main process computes the first half with its own model
while a **helper process** computes the second half with a copy of the model.
``DataParallel(model, 2, optimizer)`` has two methods:

- ``loss(ids, targets)`` returns what ``model.loss`` returns, computed as the two halves;
- ``update(clip)`` does what ``clip_grad_norm`` and ``optimizer.step`` do, and its work is shared
  too: an optimizer changes each number from that number's own gradient and buffers alone, so the
  main process updates the first half of every weight array while the helper updates the second.

**Why a process, not a thread.** The critical path of a step is the LSTM's loop over time: a dozen
small NumPy calls per step, each a few microseconds. Two threads of one process must take turns
holding Python's lock (the GIL) at every NumPy call, and on our 2-core machine a thread making small
NumPy calls beside the loop made it 32-66% slower (``benchmarks/bench_worker_interference.py``). A
process has its own interpreter and lock; beside another process the loop runs at full speed.

**The same numbers, with or without the helper.** The split is always made, and the halves are
always combined in the same way; the helper only decides *where* the second half is computed. Without
it (one core, Windows, a small model, a BLAS running several threads, or a helper that failed),
this process computes the second half itself, after the first, and the result is the same, bit for
bit. Dropout masks for the
second half come from a generator seeded by one draw from ``model.rng``, in both cases.

**How the two processes talk.** The helper is a fresh interpreter started with ``subprocess``
(``python -c "...; serve()"``). The arrays they share live in one block of memory that both map: a
file in ``/dev/shm`` (memory, not disk; elsewhere the temporary folder), removed as soon as both
have mapped it. Commands and replies are one line of JSON each, through the helper's stdin and
stdout: never pickle. The shared block holds:

- the weights and the optimizer's buffers. While the helper runs, the model and the optimizer of
  *both* processes compute with these shared arrays themselves (``Model.use_param_arrays``), so
  nothing is copied at each step; ``close()`` copies them back into the model's and optimizer's own
  arrays;
- the second half's ids and targets, its gradients (where ``combine`` then writes the average) and
  final states;
- the helper's backup of its part of the weights and buffers, made before each update: if the
  helper dies halfway through its part, the main process puts the backup back and does that part
  itself, to the same numbers. A helper given up on is said once, as a ``HelperWarning``.

The helper starts only once a step takes at least ``MIN_STEP_SECONDS``, since starting it costs
about half a second and each step pays two short round trips; and only when NumPy's BLAS runs one
thread (``one_blas_thread``), as ``lstm-music`` sets it: a BLAS spreading its products over every
core would fight the helper for them.
"""
import json
import mmap
import os
import select
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from . import fast_background
from .layers import Dropout
from .optim import OPTIMIZERS, clip_grad_norm, make_optimizer

MIN_STEP_SECONDS = 0.003  # steps faster than this do not pay for the helper's start and round trips
REPLY_SECONDS = 120.0  # a helper silent for this long is given up on
# A process that waits for the other (main for a reply, the helper for a command) polls for this long
# before it blocks. The waits are short, and a process that blocks, on our virtual machine, wakes up
# only some tens of microseconds after the other has written: four times a step. Polling made the
# training step at V = 400 about 1-3% faster; it costs at most this much CPU time per wait.
SPIN_SECONDS = 0.002


def split_batch(ids, targets):
    """((ids_1, targets_1), (ids_2, targets_2), B1 / B): the two halves of a batch of ids (T, B) with
    targets (T, B) (a target at every step) or (B,) (one per sequence); the first half has B1 =
    ceil(B / 2) sequences."""
    B = ids.shape[1]
    first = -(-B // 2)
    return ((ids[:, :first], targets[..., :first]), (ids[:, first:], targets[..., first:]), first / B)


def combine(first, second, weight):
    """weight * first + (1 - weight) * second, written into ``second`` (an array; ``first`` is used
    as work space) and returned: the gradient of the whole batch from its halves'. In-place passes,
    always in this order; for an even batch (weight 1/2) the first, a multiplication by exactly 1,
    is skipped: it changes nothing.

    With the helper, ``second`` is its gradient in the shared memory: the average lands where the
    helper reads its part of it for ``DataParallel.update``, with no copy."""
    if weight != 0.5:
        first *= weight / (1 - weight)
    first += second
    np.multiply(first, 1 - weight, out=second)
    return second


def first_part(size):
    """The numbers of an array of ``size`` (in flat order) that this process updates: the first
    ceil(size / 2). The helper updates the rest, ``second_part(size)``."""
    return slice(0, -(-size // 2))


def second_part(size):
    """The numbers of an array of ``size`` (in flat order) that the helper updates."""
    return slice(-(-size // 2), size)


def _layout(model, numbers, rows, buffer_names):
    """{name: (shape, dtype name)}: every array the two processes share, with room for a second
    half of up to ``numbers`` ids (and as many targets) and ``rows`` sequences, and an optimizer
    with these ``buffer_names``.

    "param/", "grad/" and "optimizer/<buffer>/" hold every parameter, gradient and optimizer buffer
    whole; "backup/..." the helper's part of a parameter or buffer, as it was before its update.
    "ids", "targets", "h/k" and "c/k" have room to spare: a step uses their first numbers (see
    ``_batch_views``), so that a smaller last batch of an epoch fits in the same block."""
    layout = {}
    for name, value in model.params.items():
        shape, dtype = value.shape, value.dtype.name
        helper_part = ((value.size - first_part(value.size).stop,), dtype)
        layout[f"param/{name}"] = (shape, dtype)
        layout[f"grad/{name}"] = (shape, dtype)
        layout[f"backup/param/{name}"] = helper_part
        for kind in buffer_names:
            layout[f"optimizer/{kind}/{name}"] = (shape, dtype)
            layout[f"backup/optimizer/{kind}/{name}"] = helper_part
    layout["backup_step"] = ((1,), "int64")  # the step whose update the backups are from
    layout["ids"] = ((numbers,), "int64")
    layout["targets"] = ((numbers,), "int64")
    for k, layer in enumerate(model.lstm_layers):
        layout[f"h/{k}"] = ((rows, layer.hidden_size), model.dtype.name)
        layout[f"c/{k}"] = ((rows, layer.hidden_size), model.dtype.name)
    return layout


def _batch_views(arrays, ids_shape, target_shape):
    """(ids, targets, [(h, c) per LSTM]): views of the first numbers of the shared "ids", "targets",
    "h/k" and "c/k" arrays, shaped for this step's second half: ids (T, B2), targets ``target_shape``,
    h and c (B2, H)."""
    ids = arrays["ids"][:int(np.prod(ids_shape))].reshape(ids_shape)
    targets = arrays["targets"][:int(np.prod(target_shape))].reshape(target_shape)
    B2 = ids_shape[1]
    states, k = [], 0
    while f"h/{k}" in arrays:
        states.append((arrays[f"h/{k}"][:B2], arrays[f"c/{k}"][:B2]))
        k += 1
    return ids, targets, states


def _backed_up(arrays):
    """[(the helper's part of a shared parameter or buffer, its backup array)], from ``arrays``."""
    pairs = []
    for name, array in arrays.items():
        if name.startswith(("param/", "optimizer/")):
            pairs.append((array.reshape(-1)[second_part(array.size)], arrays[f"backup/{name}"]))
    return pairs


def _size(layout):
    return sum(_padded(shape, dtype) for shape, dtype in layout.values())


def _padded(shape, dtype):
    return -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64  # each array on 64 bytes


def _views(memory, layout):
    """The arrays of ``layout``, one after the other in ``memory``: {name: array}."""
    arrays, offset = {}, 0
    for name, (shape, dtype) in layout.items():
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(memory, np.dtype(dtype), count, offset).reshape(shape)
        offset += _padded(shape, dtype)
    return arrays


def _half_loss(model, ids, targets, training, seed):
    """``model.loss`` on one half, with the Dropout layers drawing from ``default_rng(seed)`` when a
    seed is given. Returns (loss, {name: grad array}, final_state)."""
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    saved = [layer.rng for layer in dropouts]
    if seed is not None:
        rng = np.random.default_rng(seed)
        for layer in dropouts:
            layer.rng = rng
    try:
        loss, grads = model.loss(ids, targets, training=training)
    finally:
        for layer, rng in zip(dropouts, saved):
            layer.rng = rng
    return loss, dict(grads), model.final_state


# ---------------------------------------------------------------- the helper process

def serve():
    """The helper process: one JSON command per line on stdin, one JSON reply per line on stdout.

    {"op": "model", "config": c, "dtype": d}  -> build the model copy; {"ok": true}
    {"op": "arrays", "path": p, "layout": l}  -> map the shared arrays, and compute with the shared
                                                 weights from now on; {"ok": true}
    {"op": "step", "training": t, "seed": s, "id": k, "backup": b, "ids_shape": (T, B2),
     "target_shape": shape}                   -> the second half's loss and gradients; {"loss": x}.
                                                 Then, after the reply and if b, back up its part
                                                 of the weights and buffers for update k.
    {"op": "update", "optimizer": o, "step": t, "id": k, "backup": b}
                                              -> (if b, back up again, for update k, then) update
                                                 its part of the weights; {"ok": true}
    Any error is a reply {"error": "..."}; the end of stdin ends the process.
    """
    import signal

    from .model import Model

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    fast_background.ENABLED = False  # the other core runs the main process: no worker thread here
    model, arrays, optimizer = None, None, None
    for count, line in enumerate(_lines(sys.stdin.fileno()), start=1):
        command = json.loads(line)
        try:
            if command["op"] == "model":
                model = Model(command["config"], dtype=np.dtype(command["dtype"]))
                reply = {"ok": True}
            elif command["op"] == "arrays":
                with open(command["path"], "r+b") as file:
                    memory = mmap.mmap(file.fileno(), 0)
                arrays = _views(memory, {name: (tuple(shape), dtype)
                                         for name, (shape, dtype) in command["layout"].items()})
                model.use_param_arrays({name: arrays[f"param/{name}"] for name in model.params})
                reply = {"ok": True}
            elif command["op"] == "step":
                ids, targets, states = _batch_views(arrays, tuple(command["ids_shape"]),
                                                    tuple(command["target_shape"]))
                loss, grads, final_state = _half_loss(model, ids, targets, command["training"],
                                                      command["seed"])
                for name, grad in grads.items():
                    arrays[f"grad/{name}"][...] = grad
                for (h, c), (h_shared, c_shared) in zip(final_state, states):
                    h_shared[...], c_shared[...] = h, c
                reply = {"loss": loss}
            else:
                optimizer = _helper_update(model, arrays, optimizer, command)
                reply = {"ok": True}
        except Exception as error:  # noqa: BLE001 -- reported, and the main process stops using us
            reply = {"error": f"{type(error).__name__}: {error}"}
        reply["n"] = count  # which command this answers: the main process checks it
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()
        if command["op"] == "step" and "loss" in reply and command["backup"]:
            # While the main process averages the gradients: a copy of what the update will change,
            # so that the main process can undo a half-done update if this process dies in it.
            _back_up(arrays, command["id"])


def _back_up(arrays, step_id):
    """Copy the helper's part of every shared weight and buffer into its backup, then mark the
    backups as those of step ``step_id`` (after the copy: a half-made backup is never marked)."""
    for part, backup in _backed_up(arrays):
        backup[...] = part
    arrays["backup_step"][0] = step_id


def _wait_a_little(fd):
    """Poll ``fd`` for up to SPIN_SECONDS, giving the CPU away at each turn (in case the other
    process shares it); True once it has something to read."""
    spin_until = time.monotonic() + SPIN_SECONDS
    while not select.select([fd], [], [], 0)[0]:
        if time.monotonic() >= spin_until:
            return False
        if hasattr(os, "sched_yield"):
            os.sched_yield()
    return True


def _lines(fd):
    """The lines read from ``fd``, until its end; polls for SPIN_SECONDS before it blocks."""
    pending = b""
    while True:
        while b"\n" not in pending:
            _wait_a_little(fd)
            chunk = os.read(fd, 65536)  # blocks if there is still nothing
            if not chunk:
                return
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        yield line


def _helper_update(model, arrays, optimizer, command):
    """The helper's part of an update (``DataParallel.update``): the optimizer described by
    ``command["optimizer"]`` (its ``hyperparameters()``) at step ``command["step"]``, on the second
    part of every shared weight, from the shared gradients. Returns the optimizer, kept for next time."""
    if command["backup"]:  # something changed the weights or buffers since the step's backup
        _back_up(arrays, command["id"])
    if int(arrays["backup_step"][0]) != command["id"]:
        raise RuntimeError(f"no backup for update {command['id']}")  # refuse: it could not be undone
    settings = dict(command["optimizer"])
    if optimizer is None or optimizer.hyperparameters() != settings:
        name, lr = settings.pop("name"), settings.pop("lr")
        optimizer = make_optimizer(name, lr, **settings)
    # The buffers live in the shared memory too: the main process saves them in its checkpoints.
    optimizer.buffers = {kind: {name: arrays[f"optimizer/{kind}/{name}"] for name in model.params}
                         for kind in optimizer.buffer_names}
    optimizer.step_count = command["step"]
    grads = {name: arrays[f"grad/{name}"] for name in model.params}
    optimizer.update(model.params, grads, part=second_part)
    return optimizer


def _shared_file(size):
    """(fd, path): a new file of ``size`` bytes for both processes to map: in ``/dev/shm`` (memory),
    or else, or if that is too full, in the temporary folder. OSError if neither has room.

    The room is claimed at once (``posix_fallocate``): a file in ``/dev/shm`` only *looks* that big
    after ``ftruncate``, and writing to a page the memory then has no room for kills the process
    (SIGBUS) instead of raising an error.
    """
    folders = ["/dev/shm", None] if os.path.isdir("/dev/shm") else [None]
    for number, folder in enumerate(folders, start=1):
        fd = path = None
        try:
            fd, path = tempfile.mkstemp(prefix="lstm-music-", dir=folder)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            return fd, path
        except BaseException as error:  # no room, no permission, or Ctrl-C: leave no file behind
            if fd is not None:
                os.close(fd)
                os.unlink(path)
            if not isinstance(error, OSError) or number == len(folders):
                raise


def _plain(value):
    """For json.dumps: a NumPy number (a float32 learning rate, say) as the Python number."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class HelperError(RuntimeError):
    """The helper process failed, stopped or does not answer."""


class HelperWarning(UserWarning):
    """The helper process was given up: this process goes on alone, to the same numbers, slower.
    (``lstm-music`` shows it as one "warning: ..." line.)"""


class _Helper:
    """The main process's end of one helper process."""

    def __init__(self, model):
        # One BLAS thread (the other core is ours), and our own sys.path, so that the helper imports
        # this very package even when it is not installed. A new session: Ctrl-C in the terminal
        # goes to the main process only, which decides what to do.
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        self.process = subprocess.Popen(
            # "python -c" would put the working folder first on sys.path: del sys.path[0], so that a
            # folder named lstm_from_scratch there cannot stand in for the package this process runs.
            [sys.executable, "-c",
             "import sys; del sys.path[0]; from lstm_from_scratch.nn.data_parallel import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)
        self.pending = b""
        self.sent = 0  # commands sent; each reply says which one it answers
        self.layout, self.arrays, self.memory = None, None, None
        try:
            self.ask({"op": "model", "config": model.config, "dtype": model.dtype.name})
        except BaseException:
            self.close(kill=True)
            raise

    def send(self, command):
        try:
            os.write(self.process.stdin.fileno(), json.dumps(command, default=_plain).encode() + b"\n")
        except OSError as error:
            raise HelperError(f"the helper process is gone ({error})") from None
        self.sent += 1

    def reply(self):
        """The next reply (a dict); HelperError if it reports an error, stops, or is silent too long."""
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + REPLY_SECONDS
        while b"\n" not in self.pending:
            # Poll at first, then block (see SPIN_SECONDS).
            ready = (_wait_a_little(fd)
                     or select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0])
            if not ready:
                raise HelperError(f"the helper process did not answer within {REPLY_SECONDS:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise HelperError("the helper process stopped")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:  # something in the helper printed to its output
            raise HelperError(f"the helper process wrote something that is not a reply: {line[:80]!r}") from None
        if not isinstance(answer, dict) or answer.get("n") != self.sent:  # a reply left over from an interrupted exchange
            raise HelperError(f"the helper process is out of step (reply {answer.get('n')} "
                              f"to command {self.sent})")
        if "error" in answer:
            raise HelperError(f"the helper process failed: {answer['error']}")
        return answer

    def ask(self, command):
        self.send(command)
        return self.reply()

    def shared_arrays(self, layout):
        """The shared arrays for ``layout``: the same as last step, or new ones that both map."""
        if layout != self.layout:
            size = max(64, _size(layout))
            fd, path = _shared_file(size)
            try:
                memory = mmap.mmap(fd, size)
                self.arrays, self.memory = None, None  # let go of the old block before the new one
                self.ask({"op": "arrays", "path": path, "layout": layout})
            finally:
                os.close(fd)
                os.unlink(path)  # both have mapped it: the memory lives on, no file is left behind
            self.layout, self.memory, self.arrays = layout, memory, _views(memory, layout)
        return self.arrays

    def kill(self):
        """Kill the helper and wait until it is gone: it writes nothing more to the shared arrays."""
        self.process.kill()
        self.process.wait()

    def close(self, kill=False):
        """Stop the helper: let it read the end of its input and exit, or, with ``kill`` (it may be
        busy, hung or already gone), kill it."""
        try:
            if kill:
                self.kill()
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


class DataParallel:
    """``loss(ids, targets)`` like ``model.loss``, computed as two halves of the batch (see the module
    docstring), the second one by a helper process when ``processes`` is 2 and it pays; and
    ``update(clip)``, the clipped optimizer step, each process updating half of every array.

    model: a ``Model``; processes: 1 (this process computes both halves) or 2; optimizer: the
    optimizer ``update`` steps (None: ``update`` is not used; update ``model.params`` as you like).
    Use it as a context manager, or call ``close()``, to stop the helper.

    While the helper runs, the weights (``model.params``) and the optimizer's buffers live in the
    memory both processes share: the model and the optimizer compute with those shared arrays
    themselves, so nothing is copied between the processes at each step. ``close()`` copies them
    back into the model's and optimizer's own arrays (the very arrays they had before).
    """

    def __init__(self, model, processes=2, optimizer=None):
        if processes not in (1, 2):
            raise ValueError(f"DataParallel: processes must be 1 or 2, got {processes!r}")
        self.model, self.processes, self.optimizer = model, processes, optimizer
        # The helper rebuilds the optimizer from its name and settings, so it can share the work of
        # a built-in one only; a class of one's own updates whole in this process.
        self._shared_optimizer = optimizer if type(optimizer) is OPTIMIZERS.get(getattr(optimizer, "name", None)) else None
        self.helper = None
        self.helper_failed = None  # why the helper was given up on, if it was
        self._last_step_seconds = 0.0  # how long the last step took (decides when the helper starts)
        self.has_dropout = any(isinstance(layer, Dropout) and layer.rate > 0 for layer in model.layers)
        self._own_arrays = {}  # ("param" or buffer kind, name) -> the array the shared one replaced
        self._step_id = 0  # counts the steps the helper was asked for
        self._room = (0, 0)  # (numbers, rows) the shared block has room for (see _layout)
        self._blas_alone = None  # one_blas_thread(), asked once
        self._helper_did_last_step = False  # then update() can share the work with it
        self._unsaid = None  # a HelperWarning to give once the step is done (see _give_up)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def close(self, kill=False):
        """Copy the weights and buffers out of the shared memory and stop the helper, if there is
        one (see ``_Helper.close``); a later step may start another."""
        helper, self.helper = self.helper, None
        self._helper_did_last_step = False
        try:
            if helper is not None and kill:
                helper.kill()  # first: it must not write to the shared arrays while we copy them
            self._release()
        finally:
            if helper is not None:
                helper.close()

    def loss(self, ids, targets, training=True):
        """ids (T, B) integers; targets (T, B) or (B,) as for ``model.loss``. Returns (loss, grads),
        the loss a float and grads ``model.grads``, the weighted means of the two halves'. Leaves
        ``model.final_state`` as ``model.forward`` does (both halves, in batch order). The layers'
        own caches (``x``, ``hs``, ``gates``, ...) hold the last half this process computed, and
        their ``grads`` are work space: read the gradient from ``model.grads``, and copy what you
        keep, since the next step may write over these very arrays."""
        model = self.model
        ids, targets = np.asarray(ids), np.asarray(targets)
        self._helper_did_last_step = False
        if ids.ndim != 2 or ids.shape[1] < 2:  # nothing to split
            return model.loss(ids, targets, training=training)
        (ids_1, targets_1), (ids_2, targets_2), weight = split_batch(ids, targets)
        # One draw per step, in both modes: the second half's dropout masks come from this seed.
        seed = int(model.rng.integers(2**63)) if training and self.has_dropout else None
        helper = self._helper_for_step()
        started = time.perf_counter()
        if helper is not None:
            try:
                arrays = self._shared_arrays(ids_2.size, ids_2.shape[1])
                shared_ids, shared_targets, shared_states = _batch_views(arrays, ids_2.shape, targets_2.shape)
                shared_ids[...], shared_targets[...] = ids_2, targets_2
                self._step_id += 1
                helper.send({"op": "step", "training": bool(training), "seed": seed, "id": self._step_id,
                             "backup": self._shared_optimizer is not None, "ids_shape": ids_2.shape,
                             "target_shape": targets_2.shape})
            except (HelperError, OSError) as error:  # OSError: no room for the shared memory
                helper = self._give_up(error)
            except BaseException:  # Ctrl-C: a reply may be under way; stop the helper (see below)
                self.close(kill=True)
                raise
        enabled = fast_background.ENABLED
        if helper is not None:
            fast_background.ENABLED = False  # the helper has the other core
        try:
            loss_1, grads_1, state_1 = _half_loss(model, ids_1, targets_1, training, None)
            if helper is not None:
                loss_2 = helper.reply()["loss"]
                grads_2 = {name: helper.arrays[f"grad/{name}"] for name in grads_1}
                state_2 = shared_states
        except HelperError as error:
            helper = self._give_up(error)
        except BaseException:
            # Ctrl-C or an error between the command and its reply: the helper's answer would be
            # read as the next step's. Stop it; the next step starts a fresh one if it pays.
            self.close(kill=True)
            raise
        finally:
            fast_background.ENABLED = enabled
        if helper is None:
            # Copies first: the second half's backward may reuse the layers' arrays.
            grads_1 = {name: grad.copy() for name, grad in grads_1.items()}
            state_1 = [(h.copy(), c.copy()) for h, c in state_1]
            loss_2, grads_2, state_2 = _half_loss(model, ids_2, targets_2, training, seed)
        for name, grad in grads_1.items():
            model.grads[name] = combine(grad, grads_2[name], weight)
        model.final_state = [(np.concatenate([h1, h2]), np.concatenate([c1, c2]))
                             for (h1, c1), (h2, c2) in zip(state_1, state_2)]
        self._helper_did_last_step = helper is not None
        self._last_step_seconds = time.perf_counter() - started
        self._say_given_up()
        return weight * loss_1 + (1 - weight) * loss_2, model.grads

    def update(self, clip=0.0):
        """``clip_grad_norm(model.grads, clip)`` (unless ``clip`` is 0 or None), then the optimizer's
        step on ``model.params``: the same numbers as ``optimizer.step(model.params, model.grads)``.
        When the helper computed the last ``loss``, it updates the second half of every array's
        numbers (``second_part``) while this process updates the first (``Optimizer.update``).

        If the helper fails during its part, this process puts back the helper's backup of what it
        had changed (it made one after the step; see ``serve``) and does that part itself.

        Change the weights or the optimizer's state between ``update`` and the next ``loss``, not
        between ``loss`` and ``update``: the gradient belongs to the weights ``loss`` saw, and the
        helper's backup is of the state after ``loss``. (Arrays *replaced* in between, as
        ``optimizer.load_state_dict`` does, are noticed, and the helper backs up again; values
        written *into* the arrays in between are not, and only a helper failing in that very
        update would undo them.)
        """
        model, optimizer = self.model, self.optimizer
        if optimizer is None:
            raise ValueError("DataParallel.update needs the optimizer: "
                             "DataParallel(model, processes, optimizer)")
        if clip is not None and clip > 0:
            clip_grad_norm(model.grads, clip)
        optimizer.step_count += 1  # what optimizer.step does before its update
        optimizer.lr = float(optimizer.lr)  # what optimizer.update does first; the helper gets the same
        helper = self.helper if self._helper_did_last_step else None
        self._helper_did_last_step = False
        if helper is None or self._shared_optimizer is None:
            optimizer.update(model.params, model.grads)
            return
        sent = False
        try:
            # Something may have replaced the optimizer's buffers (load_state_dict) since the step:
            # then they are copied in, and the helper must back up again, under a new number, so
            # that a backup it did not finish is never taken for the one of this update.
            changed = self._adopt(helper.arrays)
            if changed:
                self._step_id += 1
            for name, grad in model.grads.items():
                shared = helper.arrays[f"grad/{name}"]
                if grad is not shared:  # combine put it there; unless someone replaced it since
                    part = second_part(grad.size)
                    shared.reshape(-1)[part] = grad.reshape(-1)[part]
            helper.send({"op": "update", "optimizer": optimizer.hyperparameters(),
                         "step": optimizer.step_count, "id": self._step_id, "backup": changed})
            sent = True
            optimizer.update(model.params, model.grads, part=first_part)
            helper.reply()
        except HelperError as error:
            helper.kill()  # first: a slow helper must not go on writing after the undo
            if sent:  # it may have changed some of its part: put the backup back
                self._undo_helper_update()
            self._give_up(error)
            optimizer.update(model.params, model.grads, part=second_part if sent else None)
            self._say_given_up()  # only now: with warnings as errors, the update is whole first
        except BaseException:
            # Ctrl-C mid-update: as in one process, the step is half done. Stop the helper, so
            # that its reply cannot be read as the next step's.
            self.close(kill=True)
            raise

    def _undo_helper_update(self):
        """Put the helper's backup back into its part of the weights and buffers, if it made one for
        this step (it changes nothing before it has)."""
        arrays = self.helper.arrays
        if int(arrays["backup_step"][0]) == self._step_id:
            for part, backup in _backed_up(arrays):
                part[...] = backup

    def _buffer_names(self):
        optimizer = self._shared_optimizer
        return () if optimizer is None else tuple(optimizer.buffer_names)

    def _shared_arrays(self, numbers, rows):
        """The helper's shared arrays, with room for a second half of ``numbers`` ids in ``rows``
        sequences, holding the weights and buffers in use. A new block only for a bigger batch
        than any before: the smaller last batch of an epoch fits in the block of the others."""
        if self.helper.layout is None or numbers > self._room[0] or rows > self._room[1]:
            self._room = (max(numbers, self._room[0]), max(rows, self._room[1]))
            self._release()  # out of the old block, before it goes
            self.helper.shared_arrays(_layout(self.model, *self._room, self._buffer_names()))
        self._adopt(self.helper.arrays)
        return self.helper.arrays

    def _adopt(self, arrays):
        """Copy the weights and the optimizer's buffers into the shared ``arrays``, then make the
        model and the optimizer use the shared arrays themselves. Cheap when they already do.
        Returns True if it copied anything. ``_own_arrays`` keeps the arrays first replaced."""
        model, replaced = self.model, {}
        for name, value in model.params.items():
            shared = arrays[f"param/{name}"]
            if value is not shared:
                shared[...] = value
                self._own_arrays.setdefault(("param", name), value)
                replaced[name] = shared
        model.use_param_arrays(replaced)
        changed = bool(replaced)
        for kind in self._buffer_names():
            buffers = self._shared_optimizer.buffers.setdefault(kind, {})
            for name in model.params:
                shared, value = arrays[f"optimizer/{kind}/{name}"], buffers.get(name)
                if value is not shared:
                    shared[...] = 0 if value is None else value  # buffers start at 0
                    self._own_arrays.setdefault((kind, name), value)
                    buffers[name] = shared
                    changed = True
        return changed

    def _release(self):
        """Undo ``_adopt``: copy the shared weights and buffers back into the arrays they replaced
        (a new one for a buffer that had none), and use those again."""
        restored = {}
        own_arrays, self._own_arrays = self._own_arrays, {}
        for (kind, name), own in own_arrays.items():
            if kind == "param":
                own[...] = self.model.params[name]
                restored[name] = own
                continue
            buffers = self.optimizer.buffers.setdefault(kind, {})
            current = buffers.get(name)
            if current is None:  # a loaded optimizer state without this buffer: it stays without
                continue
            if own is None or own.shape != current.shape:
                buffers[name] = np.array(current)  # a copy of its own
            else:
                own[...] = current
                buffers[name] = own
        self.model.use_param_arrays(restored)

    def _helper_for_step(self):
        """The helper, started once a step (computed here) took at least MIN_STEP_SECONDS."""
        if self.helper is None and self.processes == 2 and self.helper_failed is None and os.name != "nt":
            if self._last_step_seconds >= MIN_STEP_SECONDS and _usable_cpus() >= 2 and self._one_blas_thread():
                try:
                    self.helper = _Helper(self.model)
                except (OSError, HelperError) as error:
                    self._give_up(error)
        return self.helper

    def _one_blas_thread(self):
        if self._blas_alone is None:
            self._blas_alone = one_blas_thread()
        return self._blas_alone

    def _give_up(self, error):
        """Stop the helper for good; this process computes both halves from now on. The warning
        that says so comes from ``_say_given_up``, once the step is whole: with warnings turned
        into errors, it must not cut the step short."""
        self.helper_failed = str(error)
        self.close(kill=True)
        self._unsaid = f"training goes on in one process (the same numbers, more slowly): {error}"
        return None

    def _say_given_up(self):
        if self._unsaid is not None:
            message, self._unsaid = self._unsaid, None
            warnings.warn(HelperWarning(message), stacklevel=3)


def one_blas_thread():
    """True when NumPy's BLAS computes on one thread in this process: only then does the helper pay.

    A BLAS that spreads each product over every core fights the helper for them: at the benchmark's
    size (V = 400) a step took 29 ms with the helper against 22 ms without. ``lstm-music`` runs BLAS
    on one thread; from Python, set ``OPENBLAS_NUM_THREADS=1`` (and ``OMP_NUM_THREADS=1``) before
    NumPy is imported. Asks ``threadpoolctl`` when it is installed; else reads those variables.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(name, "").strip()
            if value:
                return value == "1"
        return False
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return bool(counts) and max(counts) == 1


def _usable_cpus():
    """How many CPUs this process may run on (its affinity, where the system says; else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
