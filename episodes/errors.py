"""PartbenchError: the one base of every error that means "your input cannot be used".

Defined here, in the lowest package and with the standard library only, so that every package
(episodes, results, baselines, benchmark) can derive its user errors from it and the command line
can catch them all with one class without importing torch.
"""

from __future__ import annotations


class PartbenchError(Exception):
    """A config, file, folder or option that cannot be used. The message is one line that names
    the file, field or key and what would fix it; the command line prints it and exits 2."""
