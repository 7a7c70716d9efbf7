"""Our LSTMs against torch.nn.LSTM: same weights give the same outputs and the same gradients.

Both the readable reference (nn/lstm.py) and the fast version the Model trains with (fast/lstm.py).

Skipped cleanly when torch is not installed; nothing else in the suite needs it.
"""
import numpy as np
import pytest

from lstm_from_scratch.fast.lstm import FastLSTM
from lstm_from_scratch.nn.layers import OneHot
from lstm_from_scratch.nn.lstm import LSTM

torch = pytest.importorskip("torch")

D, H, T, B = 5, 4, 6, 3


def make_pair(rng, layer_class=LSTM):
    """Our float64 LSTM (or FastLSTM) with random weights, and a torch LSTM holding the same weights."""
    ours = layer_class(D, H, np.float64, rng)
    for value in ours.params.values():
        value[...] = 0.5 * rng.standard_normal(value.shape)
    theirs = torch.nn.LSTM(D, H, dtype=torch.float64)
    # torch has two bias vectors that are simply added; split ours at random to show only the sum matters
    bias_ih = rng.standard_normal(4 * H)
    with torch.no_grad():
        theirs.weight_ih_l0.copy_(torch.from_numpy(ours.params["Wx"].T))
        theirs.weight_hh_l0.copy_(torch.from_numpy(ours.params["Wh"].T))
        theirs.bias_ih_l0.copy_(torch.from_numpy(bias_ih))
        theirs.bias_hh_l0.copy_(torch.from_numpy(ours.params["b"] - bias_ih))
    return ours, theirs


@pytest.mark.parametrize("layer_class", [LSTM, FastLSTM])
@pytest.mark.parametrize("id_input", [False, True])
def test_same_outputs_and_gradients_as_torch(id_input, layer_class, rng):
    ours, theirs = make_pair(rng, layer_class)
    if id_input:
        ids = rng.integers(0, D, (T, B))
        x = ids
        x_torch = torch.from_numpy(OneHot(D, np.float64).forward(ids)).requires_grad_()
    else:
        x = rng.standard_normal((T, B, D))
        x_torch = torch.from_numpy(x.copy()).requires_grad_()
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dhs = rng.standard_normal((T, B, H))
    dh_T, dc_T = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    hs = ours.forward(x, (h0, c0))
    dx = ours.backward(dhs, (dh_T, dc_T))
    dh0, dc0 = ours.dinitial_state

    h0_torch = torch.from_numpy(h0[None].copy()).requires_grad_()  # torch wants (layers, B, H)
    c0_torch = torch.from_numpy(c0[None].copy()).requires_grad_()
    hs_torch, (h_T, c_T) = theirs(x_torch, (h0_torch, c0_torch))
    # the same upstream gradients: into every h_t, and into the final h_T and c_T
    objective = (hs_torch * torch.from_numpy(dhs)).sum()
    objective = objective + (h_T[0] * torch.from_numpy(dh_T)).sum() + (c_T[0] * torch.from_numpy(dc_T)).sum()
    objective.backward()

    def close(ours_value, torch_value):
        np.testing.assert_allclose(ours_value, torch_value.detach().numpy(), rtol=1e-10, atol=1e-12)

    close(hs, hs_torch)
    close(ours.final_state[0], h_T[0])
    close(ours.final_state[1], c_T[0])
    close(ours.grads["Wx"], theirs.weight_ih_l0.grad.T)
    close(ours.grads["Wh"], theirs.weight_hh_l0.grad.T)
    close(ours.grads["b"], theirs.bias_ih_l0.grad)
    close(ours.grads["b"], theirs.bias_hh_l0.grad)
    close(dh0, h0_torch.grad[0])
    close(dc0, c0_torch.grad[0])
    if id_input:
        assert dx is None
    else:
        close(dx, x_torch.grad)
