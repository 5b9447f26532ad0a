"""Part annotations -> masks with pycocotools, and the screening of the files' known defects.

The released json files hold a few annotations pycocotools cannot turn into a mask (polygons of
2 points, `area == 0`, malformed polygons). `screen_split` finds them at load time by converting
every polygon once with pycocotools (polygon -> run-length encoding, the step of `annToMask` that
fails), so that later mask decoding never fails mid-run. The RLE it makes is kept: a kept
annotation's "segmentation" is one compressed COCO RLE dict, and `part_masks` only merges and
decodes. Non-finite or far-out coordinates are refused *before* pycocotools sees them: it does not
check them and may allocate without bound (a NaN polygon exhausts memory).
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import chain, groupby
from typing import NamedTuple

import numpy as np
from pycocotools import mask as mask_utils

# Reasons an annotation is skipped, checked in this order (the first that applies is counted).
FEW_POINTS = "polygon with < 3 points"
ZERO_AREA = "area == 0"
UNDECODABLE = "segmentation pycocotools cannot decode"
SKIP_REASONS: tuple[str, ...] = (FEW_POINTS, ZERO_AREA, UNDECODABLE)
# Not a skip: a polygon of < 3 points dropped from an annotation that still has a valid one.
POLYGON_DROPPED = "polygon with < 3 points dropped (rest of its annotation kept)"
# Counted per image, not per annotation: none listed, or every one skipped for a reason above.
NO_PARTS = "image with no usable part annotation"


class _Candidate(NamedTuple):
    """A polygon annotation that passed the structural checks, awaiting conversion."""

    image: int  # position of its image in the split
    position: int  # position among its image's annotations
    ann: dict
    polygons: list  # its polygons of >= 3 points (json lists)


def _polygon_segmentation(ann: dict) -> tuple[list | None, str | None]:
    """(polygons with >= 3 points, None) or (None, skip reason), before any conversion."""
    segm = ann["segmentation"]
    if not segm or not all(isinstance(p, list) for p in segm):
        return None, UNDECODABLE
    polygons = [p for p in segm if len(p) >= 6]
    if not polygons:
        return None, FEW_POINTS
    if ann.get("area") == 0:
        return None, ZERO_AREA
    return polygons, None


def _rle_from_dict(segm: dict, height: int, width: int) -> dict:
    """A COCO RLE dict (compressed or not) -> compressed RLE; raises if pycocotools cannot."""
    if list(segm.get("size", ())) != [height, width]:
        raise ValueError(f"RLE size {segm.get('size')} is not the image's [height, width]")
    rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else segm
    mask_utils.area(rle)  # parses the counts: raises on a malformed string
    return rle


def _polygon_arrays(polygons: list[list]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every polygon as float64 (views of one buffer); (bad per polygon, arrays).

    A polygon is bad if a value is not a number (fast path: one conversion for all).
    """
    lengths = np.fromiter(map(len, polygons), dtype=np.int64, count=len(polygons))
    try:
        flat = np.fromiter(
            chain.from_iterable(polygons), dtype=np.float64, count=int(lengths.sum())
        )
        return np.zeros(len(polygons), dtype=bool), np.split(flat, np.cumsum(lengths)[:-1])
    except (TypeError, ValueError):
        pass
    bad, arrays = np.zeros(len(polygons), dtype=bool), []
    for i, p in enumerate(polygons):
        try:
            arrays.append(np.fromiter(p, dtype=np.float64, count=len(p)))
        except (TypeError, ValueError):
            bad[i] = True
            arrays.append(np.zeros(len(p)))
    return bad, arrays


def _check_values(
    candidates: list[_Candidate],
    sizes: np.ndarray,
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """Vectorised value checks over every polygon of a split.

    A polygon passes if it has an even number of values, all numbers, finite, and every point
    lies at most one image size outside the image on either side.

    Args:
        candidates: the split's polygon annotations.
        sizes: (n_images, 2) int64 height, width of each image of the split.
    Returns:
        (ok per candidate (n_candidates,) bool, float64 polygon arrays per candidate).
    """
    polygons = [p for c in candidates for p in c.polygons]
    counts = np.fromiter(
        (len(c.polygons) for c in candidates), dtype=np.int64, count=len(candidates)
    )
    owner = np.repeat(np.arange(len(candidates)), counts)  # polygon -> candidate
    bad, arrays = _polygon_arrays(polygons)
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
    bad |= lengths % 2 == 1
    even = np.flatnonzero(~bad)
    if len(even):
        # (x, y) pairs of the polygons still in the running, one row per point.
        points = np.concatenate([arrays[i] for i in even]).reshape(-1, 2)
        point_polygon = np.repeat(even, lengths[even] // 2)
        image_of = np.fromiter((c.image for c in candidates), dtype=np.int64, count=len(candidates))
        extent = sizes[image_of[owner[point_polygon]]][:, ::-1].astype(np.float32)  # (w, h)
        del point_polygon
        inside = (np.abs(points - extent / 2) <= 1.5 * extent).all(axis=1)  # NaN compares False
        starts = np.cumsum(lengths[even] // 2) - lengths[even] // 2
        bad[even] = np.logical_and.reduceat(inside, starts) == 0
    ok = np.bincount(owner, weights=bad, minlength=len(candidates)) == 0
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return ok, [arrays[offsets[i] : offsets[i + 1]] for i in range(len(candidates))]


def _to_rles(arrays: list[np.ndarray], height: int, width: int) -> list[dict]:
    """The conversion annToMask does: polygons -> one compressed RLE each."""
    return mask_utils.frPyObjects(arrays, height, width)


def screen_split(
    images: Sequence[tuple[int, int, int]],
    anns_by_image: Mapping[int, Sequence[dict]],
) -> tuple[list[list[dict]], Counter]:
    """Keep the annotations of a split that pycocotools can turn into masks.

    Args:
        images: (image_id, height, width) of each image of the split, in order.
        anns_by_image: image id -> its COCO annotation dicts (required fields already checked).
    Returns:
        (kept annotations per image, in `images` order and json order within an image;
         count of defects by reason). Kept annotations are new dicts with the json's "id",
         "image_id", "category_id" and "area" (NaN if absent), and as "segmentation" one
         compressed COCO RLE dict (the union of the annotation's polygons); "bbox" and
         "iscrowd" are not kept. The count has NO_PARTS: images left with no kept annotation.
    """
    defects: Counter = Counter()
    kept: list[list[tuple[int, dict]]] = [[] for _ in images]
    candidates: list[_Candidate] = []
    for k, (image_id, height, width) in enumerate(images):
        for pos, ann in enumerate(anns_by_image.get(image_id, ())):
            segm = ann["segmentation"]
            if isinstance(segm, dict):
                if ann.get("area") == 0:
                    defects[ZERO_AREA] += 1
                    continue
                try:
                    kept[k].append((pos, _kept(ann, _rle_from_dict(segm, height, width))))
                except Exception:  # noqa: BLE001 - whatever pycocotools raises, it is unusable
                    defects[UNDECODABLE] += 1
            elif not isinstance(segm, list):
                defects[UNDECODABLE] += 1
            else:
                polygons, reason = _polygon_segmentation(ann)
                if reason:
                    defects[reason] += 1
                else:
                    candidates.append(_Candidate(k, pos, ann, polygons))
    if candidates:
        sizes = np.array([(h, w) for _, h, w in images], dtype=np.int64)
        ok, arrays = _check_values(candidates, sizes)
        if n_bad := int((~ok).sum()):
            defects[UNDECODABLE] += n_bad
        good = [(c, a) for c, a, fine in zip(candidates, arrays, ok) if fine]
        for k, group in groupby(good, key=lambda item: item[0].image):
            _convert_image(list(group), *images[k][1:], kept[k], defects)
    for anns in kept:
        anns.sort(key=lambda item: item[0])  # RLE and polygon annotations back in json order
    out = [[ann for _, ann in anns] for anns in kept]
    if no_parts := sum(1 for anns in out if not anns):
        defects[NO_PARTS] += no_parts
    _detach_numbers([ann for anns in out for ann in anns])
    return out, defects


def _kept(ann: dict, rle: dict) -> dict:
    """The kept form of an annotation: its ids, json area and one compressed RLE."""
    return {
        "id": ann["id"],
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "area": ann.get("area", float("nan")),
        "segmentation": rle,
    }


def _detach_numbers(anns: list[dict]) -> None:
    """Replace the json's int and float objects in kept annotations by fresh ones.

    A kept number parsed by json pins the whole allocator arena it sits in, among the millions of
    polygon floats freed after screening: ~170 MB of resident memory on a release-sized copy.
    """
    for key, dtype in (("id", np.int64), ("image_id", np.int64), ("area", np.float64)):
        fresh = np.fromiter((a[key] for a in anns), dtype=dtype, count=len(anns)).tolist()
        for ann, value in zip(anns, fresh):
            ann[key] = value


def _convert_image(
    group: list[tuple[_Candidate, list[np.ndarray]]],
    height: int,
    width: int,
    kept: list[tuple[int, dict]],
    defects: Counter,
) -> None:
    """Convert one image's polygons (one pycocotools call; one per annotation if that fails)."""
    try:
        rles = _to_rles([a for _, arrays in group for a in arrays], height, width)
        per_candidate, at = [], 0
        for _, arrays in group:
            per_candidate.append(rles[at : at + len(arrays)])
            at += len(arrays)
    except Exception:  # noqa: BLE001
        per_candidate = []
        for _, arrays in group:
            try:
                per_candidate.append(_to_rles(arrays, height, width))
            except Exception:  # noqa: BLE001
                per_candidate.append(None)
    for (cand, _), rles in zip(group, per_candidate):
        if rles is None:
            defects[UNDECODABLE] += 1
            continue
        if len(cand.polygons) < len(cand.ann["segmentation"]):
            defects[POLYGON_DROPPED] += 1
        rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
        kept.append((cand.position, _kept(cand.ann, rle)))


def part_masks(anns: Sequence[dict], height: int, width: int) -> dict[int, np.ndarray]:
    """Union of kept annotations per part present: part id -> (height, width) bool mask."""
    rles_by_part: dict[int, list[dict]] = defaultdict(list)
    for ann in anns:
        rles_by_part[ann["category_id"]].append(ann["segmentation"])
    if not rles_by_part:
        return {}
    parts = sorted(rles_by_part)
    merged = [mask_utils.merge(rles_by_part[p], intersect=False) for p in parts]
    with warnings.catch_warnings():
        # pycocotools' Cython decode trips a numpy-2 DeprecationWarning on every call (harmless).
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*copy keyword")
        stacked = mask_utils.decode(merged)  # (height, width, n_parts) uint8, Fortran order
    return {p: np.ascontiguousarray(stacked[:, :, k], dtype=bool) for k, p in enumerate(parts)}


def slot_rles(anns: Sequence[dict], slot_of: Mapping[int, int]) -> dict[int, dict]:
    """Slot index -> one compressed RLE, the union of the annotations of the parts in that slot
    (slot_of: part id -> slot); only slots with an annotation appear. No mask is decoded."""
    by_slot: dict[int, list[dict]] = defaultdict(list)
    for ann in anns:
        by_slot[slot_of[ann["category_id"]]].append(ann["segmentation"])
    return {
        slot: rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
        for slot, rles in sorted(by_slot.items())
    }


def rle_counts(rle: dict) -> np.ndarray:
    """(n,) int64 run lengths of a compressed COCO RLE: zeros first, then ones, alternating,
    over the mask flattened column-major (pycocotools' rleFrString, vectorised).

    Each value is a little-endian run of 5-bit groups (0x20: more follows; 0x10 in the last: the
    value is negative), offset by 48; from the fourth value on, a value is a difference to the
    one two places before (the runs of the same colour)."""
    counts = rle["counts"]
    chars = np.frombuffer(counts.encode() if isinstance(counts, str) else counts, dtype=np.uint8)
    chars = chars.astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = np.flatnonzero((chars & 0x20) == 0)  # the last character of each value
    first = np.concatenate([[0], last[:-1] + 1])
    group = np.arange(chars.size) - np.repeat(first, last - first + 1)  # 5-bit group index
    values = np.add.reduceat((chars & 0x1F) << (5 * group), first)
    negative = (chars[last] & 0x10) != 0
    values = values - (negative << (5 * (last - first + 1)))
    out = values.copy()
    out[2::2] = np.cumsum(values[2::2])  # delta coding from index 3 on: runs of one colour
    out[1::2] = np.cumsum(values[1::2])
    return out
