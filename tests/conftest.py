"""Shared pytest fixtures. Keep this file small: most helpers belong in the test file that uses them."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fixed-seed generator, so every test run draws the same numbers."""
    return np.random.default_rng(1234)
