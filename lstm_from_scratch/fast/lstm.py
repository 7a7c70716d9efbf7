"""The same LSTM as ``nn/lstm.py``, rewritten for speed. Read ``nn/lstm.py`` first: it is the reference.

``FastLSTM`` is a subclass of ``LSTM`` with the same constructor, ``params``, ``grads``, ``gates``,
``hs``, ``cs``, ``final_state`` and ``dinitial_state``, and gives the same numbers (to rounding).
The fast engine's ``FastModel`` builds its LSTM layers from this class; the tests check it against
numerical gradients, against the plain ``LSTM`` and against ``torch.nn.LSTM``.

Shapes: T time steps, B sequences in a batch, D input features, H hidden units.

What is different, and why it is faster. A Python loop over T steps pays a few microseconds for every
NumPy call inside it, so the aim is few calls per step, each on a whole block, and no new arrays
inside the loop. The numbers follow the list in ``fast/__init__.py``; what each idea buys is
measured in ``benchmarks/README.md`` ("What each idea buys"):

1. **One tanh for all four gates.** ``sigmoid(a) = 0.5 + 0.5 * tanh(a / 2)``. The i, f, o columns of
   ``Wx``, ``Wh`` and ``b`` are halved once per call (``scale`` from ``_gate_constants``), so a single
   ``tanh`` over the (B, 4H) slab gives tanh(a/2) for i, f, o and tanh(a) for g; one multiply and one
   add (``mul``, ``add``, kept as full arrays: a same-shape multiply is faster than a broadcast one)
   then turn the i, f, o blocks into sigmoids and leave g alone.
2. **The gate values gate by gate.** In a (B, 4H) slab one gate's numbers come in B runs of H, and
   NumPy works through such a (B, H) slice run by run. So that single tanh writes step t's gates into
   ``by_step[t]``, a (4, B, H) block where each gate is one run of memory, and every later call on a
   gate (the rest of the step, backward's factors in point 4, backward's loop) reads it whole.
   ``gates`` (T, B, 4H), the layout of ``LSTM``, is made from it when asked for.
3. **No new arrays in the loops.** ``out=`` everywhere, into the (T, ...) arrays that backward needs
   anyway, or into private work arrays made once per (T, B, dtype) and reused (``_scratch``): fresh
   multi-megabyte arrays cost page faults at every call. Every view a step uses (``by_step[t]``,
   ``K[:, t]``, a reshape) is made once too (``_step_views``), since each index makes a new array
   object. The input projection of all steps is one row gather, ``(Wx + b)[ids]``, before the loop,
   with the scale and b added in the table or in the rows gathered, whichever is smaller. The
   step's product runs as row blocks small enough for OpenBLAS's one-thread kernel (``row_blocks``).
4. **Backward moves every factor that does not depend on the recurrence out of the loop**, computed
   for all T at once: with s' the gate derivatives (i(1-i), f(1-f), 1-g^2, o(1-o))::

       dc_t    = dc_{t+1} * f_{t+1}  +  dh_t * M_t         M = o * (1 - tanh(c)^2)
       da_i,f,g = dc_t * K_t                               K = [g s'_i, c_{t-1} s'_f, i s'_g]
       da_o    = dh_t * L_t                                L = tanh(c) * s'_o

   which leaves six elementwise calls and one product per step. K, L and M are computed a few steps
   at a time (``FACTORS_CHUNK``), so that their passes run in the CPU's cache, and gate by gate.
5. **The scatter-add for id input without ``np.add.at``** (``scatter_add_rows_fast``).
7. **The worker thread** (``fast/background.py``): while training, forward hands it backward's
   factors (point 4) as soon as the loop ends, and backward hands it the product for dWh while this
   thread does the scatter-add. ``FastModel`` also lets the layer above start on the steps already
   done (forward's ``on_step``, backward's ``wait_for``).
9. **``step``**, one time step for generation at batch 1, with nothing kept for backward.

(Ideas 6 and 8, the fused loss and the two processes, live in ``losses.py`` and ``data_parallel.py``.)
A copy of the layer does not keep the work arrays or their views: see ``__getstate__``.
"""
import numpy as np

from ..nn.layers import check_ids
from ..nn.lstm import LSTM
from .background import background


def scatter_add_rows_fast(ids, dout, num_rows):
    """The same result as ``layers.scatter_add_rows``: row v of the (num_rows, K) result sums every
    ``dout`` (..., K) row whose id in ``ids`` (...) is v.

    ``np.add.at`` adds one index at a time and is slow. Plain ``dW[ids] += rows`` is fast but is only
    right when no id repeats. So we split the positions into rounds where no id repeats: round k takes
    every id's k-th occurrence. A token seen n times then costs n rounds, so the few very frequent
    tokens (more than ``max_rounds`` occurrences) are summed directly instead, one ``sum`` each.
    """
    ids = ids.reshape(-1)
    rows = dout.reshape(ids.size, dout.shape[-1])
    dW = np.zeros((num_rows, rows.shape[1]), dtype=dout.dtype)
    if ids.size == 0:
        return dW
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    counts = np.diff(np.append(starts, ids.size))
    # rank[j]: how many earlier positions (in sorted order) hold the same id as position j
    rank = np.arange(ids.size) - np.repeat(starts, counts)
    max_rounds = 16
    for k in range(min(int(counts.max()), max_rounds)):
        picked = order[rank == k]
        if k == 0:  # every id's first occurrence: the rows are still zero, so assign
            dW[ids[picked]] = rows[picked]
        else:
            dW[ids[picked]] += rows[picked]
    for start, count in zip(starts[counts > max_rounds], counts[counts > max_rounds]):
        token = sorted_ids[start]
        dW[token] += rows[order[start + max_rounds : start + count]].sum(axis=0)
    return dW


# OpenBLAS multiplies a matrix product of at most 10^6 multiply-adds on one thread, with a kernel
# made for small shapes; above that it packs the matrices and splits the work across threads. For
# the step product (24, 128) @ (128, 512), 1.6 * 10^6, packing and splitting cost more than they
# save, and a split stalls whenever another program holds one of the cores. So the loops run such a
# product as row blocks under 10^6 (two blocks of 12 rows here): the same arithmetic, so the same
# numbers. What it buys is measured in benchmarks/README.md; on a BLAS without that small-shape
# kernel it may buy nothing, and SPLIT_SMALL_PRODUCTS = False turns it off.
SMALL_PRODUCT = 10**6
SPLIT_SMALL_PRODUCTS = True


def row_blocks(rows, inner, cols, max_blocks=4):
    """Slices that cut ``rows`` into the fewest equal blocks whose (block, inner) @ (inner, cols)
    products each have at most ``SMALL_PRODUCT`` multiply-adds; one block if that needs more than
    ``max_blocks`` (then the product is big enough to use the threads well), or when
    ``SPLIT_SMALL_PRODUCTS`` is False."""
    per_block = max(1, SMALL_PRODUCT // max(1, inner * cols))
    count = -(-rows // per_block)
    if not SPLIT_SMALL_PRODUCTS or count <= 1 or count > max_blocks:
        return [slice(0, rows)]
    size = -(-rows // count)
    return [slice(start, start + size) for start in range(0, rows, size)]


BACKGROUND_SIZE = 2**16  # gates arrays at least this big get their backward factors on the worker

# _backward_factors works through the steps in chunks of about this many gate values (512 KB in
# float32), so that each of its dozen passes reads arrays still in the CPU's cache from the pass
# before, not main memory.
FACTORS_CHUNK = 2**17


def _backward_factors(by_step, cs_all, tanh_cs, scratch):
    """The factors K (3, T, B, H), L (T, B, H) and M (T, B, H) of point 4 in the module docstring,
    written into ``scratch["K"]``, ``scratch["L"]`` and ``scratch["M"]`` and returned, from the
    forward's gate values by_step (T, 4, B, H), cells cs_all (T+1, B, H) and tanh(c) (T, B, H).

    K is kept gate by gate, like the gates (point 2): its passes here then run over whole (B, H)
    blocks, and backward's loop reads K[:, t] as three of them.
    """
    T = len(tanh_cs)
    K, L, M = scratch["K"], scratch["L"], scratch["M"]
    by_gate = by_step.transpose(1, 0, 2, 3)  # (4, T, B, H) view: by_gate[k] is gate k at every step
    steps = max(1, FACTORS_CHUNK // max(1, by_step[0].size))
    for start in range(0, T, steps):
        stop = min(start + steps, T)
        part = slice(start, stop)
        _factors_of_steps(by_gate[:, part], cs_all[start:stop], tanh_cs[part], K[:, part], L[part], M[part])
    return K, L, M


def _factors_of_steps(by_gate, cs_prev, tanh_cs, K, L, M):
    """``_backward_factors`` for a run of S steps: by_gate (4, S, B, H) the gates i, f, g, o,
    cs_prev (S, B, H) the cells c_{t-1}, tanh_cs (S, B, H) in; K (3, S, B, H), L and M (S, B, H)
    written."""
    i, _, g, o = by_gate
    # The gate derivatives s' for all steps: s(1-s) for the sigmoids i, f, o, 1-g^2 for the tanh g ...
    np.subtract(1, by_gate[:2], out=K[:2])
    K[:2] *= by_gate[:2]
    np.square(g, out=K[2])
    np.subtract(1, K[2], out=K[2])
    np.subtract(1, o, out=L)
    L *= o
    # ... then times the other factor of each product in the module docstring.
    K[0] *= g
    K[1] *= cs_prev
    K[2] *= i
    L *= tanh_cs
    np.square(tanh_cs, out=M)
    np.subtract(1, M, out=M)
    M *= o


def _step_views(scratch):
    """The views of the work arrays ``scratch`` (see ``FastLSTM._scratch``) that step t of the
    loops reads and writes, made once per (T, B, dtype) with them (point 3 in the module docstring).

    Returns a dict: "forward_steps", a list of T tuples (pre_t (B, 4H), gates_t (4, B, H), i_t, f_t,
    g_t, o_t, tanh_c_t, each (B, H)); "backward_steps", a list of T tuples (M_t, (B, H); K_t, (3, B, H);
    L_t, f_t, (B, H); da_ifg_t, (3, B, H); da_o_t, (B, H); da_t, (B, 4H)); and "recurrent_by_gate",
    the (4, B, H) transposing view of "recurrent" (B, 4H) that the step's tanh reads.
    """
    by_step, tanh_cs = scratch["by_step"], scratch["tanh_cs"]
    K, L, M, da = scratch["K"], scratch["L"], scratch["M"], scratch["da"]
    T, _, B, H = by_step.shape
    pre = by_step.reshape(T, B, 4 * H)
    da_by_gate = da.transpose(0, 2, 1, 3)  # (T, 4, B, H) view: da_by_gate[t, k] is gate k's (B, H)
    return {
        "forward_steps": [(pre[t], by_step[t], *by_step[t], tanh_cs[t]) for t in range(T)],
        "backward_steps": [(M[t], K[:, t], L[t], by_step[t, 1], da_by_gate[t, :3], da_by_gate[t, 3],
                            da[t].reshape(B, 4 * H)) for t in range(T)],
        "recurrent_by_gate": scratch["recurrent"].reshape(B, 4, H).transpose(1, 0, 2),
    }


class FastLSTM(LSTM):
    """``nn.lstm.LSTM`` with a faster forward and backward (see the module docstring); same API.

    The readable version, line for line with the equations, is ``LSTM`` in ``nn/lstm.py``.
    """

    def __getstate__(self):
        """What ``copy.deepcopy`` (and ``copy.copy``) copy: everything but the work arrays and the
        worker's job. The per-step views of the work arrays would not survive a copy (a copied view
        is an array of its own, no longer a window on the copied work array), so a copy makes its
        own work arrays at its next call."""
        state = dict(self.__dict__)
        for name in ("_scratch_key", "_scratch_arrays", "_factors_job"):
            state.pop(name, None)
        return state

    @property
    def gates(self):
        """The gate values of the last ``forward``, (T, B, 4H) with i, f, g, o side by side, as
        ``LSTM.gates``: laid out from ``by_step`` (T, 4, B, H), where the loop keeps them, on the
        first use after each ``forward``, then kept (the same array until the next ``forward``)."""
        if getattr(self, "_gates", None) is None:
            T, _, B, H = self.by_step.shape
            self._gates = self.by_step.transpose(0, 2, 1, 3).reshape(T, B, 4 * H)
        return self._gates

    def _gate_constants(self):
        """(scale, mul, add), each (4H,): see point 1 in the module docstring. Made once, then kept."""
        key = (self.hidden_size, self.dtype)
        if getattr(self, "_constants_key", None) != key:
            H = self.hidden_size
            half = np.full(H, 0.5)
            scale = np.concatenate([half, half, np.ones(H), half])  # tanh(a/2) for i, f, o; tanh(a) for g
            add = np.concatenate([half, half, np.zeros(H), half])  # 0.5 + 0.5 * tanh(a/2) = sigmoid(a)
            self._constants_key = key
            self._constants = scale.astype(self.dtype), scale.astype(self.dtype), add.astype(self.dtype)
        return self._constants

    def step(self, x, state):
        """One time step for generation; keeps nothing for backward and leaves ``gates`` alone.

        x: (B,) integer ids or (B, D) floats; state: (h, c), each (B, H).
        Returns the new (h, c), each (B, H), fresh arrays. The numbers of ``forward`` on a sequence
        of length 1, to rounding (it adds the same terms in another order: they may differ in the
        last bit), with about a dozen small NumPy calls.
        """
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        H = self.hidden_size
        scale, mul, add = self._gate_constants()
        h, c = state
        a = h @ Wh  # (B, 4H)
        a += Wx[x] if self.ids_step(x) else x @ Wx
        a += b
        a *= scale
        np.tanh(a, out=a)
        a *= mul
        a += add  # i, f, g, o
        c = a[:, H : 2 * H] * c
        c += a[:, :H] * a[:, 2 * H : 3 * H]
        h = np.tanh(c)
        h *= a[:, 3 * H :]
        return h, c

    def ids_step(self, x):
        """True when ``x`` holds token ids (checked to lie in [0, D)), False for float features."""
        if x.dtype.kind not in "iu":  # not a signed or unsigned integer type
            return False
        if x.size == 1:  # the batch-1 case of generation: a plain Python comparison is cheapest
            if not 0 <= int(x.reshape(-1)[0]) < self.input_size:
                raise ValueError(f"LSTM: token ids must lie in [0, {self.input_size}), got {x}")
        else:
            check_ids(x, self.input_size, "LSTM")
        return True

    def _scratch(self, T, B):
        """Work arrays that never leave this layer, made once per (T, B, dtype) and reused by every call.

        Fresh multi-megabyte arrays at every call would cost more than the arithmetic on them: the
        operating system hands out new memory page by page, zeroed, at first touch.
        Returns a dict: "by_step" (T, 4, B, H) the gate values (point 2 in the module docstring),
        "recurrent" (B, 4H), "product" (B, H), "tanh_cs" (T, B, H), "K" (3, T, B, H), "L" (T, B, H),
        "M" (T, B, H), "da" (T, B, 4, H), and "mul", "add" (4, B, H): ``_gate_constants``'s mul and
        add gate by gate, each gate's row repeated B times (see ``forward``); and "forward_steps",
        "backward_steps", "recurrent_by_gate": the views of these arrays that the loops use
        (``_step_views``).
        """
        key = (T, B, self.dtype)
        if getattr(self, "_scratch_key", None) != key:
            H, dtype = self.hidden_size, self.dtype
            _, mul, add = self._gate_constants()
            self._scratch_key = key

            def by_gate(row):  # (4H,) -> (4, B, H): gate k's H numbers, repeated B times
                return np.ascontiguousarray(np.broadcast_to(row.reshape(4, 1, H), (4, B, H)))

            self._scratch_arrays = {
                "by_step": np.empty((T, 4, B, H), dtype),
                "recurrent": np.empty((B, 4 * H), dtype), "product": np.empty((B, H), dtype),
                "tanh_cs": np.empty((T, B, H), dtype), "K": np.empty((3, T, B, H), dtype),
                "L": np.empty((T, B, H), dtype), "M": np.empty((T, B, H), dtype),
                "da": np.empty((T, B, 4, H), dtype), "mul": by_gate(mul), "add": by_gate(add),
            }
            self._scratch_arrays.update(_step_views(self._scratch_arrays))
        return self._scratch_arrays

    def forward(self, x, state=None, on_step=None):
        """Same as ``LSTM.forward``: x (T, B, D) floats or (T, B) ids, state None or (h0, c0) each
        (B, H); returns hs (T, B, H) and keeps ``final_state``, ``gates`` (T, B, 4H), ``hs``, ``cs``.

        on_step: None, or (step, callback): ``callback(hs, step)`` is called as soon as hs[:step] is
        final (hs the (T, B, H) array forward will return), so that the layer above can start on
        those steps, on another thread, while this loop goes on (see ``FastModel.forward``).
        """
        if getattr(self, "_factors_job", None) is not None:
            # The last training forward's factors may still be under way on the worker thread, in
            # the work arrays this call is about to reuse: let them finish first.
            self._factors_job.result()
            self._factors_job = None
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        H = self.hidden_size
        scale = self._gate_constants()[0]
        x = np.asarray(x)
        ids_input = np.issubdtype(x.dtype, np.integer)
        if ids_input:
            x = check_ids(x, self.input_size, "LSTM")
            T, B = x.shape
        else:
            x = x.astype(self.dtype, copy=False)
            T, B, D = x.shape
            if D != self.input_size:
                raise ValueError(f"LSTM: x must have {self.input_size} features, got shape {x.shape}")
        if state is not None:
            h0, c0 = (np.asarray(s) for s in state)
            if h0.shape != (B, H) or c0.shape != (B, H):
                raise ValueError(f"LSTM: state must be two ({B}, {H}) arrays, got {h0.shape} and {c0.shape}")
        # Everything is checked: from here on this call may reuse (and write over) the work arrays.
        scratch = self._scratch(T, B)
        by_step = scratch["by_step"]  # (T, 4, B, H): the gate values, gate by gate (point 2)
        # Before the loop the same memory holds the scaled input projection, step t as a (B, 4H)
        # slab; step t reads its slab, then writes its gate values over it. One array, not two:
        # a second array of this size pushes more of everything else out of the CPU's cache than
        # the loop saves.
        pre = by_step.reshape(T, B, 4 * H)
        if ids_input:
            # onehot(x) @ Wx + b = (Wx + b)[x], since a one-hot row sums to 1. Scale and add b where
            # there are fewer rows: in the (D, 4H) table before picking rows from it, or in the
            # (T, B, 4H) rows picked. The same operations on each number, so the same numbers.
            # (mode="clip": the ids are checked above, and "raise" would copy the result once more.)
            if len(Wx) <= T * B:
                table = Wx * scale
                table += b * scale
                np.take(table, x, axis=0, out=pre, mode="clip")
            else:
                np.take(Wx, x, axis=0, out=pre, mode="clip")
                pre *= scale
                pre += b * scale
        else:
            np.matmul(x.reshape(T * B, D), Wx * scale, out=pre.reshape(T * B, 4 * H))
            pre += b * scale
        Wh_scaled = Wh * scale

        # hs_all[0] and cs_all[0] hold the initial state, so step t reads t and writes t + 1.
        hs_all = np.empty((T + 1, B, H), self.dtype)
        cs_all = np.empty((T + 1, B, H), self.dtype)
        if state is None:
            hs_all[0], cs_all[0] = 0, 0
        else:
            hs_all[0], cs_all[0] = h0, c0
        tanh_cs = scratch["tanh_cs"]
        recurrent, product = scratch["recurrent"], scratch["product"]
        # mul and add as full (4, B, H) arrays: NumPy multiplies two same-shape arrays in one pass,
        # about twice as fast as it broadcasts a row over B rows.
        mul, add = scratch["mul"], scratch["add"]

        blocks = row_blocks(B, H, 4 * H)
        blocks = None if len(blocks) == 1 else [(rows, recurrent[rows]) for rows in blocks]
        recurrent_by_gate = scratch["recurrent_by_gate"]  # (4, B, H) view of recurrent
        # hs_all and cs_all are new arrays at every call (they outlive it), so their per-step views
        # are made here, by list() in one C loop: hs_by_step[t] is hs_all[t], cs_by_step[t] cs_all[t].
        hs_by_step, cs_by_step = list(hs_all), list(cs_all)
        call_step, callback = (-1, None) if on_step is None else on_step
        for t, (pre_t, gates, i, f, g, o, tanh_c) in enumerate(scratch["forward_steps"]):
            if t == call_step:
                callback(hs_all[1:], t)
            if blocks is None:
                np.matmul(hs_by_step[t], Wh_scaled, out=recurrent)
            else:
                for rows, recurrent_rows in blocks:
                    np.matmul(hs_by_step[t][rows], Wh_scaled, out=recurrent_rows)
            np.add(pre_t, recurrent, out=recurrent)  # (B, 4H): the scaled pre-activations
            # gates (4, B, H) lies over pre_t: gate k is gates[k], one run of memory
            np.tanh(recurrent_by_gate, out=gates)
            gates *= mul
            gates += add  # now i, f, g, o
            c = cs_by_step[t + 1]
            np.multiply(f, cs_by_step[t], out=c)
            np.multiply(i, g, out=product)
            c += product
            np.tanh(c, out=tanh_c)
            np.multiply(o, tanh_c, out=hs_by_step[t + 1])

        if callback is not None and not 0 <= call_step < T:  # the loop never reached it
            callback(hs_all[1:], min(max(call_step, 0), T))
        self.x, self.ids_input, self.by_step, self.tanh_cs, self._gates = x, ids_input, by_step, tanh_cs, None
        self.hs_all, self.cs_all = hs_all, cs_all
        self.hs, self.cs = hs_all[1:], cs_all[1:]
        self.h0, self.c0 = hs_all[0], cs_all[0]
        self.final_state = (hs_all[T].copy(), cs_all[T].copy())
        # Backward's factors depend on nothing that comes later, so while training the worker
        # thread computes them now, while this one goes on with the layers above and the loss.
        self._factors_job = None
        if self.training and by_step.size >= BACKGROUND_SIZE:
            self._factors_job = background().submit(_backward_factors, by_step, cs_all, tanh_cs, scratch)
        return self.hs

    def backward(self, dhs, dfinal_state=None, wait_for=None):
        """Same as ``LSTM.backward``: dhs (T, B, H), dfinal_state None or (dh_T, dc_T); returns dx
        (T, B, D) or None for ids; fills ``grads`` and keeps ``dinitial_state``.

        wait_for: None, or (step, job) when another thread is still writing dhs[:step] (see
        ``FastModel.backward``): the loop calls ``job.result()`` before it reads dhs[step - 1].
        """
        Wx, Wh = self.params["Wx"], self.params["Wh"]
        T, B, H = self.hs.shape
        if wait_for is not None and np.asarray(dhs).dtype != self.dtype:
            wait_for[1].result()  # the conversion below copies every row: they must all be written
        dhs = np.asarray(dhs, dtype=self.dtype)
        scratch = self._scratch(T, B)
        if scratch["by_step"] is not self.by_step:
            # The work arrays were made again after the last forward (in a copy of this layer, or
            # by a forward of another shape stopped part-way, by Ctrl-C say): the loop's views read
            # them, so put the gate values back where the views are.
            np.copyto(scratch["by_step"], self.by_step)
        job = getattr(self, "_factors_job", None)
        if job is not None:  # the factors K, L, M, into scratch, where the loop's views read them
            job.result()
        else:
            _backward_factors(self.by_step, self.cs_all, self.tanh_cs, scratch)
        da = scratch["da"]  # gradient of the (unscaled) pre-activations a_t, (T, B, 4, H)
        dh = np.empty((B, H), self.dtype)
        dc = np.empty((B, H), self.dtype)
        if dfinal_state is None:
            dh_next, dc_next = np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)
        else:
            dh_next, dc_next = (np.array(d, dtype=self.dtype) for d in dfinal_state)
        Wh_T = np.ascontiguousarray(Wh.T)  # (4H, H); BLAS runs this small product faster on a C-order copy
        blocks = row_blocks(B, 4 * H, H)
        blocks = None if len(blocks) == 1 else [(rows, dh_next[rows]) for rows in blocks]
        wait_step, wait_job = (-1, None) if wait_for is None else (wait_for[0] - 1, wait_for[1])
        dhs_by_step = list(dhs)  # (B, H) views, made in one C loop
        steps = scratch["backward_steps"]  # the factors' and da's views, made once (point 3)
        for t in reversed(range(T)):
            M, K_t, L, f, da_ifg, da_o, da_t = steps[t]
            if t == wait_step:
                wait_job.result()
            np.add(dhs_by_step[t], dh_next, out=dh)
            np.multiply(dh, M, out=dc)
            dc += dc_next
            np.multiply(dc, K_t, out=da_ifg)  # da_i, da_f, da_g in one call
            np.multiply(dh, L, out=da_o)
            np.multiply(dc, f, out=dc_next)
            if blocks is None:
                np.matmul(da_t, Wh_T, out=dh_next)
            else:
                for rows, dh_next_rows in blocks:
                    np.matmul(da_t[rows], Wh_T, out=dh_next_rows)
        self.dinitial_state = (dh_next, dc_next)

        da_flat = da.reshape(T * B, 4 * H)
        h_prevs = self.hs_all[:-1].reshape(T * B, H)
        # dWh, one big product, on the worker thread while this one does the rest (background.py).
        dWh = background().submit(np.matmul, h_prevs.T, da_flat)
        self.grads["b"] = da_flat.sum(axis=0)
        if self.ids_input:
            self.grads["Wx"] = scatter_add_rows_fast(self.x, da_flat, self.input_size)
            dx = None
        else:
            self.grads["Wx"] = self.x.reshape(T * B, self.input_size).T @ da_flat
            dx = (da_flat @ Wx.T).reshape(T, B, self.input_size)
        self.grads["Wh"] = dWh.result()
        return dx
