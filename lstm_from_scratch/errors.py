"""The project's errors: one base class, so a caller can catch everything we raise on purpose.

Library code never prints and never exits; it raises one of these with a message that names the
thing (a file, a chunk, a line) and the reason. ``cli.py`` catches ``LstmMusicError`` and shows the
message. Other parts add their own subclasses next to their code (for example ``CheckpointError``).

Every class keeps its constructor arguments in ``args``, so the errors can be copied between
processes and still print the same message.
"""


class LstmMusicError(Exception):
    """Base class of every error the project raises on purpose."""


class MidiError(LstmMusicError):
    """A MIDI file that cannot be used. ``str(error)`` is ``f"{path}: {reason}"``."""

    def __init__(self, path, reason):
        super().__init__(str(path), reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return f"{self.path}: {self.reason}"


class MidiWarning(UserWarning):
    """A MIDI file that loads, but only after repairing it (for example data bytes above 127)."""


class ChunkError(LstmMusicError):
    """A bad event chunk, such as ``"12_no_60"`` or ``"5_no_200_64"``.

    The message names where the chunk is (a file and line, or a position in a list), the chunk
    itself and the reason, for example
    ``song.txt, line 4, '5_no_200_64': pitch 200 is outside 0..127`` or
    ``chunk 3, '5_no_200_64': pitch 200 is outside 0..127``.
    """

    def __init__(self, reason, chunk=None, position=None, path=None, line=None):
        super().__init__(reason, chunk, position, path, line)
        self.reason = reason
        self.chunk = chunk
        self.position = position
        self.path = None if path is None else str(path)
        self.line = line

    def __str__(self):
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.position is not None:
            where.append(f"chunk {self.position}")
        if self.chunk is not None:
            where.append(repr(self.chunk))
        return ", ".join(where) + ": " + self.reason if where else self.reason


class DataError(LstmMusicError):
    """Training data that cannot be used: a missing path, a folder with no usable files, ..."""
