"""Shared pytest fixtures. Keep this file small: most helpers belong in the test file that uses them."""
import os
import re

import numpy as np
import pytest
from hypothesis import settings

# On CI, hypothesis draws the same examples every run, so a red build can be reproduced; on a
# developer's machine it keeps exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def rng():
    """A fixed-seed generator, so every test run draws the same numbers."""
    return np.random.default_rng(1234)


# Every gradient check prints a line "worst relative error <what>: <numbers>". pytest hides what
# tests print, so collect those lines and show the worst of them at the end of every run: the figure
# the project promises (< 1e-6) is then in every CI log, not only behind `pytest -s`.
_GRADIENT_CHECKS = []
_NUMBER = re.compile(r"\d+(?:\.\d+)?e[-+]?\d+|\d+\.\d+")


# The browser test of the run report saves screenshots for people to look at; say where they are.
_SCREENSHOTS = []


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    for line in report.capstdout.splitlines():
        if line.startswith("report screenshot:"):
            _SCREENSHOTS.append(line.partition(":")[2].strip())
        if line.startswith("worst relative error"):
            label, _, values = line.partition(":")
            numbers = [float(number) for number in _NUMBER.findall(values)]
            if numbers:
                _GRADIENT_CHECKS.append((max(numbers), report.nodeid, label[len("worst relative error"):].strip()))


def pytest_terminal_summary(terminalreporter):
    if _GRADIENT_CHECKS:
        worst, nodeid, label = max(_GRADIENT_CHECKS)
        terminalreporter.write_sep("-", "gradient checks")
        terminalreporter.write_line(
            f"{len(_GRADIENT_CHECKS)} gradient checks (float64, centered differences); "
            f"worst relative error {worst:.2e} in {nodeid} ({label})"
        )
    if _SCREENSHOTS:
        terminalreporter.write_sep("-", "report screenshots")
        for path in _SCREENSHOTS:
            terminalreporter.write_line(path)
