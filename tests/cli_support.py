"""What the command-line tests share: a tiny model's options, small MIDI tunes, the one-line error check.

Imported as ``from cli_support import ...`` (pytest puts this folder on ``sys.path``, since tests/ is not
a package).
"""
import contextlib

import mido
import pytest

# A model and batches small enough that a training run takes a fraction of a second.
TINY = ["--hidden", "8", "--seq-len", "8", "--batch-size", "8", "--lr", "0.01"]


def write_tune(path, pitches, beat=240):
    """A one-track MIDI file playing `pitches` one after another, each `beat` ticks long."""
    midi = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=beat))
    midi.save(path)


def write_tunes(folder):
    """Five tunes in `folder`: one arpeggio, each starting on a different note. Returns `folder`."""
    pattern = [60, 64, 67, 72, 67, 64]
    for k in range(5):
        write_tune(folder / f"tune{k}.mid", (pattern[k:] + pattern[:k]) * 8)
    return folder


def one_error_line(capsys):
    """The captured stderr, asserted to be exactly one line starting with 'error:'."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@contextlib.contextmanager
def placeholder_reports():
    """While inside: `train` writes a one-line placeholder instead of the real report.html.

    Making the page takes seconds (figures, sounds), and the command tests train dozens of tiny
    runs; test_report.py checks the real page, also after `train`.
    """
    from lstm_from_scratch import report

    def placeholder(run_dir, sequences, dataset=None):
        path = run_dir / report.REPORT_FILE
        path.write_text("<!DOCTYPE html><title>placeholder</title>\n")
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "write_report", placeholder)
        yield
