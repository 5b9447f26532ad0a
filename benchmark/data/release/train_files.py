"""The real release's 16,540 train file names in train.json order, shipped as package data
(`train_files.txt.gz`: derived from a public loader's split file; its header names the source)
and verified before use. The release-shaped twin writes its train split under these names."""

from __future__ import annotations

import gzip
from pathlib import Path

from benchmark.data.release import facts as release
from episodes.storage import sha256_hex

TRAIN_FILES = Path(__file__).with_name("train_files.txt.gz")
# Recorded once from the packaged file (its text after decompression): the list is verified
# before use, so a damaged or edited copy is refused instead of giving another twin.
TRAIN_FILES_SHA256 = "60e571b2414193c5943b15b5e8f06de8ec0c574f795768c3554f31c7aa256f78"


def release_train_files() -> list[str]:
    """The 16,540 file names of the real train.json, in its order (verified: sha256, count).

    Raises:
        RuntimeError: the packaged list is missing or not the recorded one.
    """
    try:
        data = gzip.decompress(TRAIN_FILES.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise RuntimeError(
            f"{TRAIN_FILES}: cannot read the packaged train file list ({exc}); reinstall partbench"
        ) from None
    if sha256_hex(data) != TRAIN_FILES_SHA256:
        raise RuntimeError(
            f"{TRAIN_FILES}: not the recorded train file list (sha256 differs); reinstall partbench"
        )
    names = [
        line for line in data.decode("utf-8").splitlines() if line and not line.startswith("#")
    ]
    if len(names) != release.SPLIT_IMAGES["train"]:
        raise RuntimeError(
            f"{TRAIN_FILES}: {len(names)} names, expected {release.SPLIT_IMAGES['train']}"
        )
    return names
