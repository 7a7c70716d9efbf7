"""`lstm-music demo` on the built-in corpus, with the hidden --tiny config so it runs in seconds."""
import os

import mido

from lstm_from_scratch import cli


def test_tiny_demo_writes_every_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--tiny", "--out", str(out)]) == 0
    for name in ("sample.mid", "sample.txt", "sample.wav", "sample.png", "loss.png", "best.npz",
                 "last.npz", "history.json", "history.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sample.wav").read_bytes()[:4] == b"RIFF"
    notes = [m for t in mido.MidiFile(out / "sample.mid").tracks for m in t if m.type == "note_on"]
    assert notes
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "unigram" in printed
    assert f"open {out / 'sample.wav'}" in printed

    # The "wrote:" list names every file the demo wrote, each once, the page first; and the last
    # line is the page's path (issue 18: last.npz, history.json and history.csv were left out).
    lines = printed.splitlines()
    listed = lines[lines.index("wrote:") + 1:]
    listed = [line.strip() for line in listed[:next(k for k, line in enumerate(listed) if not line.startswith("  "))]]
    assert sorted(listed) == sorted(str(out / name) for name in os.listdir(out))
    assert listed[0] == str(out / "report.html") and listed[1] == str(out / "sample.wav")
    assert lines[-1] == f"see and hear what the net learned: open {out / 'report.html'} in a browser"
