"""Run every ```python block of every tutorial, in order, as one test per block.

Sybil (a well-kept library for executable documentation) reads each Markdown file, and the blocks of one
file share a namespace, so a tutorial reads top to bottom like a notebook. Each tutorial runs in its own
temporary folder, so the files it writes never land in the repository.

Sybil's skip comments let a tutorial skip blocks that need an optional package, for example
``<!-- skip: start if(torch is None, reason="...") -->`` up to ``<!-- skip: end -->`` (tutorial 12).
Those blocks are reported as skipped, not passed.
"""
import os
import sys
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

# Tutorial 12 imports torch_music_lstm.py, which sits in this folder, while it runs in another one.
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    fixtures=["tutorial_folder"],
).pytest()
