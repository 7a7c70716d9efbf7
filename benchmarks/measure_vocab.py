"""Vocabulary size and the share of tokens seen once, for several event settings.

    python benchmarks/measure_vocab.py DIR              # every *.mid / *.midi under DIR
    python benchmarks/measure_vocab.py --builtin        # the built-in corpus (music/corpus.py)
    python benchmarks/measure_vocab.py DIR --humanize 0 # the same files, "performed" (see below)
    python benchmarks/measure_vocab.py DIR --tempo-pedal # tempo and pedal choices (grid 4, cap 4, 4 bins)

For each setting it prints the number of distinct chunks (the vocabulary size V), the share of them
seen only once (a model cannot learn a token it sees once), and the number of chunks in all. Each
file is parsed once and then encoded with every setting.

``--humanize SEED`` simulates a performance of score-like files: every note time moves by a random
amount (Gaussian, 1/40 beat), and velocities vary around a slowly drifting level (Gaussian, 12 around
a level in 40..100). It is a stand-in for performed piano MIDI when none is at hand; say so when
quoting the figures.
"""
import argparse
import random
import sys
import warnings
from collections import Counter

import mido

from lstm_from_scratch.errors import LstmMusicError
from lstm_from_scratch.music.events import EventSettings, midi_files, mido_to_chunks
from lstm_from_scratch.music.midi_safety import read_midi_file

SETTINGS = [EventSettings(raw=True)] + [
    EventSettings(grid=grid, max_delta_beats=cap, velocity_bins=bins)
    for grid, cap, bins in [
        (4, 4.0, 1), (4, 4.0, 4), (4, 4.0, 8), (4, 4.0, 32), (4, 2.0, 4), (4, 8.0, 4),
        (8, 4.0, 4), (12, 4.0, 4), (12, 4.0, 1), (24, 4.0, 4), (4, 1.0, 4), (2, 4.0, 4),
    ]
]
# The tempo and pedal choices of normalized mode, on the default grid, cap and velocity bins.
TEMPO_PEDAL_SETTINGS = [EventSettings(raw=True), EventSettings(raw=True, tempo_map="drop", pedal="drop")] + [
    EventSettings(tempo_map=tempo_map, tempo_bins=bins, pedal=pedal)
    for tempo_map, bins in [("drop", 8), ("main", 8), ("keep", 4), ("keep", 8), ("keep", 16)]
    for pedal in ("drop", "fold", "keep")
]


def humanize(midi, rng):
    """A copy of ``midi`` with jittered note times and drifting velocities (see the module docstring)."""
    sigma = midi.ticks_per_beat / 40
    level = 70.0
    result = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
    for track in midi.tracks:
        timed = []
        tick = 0
        for message in track:
            tick += message.time
            if message.type in ("note_on", "note_off"):
                moved = max(0, round(tick + rng.gauss(0, sigma)))
                if message.type == "note_on" and message.velocity > 0:
                    level = min(100.0, max(40.0, level + rng.gauss(0, 3)))
                    velocity = min(127, max(1, round(rng.gauss(level, 12))))
                    message = message.copy(velocity=velocity)
                timed.append((moved, message))
            else:
                timed.append((tick, message))
        timed.sort(key=lambda item: item[0])
        new_track = mido.MidiTrack()
        now = 0
        for tick, message in timed:
            new_track.append(message.copy(time=tick - now))
            now = tick
        result.tracks.append(new_track)
    return result


def describe(settings, tempo_pedal=False):
    if tempo_pedal:
        tempo = settings.tempo_map + (f" {settings.tempo_bins} bins" if settings.tempo_map != "drop" and not settings.raw else "")
        return f"{'raw' if settings.raw else 'normalized'}  tempo {tempo:12s} pedal {settings.pedal}"
    if settings.raw:
        return "raw"
    return f"grid={settings.grid:<3d} cap={settings.max_delta_beats:g} beats  bins={settings.velocity_bins}"


def measure(sequences_by_setting, tempo_pedal=False):
    """Rows ``(setting, vocabulary size, share seen once, number of chunks)``."""
    rows = []
    for settings, sequences in sequences_by_setting:
        counts = Counter(chunk for sequence in sequences for chunk in sequence.chunks)
        once = sum(1 for count in counts.values() if count == 1)
        rows.append((describe(settings, tempo_pedal), len(counts), once / max(1, len(counts)),
                     sum(counts.values())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", help="a folder of MIDI files")
    parser.add_argument("--builtin", action="store_true", help="measure the built-in corpus")
    parser.add_argument("--humanize", type=int, metavar="SEED", help="simulate performed timing and velocity")
    parser.add_argument("--try", dest="extra", action="append", default=[], metavar="GRID:CAP:BINS",
                        help="measure these settings instead of the standard list, e.g. --try 4:2:4 (repeatable)")
    parser.add_argument("--tempo-pedal", action="store_true",
                        help="measure the tempo and pedal choices instead of grid, cap and bins")
    args = parser.parse_args(argv)
    settings_list = TEMPO_PEDAL_SETTINGS if args.tempo_pedal else SETTINGS
    if args.extra:
        settings_list = [EventSettings(raw=True)] + [
            EventSettings(grid=int(grid), max_delta_beats=float(cap), velocity_bins=int(bins))
            for grid, cap, bins in (text.split(":") for text in args.extra)]
    if args.builtin:
        from lstm_from_scratch.music import corpus

        by_setting = [(settings, corpus.builtin_sequences(settings)) for settings in settings_list]
        source = "built-in corpus"
    elif args.folder:
        parsed, skipped = [], 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in midi_files(args.folder):
                try:
                    parsed.append((path, read_midi_file(path)))
                except LstmMusicError:
                    skipped += 1
        if args.humanize is not None:
            rng = random.Random(args.humanize)
            parsed = [(path, humanize(midi, rng)) for path, midi in parsed]
        by_setting = []
        for settings in settings_list:
            sequences = []
            for path, midi in parsed:
                try:
                    sequences.append(mido_to_chunks(midi, settings, path))
                except LstmMusicError:
                    pass
            by_setting.append((settings, sequences))
        source = f"{args.folder}: {len(parsed)} files, {skipped} skipped"
        if args.humanize is not None:
            source += f", humanized (seed {args.humanize})"
    else:
        parser.error("give a folder or --builtin")
    print(source)
    width = 48 if args.tempo_pedal else 36
    print(f"{'settings':{width}s} {'vocab':>8s} {'seen once':>10s} {'chunks':>10s}")
    for name, size, once, total in measure(by_setting, args.tempo_pedal):
        print(f"{name:{width}s} {size:8d} {once:10.1%} {total:10d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
