"""Part annotations -> masks, with pycocotools; and the screening of known defects.

The released json files hold a few annotations pycocotools cannot turn into a mask (polygons of
2 points, `area == 0`, malformed polygons). `screen_annotations` finds them once, at load time, by
converting every polygon of an image with pycocotools in one call, so that later mask decoding
never fails mid-run.

Kept annotations hold their polygons as float64 numpy arrays (x0, y0, x1, y1, ...): a third of the
memory of the json's Python floats, and what pycocotools converts them to anyway.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import chain

import numpy as np
from pycocotools import mask as mask_utils

# Reasons an annotation is skipped, checked in this order (the first that applies is counted).
FEW_POINTS = "polygon with < 3 points"
ZERO_AREA = "area == 0"
UNDECODABLE = "segmentation pycocotools cannot decode"
SKIP_REASONS: tuple[str, ...] = (FEW_POINTS, ZERO_AREA, UNDECODABLE)
# Not a skip: a polygon of < 3 points dropped from an annotation that still has a valid one.
POLYGON_DROPPED = "polygon with < 3 points dropped (rest of its annotation kept)"


def _polygons_to_arrays(polygons: Sequence[Sequence[float]], height: int, width: int,
                        ) -> list[np.ndarray]:
    """Polygons -> float64 arrays; raises ValueError/TypeError on a value pycocotools cannot use.

    NaN or far-out coordinates are refused here: pycocotools does not check them and may try to
    allocate without bound (a NaN polygon exhausts memory).
    """
    lengths = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
    if (lengths % 2).any():
        raise ValueError("polygon with an odd number of coordinates")
    flat = np.fromiter(chain.from_iterable(polygons), dtype=np.float64, count=int(lengths.sum()))
    xs, ys = flat[0::2], flat[1::2]
    if not (np.isfinite(flat).all() and (np.abs(xs - width / 2) <= 1.5 * width).all()
            and (np.abs(ys - height / 2) <= 1.5 * height).all()):
        raise ValueError("polygon coordinates not finite or more than an image size outside it")
    return np.split(flat, np.cumsum(lengths)[:-1])


def _rle_from_dict(segm: dict, height: int, width: int) -> dict:
    """A COCO RLE dict (compressed or not) -> compressed RLE; raises if pycocotools cannot."""
    if list(segm.get("size", ())) != [height, width]:
        raise ValueError(f"RLE size {segm.get('size')} is not the image's [height, width]")
    rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else segm
    mask_utils.area(rle)  # parses the counts: raises on a malformed string
    return rle


def _polygon_segmentation(ann: dict, height: int, width: int) -> tuple[list | None, str | None]:
    """(polygons with >= 3 points, None) or (None, skip reason), without pycocotools yet."""
    segm = ann["segmentation"]
    if not segm or not all(isinstance(p, list) for p in segm):
        return None, UNDECODABLE
    polygons = [p for p in segm if len(p) >= 6]
    if not polygons:
        return None, FEW_POINTS
    if ann.get("area") == 0:
        return None, ZERO_AREA
    return polygons, None


def screen_annotations(anns: Sequence[dict], height: int, width: int) -> tuple[list[dict], Counter]:
    """Keep the annotations of one image that pycocotools can turn into a mask.

    Args:
        anns: the image's COCO annotation dicts (already checked to have the required fields).
        height, width: the image's size from the json.
    Returns:
        (kept annotations, count of defects by reason). Kept annotations are new dicts whose
        "segmentation" is a list of float64 polygon arrays or a compressed RLE dict.
    """
    defects: Counter = Counter()
    pending: list[tuple[int, dict, list]] = []  # polygon annotations still to convert
    kept: list[tuple[int, dict]] = []  # (position in `anns`, kept annotation)
    for pos, ann in enumerate(anns):
        segm = ann["segmentation"]
        if isinstance(segm, dict):
            if ann.get("area") == 0:
                defects[ZERO_AREA] += 1
                continue
            try:
                kept.append((pos, {**ann, "segmentation": _rle_from_dict(segm, height, width)}))
            except Exception:  # noqa: BLE001 - whatever pycocotools raises, the region is unusable
                defects[UNDECODABLE] += 1
            continue
        if not isinstance(segm, list):
            defects[UNDECODABLE] += 1
            continue
        polygons, reason = _polygon_segmentation(ann, height, width)
        if reason:
            defects[reason] += 1
        else:
            pending.append((pos, ann, polygons))

    def convert(group: list[tuple[int, dict, list]]) -> list[np.ndarray]:
        arrays = _polygons_to_arrays([p for _, _, polys in group for p in polys], height, width)
        mask_utils.frPyObjects(arrays, height, width)  # the conversion annToMask does
        return arrays

    # One conversion for the whole image; one per annotation only when that fails.
    try:
        arrays = convert(pending) if pending else []
        groups = [(pending, arrays)]
    except Exception:  # noqa: BLE001
        groups = []
        for item in pending:
            try:
                groups.append(([item], convert([item])))
            except Exception:  # noqa: BLE001
                defects[UNDECODABLE] += 1
    for group, arrays in groups:
        at = 0
        for pos, ann, polygons in group:
            if len(polygons) < len(ann["segmentation"]):
                defects[POLYGON_DROPPED] += 1
            kept.append((pos, {**ann, "segmentation": arrays[at:at + len(polygons)]}))
            at += len(polygons)
    kept.sort(key=lambda item: item[0])  # back in json order
    return [ann for _, ann in kept], defects


def annotation_rles(ann: dict, height: int, width: int) -> list[dict]:
    """The compressed RLEs of one kept annotation (one per polygon)."""
    segm = ann["segmentation"]
    if isinstance(segm, dict):
        return [segm]
    return mask_utils.frPyObjects(list(segm), height, width)


def part_masks(anns: Sequence[dict], height: int, width: int) -> dict[int, np.ndarray]:
    """Union of the annotations of each part present: part id -> (height, width) bool mask."""
    rles_by_part: dict[int, list[dict]] = defaultdict(list)
    for ann in anns:
        rles_by_part[ann["category_id"]].extend(annotation_rles(ann, height, width))
    if not rles_by_part:
        return {}
    parts = sorted(rles_by_part)
    merged = [mask_utils.merge(rles_by_part[p], intersect=False) for p in parts]
    with warnings.catch_warnings():
        # pycocotools' Cython decode trips a numpy-2 DeprecationWarning on every call (harmless).
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*copy keyword")
        stacked = mask_utils.decode(merged)  # (height, width, n_parts) uint8, Fortran order
    return {p: np.ascontiguousarray(stacked[:, :, k], dtype=bool) for k, p in enumerate(parts)}
