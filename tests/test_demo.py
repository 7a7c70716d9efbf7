"""`lstm-music demo` on the built-in corpus, with the hidden --tiny config so it runs in seconds."""
import mido

from lstm_from_scratch import cli


def test_tiny_demo_writes_every_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--tiny", "--out", str(out)]) == 0
    for name in ("sample.mid", "sample.txt", "sample.wav", "sample.png", "loss.png", "best.npz",
                 "last.npz", "history.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sample.wav").read_bytes()[:4] == b"RIFF"
    notes = [m for t in mido.MidiFile(out / "sample.mid").tracks for m in t if m.type == "note_on"]
    assert notes
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "unigram" in printed
    assert f"open {out / 'sample.wav'}" in printed
