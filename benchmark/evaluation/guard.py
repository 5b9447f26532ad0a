"""A learner's output is untrusted input: its scores are checked, its errors named.

Every learner, built-in or plugin, returns scores that must be a real-valued torch.Tensor of the
episodes' shape with every entry finite: a NaN row would otherwise argmax to way 0 and publish a
plausible accuracy. A plugin that raises (or calls sys.exit) inside fit or predict stops the run
with one line naming the learner and the episodes; records of the episodes already finished stay
in the run folder for `--resume`. A built-in learner that raises is a partbench bug and keeps its
traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from episodes.errors import PartbenchError

BUILTIN_PACKAGE = "baselines"


class LearnerFailure(PartbenchError):
    """A learner raised or returned scores that cannot be used; nothing of it is published."""


def episode_span(episodes: Sequence[int]) -> str:
    """'episode 37' or 'episodes 32-39' (indices as in the records)."""
    episodes = [int(e) for e in episodes]
    if len(episodes) == 1:
        return f"episode {episodes[0]}"
    return f"episodes {min(episodes)}-{max(episodes)}"


def checked_scores(
    scores: object, shape: tuple[int, ...], learner: str, episodes: Sequence[int]
) -> torch.Tensor:
    """`scores` if it is a real-valued tensor of `shape` ((B, n_query, N) for feature learners,
    (n_query, N) for image learners) with only finite entries; else LearnerFailure."""
    where = f"learner {learner!r} at {episode_span(episodes)}"
    expected = "a finite real torch.Tensor of shape (" + ", ".join(map(str, shape)) + ")"
    if not isinstance(scores, torch.Tensor):
        raise LearnerFailure(
            f"{where}: predict() returned {type(scores).__name__}, expected {expected}"
        )
    if tuple(scores.shape) != tuple(shape):
        raise LearnerFailure(
            f"{where}: predict() returned scores of shape {tuple(scores.shape)}, expected "
            f"{expected} (episodes x queries x ways)"
        )
    if scores.dtype == torch.bool or scores.is_complex():
        raise LearnerFailure(
            f"{where}: predict() returned {scores.dtype} scores, expected {expected}"
        )
    if scores.is_floating_point():
        finite = torch.isfinite(scores)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise LearnerFailure(
                f"{where}: predict() returned {bad} non-finite score(s) (NaN or inf) of "
                f"{scores.numel()}; a NaN argmaxes to way 0 and would publish a wrong accuracy"
            )
    return scores


def checked_contributions(
    shares: object, n_episodes: int, learner: str, episodes: Sequence[int]
) -> torch.Tensor | None:
    """`shares` if it is None or a finite real (B, S) tensor, B = n_episodes (the part-slot
    shares of part_contributions()); else LearnerFailure, like unusable scores."""
    if shares is None:
        return None
    where = f"learner {learner!r} at {episode_span(episodes)}"
    if not isinstance(shares, torch.Tensor) or shares.ndim != 2 or shares.shape[0] != n_episodes:
        got = tuple(shares.shape) if isinstance(shares, torch.Tensor) else type(shares).__name__
        raise LearnerFailure(
            f"{where}: part_contributions() returned {got}, expected None or a torch.Tensor of "
            f"shape ({n_episodes}, slots)"
        )
    if not bool(torch.isfinite(shares.float()).all()):
        raise LearnerFailure(f"{where}: part_contributions() returned non-finite shares")
    return shares


def is_builtin_class(cls: type) -> bool:
    """True for the learners partbench ships (defined in the baselines package)."""
    module = cls.__module__
    return module == BUILTIN_PACKAGE or module.startswith(BUILTIN_PACKAGE + ".")


@contextmanager
def learner_errors(
    learner: object, key: str, episodes: Sequence[int], records: str
) -> Iterator[None]:
    """Turn a plugin's exception (or sys.exit) inside the block into one LearnerFailure line that
    names the learner, the episodes and where the finished ones are kept. partbench's own errors
    and a built-in learner's bugs pass through unchanged."""
    try:
        yield
    except PartbenchError:
        raise
    except (Exception, SystemExit) as exc:
        if is_builtin_class(type(learner)) and not isinstance(exc, SystemExit):
            raise
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise LearnerFailure(
            f"learner {key!r} raised {what} at {episode_span(episodes)}; nothing of it is "
            f"published, the episodes finished so far are kept in {records} (fix the learner "
            "and continue with --resume)"
        ) from exc
