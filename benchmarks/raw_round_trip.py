"""The raw round trip on real MIDI files: encode --raw, decode, and compare what a listener hears.

    python benchmarks/raw_round_trip.py DIR_OR_FILE [...]     # every *.mid / *.midi under each DIR
    python benchmarks/raw_round_trip.py --builtin              # the built-in corpus

For each file that encodes, it decodes the raw chunks to a new MIDI file and checks that the notes
come out at the same times in seconds (as the keys are played, and as they sound with the sustain
pedal), that the sustain pedal is down at the same times, and that encoding the new file gives the
very same chunks, so the same tempo map and pedal events. It prints the files that differ and a
summary. Files that cannot be encoded (no notes, broken) are counted as skipped.
"""
import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.music import corpus, events

RAW = events.EventSettings(raw=True)


def differences(path, out):
    """The names of the checks on which ``path`` and its raw round trip through ``out`` differ."""
    piece = events.midi_to_chunks(path, RAW)
    events.chunks_to_midi(piece.chunks, out, ticks_per_beat=piece.ticks_per_beat)
    checks = {
        "notes in seconds": events.midi_to_notes(out) == events.midi_to_notes(path),
        "notes as heard": events.midi_to_notes(out, pedal=True) == events.midi_to_notes(path, pedal=True),
        "pedal in seconds": events.midi_to_pedal(out) == events.midi_to_pedal(path),
        "chunks (tempo map, pedal events)": events.midi_to_chunks(out, RAW).chunks == piece.chunks,
    }
    return [name for name, same in checks.items() if not same]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="*", help="MIDI files or folders")
    parser.add_argument("--builtin", action="store_true", help="the built-in corpus")
    args = parser.parse_args(argv)
    files = sorted(corpus.builtin_midi_dir().glob("*.mid")) if args.builtin else []
    for source in map(Path, args.sources):
        files += events.midi_files(source) if source.is_dir() else [source]
    if not files:
        parser.error("give MIDI files or folders, or --builtin")
    exact = differ = skipped = 0
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # repaired files warn; they are measured all the same
        for path in files:
            try:
                failed = differences(path, Path(folder) / "out.mid")
            except LstmMusicError as error:
                skipped += 1
                print(f"skipped {error}")
                continue
            if failed:
                differ += 1
                print(f"differs: {path}: {', '.join(failed)}")
            else:
                exact += 1
    print(f"{exact} exact, {differ} differ, {skipped} skipped, of {len(files)} files")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
