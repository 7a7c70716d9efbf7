"""The project's error classes."""


class LstmMusicError(Exception):
    """Base class for every error this project raises on purpose."""
