"""Check at load time that every image's width and height agree with its json entry.

Part masks are drawn at the json's size, so an image of another size would give masks that do not
line up; finding it only when the image is first decoded stops a run midway. The check reads only
image headers (PIL opens lazily), and a passed check is recorded in the cache folder under the
dataset fingerprint (which covers the annotation files and every image's byte size), so a copy
is checked once, not on every run.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from benchmark.config.cache_layout import IMAGE_SIZES_FOLDER
from benchmark.data.dataset import ImageRecord
from benchmark.data.errors import DatasetError, first_few
from episodes.storage import atomic_write_text

CHECK_VERSION = 1  # bump when the check changes: older records are then ignored
READ_THREADS = 8


def _record_path(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / IMAGE_SIZES_FOLDER / f"{fingerprint}.json"


def _record(fingerprint: str, n_images: int) -> dict:
    return {
        "check": "image width x height == json entry",
        "version": CHECK_VERSION,
        "fingerprint": fingerprint,
        "n_images": n_images,
    }


def _already_checked(path: Path, expected: dict) -> bool:
    """True if `path` records a passed check of exactly this dataset (else it is checked again)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) == expected
    except (OSError, ValueError):
        return False


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image file's header, without decoding the pixels."""
    with warnings.catch_warnings():
        # A huge image is checked, not decoded here: no decompression-bomb warning for its header.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            return img.size


def _size_or_error(path: Path) -> tuple[int, int] | str:
    try:
        return header_size(path)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for a bad header
        return str(exc)


def check_image_sizes(
    images: Sequence[ImageRecord], fingerprint: str, cache_dir: Path | None = None
) -> bool:
    """Raise if an image's header size differs from its json entry or its header is unreadable.

    Args:
        images: the dataset's images (their files exist).
        fingerprint: the dataset fingerprint; a passed check is recorded under it.
        cache_dir: where the record of a passed check is kept (None: check, record nothing).
    Returns:
        True if the headers were read now, False if a record of this dataset said they passed.
    Raises:
        DatasetError: naming the first few images at fault, their sizes and their json's sizes.
    """
    record = _record(fingerprint, len(images))
    path = None if cache_dir is None else _record_path(Path(cache_dir), fingerprint)
    if path is not None and _already_checked(path, record):
        return False
    wrong, unreadable = [], []
    # Threads overlap the file reads (a header is a few kB; the wait is I/O, not CPU).
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        sizes = list(pool.map(_size_or_error, [rec.path for rec in images], chunksize=256))
    for rec, size in zip(images, sizes):
        if isinstance(size, str):
            unreadable.append(f"{rec.path} ({size})")
            continue
        width, height = size
        if (width, height) != (rec.width, rec.height):
            wrong.append(
                f"{rec.path} is {width}x{height}, its entry (image id {rec.image_id}) "
                f"in {rec.split}.json says {rec.width}x{rec.height}"
            )
    if unreadable:
        raise DatasetError(
            f"{len(unreadable)} of {len(images)} images have no header PIL can "
            f"read (re-download or re-extract them): {first_few(unreadable, 3)}"
        )
    if wrong:
        raise DatasetError(
            f"{len(wrong)} of {len(images)} images differ in size (width x height) from their "
            f"annotation file, so their part masks would not line up; replace them with the "
            f"release's files: {first_few(wrong, 3)}"
        )
    if path is not None:
        try:
            atomic_write_text(path, json.dumps(record, sort_keys=True))
        except OSError as exc:  # an unwritable cache costs a re-check next time, nothing more
            warnings.warn(f"could not record the image-size check in {path}: {exc}", stacklevel=2)
    return True
