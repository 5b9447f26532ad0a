"""The error a bad config or command line raises. Standard library only, so the command line can
catch it without importing the stages (and torch)."""

from __future__ import annotations

from episodes.errors import PartbenchError


class ConfigError(PartbenchError, ValueError):
    """A config file or override that cannot be used; the message says which key and why.

    `key`, when set, is the dotted path of the key at fault (e.g. "episodes.foo" for an unknown
    key there): how `load_config` tells whether a `--set` or the file gave it."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
