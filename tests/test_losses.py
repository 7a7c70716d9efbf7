import warnings

import numpy as np
import pytest

from lstm_from_scratch.nn.gradcheck import numerical_gradient, relative_error
from lstm_from_scratch.nn.losses import log_softmax, softmax, softmax_cross_entropy


def test_softmax_is_a_probability_distribution(rng):
    p = softmax(rng.standard_normal((4, 3, 7)))
    assert p.shape == (4, 3, 7)
    assert np.all(p > 0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)


def test_softmax_and_cross_entropy_stay_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    targets = np.array([1, 0, 2])
    # Overflow, division by zero and invalid values must not happen. (Underflow of exp(-2e4) to 0 is the
    # correct answer and is not an error, so it is left at NumPy's default.)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        p = softmax(logits)
        logp = log_softmax(logits)
        loss, dlogits = softmax_cross_entropy(logits, targets)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp)) and np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    # -log p[target]: 2e4 for the first row, ln 3 for the second, 2e4 + ln 2 for the third
    assert loss == pytest.approx((2e4 + np.log(3) + 2e4 + np.log(2)) / 3)


def test_cross_entropy_value_by_hand():
    # logits [0, ln 3] -> p = [1/4, 3/4]; target 1 -> loss -ln(3/4); dlogits = p - onehot = [1/4, -1/4]
    loss, dlogits = softmax_cross_entropy(np.array([[0.0, np.log(3)]]), np.array([1]))
    assert loss == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(dlogits, [[0.25, -0.25]])


def test_cross_entropy_gradient_matches_numerical(rng):
    logits = rng.standard_normal((5, 3, 7))
    targets = rng.integers(0, 7, (5, 3))
    loss, dlogits = softmax_cross_entropy(logits, targets)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(logits, targets)[0], logits)
    error = relative_error(dlogits, numeric)
    print(f"worst relative error softmax_cross_entropy: {error:.2e}")
    assert error < 1e-6


def test_cross_entropy_rejects_bad_targets():
    with pytest.raises(ValueError, match="shape"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError, match="integers"):
        softmax_cross_entropy(np.zeros((2, 4)), np.array([0.0, 1.0]))
