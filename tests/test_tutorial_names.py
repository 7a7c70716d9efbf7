"""Every `lstm_from_scratch.` name a tutorial or the README mentions must exist.

Tutorials rot when the code moves under them. Executing their code blocks catches most of it; this test
catches the names in the prose too (for example "read `lstm_from_scratch.nn.lstm.LSTM.backward`").
"""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(ROOT.glob("tutorials/*.md")) + [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
NAME = re.compile(r"\blstm_from_scratch(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def resolve(dotted):
    """Import the longest module prefix of `dotted`, then follow attributes; raise if any part is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def mentioned_names():
    found = []
    for document in DOCUMENTS:
        if document.exists():
            for name in sorted(set(NAME.findall(document.read_text(encoding="utf-8")))):
                found.append((document.name, name.rstrip(".")))
    return found


def test_the_documents_mention_the_package():
    # Without this, a renamed README or an empty tutorials folder would quietly check nothing.
    missing = [document.name for document in DOCUMENTS if not document.exists()]
    assert not missing, f"documents not found: {missing}"
    assert len(DOCUMENTS) >= 12  # README, ARCHITECTURE and the ten tutorials
    assert "README.md" in {document for document, _ in mentioned_names()}


@pytest.mark.parametrize("document, name", mentioned_names())
def test_mentioned_name_exists(document, name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{document} mentions {name}, which does not exist: {error}")
