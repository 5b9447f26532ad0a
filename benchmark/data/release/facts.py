"""Published facts of the PartImageNet_OOD release, defined once.

`prepare` verifies a copy against them, `download` fetches the archive they name, and the
synthetic twin's `full` mode reproduces the per-split counts. The per-class train counts and the
40 part categories live in the packaged tables (episodes/data/classes.csv, parts.csv).
"""

from __future__ import annotations

from episodes import taxonomy

# Images per split of the release (24,095 in all); train per class is in classes.csv.
SPLIT_IMAGES: dict[str, int] = {"train": 16540, "val": 2957, "test": 4598}

# Where the release is published: a Hugging Face dataset repository and the file in it.
HUB_REPO_ID = "turkeyju/PartImageNet"
HUB_FILENAME = "PartImageNet_OOD.zip"
HUB_PAGE = f"https://huggingface.co/datasets/{HUB_REPO_ID}"

# The archive holds <split>.json beside an inner <split>.zip of that split's images.
INNER_ZIP = "{split}.zip"
ANNOTATION_FILE = "{split}.json"


def class_images(split: str) -> dict[str, int | None]:
    """synset -> published image count of each class of `split` (None where not published:
    only train classes have per-class counts)."""
    return {c.synset: c.train_images for c in taxonomy.classes() if c.split == split}


# Bounds on what the archive may hold, so that `prepare` refuses a zip bomb before inflating it.
# Each is far above the release (whose download is about 2.8 GB, its largest image a few MB and
# its largest annotation file, train.json, under 100 MB) and far below a disk's worth.
MAX_MEMBER_BYTES = 256 << 20  # an image or annotation file, as declared and as read
MAX_INNER_ZIP_BYTES = 16 << 30  # one inner <split>.zip
MAX_RELEASE_BYTES = 32 << 30  # every member of every archive, inflated, together
# JPEGs barely compress and COCO JSON compresses about 10:1; a bomb compresses 1000:1.
MAX_COMPRESSION_RATIO = 200
