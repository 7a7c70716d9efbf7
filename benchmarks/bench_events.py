"""How long does encoding a corpus take? Target: 100 typical files in under 5 s on one core.

    python benchmarks/bench_events.py [--files 100] [--notes 3000] [DIR]

Without DIR it writes ``--files`` synthetic MIDI files into a temporary folder first: two piano
tracks (right and left hand), ``--notes`` notes in all, random pitches, velocities and lengths,
sustain-pedal messages and a tempo track, about what a performed piano piece of a few minutes
holds. Then it times ``load_folder`` in normalized and in raw mode, and ``midi_to_notes``.
"""
import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import mido

from lstm_from_scratch.music.events import EventSettings, load_folder, midi_files, midi_to_notes


def synthetic_piece(path, notes, rng):
    """Write a two-hand piano piece of ``notes`` notes to ``path``."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo_track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=rng.randint(400_000, 700_000))])
    midi.tracks.append(tempo_track)
    for low, high in [(55, 96), (28, 60)]:
        timed = []
        tick = 0
        for _ in range(notes // 2):
            tick += rng.choice([0, 0, 60, 120, 120, 240, 480]) + rng.randint(-10, 10)
            tick = max(tick, 0)
            pitch = rng.randint(low, high)
            timed.append((tick, mido.Message("note_on", note=pitch, velocity=rng.randint(20, 110))))
            timed.append((tick + rng.randint(30, 900), mido.Message("note_off", note=pitch, velocity=64)))
            if rng.random() < 0.05:
                timed.append((tick, mido.Message("control_change", control=64, value=rng.choice([0, 127]))))
        timed.sort(key=lambda item: item[0])
        track = mido.MidiTrack()
        now = 0
        for at, message in timed:
            track.append(message.copy(time=at - now))
            now = at
        midi.tracks.append(track)
    midi.save(path)


def time_it(label, function):
    """Run ``function``; print wall-clock seconds and CPU seconds (the CPU figure does not grow
    when other programs share the core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    print(f"{label:44s} {time.perf_counter() - wall:6.2f} s wall {time.process_time() - cpu:6.2f} s CPU")
    return result


def run(folder):
    files = midi_files(folder)
    print(f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    sequences, errors = time_it("load_folder, normalized (default settings)", lambda: load_folder(folder))
    time_it("load_folder, raw", lambda: load_folder(folder, EventSettings(raw=True)))
    time_it("midi_to_notes on every file", lambda: [midi_to_notes(f) for f in files])
    chunks = sum(len(sequence.chunks) for sequence in sequences)
    print(f"{chunks} chunks from {len(sequences)} pieces, {len(errors)} skipped")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", help="a folder of MIDI files (default: synthetic files)")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--notes", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.folder:
        run(Path(args.folder))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        rng = random.Random(0)
        for number in range(args.files):
            synthetic_piece(Path(folder) / f"piece{number:03d}.mid", args.notes, rng)
        run(Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
