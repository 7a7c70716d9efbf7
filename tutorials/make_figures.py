"""Make the PNG figures the tutorials show, into tutorials/figures/.

Usage (from the repository root)::

    python tutorials/make_figures.py          # every tutorial that has figures
    python tutorials/make_figures.py 03 06    # only these tutorials

A figure must come from the tutorial's own code, so nothing here draws anything. Each function below
runs the ```python blocks of one tutorial, top to bottom in one namespace, in a fresh temporary folder,
exactly as the test suite does (tutorials/conftest.py). The tutorial saves its figures under
``figures/`` in that folder, and this script copies the PNGs it names into tutorials/figures/, each
written to a temporary file first and then moved into place.
"""
import os
import re
import sys
import tempfile
from pathlib import Path

from lstm_from_scratch.atomic import atomic_write_bytes

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def run_tutorial(prefix, names):
    """Run the tutorial whose file name starts with ``prefix`` and copy its figures ``names`` (PNG file
    names under its ``figures/`` folder) into tutorials/figures/. Returns the list of paths written."""
    matches = sorted(HERE.glob(f"{prefix}-*.md"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one tutorial named {prefix}-*.md in {HERE}, found {matches}")
    source = matches[0].read_text(encoding="utf-8")
    blocks = PYTHON_BLOCK.findall(source)
    previous = os.getcwd()
    os.environ.setdefault("MPLBACKEND", "Agg")
    written = []
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            namespace = {"__name__": f"tutorial_{prefix}"}
            for number, block in enumerate(blocks, 1):
                exec(compile(block, f"{matches[0].name}, python block {number}", "exec"), namespace)
        finally:
            os.chdir(previous)
        FIGURES.mkdir(exist_ok=True)
        for name in names:
            made = Path(folder) / "figures" / name
            if not made.exists():
                raise FileNotFoundError(f"{matches[0].name} did not write figures/{name}")
            target = FIGURES / name
            atomic_write_bytes(target, made.read_bytes())
            written.append(target)
    return written


def tutorial_01():
    """Tutorial 1: the vocabulary sizes, raw against normalized, and two piano rolls (one with the pedal)."""
    return run_tutorial("01", ["01-vocabulary.png", "01-piano-roll.png", "01-pedal.png"])


def tutorial_03():
    """Tutorial 3: the gates of a hand-wired LSTM over 20 tokens."""
    return run_tutorial("03", ["03-gate-activations.png"])


def tutorial_04():
    """Tutorial 4: how far back the gradient reaches, for three forget biases."""
    return run_tutorial("04", ["04-gradient-over-time.png"])


def tutorial_05():
    """Tutorial 5: the error of one-sided and centered differences against the step size eps."""
    return run_tutorial("05", ["05-error-vs-eps.png"])


def tutorial_06():
    """Tutorial 6: the starting loss against the scale of the logits."""
    return run_tutorial("06", ["06-loss-vs-logit-scale.png"])


def run_full(prefix, names):
    """``run_tutorial`` with ``LSTM_TUTORIAL_FULL=1``: tutorials that train a net read it and use a
    larger config (more tunes, more hidden units, more epochs) than the quick one the tests run."""
    previous = os.environ.get("LSTM_TUTORIAL_FULL")
    os.environ["LSTM_TUTORIAL_FULL"] = "1"
    try:
        return run_tutorial(prefix, names)
    finally:
        if previous is None:
            del os.environ["LSTM_TUTORIAL_FULL"]
        else:
            os.environ["LSTM_TUTORIAL_FULL"] = previous


def tutorial_07():
    """Tutorial 7: one LSTM trained with SGD (two learning rates), RMSprop and Adam."""
    return run_full("07", ["07-optimizer-comparison.png"])



def tutorial_08():
    """Tutorial 8: training and validation loss of an LSTM that over-fits the built-in tunes."""
    return run_full("08", ["08-overfitting.png"])


def tutorial_09():
    """Tutorial 9: next-chunk probabilities at three temperatures, and a generated piece."""
    return run_full("09", ["09-temperature.png", "09-sample.png"])


def tutorial_10():
    """Tutorial 10: the gates of a trained LSTM over a tune, its note-on and pitch units, and which
    earlier chunks a prediction depends on."""
    return run_tutorial("10", ["10-gate-activations.png", "10-units.png", "10-saliency.png",
                               "10-horizon.png"])

TUTORIALS = {"01": tutorial_01, "03": tutorial_03, "04": tutorial_04, "05": tutorial_05, "06": tutorial_06,
             "07": tutorial_07, "08": tutorial_08, "09": tutorial_09,
             "10": tutorial_10}


def main(argv):
    wanted = argv or sorted(TUTORIALS)
    unknown = [number for number in wanted if number not in TUTORIALS]
    if unknown:
        print(f"no figures for tutorial(s) {', '.join(unknown)}; known: {', '.join(sorted(TUTORIALS))}")
        return 2
    for number in wanted:
        for path in TUTORIALS[number]():
            print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
