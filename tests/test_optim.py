"""Optimizers against hand-computed steps, bias correction, state round trips and clipping.

The expected numbers are worked out here with plain Python floats from the papers' formulas, written
out step by step, never by calling the code under test.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_from_scratch.nn.optim import SGD, Adam, RMSprop, clip_grad_norm, make_optimizer

GRADS = [1.0, 2.0, -1.0]  # the gradient at steps 1, 2 and 3, used by every hand-computed test


def run_steps(opt, start=1.0, grads=GRADS):
    """Apply the scalar gradients one by one to a 1-element float64 parameter; return each new value."""
    params = {"w": np.array([start])}
    values = []
    for g in grads:
        opt.step(params, {"w": np.array([g])})
        values.append(float(params["w"][0]))
    return values


def test_sgd_plain_three_steps():
    # p = p - lr * g with lr = 0.1: 1 - 0.1 = 0.9, 0.9 - 0.2 = 0.7, 0.7 + 0.1 = 0.8
    assert run_steps(SGD(lr=0.1)) == pytest.approx([0.9, 0.7, 0.8], abs=1e-15)


def test_sgd_momentum_three_steps():
    # v = 0.9 v + g;  p = p - 0.1 v
    # step 1: v = 1                  p = 1    - 0.1   = 0.9
    # step 2: v = 0.9 + 2    = 2.9   p = 0.9  - 0.29  = 0.61
    # step 3: v = 2.61 - 1   = 1.61  p = 0.61 - 0.161 = 0.449
    assert run_steps(SGD(lr=0.1, momentum=0.9)) == pytest.approx([0.9, 0.61, 0.449], abs=1e-14)


def test_sgd_nesterov_three_steps():
    # v = 0.9 v + g;  p = p - 0.1 (g + 0.9 v)
    # step 1: v = 1     p = 1     - 0.1 (1  + 0.9)          = 0.81
    # step 2: v = 2.9   p = 0.81  - 0.1 (2  + 2.61) = 0.81 - 0.461  = 0.349
    # step 3: v = 1.61  p = 0.349 - 0.1 (-1 + 1.449) = 0.349 - 0.0449 = 0.3041
    assert run_steps(SGD(lr=0.1, momentum=0.9, nesterov=True)) == pytest.approx([0.81, 0.349, 0.3041], abs=1e-14)


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(ValueError, match="momentum"):
        SGD(lr=0.1, nesterov=True)


def test_adam_three_steps():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    # step 1: m = 0.1, v = 0.001; m_hat = 0.1 / 0.1 = 1, v_hat = 0.001 / 0.001 = 1
    p1 = 1.0 - lr * 1.0 / (1.0 + eps)
    # step 2: m = 0.09 + 0.2 = 0.29, v = 0.000999 + 0.004 = 0.004999
    #         m_hat = 0.29 / (1 - 0.81) = 0.29 / 0.19, v_hat = 0.004999 / (1 - 0.998001) = 0.004999 / 0.001999
    p2 = p1 - lr * (0.29 / 0.19) / (math.sqrt(0.004999 / 0.001999) + eps)
    # step 3: m = 0.261 - 0.1 = 0.161, v = 0.004994001 + 0.001 = 0.005994001
    #         m_hat = 0.161 / (1 - 0.729) = 0.161 / 0.271, v_hat = 0.005994001 / (1 - 0.997002999)
    p3 = p2 - lr * (0.161 / 0.271) / (math.sqrt(0.005994001 / 0.002997001) + eps)
    # The same numbers to five places, as a reader would get them on paper.
    assert [p1, p2, p3] == pytest.approx([0.9, 0.80348, 0.76147], abs=1e-5)
    assert run_steps(Adam(lr=lr, beta1=b1, beta2=b2, eps=eps)) == pytest.approx([p1, p2, p3], rel=1e-12)


def test_rmsprop_three_steps():
    lr, rho, eps = 0.01, 0.9, 1e-7
    # step 1: v = 0.1                      p = 1  - 0.01 * 1 / (sqrt(0.1) + eps)
    # step 2: v = 0.09 + 0.4   = 0.49      p = p1 - 0.01 * 2 / (0.7 + eps)
    # step 3: v = 0.441 + 0.1  = 0.541     p = p2 + 0.01 * 1 / (sqrt(0.541) + eps)
    p1 = 1.0 - lr / (math.sqrt(0.1) + eps)
    p2 = p1 - lr * 2.0 / (0.7 + eps)
    p3 = p2 + lr / (math.sqrt(0.541) + eps)
    assert [p1, p2, p3] == pytest.approx([0.968377, 0.939806, 0.953402], abs=1e-6)
    assert run_steps(RMSprop(lr=lr, rho=rho, eps=eps)) == pytest.approx([p1, p2, p3], rel=1e-12)


def test_adam_first_step_moves_each_weight_by_lr_times_sign():
    # With the bias correction, m_hat = g and v_hat = g**2 at step 1, whatever the gradient's scale.
    # Without it the move would be lr * 0.1 / sqrt(0.001) ~ 3.16 lr; correcting the wrong term is off too.
    rng = np.random.default_rng(0)
    grad = rng.standard_normal((5, 7)) * 10.0 ** rng.uniform(-3, 3, size=(5, 7))
    before = rng.standard_normal((5, 7))
    params = {"w": before.copy()}
    Adam(lr=0.01).step(params, {"w": grad})
    np.testing.assert_allclose(before - params["w"], 0.01 * np.sign(grad), rtol=1e-4)


def test_adam_constant_gradient_moves_lr_every_step():
    # With a constant gradient the corrected moments are exactly g and g**2 at every step t.
    params = {"w": np.zeros(3)}
    opt = Adam(lr=0.001)
    grad = np.array([0.5, -3.0, 1e-3])
    for t in range(1, 6):
        before = params["w"].copy()
        opt.step(params, {"w": grad})
        np.testing.assert_allclose(before - params["w"], 0.001 * np.sign(grad), rtol=1e-4, err_msg=f"step {t}")


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_big_arrays_follow_the_formulas(name):
    # Arrays bigger than optim.SLICE are updated slice by slice; the result must not change.
    # Reference: each paper's formula written out over the whole array in float64.
    rng = np.random.default_rng(2)
    start = rng.standard_normal((300, 257))  # 77,100 numbers: one full slice and a partial one
    grads = [rng.standard_normal(start.shape) for _ in range(3)]
    opt = make_optimizer(name, 0.01, **({"momentum": 0.9, "nesterov": True} if name == "sgd" else {}))
    params = {"w": start.copy()}
    expected, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
    for t, g in enumerate(grads, start=1):
        opt.step(params, {"w": g})
        if name == "sgd":
            m = 0.9 * m + g
            expected = expected - 0.01 * (g + 0.9 * m)
        elif name == "adam":
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            expected = expected - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        else:
            v = 0.9 * v + 0.1 * g**2
            expected = expected - 0.01 * g / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(params["w"], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "make",
    [lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9), lambda: SGD(0.1, 0.9, nesterov=True),
     lambda: Adam(0.01), lambda: RMSprop(0.01)],
    ids=["sgd", "momentum", "nesterov", "adam", "rmsprop"],
)
def test_state_dict_round_trip_continues_bit_identically(make, tmp_path):
    rng = np.random.default_rng(1)
    params = {"0.lstm.Wx": rng.standard_normal((4, 8)).astype(np.float32),
              "1.dense.b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(6)]
    first = make()
    for g in grads[:3]:
        first.step(params, g)

    state = first.state_dict()
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())
    assert state["step"].shape == () and int(state["step"]) == 3
    # Through a real .npz file, as a checkpoint would store it.
    np.savez(tmp_path / "opt.npz", **state)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as stored:
        second = make()
        second.load_state_dict(dict(stored))

    params_copy = {k: v.copy() for k, v in params.items()}
    for g in grads[3:]:
        first.step(params, g)
        second.step(params_copy, g)
    for name in params:
        assert np.array_equal(params[name], params_copy[name]), name


def test_state_dict_is_a_snapshot():
    opt = Adam()
    params = {"w": np.ones(2)}
    opt.step(params, {"w": np.ones(2)})
    state = opt.state_dict()
    opt.step(params, {"w": np.ones(2)})
    assert int(state["step"]) == 1 and state["m/w"][0] == pytest.approx(0.1)


def test_load_state_dict_refuses_unknown_entries():
    with pytest.raises(ValueError, match="unexpected"):
        Adam().load_state_dict({"step": np.array(1), "velocity/w": np.zeros(2)})
    with pytest.raises(ValueError, match="step"):
        Adam().load_state_dict({"m/w": np.zeros(2)})


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_float32_stays_float32(name):
    opt = make_optimizer(name, lr=np.float64(0.01))  # even a float64 learning rate must not upcast
    params = {"w": np.ones((2, 3), dtype=np.float32)}
    opt.step(params, {"w": np.full((2, 3), 0.5, dtype=np.float32)})
    assert params["w"].dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in opt.state_dict().items() if k != "step")


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="'w'"):
        Adam().step({"w": np.zeros(3)}, {"w": np.zeros(4)})


def test_make_optimizer():
    opt = make_optimizer("SGD", 0.5, momentum=0.9, nesterov=True)
    assert isinstance(opt, SGD) and opt.lr == 0.5 and opt.nesterov
    assert isinstance(make_optimizer("adam", 1e-3), Adam)
    rms = make_optimizer("rmsprop", 0.01)
    assert isinstance(rms, RMSprop) and rms.rho == 0.9 and rms.eps == 1e-7  # Keras's defaults
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'.*sgd, adam, rmsprop"):
        make_optimizer("adamw", 0.1)


def test_lr_can_change_between_steps():
    opt = SGD(lr=0.1)
    params = {"w": np.array([1.0])}
    opt.step(params, {"w": np.array([1.0])})
    opt.lr = 0.5
    opt.step(params, {"w": np.array([1.0])})
    assert params["w"][0] == pytest.approx(0.4)


def test_clip_grad_norm_scales_all_arrays_together():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.8]])


@pytest.mark.parametrize("max_norm", [10.0, 5.0, None, 0, -1])
def test_clip_grad_norm_leaves_small_or_unclipped_grads_alone(max_norm):
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, max_norm) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    np.testing.assert_array_equal(grads["b"], [[4.0]])


def test_clip_grad_norm_float32_huge_and_nonfinite():
    # 1e20 squared overflows float32; the norm must still be right and the clip must work.
    grads = {"a": np.full(4, 1e20, dtype=np.float32)}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(2e20, rel=1e-6)
    assert grads["a"].dtype == np.float32
    np.testing.assert_allclose(grads["a"], 0.5, rtol=1e-6)
    bad = {"a": np.array([np.inf, 1.0])}
    assert clip_grad_norm(bad, 1.0) == np.inf
    assert bad["a"][1] == 1.0  # untouched: the trainer reports it


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20), st.floats(1e-3, 1e3))
def test_clip_grad_norm_bounds_the_norm(values, max_norm):
    grads = {"g": np.array(values)}
    before = clip_grad_norm(grads, max_norm)
    after = float(np.linalg.norm(grads["g"]))
    assert after <= max_norm * (1 + 1e-9) + 1e-300
    assert after == pytest.approx(min(before, max_norm), rel=1e-9, abs=1e-300)
