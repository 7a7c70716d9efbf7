"""The LSTM layer: forward over a whole sequence, and backpropagation through time (BPTT).

Shapes: T time steps, B sequences in a batch, D input features, H hidden units.
Parameters (PyTorch's layout, so readers can hold them against ``torch.nn.LSTM``):

- ``Wx`` (D, 4H): input weights, PyTorch's ``weight_ih_l0.T``;
- ``Wh`` (H, 4H): recurrent weights, PyTorch's ``weight_hh_l0.T``;
- ``b``  (4H,):   bias, PyTorch's ``bias_ih_l0 + bias_hh_l0``.

The 4H columns are four blocks of H, one per gate, in PyTorch's order **i, f, g, o**.
The equations, in the code's own symbols, for one step t (``*`` is elementwise)::

    a_t = x_t @ Wx + h_{t-1} @ Wh + b          (B, 4H)  all four gates in one product
    i_t = sigmoid(a_t[:, 0H:1H])               input gate: how much new content to write
    f_t = sigmoid(a_t[:, 1H:2H])               forget gate: how much old memory to keep
    g_t = tanh(a_t[:, 2H:3H])                  cell candidate: the new content
    o_t = sigmoid(a_t[:, 3H:4H])               output gate: how much memory to show
    c_t = f_t * c_{t-1} + i_t * g_t            the cell (memory)
    h_t = o_t * tanh(c_t)                      the hidden state, the layer's output

Backward, step t from T down to 1, with dh = dhs[t] + (gradient flowing back from step t+1)::

    do = dh * tanh(c_t)
    dc = dc_next + dh * o_t * (1 - tanh(c_t)^2)
    di = dc * g_t,   df = dc * c_{t-1},   dg = dc * i_t
    da = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]      (B, 4H)
    dc_next = dc * f_t,   dh_next = da @ Wh.T
    dWh += h_{t-1}.T @ da,   dWx += x_t.T @ da,   db += sum over the batch of da,   dx_t = da @ Wx.T

Derivations: Graves, "Supervised Sequence Labelling with Recurrent Neural Networks" (2012), ch. 4;
Olah, "Understanding LSTM Networks" (colah.github.io, 2015) for the pictures.

This is the LSTM that ``nn.model.Model`` trains with: edit it, and training changes. The fast engine
(``lstm_from_scratch/fast/lstm.py``, chosen with ``--engine fast``) computes the same numbers with
the loops rearranged for speed; the tests check the two against each other.
"""
import numpy as np

from .layers import check_ids, gather_rows, scatter_add_rows


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), elementwise, without overflow for large |x|.

    x: an array of any shape, e.g. (B, 2H); returns an array of the same shape, values in [0, 1].

    ``exp(-x)`` overflows for x below about -710 (float64) or -89 (float32). Using ``z = exp(-|x|)``,
    which is always in (0, 1], both branches stay finite: 1/(1+z) for x >= 0 and z/(1+z) for x < 0.
    """
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def split_gates(a):
    """Split (..., 4H) into the four (..., H) gate blocks i, f, g, o."""
    return np.split(a, 4, axis=-1)


class LSTM:
    """One LSTM layer over a whole sequence. See the module docstring for the equations.

    ``Wx`` and ``Wh`` start uniform in [-1/sqrt(H), 1/sqrt(H)], PyTorch's initialisation, so a reader
    can compare our numbers with PyTorch's at every step. (Xavier/Glorot would scale ``Wx`` by the input
    size D; with one-hot input D is the vocabulary size, and each token's row would then shrink as the
    vocabulary grows, which we do not want.) ``b`` is 0 except the forget block ``b[H:2H]``, which
    starts at ``forget_bias`` (1.0): the cell then keeps its memory by default at the start of
    training, so gradients can flow back over many steps (Gers et al. 2000; Jozefowicz et al. 2015).
    """

    def __init__(self, input_size, hidden_size, dtype=np.float32, rng=None, forget_bias=1.0):
        rng = np.random.default_rng(rng)
        D, H = input_size, hidden_size
        self.input_size, self.hidden_size = D, H
        self.dtype = np.dtype(dtype)
        bound = 1.0 / np.sqrt(H)
        b = np.zeros(4 * H)
        b[H : 2 * H] = forget_bias
        self.params = {
            "Wx": rng.uniform(-bound, bound, (D, 4 * H)).astype(self.dtype),
            "Wh": rng.uniform(-bound, bound, (H, 4 * H)).astype(self.dtype),
            "b": b.astype(self.dtype),
        }
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.training = True
        self.final_state = None
        self.dinitial_state = None

    def zero_state(self, batch_size):
        """(h0, c0), each (B, H) of zeros."""
        zeros = np.zeros((batch_size, self.hidden_size), dtype=self.dtype)
        return zeros, zeros.copy()

    def forward(self, x, state=None):
        """Run the layer over a whole sequence.

        x: (T, B, D) floats, or (T, B) integer ids (then the input product is the row gather Wx[x]).
        state: None (zeros) or (h0, c0), each (B, H).
        Returns hs (T, B, H); keeps ``self.final_state = (h_T, c_T)`` and ``self.gates``, the gate
        values (T, B, 4H) after their sigmoid/tanh (``split_gates`` gives i, f, g, o).
        """
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]
        x = np.asarray(x)
        self.ids_input = np.issubdtype(x.dtype, np.integer)
        if self.ids_input:
            x = check_ids(x, self.input_size, "LSTM")
            T, B = x.shape
            x_proj = gather_rows(Wx, x) + b  # onehot(x) @ Wx, without the one-hot
        else:
            x = x.astype(self.dtype, copy=False)
            T, B, _ = x.shape
            # The input part of every step in one product: it does not depend on h, so no loop is needed.
            x_proj = x @ Wx + b  # (T, B, 4H)
        if state is None:
            h, c = self.zero_state(B)
        else:
            h, c = (np.asarray(s, dtype=self.dtype) for s in state)
            if h.shape != (B, self.hidden_size) or c.shape != (B, self.hidden_size):
                raise ValueError(
                    f"LSTM: state must be two ({B}, {self.hidden_size}) arrays, got {h.shape} and {c.shape}"
                )
        H = self.hidden_size

        hs = np.empty((T, B, H), dtype=self.dtype)
        cs = np.empty((T, B, H), dtype=self.dtype)
        gates = np.empty((T, B, 4 * H), dtype=self.dtype)
        self.h0, self.c0 = h, c
        for t in range(T):
            a = x_proj[t] + h @ Wh  # (B, 4H): all four gates with one product
            gates[t, :, : 2 * H] = sigmoid(a[:, : 2 * H])  # i, f
            gates[t, :, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])  # g
            gates[t, :, 3 * H :] = sigmoid(a[:, 3 * H :])  # o
            i, f, g, o = split_gates(gates[t])
            c = f * c + i * g
            h = o * np.tanh(c)
            hs[t], cs[t] = h, c

        self.x, self.hs, self.cs, self.gates = x, hs, cs, gates
        self.final_state = (h, c)
        return hs

    def backward(self, dhs, dfinal_state=None):
        """Backpropagation through time.

        dhs: (T, B, H), the gradient of the loss with respect to every output h_t.
        dfinal_state: None or (dh_T, dc_T), each (B, H): gradient arriving at the final state (for
        example from the next batch's use of it, or from a gradient check).
        Returns dx (T, B, D), or None for id input. Fills ``grads`` and keeps
        ``self.dinitial_state = (dh0, dc0)``.
        """
        Wx, Wh = self.params["Wx"], self.params["Wh"]
        T, B, H = self.hs.shape
        if dfinal_state is None:
            dh_next, dc_next = np.zeros((B, H), self.dtype), np.zeros((B, H), self.dtype)
        else:
            dh_next, dc_next = dfinal_state
        tanh_cs = np.tanh(self.cs)
        da = np.empty((T, B, 4 * H), dtype=self.dtype)  # gradient of the pre-activations a_t

        for t in reversed(range(T)):
            i, f, g, o = split_gates(self.gates[t])
            c_prev = self.cs[t - 1] if t > 0 else self.c0
            dh = dhs[t] + dh_next  # from the output at t, and from step t+1 through h_t
            do = dh * tanh_cs[t]
            dc = dc_next + dh * o * (1 - tanh_cs[t] ** 2)  # through c_{t+1} and through h_t
            di, df, dg = dc * g, dc * c_prev, dc * i
            da[t, :, :H] = di * i * (1 - i)
            da[t, :, H : 2 * H] = df * f * (1 - f)
            da[t, :, 2 * H : 3 * H] = dg * (1 - g**2)
            da[t, :, 3 * H :] = do * o * (1 - o)
            dc_next = dc * f
            dh_next = da[t] @ Wh.T
        self.dinitial_state = (dh_next, dc_next)

        # The weight gradients sum over all steps; with every da_t kept, each is one product after the loop.
        h_prevs = np.concatenate([self.h0[None], self.hs[:-1]])  # h_{t-1} for t = 1..T: (T, B, H)
        da_flat = da.reshape(T * B, 4 * H)
        self.grads["Wh"] = h_prevs.reshape(T * B, H).T @ da_flat
        self.grads["b"] = da_flat.sum(axis=0)
        if self.ids_input:
            self.grads["Wx"] = scatter_add_rows(self.x, da, self.input_size)
            return None
        self.grads["Wx"] = self.x.reshape(T * B, self.input_size).T @ da_flat
        return da @ Wx.T
