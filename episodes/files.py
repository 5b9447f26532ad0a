"""Fixed episode files: a set of episodes frozen to JSON, so every method sees the very same ones.

A file holds the episodes, the sampler settings that made them, the caller's dataset fingerprint,
`episodes_hash` (sha256 of the episodes alone, the value result files record) and `content_hash`
(sha256 over the format, settings, fingerprint and episodes_hash). Loading recomputes both and
says which part no longer matches. One episode per line keeps diffs readable.

    save_episodes("test600.json", sampler.episodes(0, 600), settings=sampler.settings,
                  dataset_fingerprint=dataset.fingerprint)
    frozen = load_episodes("test600.json", dataset_fingerprint=dataset.fingerprint)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from episodes import taxonomy
from episodes.episode import Episode
from episodes.errors import PartbenchError
from episodes.hashing import episode_from_record, episode_record, episodes_hash
from episodes.storage import (
    MAX_EPISODE_FILE_BYTES,
    InputFileError,
    StrictJSONError,
    atomic_write_text,
    canonical_json,
    json_sha256,
    loads_strict,
    read_input_bytes,
)

FILE_FORMAT = "partbench-episodes"
FILE_VERSION = 1


class EpisodeFileError(PartbenchError, ValueError):
    """An episode file that is malformed, edited, or made for other data or settings."""


@dataclass(frozen=True)
class EpisodeFile:
    """The contents of an episode file.

    Attributes:
        episodes: the episodes, in file order.
        settings: the sampler settings recorded with them (EpisodeSampler.settings).
        dataset_fingerprint: the caller's fingerprint of the dataset the image indices refer to.
        episodes_hash: episodes_hash(episodes).
        content_hash: sha256 over format, settings, fingerprint and episodes_hash.
    """

    episodes: tuple[Episode, ...]
    settings: dict[str, Any]
    dataset_fingerprint: str
    episodes_hash: str
    content_hash: str

    def __len__(self) -> int:
        return len(self.episodes)


def _content_hash(settings: Mapping[str, Any], fingerprint: str, ep_hash: str) -> str:
    header = {
        "format": FILE_FORMAT,
        "format_version": FILE_VERSION,
        "settings": settings,
        "dataset_fingerprint": fingerprint,
        "episodes_hash": ep_hash,
    }
    return json_sha256(header)


def save_episodes(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    *,
    settings: Mapping[str, Any],
    dataset_fingerprint: str,
) -> EpisodeFile:
    """Write episodes atomically (episodes.storage.atomic_write).

    Args:
        path: the JSON file to write (its folder is created if missing).
        episodes: the episodes, e.g. sampler.episodes(0, 600).
        settings: JSON-able settings that made them, normally sampler.settings.
        dataset_fingerprint: a string naming the exact dataset the image indices refer to.

    Returns:
        The EpisodeFile written (with its hashes).
    """
    episodes = tuple(episodes)
    if not isinstance(dataset_fingerprint, str):
        raise TypeError(
            f"dataset_fingerprint must be a str, got {type(dataset_fingerprint).__name__}"
        )
    settings = json.loads(canonical_json(dict(settings)))  # a JSON-able deep copy, or TypeError
    ep_hash = episodes_hash(episodes)
    content = _content_hash(settings, dataset_fingerprint, ep_hash)
    header = {
        "format": FILE_FORMAT,
        "format_version": FILE_VERSION,
        "settings": settings,
        "dataset_fingerprint": dataset_fingerprint,
        "n_episodes": len(episodes),
        "episodes_hash": ep_hash,
        "content_hash": content,
    }
    lines = ",\n".join(canonical_json(episode_record(e)) for e in episodes)
    text = canonical_json(header)[:-1] + ',"episodes":[\n' + lines + "\n]}\n"
    atomic_write_text(path, text)
    return EpisodeFile(episodes, settings, dataset_fingerprint, ep_hash, content)


def load_episodes(
    path: str | os.PathLike[str],
    *,
    dataset_fingerprint: str | None = None,
    settings: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    image_splits: Sequence[str] | None = None,
    class_splits: Mapping[str, str] | None = None,
) -> EpisodeFile:
    """Read and verify an episode file: its hashes, and with `labels`, what its episodes mean.

    Args:
        path: a file written by save_episodes.
        dataset_fingerprint: if given, the file must have been made for this dataset.
        settings: if given (e.g. the sampler settings a config asks for), the file's must be equal.
        labels: (n_images,) the class key of every dataset image; if given, every episode is
            checked with `episode_problems` (a re-hashed, edited file is refused too).
        image_splits: (n_images,) the split each image belongs to (optional, with `labels`).
        class_splits: class key -> split; default: PartImageNet's OOD splits.

    Raises:
        EpisodeFileError: naming the file and what is wrong (malformed field, edited episodes or
            header, another dataset or other settings, or the first episode and image that
            breaks the file's own settings or the dataset).
    """
    path = Path(path)
    try:
        doc = loads_strict(
            read_input_bytes(path, what="episode file", max_bytes=MAX_EPISODE_FILE_BYTES)
        )
    except InputFileError as err:
        raise EpisodeFileError(str(err)) from None
    except (OSError, StrictJSONError) as err:
        raise EpisodeFileError(f"{path}: cannot read an episode file: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise EpisodeFileError(
            f"{path}: not a partbench episode file (field 'format' != {FILE_FORMAT!r})"
        )
    if doc.get("format_version") != FILE_VERSION:
        raise EpisodeFileError(
            f"{path}: field 'format_version' is {doc.get('format_version')!r}; this version of "
            f"partbench reads version {FILE_VERSION}"
        )
    for field, kind in (
        ("settings", dict),
        ("dataset_fingerprint", str),
        ("episodes_hash", str),
        ("content_hash", str),
        ("episodes", list),
    ):
        if not isinstance(doc.get(field), kind):
            raise EpisodeFileError(f"{path}: field {field!r} is missing or not a {kind.__name__}")
    try:
        episodes = tuple(episode_from_record(r) for r in doc["episodes"])
    except (KeyError, TypeError, ValueError) as err:
        raise EpisodeFileError(f"{path}: malformed record in field 'episodes': {err!r}") from err
    repeated = _first_repeated([e.index for e in episodes])
    if repeated is not None:
        raise EpisodeFileError(
            f"{path}: episode index {repeated} appears twice in field 'episodes'; each episode "
            "needs its own index (its records are keyed by it): regenerate the file with "
            "`python -m benchmark episodes`"
        )
    if doc.get("n_episodes") != len(episodes):
        raise EpisodeFileError(
            f"{path}: field 'n_episodes' says {doc.get('n_episodes')!r} but the file holds {len(episodes)}"
        )
    computed = episodes_hash(episodes)
    if computed != doc["episodes_hash"]:
        raise EpisodeFileError(
            f"{path}: the episodes do not match field 'episodes_hash' (recorded "
            f"{doc['episodes_hash'][:12]}..., computed {computed[:12]}...): the episodes were edited "
            "or damaged; regenerate the file with save_episodes"
        )
    content = _content_hash(doc["settings"], doc["dataset_fingerprint"], computed)
    if content != doc["content_hash"]:
        raise EpisodeFileError(
            f"{path}: field 'content_hash' does not match the settings and dataset_fingerprint in "
            "the file: the header was edited; regenerate the file with save_episodes"
        )
    if dataset_fingerprint is not None and dataset_fingerprint != doc["dataset_fingerprint"]:
        raise EpisodeFileError(
            f"{path}: made for dataset fingerprint {doc['dataset_fingerprint']!r}, but this dataset's "
            f"is {dataset_fingerprint!r}: its image indices may point at other images; use an "
            "episode file made from this dataset"
        )
    if settings is not None:
        wanted = json.loads(canonical_json(dict(settings)))
        differ = sorted(
            k for k in set(wanted) | set(doc["settings"]) if wanted.get(k) != doc["settings"].get(k)
        )
        if differ:
            shown = ", ".join(
                f"{k}: file {doc['settings'].get(k)!r} vs wanted {wanted.get(k)!r}" for k in differ
            )
            raise EpisodeFileError(f"{path}: settings differ from those wanted ({shown})")
    if labels is not None:
        problem = episodes_problem(
            episodes, doc["settings"], labels, image_splits=image_splits, class_splits=class_splits
        )
        if problem is not None:
            raise EpisodeFileError(
                f"{path}: {problem}; the file was edited after it was made "
                "(its hashes were recomputed): regenerate it with "
                "`python -m benchmark episodes`"
            )
    return EpisodeFile(episodes, doc["settings"], doc["dataset_fingerprint"], computed, content)


def _first_repeated(values: Sequence[int]) -> int | None:
    seen: set[int] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def episodes_problem(
    episodes: Sequence[Episode],
    settings: Mapping[str, Any],
    labels: Sequence[str],
    *,
    image_splits: Sequence[str] | None = None,
    class_splits: Mapping[str, str] | None = None,
) -> str | None:
    """The first way `episodes` contradict their settings or the dataset, or None.

    Checked per episode, in file order: the split is the settings' split; one distinct class per
    way, each of that split; support and query sizes match n_way/k_shot/n_query where the
    settings fix them (at least one support image per way otherwise); every image index lies in
    [0, len(labels)), is of its way's class (and of the split, with `image_splits`), and appears
    once in the episode (support and query disjoint).

    labels: (n_images,) class key per image. image_splits: (n_images,) split per image.
    """
    class_splits = dict(taxonomy.class_splits() if class_splits is None else class_splits)
    labels = [str(label) for label in labels]
    splits = None if image_splits is None else [str(s) for s in image_splits]
    n_images = len(labels)
    want_split = settings.get("split")
    shape = {name: settings.get(name) for name in ("n_way", "k_shot", "n_query")}
    for position, episode in enumerate(episodes):
        where = f"episode {episode.index} (entry {position})"
        if want_split is not None and episode.split != want_split:
            return f"{where}: split {episode.split!r}, but the file's settings say {want_split!r}"
        if not len(episode.classes) == len(episode.support) == len(episode.query):
            return (
                f"{where}: {len(episode.classes)} classes but {len(episode.support)} support "
                f"and {len(episode.query)} query ways"
            )
        if shape["n_way"] is not None and episode.n_way != shape["n_way"]:
            return f"{where}: {episode.n_way} ways, but the settings say n_way={shape['n_way']}"
        seen_classes: set[str] = set()
        for way, cls in enumerate(episode.classes):
            if cls in seen_classes:
                return f"{where}: class {cls} is the class of two ways"
            seen_classes.add(cls)
            if class_splits.get(cls) != episode.split:
                owner = class_splits.get(cls)
                return (
                    f"{where}: way {way}'s class {cls} belongs to "
                    f"{'no split' if owner is None else f'the {owner} split'}, not to the "
                    f"{episode.split} split"
                )
        seen: dict[int, str] = {}
        for role, ways, size in (
            ("support", episode.support, shape["k_shot"]),
            ("query", episode.query, shape["n_query"]),
        ):
            for way, images in enumerate(ways):
                if size is not None and len(images) != size:
                    name = "k_shot" if role == "support" else "n_query"
                    return (
                        f"{where}: way {way} has {len(images)} {role} images, but the "
                        f"settings say {name}={size}"
                    )
                if role == "support" and not images:
                    return f"{where}: way {way} has no support image"
                for image in images:
                    slot = f"{role} of way {way}"
                    if not 0 <= image < n_images:
                        return (
                            f"{where}: image {image} ({slot}) is not an image of the dataset "
                            f"(indices lie in [0, {n_images}))"
                        )
                    if image in seen:
                        return f"{where}: image {image} is used twice ({seen[image]} and {slot})"
                    seen[image] = slot
                    if labels[image] != episode.classes[way]:
                        return (
                            f"{where}: image {image} ({slot}) is of class {labels[image]}, "
                            f"not of way {way}'s class {episode.classes[way]}"
                        )
                    if splits is not None and splits[image] != episode.split:
                        return (
                            f"{where}: image {image} ({slot}) belongs to the {splits[image]} "
                            f"split, not to the {episode.split} split"
                        )
    return None
