"""`python -m lstm_from_scratch ...` runs the `lstm-music` command."""
import sys

from .cli import main

sys.exit(main())
