"""Run every ```python block of every tutorial, in order, as one test per block.

Sybil (a well-kept library for executable documentation) reads each Markdown file, and the blocks of one
file share a namespace, so a tutorial reads top to bottom like a notebook. Each tutorial runs in its own
temporary folder, so the files it writes never land in the repository.
"""
import os

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser


@pytest.fixture(scope="module")
def tutorial_folder(tmp_path_factory):
    """A fresh working folder per tutorial; the previous working directory is restored afterwards."""
    folder = tmp_path_factory.mktemp("tutorial")
    previous = os.getcwd()
    os.chdir(folder)
    os.environ.setdefault("MPLBACKEND", "Agg")
    yield folder
    os.chdir(previous)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser()],
    patterns=["*.md"],
    fixtures=["tutorial_folder"],
).pytest()
