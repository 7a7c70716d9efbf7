"""The `lstm-music` command: the only place that parses arguments or prints for people.

Every subcommand is a small function ``run_<name>(args)`` that calls the library and reports what
it did. Errors the library raises on purpose (``LstmMusicError``) and file-system errors become one
line on stderr, ``error: <file>: <reason>``, and exit status 1; bad arguments exit 2; Ctrl-C,
SIGTERM or SIGHUP during training saves the run and exits 128 + the signal's number (130 for Ctrl-C).
"""
import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

# Our matrices are small (a batch of 32 by a few hundred units): a second BLAS thread costs more in
# hand-offs than it saves, and when the cores are busy it made a training step up to 6x slower in
# our measurements. So one thread, unless the user says otherwise. This must run before NumPy loads.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

from .engines import describe
from .errors import DataError, LstmMusicError, MidiWarning

EXIT_INPUT, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# The largest --hidden, --layers or --embedding we take. Far beyond any memory (a 100,000-unit LSTM
# needs 160 GB of weights): bigger numbers would only fail later, inside NumPy, with a traceback.
MAX_SIZE = 100_000

# Learning rates `compare` uses unless told otherwise. Chosen on the built-in corpus (LSTM 64,
# --transpose 5, clip 5; 4 epochs when every key was stored, about 40 of today's): the best of a few
# tries each, and README's comparison at 40 epochs still shows them in a fair race. SGD (momentum 0.9) needs a far
# larger rate than the adaptive methods, which divide each step by a running gradient size.
COMPARE_LRS = {"sgd": 2.0, "adam": 0.01, "rmsprop": 0.01}

# `train` moves each window into a random key, up to this many semitones, unless told otherwise: on
# the Bach chorales it beat the same time budget without it, which over-fitted (benchmarks/README.md,
# "Training on a real folder").
TRAIN_TRANSPOSE = 5

# The demo: small enough for a short wait on two cores, big enough to beat the unigram baseline.
# Moving each training tune into other keys (--transpose) is what lets a net trained on a dozen tunes
# predict the held-out ones: without it the validation loss stays near the baseline. Each epoch is
# one pass over the tunes' windows, each in a random key, so it takes many short epochs.
DEMO_MODEL = {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 128},
                                            {"type": "dropout", "rate": 0.3}], "output": "sequence"}
DEMO_TRAINING = {"optimizer": "adam", "lr": 0.005, "epochs": 40, "batch_size": 32, "seq_len": 32,
                 "step": 8, "clip": 5.0, "seed": 0, "val_fraction": 0.15, "transpose": 5}
TINY_MODEL = {"input": "onehot", "layers": [{"type": "lstm", "hidden_size": 8}], "output": "sequence"}
TINY_TRAINING = {**DEMO_TRAINING, "epochs": 1, "seq_len": 8, "step": 32, "transpose": 0}
# What the demo writes, in the order a user would open them: the page that shows it all, the piece
# to hear and see, the training curves and history, the checkpoints.
DEMO_FILES = ("report.html", "sample.wav", "sample.mid", "sample.txt", "sample.png", "loss.png",
              "history.csv", "history.json", "best.npz", "last.npz")


class UsageError(Exception):
    """Arguments that parse but do not fit together (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, ``error: ...``, instead of the usage text."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def say(text=""):
    print(text, flush=True)


def warn(text):
    print(f"warning: {text}", file=sys.stderr, flush=True)


def output_path(path, inputs=()):
    """``Path(path)``, checked before anything is read or written.

    Raises ``UsageError`` when ``path`` is a folder, when its folder does not exist (a typo in a
    folder's name should not quietly make a new folder), when it lies under a file, or when it is the
    same file as one of ``inputs``: writing it would fail with a confusing message, or replace the input.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name the file to write")
    for source in inputs:
        if source is None or not (path.exists() and Path(source).exists()):
            continue
        if os.path.samefile(path, source):
            raise UsageError(f"{path} is also an input; write to another file so the input is kept")
    check_folder(path.parent)
    if not path.parent.is_dir():
        raise UsageError(f"the folder {path.parent} does not exist; make it first, or write elsewhere")
    return path


def check_folder(folder):
    """``Path(folder)``; ``UsageError`` if it, or the nearest of its parents that exists, is a file."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{parent} is a file, not a folder")
            break
    return folder


def refuse_existing_run(run_dir, replaceable=None, hint=""):
    """``UsageError`` if ``run_dir`` already holds a run's checkpoints: a new run would replace them.

    ``replaceable(meta)`` may accept the run found there (the demo replaces an earlier demo).
    """
    found = [name for name in ("last.npz", "best.npz") if (Path(run_dir) / name).exists()]
    if not found:
        return
    if replaceable is not None:
        from .checkpoint import CheckpointError, load_checkpoint
        try:
            if replaceable(load_checkpoint(Path(run_dir) / found[0])[1]):
                return
        except CheckpointError:
            pass
    raise UsageError(f"{run_dir} already holds a training run ({found[0]}); to keep it, choose "
                     f"another folder{hint}")


def path_argument(text):
    """The argparse type of every path argument: an empty one would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return text


def _show_progress():
    return sys.stderr.isatty()  # bars in a terminal; nothing in logs and tests


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------

def _add_event_options(parser):
    group = parser.add_argument_group("event text (how MIDI becomes chunks)")
    group.add_argument("--raw", action="store_true", default=None,
                       help="keep the files' own ticks, velocities, tempo changes and pedals (huge vocabulary)")
    group.add_argument("--grid", type=int, metavar="N", help="time steps per beat (default 4)")
    group.add_argument("--velocity-bins", type=int, metavar="N", help="velocity levels (default 4)")
    group.add_argument("--max-delta-beats", type=float, metavar="X",
                       help="longest silence between events, in beats (default 4)")
    group.add_argument("--keep-drums", action="store_true", default=None,
                       help="keep MIDI channel 10 (drums)")
    group.add_argument("--tempo-map", choices=["keep", "main", "drop"],
                       help="tempo chunks: keep every change, only the main tempo, or none "
                            "(default: keep with --raw, else main)")
    group.add_argument("--tempo-bins", type=int, metavar="N",
                       help="tempo levels between 40 and 208 bpm (default 8; not with --raw)")
    group.add_argument("--pedal", choices=["fold", "keep", "drop"],
                       help="sustain pedal: keep as chunks, fold into the notes' lengths, or drop (default keep)")


def _add_model_options(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--preset", choices=["deep-improvisation", "piano-composer"],
                       help="a seed project's architecture, optimizer, learning rate and batch size")
    group.add_argument("--hidden", type=int, metavar="N", help="LSTM units per layer (default 128)")
    group.add_argument("--layers", type=int, metavar="N", help="stacked LSTM layers (default 1)")
    group.add_argument("--dropout", type=float, metavar="P", help="dropout after each LSTM (default 0)")
    group.add_argument("--embedding", type=int, metavar="DIM",
                       help="learn a DIM-sized embedding instead of one-hot input")


def _add_training_options(parser, optimizer=True):
    group = parser.add_argument_group("training")
    if optimizer:
        group.add_argument("--optimizer", choices=["sgd", "adam", "rmsprop"], help="default adam")
        group.add_argument("--lr", type=float, help="learning rate (default 0.003)")
    group.add_argument("--epochs", type=int, help="passes over the training data (default 10, or no "
                                                    "limit with --minutes)")
    group.add_argument("--minutes", type=float, metavar="M",
                       help="train for M minutes, validating every minute; best.npz keeps the best")
    group.add_argument("--patience", type=int, metavar="P",
                       help="stop when P validations in a row have not beaten the best (default: never)")
    group.add_argument("--batch-size", type=int, metavar="B", help="windows per batch (default 32)")
    group.add_argument("--seq-len", type=int, metavar="T", help="window length in chunks (default 32)")
    group.add_argument("--step", type=int, help="distance between window starts (default 4)")
    group.add_argument("--clip", type=float, help="largest gradient norm, 0 = off (default 5)")
    group.add_argument("--seed", type=int, help="fixes weights, split, batches, dropout (default 0)")
    group.add_argument("--val-fraction", type=float, metavar="F",
                       help="share of files held out for validation (default 0.1)")
    group.add_argument("--transpose", type=int, metavar="N",
                       help="move each training window into a random key, up to N semitones up or down, "
                            f"each time it is batched (train: default {TRAIN_TRANSPOSE}; compare: 0)")


def _add_engine_options(parser, training=True):
    group = parser.add_argument_group("engine (which code computes the net; the same numbers to rounding)")
    group.add_argument("--engine", choices=["plain", "fast"],
                       help="plain: nn/lstm.py, the code the tutorials teach; fast: the same net "
                            "rearranged for speed, lstm_from_scratch/fast/ (default fast)")
    if training:
        group.add_argument("--processes", type=int, choices=[1, 2],
                           help="fast engine: 2 computes each batch as two halves, the second in a "
                                "helper process, on two or more cores (default 2); 1: one process")


def build_parser():
    parser = _Parser(
        prog="lstm-music", description="A hand-written NumPy LSTM that learns music from MIDI.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lstm-music demo                      # train, compose, play, plot, report.html\n"
               "  lstm-music train builtin --minutes 2 --out runs/tunes\n"
               "  lstm-music generate runs/tunes/best.npz -o piece.mid --wav --plot\n"
               "  lstm-music COMMAND --help            # the options of one command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train a model on MIDI files")
    train.add_argument("data", metavar="DATA", type=path_argument,
                       help="a folder of MIDI files, one MIDI file, a chunk text file, or 'builtin'")
    _add_model_options(train)
    _add_training_options(train)
    _add_event_options(train)
    _add_engine_options(train)
    train.add_argument("--out", metavar="RUN_DIR", type=path_argument,
                       help="where to write the run (default runs/<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", type=path_argument,
                       help="continue the run in RUN_DIR (only --epochs may change)")
    train.set_defaults(run=run_train)

    generate = commands.add_parser("generate", help="write new music with a trained model")
    generate.add_argument("checkpoint", metavar="CHECKPOINT", type=path_argument,
                          help="a .npz checkpoint or a run folder")
    generate.add_argument("-o", "--out", required=True, metavar="OUT.mid", type=path_argument)
    generate.add_argument("--length", type=int, default=500, help="chunks to generate (default 500)")
    generate.add_argument("--temperature", type=float, default=1.0, help="0 = always the likeliest chunk")
    generate.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest chunks only")
    generate.add_argument("--seed", type=int, default=0,
                          help="default 0, so the same command writes the same piece each time; "
                               "another seed gives another piece")
    generate.add_argument("--prime", metavar="FILE", type=path_argument,
                          help="a .mid or chunk .txt file to start from")
    generate.add_argument("--include-prime", action="store_true", help="put the prime at the start of the output")
    # The note rules are on by default: without them a small net's notes end late or never, and a
    # piece a user asked for should be music. --no-rules gives the seeds' plain roulette wheel, the
    # net alone (tutorial 9 compares the two). --rules, once needed to turn them on, still parses.
    generate.add_argument("--no-rules", dest="rules", action="store_false",
                          help="sample from the net alone, without the note rules")
    generate.add_argument("--rules", dest="rules", action="store_true",
                          help="mask impossible chunks (the default): note-offs only for sounding pitches, and "
                               "end notes and the pedal held longer than --max-held-beats (see generate.NoteRules)")
    generate.add_argument("--max-held-beats", type=float, default=4.0, metavar="X",
                          help="with the rules: end a note held this long (default 4; 0 = never)")
    generate.add_argument("--tempo", type=float, default=120.0, metavar="BPM",
                          help="beats per minute until the net writes a tempo chunk (default 120)")
    generate.add_argument("--wav", action="store_true", help="also write OUT.wav")
    generate.add_argument("--plot", action="store_true", help="also write OUT.png, a piano roll")
    _add_engine_options(generate, training=False)
    generate.set_defaults(run=run_generate)

    compare = commands.add_parser("compare", help="train the same model with several optimizers")
    compare.add_argument("data", metavar="DATA", type=path_argument)
    compare.add_argument("--optimizers", nargs="+", choices=["sgd", "adam", "rmsprop"],
                         default=["sgd", "adam", "rmsprop"])
    compare.add_argument("--lrs", nargs="+", type=float, metavar="LR",
                         help="one learning rate per optimizer, in the same order "
                              f"(default {', '.join(f'{k} {v}' for k, v in COMPARE_LRS.items())})")
    _add_model_options(compare)
    _add_training_options(compare, optimizer=False)
    _add_event_options(compare)
    _add_engine_options(compare)
    compare.add_argument("--out", required=True, metavar="DIR", type=path_argument)
    compare.set_defaults(run=run_compare)

    evaluate = commands.add_parser("evaluate", help="score a trained model on music it did not train on")
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", type=path_argument,
                          help="a .npz checkpoint or a run folder")
    evaluate.add_argument("data", metavar="DATA", type=path_argument,
                          help="a folder of MIDI files, one MIDI file, a chunk text file, or 'builtin'")
    evaluate.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    _add_engine_options(evaluate, training=False)
    evaluate.set_defaults(run=run_evaluate)

    render = commands.add_parser("render", help="synthesize a MIDI file to WAV")
    render.add_argument("midi", metavar="IN.mid", type=path_argument)
    render.add_argument("-o", "--out", required=True, metavar="OUT.wav", type=path_argument)
    render.set_defaults(run=run_render)

    plot = commands.add_parser("plot", help="draw a MIDI file as a piano roll")
    plot.add_argument("midi", metavar="IN.mid", type=path_argument)
    plot.add_argument("-o", "--out", required=True, metavar="roll.png", type=path_argument)
    plot.set_defaults(run=run_plot)

    encode = commands.add_parser("encode", help="MIDI file or folder -> chunk text")
    encode.add_argument("source", metavar="IN.mid|DIR", type=path_argument)
    encode.add_argument("-o", "--out", required=True, metavar="OUT.txt", type=path_argument)
    _add_event_options(encode)
    encode.set_defaults(run=run_encode)

    decode = commands.add_parser("decode", help="chunk text -> MIDI")
    decode.add_argument("source", metavar="IN.txt", type=path_argument)
    decode.add_argument("-o", "--out", required=True, metavar="OUT.mid", type=path_argument)
    decode.add_argument("--tempo", type=float, default=120.0, metavar="BPM",
                        help="beats per minute until a piece's first tempo chunk (default 120)")
    decode.set_defaults(run=run_decode)

    export = commands.add_parser("export", help="write a trained model's weights under PyTorch's names")
    export.add_argument("checkpoint", metavar="CHECKPOINT", type=path_argument,
                        help="a .npz checkpoint or a run folder")
    export.add_argument("-o", "--out", required=True, metavar="OUT.npz", type=path_argument,
                        help="the weights; the architecture and vocabulary go beside it, in OUT.json")
    export.set_defaults(run=run_export)

    import_ = commands.add_parser("import", help="turn an export (trained on in PyTorch, say) back into a checkpoint")
    import_.add_argument("exported", metavar="EXPORT.npz", type=path_argument,
                         help="weights written by export (or by PyTorch), with EXPORT.json beside them")
    import_.add_argument("-o", "--out", required=True, metavar="CHECKPOINT.npz", type=path_argument,
                         help="a checkpoint for lstm-music generate")
    import_.set_defaults(run=run_import)

    report = commands.add_parser("report", help="(re)write RUN_DIR/report.html, the page of a run")
    report.add_argument("run_dir", metavar="RUN_DIR", type=path_argument,
                        help="a run folder, written by train or demo")
    report.add_argument("data", metavar="DATA", nargs="?", type=path_argument,
                        help="the pieces the run trained on, as given to train (default: the built-in tunes)")
    report.set_defaults(run=run_report)

    demo = commands.add_parser("demo", help="train a small model on the built-in tunes and play it")
    demo.add_argument("--out", default="lstm-music-demo", metavar="DIR", type=path_argument,
                      help="default ./lstm-music-demo")
    demo.add_argument("--epochs", type=int, help=f"default {DEMO_TRAINING['epochs']}")
    _add_engine_options(demo)
    demo.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # for the test suite
    demo.set_defaults(run=run_demo)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 bad input, 2 bad usage, 130 Ctrl-C)."""
    for stream in (sys.stdout, sys.stderr):
        # A path the terminal cannot show (an accent on an ASCII terminal, a file name that is not
        # UTF-8) is printed as \xe9 rather than ending the run with a UnicodeEncodeError.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with warnings.catch_warnings():
            # Every warning (a repaired MIDI file, say) becomes one "warning: ..." line as it happens.
            warnings.simplefilter("always", MidiWarning)
            warnings.showwarning = lambda message, *rest, **keywords: warn(str(message))
            return args.run(args) or 0
    except UsageError as error:
        return _fail(f"{parser.prog} {args.command}: {error}", EXIT_USAGE)
    except LstmMusicError as error:
        return _fail(str(error), EXIT_INPUT)
    except BrokenPipeError:
        # The reader went away (`lstm-music train ... | head -1`): stop quietly, as Unix tools do.
        # Point stdout at /dev/null so Python's own flush at exit cannot fail a second time.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # no real file descriptor (under a test's capture)
            pass
        return EXIT_INPUT
    except OSError as error:
        where = error.filename if error.filename is not None else ""
        return _fail(f"{where}: {error.strerror or error}" if where else str(error), EXIT_INPUT)
    except MemoryError as error:
        advice = ("; try a smaller --hidden, --layers, --embedding or --batch-size"
                  if args.command in ("train", "compare") else "")
        return _fail(f"out of memory ({error}){advice}", EXIT_INPUT)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


def _fail(message, status):
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
    return status


# ----------------------------------------------------------------------------------------------
# Building settings from arguments
# ----------------------------------------------------------------------------------------------

def event_settings(args):
    from .music.events import EventSettings
    grid_options = [args.grid, args.velocity_bins, args.max_delta_beats, args.tempo_bins]
    if args.raw and any(option is not None for option in grid_options):
        raise UsageError("--raw keeps the files' own timing; it cannot go with --grid, "
                         "--velocity-bins, --max-delta-beats or --tempo-bins")
    values = {"raw": bool(args.raw), "keep_drums": bool(args.keep_drums)}
    for name in ("grid", "velocity_bins", "max_delta_beats", "tempo_map", "tempo_bins", "pedal"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    try:
        return EventSettings(**values)
    except ValueError as error:
        message = str(error).replace("EventSettings: ", "")  # "tempo_bins must be ..."
        name = message.split(" ", 1)[0]
        if name in values:  # name the flag the user typed
            message = "--" + name.replace("_", "-") + message[len(name):]
        raise UsageError(message) from None


def engine_choice(args, default="fast"):
    """(engine, processes) from --engine and --processes: the fast engine in two processes unless told."""
    engine = args.engine or default
    processes = getattr(args, "processes", None)
    if engine == "plain" and processes == 2:
        raise UsageError("--processes 2 is a fast-engine idea; the plain engine trains in one process")
    return engine, processes or (2 if engine == "fast" else 1)


def model_config(args):
    """A model config dict (without vocab_size) from --preset or --hidden/--layers/--dropout."""
    from .nn.model import PRESETS
    custom = {"--hidden": args.hidden, "--layers": args.layers, "--dropout": args.dropout}
    if args.preset is not None:
        given = [name for name, value in custom.items() if value is not None]
        if given:
            raise UsageError(f"--preset fixes the architecture; leave out {', '.join(given)}")
        config = json.loads(json.dumps(PRESETS[args.preset]))
    else:
        hidden = 128 if args.hidden is None else args.hidden
        layers = 1 if args.layers is None else args.layers
        dropout = 0.0 if args.dropout is None else args.dropout
        for flag, value in (("--hidden", hidden), ("--layers", layers)):
            if not 1 <= value <= MAX_SIZE:
                raise UsageError(f"{flag} must be in 1..{MAX_SIZE:,}, got {value}")
        if not 0 <= dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1), got {dropout}")
        stack = []
        for _ in range(layers):
            stack.append({"type": "lstm", "hidden_size": hidden})
            if dropout > 0:
                stack.append({"type": "dropout", "rate": dropout})
        config = {"input": "onehot", "layers": stack, "output": "sequence"}
    if args.embedding is not None:
        if not 1 <= args.embedding <= MAX_SIZE:
            raise UsageError(f"--embedding must be in 1..{MAX_SIZE:,}")
        config.update(input="embedding", embedding_dim=args.embedding)
    return config


def train_config(args, base=None, **fixed):
    """A TrainConfig from the options given, over `base` (a dict of defaults)."""
    from .nn.model import PRESET_TRAINING
    from .train import ConfigError, TrainConfig
    values = dict(base or {})
    if getattr(args, "preset", None) is not None:
        values.update(PRESET_TRAINING[args.preset])
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    values.update(fixed)
    if getattr(args, "minutes", None) is not None and getattr(args, "epochs", None) is None:
        values["epochs"] = None  # --minutes alone: as many epochs as fit
    try:
        return TrainConfig(**values)
    except ConfigError as error:
        raise UsageError(flag_message(error)) from None


def flag_message(error):
    """A ConfigError's message with its field's name replaced by the option's: "lr ..." -> "--lr ..."."""
    message = str(error)
    if error.field is not None and message.startswith(error.field):
        message = "--" + error.field.replace("_", "-") + message[len(error.field):]
    return message


def load_pieces(data, settings, quiet=False):
    """Load DATA (or the built-in corpus); warnings and skipped files are reported one per line, and
    (unless ``quiet``) what was loaded.

    Returns ``(sequences, settings)``: a chunk text file brings the settings it was made with.
    """
    say_loaded = (lambda text: None) if quiet else say
    from .music import events
    if data == "builtin":
        from .music.corpus import builtin_sequences
        sequences = builtin_sequences(settings)
        # "builtin" always means the corpus inside the package; say so when a folder here has the name.
        here = " (not the folder builtin here: write ./builtin for that)" if Path(data).exists() else ""
        say_loaded(f"loaded the built-in corpus: {count(len(sequences), 'piece')}{here}")
        return sequences, settings
    if Path(data).suffix.lower() == ".txt" and Path(data).is_file():
        # Chunk text is used as written, so the settings are the ones it was made with (its
        # header), or raw for a plain file without a header (the seed projects' format).
        sequences, file_settings = events.read_chunk_text_file(data)
        sequences = [piece for piece in sequences if piece.chunks]
        if not sequences:
            raise DataError(f"{data}: no chunks in this chunk text file")
        file_settings = file_settings or events.EventSettings(raw=True)
        say_loaded(f"loaded {count(len(sequences), 'piece')} from {data} (event settings from the file: "
                   f"{json.dumps(file_settings.to_dict())})")
        return sequences, file_settings
    skipped = []

    def on_skip(error):
        skipped.append(error)
        warn(f"skipped {error}")

    sequences = events.load_data(data, settings, on_skip=on_skip, progress=_show_progress() and not quiet)
    say_loaded(f"loaded {count(len(sequences), 'file')}, skipped {len(skipped)}")
    return sequences, settings


# ----------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------

def format_record(record, epochs):
    """One history record as a line: "epoch 2/10  train 3.012  val 3.201 ..." (inside an epoch,
    "epoch 2/10, batch 340" says how far into it)."""
    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"
    where = f"epoch {record['epoch']}" + ("" if epochs is None else f"/{epochs}")
    if record.get("epochs", record["epoch"]) < record["epoch"]:  # a validation inside the epoch
        where += f", batch {record['batch']}"
    return (f"{where}  train {number(record['train_loss'])}"
            f"  val {number(record['val_loss'])}  ppl {number(record['val_perplexity'], 1)}"
            f"  acc {number(record['val_accuracy'])}"
            f"  (unigram {number(record['baseline_loss'])}, acc {number(record['baseline_accuracy'])})"
            f"  {duration(record['elapsed'])}")


def duration(seconds):
    """Seconds for people: "45 s", "3 min 20 s", "2 h 05 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def count(number, word, plural=None):
    """ "1 file", "3 files", "2 batches": a number with its noun, singular or plural."""
    if number == 1:
        return f"{number:,} {word}"
    return f"{number:,} {plural or word + 's'}"


_clock = time.monotonic  # the CLI's clock for its progress lines (a test may put a fake one here)


class _TrainingReport:
    """What ``train`` prints while the run goes on: every history record, the speed once the first
    batches are done, and outside a terminal (a log file, a notebook cell), where there is no progress
    bar, a line at least every ``INTERVAL`` seconds with the loss, the time taken and the time left."""

    INTERVAL = 30.0

    def __init__(self, epochs, bars):
        self.epochs, self.bars = epochs, bars
        self.last_line = _clock()
        self.speed_told = False

    def write(self, text):
        if self.bars:  # above the progress bar, not through it
            from tqdm import tqdm
            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()
        else:
            say(text)

    def record(self, record):
        self.write(format_record(record, self.epochs))

    def progress(self, status):
        if not self.speed_told and status.session_batches >= 2 and (
                status.session_batches >= 20 or status.session_seconds >= 3):
            per_batch = status.session_seconds / status.session_batches
            self.write(f"speed: {per_batch:.3g} s a batch, about {duration(per_batch * status.batches)} "
                       f"an epoch of {count(status.batches, 'batch', 'batches')}")
            self.speed_told = True
        if not self.bars and _clock() - self.last_line >= self.INTERVAL:
            of = "" if status.epochs is None else f"/{status.epochs}"
            left = "" if status.left is None else f", about {duration(status.left)} left"
            self.write(f"epoch {status.epoch}{of}, batch {status.batch}/{status.batches}: loss "
                       f"{status.loss:.3f}, {duration(status.elapsed)} so far{left}")
            self.last_line = _clock()


def run_train(args):
    from .train import RESUMABLE, check_same_data, data_fingerprint, load_run, run_settings

    if args.resume is not None:
        changed = [name for name in ("preset", "hidden", "layers", "dropout", "embedding", "optimizer",
                                     "lr", "batch_size", "seq_len", "step", "clip", "seed",
                                     "val_fraction", "transpose", "raw", "grid", "velocity_bins",
                                     "max_delta_beats", "keep_drums", "tempo_map", "tempo_bins", "pedal", "out")
                   if getattr(args, name) is not None]
        if changed:
            flags = ", ".join("--" + name.replace("_", "-") for name in changed)
            raise UsageError(f"a resumed run keeps its settings; only --epochs, --minutes and --patience "
                             f"(and --engine, --processes) may change (got {flags})")
        if Path(args.resume).is_file():
            raise UsageError(f"--resume takes the run folder (the one holding last.npz), not {args.resume}")
        path, _, meta = load_run(args.resume)
        settings, config, vocab = run_settings(path, meta)
        # By default the run goes on with the engine it was made with, so that it continues exactly.
        made_with = meta.get("engine") if isinstance(meta.get("engine"), dict) else {}
        engine, processes = engine_choice(args, default=made_with.get("name", "fast"))
        if args.engine is None and args.processes is None and made_with.get("processes") in (1, 2):
            processes = made_with["processes"]
        config = train_config(args, base={**config.to_dict(), **{
            name: getattr(config, name) for name in RESUMABLE if getattr(args, name, None) is None}})
        _refuse_finished(path, meta, config)
        say(describe(engine, processes))
        sequences, settings = load_pieces(args.data, settings)
        # Other data is refused here, saying which pieces differ, before encoding it with the run's
        # vocabulary (which would fail on the first chunk it does not know).
        check_same_data(meta, data_fingerprint(sequences, settings), path, data=args.data)
        dataset = prepare(args.data, sequences, settings, config, vocab=vocab)
        say(f"resuming {path} {where(meta['epoch'], meta['batch'])}")
        return _train_and_report(args.data, dataset, meta["model_config"], config, Path(args.resume), True,
                                 engine=(engine, processes), sequences=sequences)

    engine = engine_choice(args)
    settings = event_settings(args)
    config = train_config(args, base={"transpose": TRAIN_TRANSPOSE})
    model = model_config(args)
    run_dir = check_folder(args.out if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    refuse_existing_run(run_dir, hint=f", or continue it with --resume {run_dir}")
    say(describe(*engine))
    sequences, settings = load_pieces(args.data, settings)
    dataset = prepare(args.data, sequences, settings, config)
    return _train_and_report(args.data, dataset, model, config, run_dir, False, engine=engine,
                             sequences=sequences)


def where(epoch, batch):
    """A saved point for people, counting epochs from 1 as the progress bar does: ``epoch`` finished
    epochs and ``batch`` batches of the next one."""
    return f"at epoch {epoch + 1}, batch {batch}" if batch else f"after epoch {epoch}"


def _refuse_finished(path, meta, config):
    """UsageError when the run in ``path`` has already reached its end under ``config``."""
    if config.epochs is not None and meta["epoch"] >= config.epochs:
        raise UsageError(f"{path} has finished {count(meta['epoch'], 'epoch')} of {config.epochs}; to train "
                         f"more, give --epochs above {meta['epoch']}" +
                         (" or a bigger --minutes" if config.minutes is not None else ""))
    if config.minutes is not None and meta["elapsed"] >= 60 * config.minutes:
        raise UsageError(f"{path} has used its {config.minutes:g} minutes ({duration(meta['elapsed'])}); "
                         f"to train more, give --minutes above {meta['elapsed'] / 60:.1f}")


def prepare(data, sequences, settings, config, vocab=None):
    """``train.prepare_data``, with DATA named in its errors (a --seq-len too long for it, say)."""
    from .train import prepare_data
    try:
        return prepare_data(sequences, settings, config, vocab=vocab)
    except DataError as error:
        raise DataError(f"{data}: {error}") from None


def _describe(dataset, config, run_dir):
    """Say what the run will do, before it starts."""
    pieces, held_out = len(dataset.train_names), len(dataset.val_names)
    keys = ""
    if dataset.transposition is not None:
        keys = f", each moved into a random key (up to {config.transpose} semitones up or down) when batched"
    say(f"data: {count(pieces, 'piece')} to train on and {held_out} held out for validation; "
        f"{count(len(dataset.train_x), 'training window')} of {config.seq_len} chunks{keys}; "
        f"{count(len(dataset.vocab), 'distinct chunk')} (the vocabulary)")
    until = [count(config.epochs, "epoch")] if config.epochs is not None else []
    if config.minutes is not None:
        until.append(f"{config.minutes:g} minutes")
    patience = ("" if config.patience is None else
                f", or once {count(config.patience, 'validation')} in a row have not improved")
    first = " (whichever comes first)" if len(until) > 1 else ""
    validating = (f"validating at each epoch's end and every {duration(config.validate_every)} of training"
                  if len(dataset.val_x) else
                  "no validation windows, so best.npz keeps the lowest training loss")
    say(f"plan: {config.optimizer} at lr {config.lr}, batches of {config.batch_size}, for "
        f"{' or '.join(until)}{first}{patience}; {validating}; saving last.npz at least every "
        f"{duration(config.save_every)}; writing to {run_dir}")


def _train_and_report(data, dataset, model, config, run_dir, resume, quiet=False, engine=("fast", 2),
                      sequences=None):
    from .train import train
    _describe(dataset, config, run_dir)
    bars = _show_progress()
    report = _TrainingReport(config.epochs, bars)
    continue_with = f"lstm-music train {data} --resume {run_dir}"
    try:
        result = train(dataset, model, config, run_dir, progress=bars, on_epoch=report.record,
                       resume=resume, engine=engine[0], processes=engine[1], on_progress=report.progress)
    except KeyboardInterrupt:  # a second signal: stopped at once, mid-batch; the last save stands
        saved = run_dir / "last.npz"
        if saved.exists():
            from .checkpoint import CheckpointError, load_checkpoint
            try:
                meta = load_checkpoint(saved)[1]
                point = f" ({where(meta['epoch'], meta['batch'])})"
            except (CheckpointError, KeyError):
                point = ""
            print(f"interrupted at once: the last save is {saved}{point}; continue with: {continue_with}",
                  file=sys.stderr, flush=True)
        else:
            print("interrupted at once, before the first save", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if result.interrupted:
        print(f"interrupted by {result.stopped}: saved {run_dir / 'last.npz'} "
              f"({where(result.epoch, result.batch)}); continue with: {continue_with}",
              file=sys.stderr, flush=True)
        return 128 + signal.Signals[result.stopped].value
    if not quiet:
        if result.stopped == "minutes":
            why = f"after {config.minutes:g} minutes"
        elif result.stopped == "patience":
            why = f"after {count(config.patience, 'validation')} in a row without improvement"
        else:
            why = f"after {count(result.epoch, 'epoch')}"
        best = min((r["val_loss"] for r in result.history if r["val_loss"] is not None), default=None)
        if best is not None:
            why += f"; best validation loss {best:.3f}"
            if dataset.baseline["cross_entropy"] is not None:
                why += f" (the unigram baseline scores {dataset.baseline['cross_entropy']:.3f})"
        say(f"stopped {why}")
        written = "loss.png, history.csv, history.json, best.npz, last.npz"
        if sequences is not None:
            from .report import write_report
            written = f"{write_report(run_dir, sequences, dataset).name}, {written}"
        say(f"wrote {run_dir}/{written}")
        say(f"make music with: lstm-music generate {run_dir / 'best.npz'} -o piece.mid --wav")
        if sequences is not None:
            say(f"see and hear what the net learned: open {run_dir / 'report.html'} in a browser")
    return 0


# ----------------------------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------------------------

def _tempo(bpm):
    """Beats per minute -> MIDI tempo, microseconds per beat (a 3-byte number: at most 16,777,215,
    so the slowest tempo a MIDI file can hold is about 3.6 beats per minute)."""
    if not 4 <= bpm <= 1000:
        raise UsageError(f"--tempo must be between 4 and 1000 beats per minute, got {bpm}")
    return int(round(60_000_000 / bpm))


def run_generate(args):
    from .generate import load_trained
    if args.length < 1 or args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        raise UsageError("--length and --top-k must be >= 1 and --temperature >= 0")
    for option, value in (("--temperature", args.temperature), ("--max-held-beats", args.max_held_beats)):
        if not math.isfinite(value):
            raise UsageError(f"{option} must be a finite number, got {value}")
    if args.max_held_beats < 0:
        raise UsageError("--max-held-beats must be >= 0")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    tempo = _tempo(args.tempo)
    out = Path(args.out)
    if out.suffix.lower() in (".txt", ".wav", ".png", ".npz"):
        raise UsageError(f"-o names the MIDI file (the .txt, .wav and .png are written next to it), "
                         f"not a {out.suffix} file: {out}")
    checkpoint = Path(args.checkpoint)
    inputs = [checkpoint / "last.npz" if checkpoint.is_dir() else checkpoint, args.prime]
    for path in (out, out.with_suffix(".txt"), out.with_suffix(".wav"), out.with_suffix(".png")):
        output_path(path, inputs)  # none of the files written may replace an input
    trained = load_trained(args.checkpoint, engine_choice(args)[0])
    written = make_piece(trained, output_path(out, inputs), args.length, args.temperature, args.top_k,
                         args.seed, args.prime, args.include_prime, tempo,
                         wav=args.wav, plot=args.plot, rules=args.rules,
                         max_held_beats=args.max_held_beats)
    say("wrote " + ", ".join(str(path) for path in written))
    return 0


def make_piece(trained, out, length, temperature=1.0, top_k=None, seed=0, prime=None,
               include_prime=False, tempo=500_000, wav=False, plot=False, rules=True,
               max_held_beats=4.0):
    """Generate and write OUT.mid and OUT.txt (and OUT.wav, OUT.png); returns the paths written.

    Without a ``prime`` file the piece opens with the note ``default_prime`` draws, so that the
    net's note-off for it ends a note the piece has.
    """
    from .generate import NoteRules, default_prime, generate, prime_from_file, write_piece
    rng = np.random.default_rng(seed)
    if prime is not None:
        prime_ids, skipped = prime_from_file(prime, trained, on_skip=lambda error: warn(f"skipped {error}"))
        if skipped:
            warn(f"{prime}: {skipped} chunks are not in the model's vocabulary and were skipped")
    else:
        prime_ids = default_prime(trained, rng)
    rule = NoteRules(trained.vocab, trained.ticks_per_beat, max_held_beats) if rules else None
    new_ids = generate(trained.model, trained.vocab, prime_ids, length, temperature, top_k, rng, rule)
    ids = prime_ids + new_ids if include_prime or prime is None else new_ids
    _, text_path = write_piece(trained, ids, out, tempo=tempo, name=out.stem)
    written = [out, text_path]
    if wav:
        from .music.synth import render_midi_to_wav
        render_midi_to_wav(out, out.with_suffix(".wav"))
        written.append(out.with_suffix(".wav"))
    if plot:
        from .music.events import midi_to_notes, midi_to_pedal
        from .plots import plot_piano_roll
        plot_piano_roll(midi_to_notes(out), out.with_suffix(".png"), title=out.name, pedal=midi_to_pedal(out))
        written.append(out.with_suffix(".png"))
    return written


# ----------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------

def run_compare(args):
    from .generate import load_trained
    from .plots import plot_optimizer_comparison
    from .atomic import atomic_write_text
    from .train import TrainingDiverged

    if len(set(args.optimizers)) != len(args.optimizers):
        raise UsageError("name each optimizer once in --optimizers")
    lrs = args.lrs or [COMPARE_LRS[name] for name in args.optimizers]
    if len(lrs) != len(args.optimizers):
        raise UsageError(f"--lrs needs one learning rate per optimizer ({len(args.optimizers)})")
    engine = engine_choice(args)
    settings = event_settings(args)
    model = model_config(args)
    out = check_folder(args.out)
    say(describe(*engine))
    sequences, settings = load_pieces(args.data, settings)
    histories, summary = {}, {}
    for name, lr in zip(args.optimizers, lrs):
        # The same seed gives every optimizer the same initial weights, split and batch order.
        config = train_config(args, optimizer=name, lr=lr)
        dataset = prepare(args.data, sequences, settings, config)
        say(f"--- {name}")
        try:
            status = _train_and_report(args.data, dataset, model, config, out / name, False, quiet=True,
                                       engine=engine)
        except TrainingDiverged as error:  # its own message names train's --lr; compare takes --lrs
            raise LstmMusicError(f"{name}: {error.advice('learning rate for it in --lrs')}") from None
        if status:
            return status
        histories[name] = json.loads((out / name / "history.json").read_text())
        summary[name] = {"lr": lr, "train_config": config.to_dict(), "history": histories[name]}
        make_piece(load_trained(out / name / "best.npz", engine[0]), out / f"{name}.mid", 200, seed=config.seed)
    plot_optimizer_comparison(histories, out / "compare.png")
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=1))
    say(f"wrote {out / 'compare.png'}, {out / 'compare.json'} and one sample per optimizer "
        f"({', '.join(f'{name}.mid' for name in histories)})")
    return 0


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------

def run_evaluate(args):
    from .evaluate import score
    from .generate import load_trained
    trained = load_trained(args.checkpoint, engine_choice(args)[0])
    sequences, settings = load_pieces(args.data, trained.settings, quiet=args.json)
    if settings != trained.settings:  # chunk text made with other settings: its chunks mean other things
        theirs, ours = settings.differences(trained.settings)
        raise DataError(f"{args.data} was encoded with other event settings ({theirs}) than "
                        f"{trained.path} ({ours}); encode the MIDI files again, or give them as MIDI")
    try:
        scores = score(trained, sequences)
    except DataError as error:
        raise DataError(f"{args.data}: {error}") from None
    if args.json:
        print(json.dumps({"checkpoint": str(trained.path), "data": str(args.data), **scores}, indent=1))
        return 0
    say(f"{trained.path} on {args.data}: {count(scores['pieces_scored'], 'piece')}, "
        f"{count(scores['windows'], 'window')} of {scores['seq_len']} chunks, "
        f"{count(scores['targets'], 'prediction')}")
    say(f"  cross-entropy {scores['cross_entropy']:.3f} nats per chunk (perplexity "
        f"{scores['perplexity']:.1f}), next-chunk accuracy {scores['accuracy']:.3f}")
    say(f"  unigram baseline of its training data: {scores['baseline_cross_entropy']:.3f} nats, "
        f"accuracy {scores['baseline_accuracy']:.3f}"
        + ("  (the model beats it)" if scores["cross_entropy"] < scores["baseline_cross_entropy"]
           else "  (the model does not beat it)"))
    if scores["unknown_chunks"]:
        share = scores["unknown_chunks"] / max(scores["chunks"], 1)
        say(f"  {count(scores['unknown_chunks'], 'chunk')} of {scores['chunks']:,} ({share:.1%}; "
            f"{scores['unknown_distinct']:,} distinct) are not in the model's vocabulary and were left out")
    else:
        say("  every chunk is in the model's vocabulary")
    return 0


# ----------------------------------------------------------------------------------------------
# small file commands
# ----------------------------------------------------------------------------------------------

def run_render(args):
    from .music.synth import render_midi_to_wav
    render_midi_to_wav(args.midi, output_path(args.out, [args.midi]))
    say(f"wrote {args.out}")
    return 0


def run_plot(args):
    from .music.events import midi_to_notes, midi_to_pedal
    from .plots import plot_piano_roll
    output_path(args.out, [args.midi])  # check before reading
    notes, pedal = midi_to_notes(args.midi), midi_to_pedal(args.midi)
    plot_piano_roll(notes, output_path(args.out, [args.midi]), title=Path(args.midi).name, pedal=pedal)
    say(f"wrote {args.out}")
    return 0


def run_encode(args):
    from .music.events import write_chunk_text
    settings = event_settings(args)
    if Path(args.source).suffix.lower() == ".txt":
        raise UsageError(f"{args.source} is already chunk text; encode reads MIDI files or folders")
    output_path(args.out, [args.source])  # check before the (slow) load
    sequences, settings = load_pieces(args.source, settings)
    write_chunk_text(output_path(args.out, [args.source]), sequences, settings)
    say(f"wrote {args.out}: {sum(len(piece.chunks) for piece in sequences)} chunks")
    return 0


def run_decode(args):
    from .filenames import piece_paths
    from .music.events import chunks_to_midi, read_chunk_text
    tempo = _tempo(args.tempo)
    output_path(args.out, [args.source])  # check before reading
    sequences = [piece for piece in read_chunk_text(args.source) if piece.chunks]
    if not sequences:
        raise DataError(f"{args.source}: no chunks in this chunk text file")
    # One MIDI file per piece: OUT.mid for a single piece, else OUT-NAME.mid after each stored name.
    paths = piece_paths(args.out, [piece.name for piece in sequences])
    for path in paths:
        output_path(path, [args.source])  # every file checked before the first is written
    for piece, path in zip(sequences, paths):
        chunks_to_midi(piece.chunks, output_path(path, [args.source]), ticks_per_beat=piece.ticks_per_beat,
                       tempo=tempo)
    if len(paths) == 1:
        say(f"wrote {paths[0]}")
    else:
        say(f"wrote {len(paths)} MIDI files, one per piece:")
        for piece, path in zip(sequences, paths):
            say(f"  {path}  ({piece.name})")
    return 0


# ----------------------------------------------------------------------------------------------
# export and import (PyTorch)
# ----------------------------------------------------------------------------------------------

def _npz_out(out, what):
    """``Path(out)``, or ``UsageError`` unless it ends in .npz; ``what`` says what -o names."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"-o names {what}, not {out.name}")
    return out


def run_export(args):
    from .export import architecture_path, export_trained
    from .generate import load_trained
    out = _npz_out(args.out, "the weights file, OUT.npz (the architecture goes beside it, in OUT.json)")
    checkpoint = Path(args.checkpoint)
    inputs = [checkpoint / "last.npz" if checkpoint.is_dir() else checkpoint]
    for path in (out, architecture_path(out)):
        output_path(path, inputs)  # neither file may replace the checkpoint
    trained = load_trained(checkpoint)
    weights, architecture = export_trained(trained, output_path(out, inputs))
    say(f"wrote {weights} (the weights, under PyTorch's names) and {architecture} (the layers and vocabulary)")
    say("load them in PyTorch as tutorials/12-taking-it-to-pytorch.md shows")
    return 0


def run_import(args):
    from .export import architecture_path, import_to_checkpoint
    out = _npz_out(args.out, "the checkpoint to write, a .npz file")
    inputs = [args.exported, architecture_path(args.exported)]
    output_path(out, inputs)  # check before reading
    written = import_to_checkpoint(args.exported, output_path(out, inputs))
    say(f"wrote {written}; make music with: lstm-music generate {written} -o piece.mid")
    return 0


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------

def run_report(args):
    from .report import ReportError, write_report
    from .train import load_run, run_settings

    run_dir = Path(args.run_dir)
    if run_dir.is_file():
        raise UsageError(f"report takes the run folder (the one holding last.npz), not {run_dir}")
    path, _, meta = load_run(run_dir)
    settings, _, _ = run_settings(path, meta)
    sequences, _ = load_pieces(args.data or "builtin", settings)
    try:
        written = write_report(run_dir, sequences)
    except ReportError as error:
        if args.data is None:  # the default guessed wrong: say what to give
            raise ReportError(f"{error}; name the DATA it was trained on: "
                              f"lstm-music report {run_dir} DATA") from None
        raise ReportError(f"{args.data}: {error}") from None
    say(f"wrote {written}")
    say(f"see and hear what the net learned: open {written} in a browser")
    return 0


# ----------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------

def run_demo(args):
    from .generate import load_trained
    from .music.events import EventSettings
    from .music.corpus import builtin_sequences
    from .report import write_report
    from .train import TrainConfig, prepare_data, train

    out = check_folder(args.out)
    training = TINY_TRAINING if args.tiny else DEMO_TRAINING
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError("--epochs must be >= 1")
        training = {**training, "epochs": args.epochs}
    config = TrainConfig(**training)
    engine, processes = engine_choice(args)
    refuse_existing_run(out, replaceable=_made_by_demo)
    say(describe(engine, processes))
    settings = EventSettings()
    sequences = builtin_sequences(settings)
    dataset = prepare_data(sequences, settings, config)
    say(f"demo: training a small LSTM on {count(len(sequences), 'built-in tune')} "
        f"({count(len(dataset.vocab), 'distinct chunk')}), {count(config.epochs, 'epoch')}")
    lines = _TrainingReport(config.epochs, _show_progress())
    result = train(dataset, TINY_MODEL if args.tiny else DEMO_MODEL, config, out,
                   progress=lines.bars, on_epoch=lines.record, on_progress=lines.progress,
                   engine=engine, processes=processes)
    if result.interrupted:
        print(f"interrupted by {result.stopped}: saved {out / 'last.npz'} ({where(result.epoch, result.batch)})",
              file=sys.stderr, flush=True)
        return 128 + signal.Signals[result.stopped].value
    trained = load_trained(out / "best.npz", engine)
    make_piece(trained, out / "sample.mid", 48 if args.tiny else 400, temperature=0.8,
               seed=config.seed, wav=True, plot=True, rules=True)
    report = write_report(out, sequences, dataset)
    say("wrote:")
    for name in DEMO_FILES:  # every file the demo writes, in the order a user would open them
        say(f"  {out / name}")
    say(f"listen: open {out / 'sample.wav'}  (or play {out / 'sample.mid'} in any MIDI player)")
    say(f"see and hear what the net learned: open {report} in a browser")
    return 0


def _made_by_demo(meta):
    """Whether checkpoint metadata comes from an earlier demo (which a new demo may replace)."""
    from .train import RESUMABLE, ConfigError, TrainConfig
    if not isinstance(meta.get("train_config"), dict):
        return False
    try:  # (older demos lack the newer fields: they take their defaults)
        made_with = TrainConfig.from_dict(meta["train_config"]).to_dict()
    except (ConfigError, TypeError):
        return False
    ignored = {name: None for name in RESUMABLE}  # --epochs may have differed
    return any({**made_with, **ignored} == {**TrainConfig(**training).to_dict(), **ignored}
               for training in (DEMO_TRAINING, TINY_TRAINING))
