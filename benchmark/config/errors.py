"""The error a bad config or command line raises. Standard library only, so the command line can
catch it without importing the stages (and torch)."""

from __future__ import annotations

from episodes.errors import PartbenchError


class ConfigError(PartbenchError, ValueError):
    """A config file or override that cannot be used; the message says which key and why."""
