"""lstm_from_scratch: a hand-written LSTM in pure NumPy that learns music from MIDI files.

The package has two halves that never import each other:

- ``lstm_from_scratch.nn``: the neural net (LSTM, layers, losses, model, optimizers, gradcheck);
- ``lstm_from_scratch.music``: MIDI <-> event-text chunks, the vocabulary, the built-in corpus, a synth.

``data``, ``train``, ``generate``, ``checkpoint`` and ``plots`` join them; ``cli`` is the command line.
"""

__version__ = "0.1.0"
