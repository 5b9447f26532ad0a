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
