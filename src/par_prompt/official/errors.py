"""The error of the official-checkpoint importer."""

from __future__ import annotations


class OfficialCheckpointError(ValueError):
    """The file or the options cannot give an exact par-prompt model (the message says why and what to do)."""
