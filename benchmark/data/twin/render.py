"""Render one image of the synthetic twin and its COCO part annotations.

An image is a pure function of (seed, synset, index, image_size): the class's parts
(`synth_shapes`) are posed (flip, rotation, scale, position), painted back to front over a
cluttered background, sometimes partly hidden by an occluder, and annotated with the polygons of
what stays visible of each part (a part cut in two by an occluder gets two polygons, as in the
real files).

Parts are painted through the masks pycocotools decodes from their own polygons, so the pixels
of a part and the mask a loader decodes from its annotation are the same raster (up to the
edges a nearer part covers, and JPEG).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from shapely import affinity
from shapely.geometry import Polygon, box
from shapely.ops import unary_union

from benchmark.data.twin.shapes import (
    PALETTES,
    PartLook,
    PartShape,
    build_object,
    class_style,
    part_ids,
    stable_seed,
)

JPEG_QUALITY = 92
MISSING_PART_P = 0.07  # each non-body part instance is left out with this chance
MISSING_SLOT_P = 0.05  # ... and all instances of a part category with this chance
OCCLUSION_P = 0.35  # chance an image has an occluder over the object
MORPH_P = 0.3  # chance an image uses the class's second colour morph
BACKGROUND_SATURATION = 0.5  # background colours are pulled half way to a grey
CLUTTER_SHAPES = (2, 7)  # number of clutter shapes: [low, high)
OBJECT_EXTENT = (0.6, 0.92)  # the object's longer side, as a share of the image side
MIN_PIECE_AREA = 2.0  # visible pieces smaller than this (px^2) are not annotated

# Pose per super-category: (rotation s.d. in degrees, largest rotation).
_ROTATION: dict[str, tuple[float, float]] = {
    "Snake": (60.0, 180.0),
    "Fish": (20.0, 45.0),
    "Bird": (15.0, 35.0),
    "Aeroplane": (20.0, 40.0),
    "Biped": (8.0, 20.0),
    "Bottle": (10.0, 25.0),
}
_DEFAULT_ROTATION = (10.0, 25.0)


@dataclass
class PartAnnotation:
    """One visible part instance: flat COCO polygons in pixels, with pycocotools' area and bbox."""

    part_id: int
    segmentation: list[list[float]]
    area: float
    bbox: list[float]
    colours: list[tuple[int, int, int]]  # colours it was painted with (base, pattern, details)


@dataclass
class RenderedImage:
    """One rendered image.

    pixels: (H, W, 3) uint8, before JPEG.
    labels: (H, W) int16, which drawn part instance shows at each pixel, counting parts back to
        front from 0 (-1 background, -2 occluder).
    annotations: the visible parts, back to front.
    occluded: whether an occluder was drawn.
    """

    pixels: np.ndarray
    labels: np.ndarray
    annotations: list[PartAnnotation]
    occluded: bool

    def jpeg_bytes(self) -> bytes:
        """The image as JPEG; PIL writes no timestamp, so equal pixels give equal bytes."""
        buf = io.BytesIO()
        Image.fromarray(self.pixels).save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Polygons <-> COCO
# ---------------------------------------------------------------------------------------------


def _polygons(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [p for g in getattr(geom, "geoms", []) for p in _polygons(g)]


def _flat(ring) -> list[float]:
    coords = np.asarray(ring.coords)[:-1]  # shapely repeats the first point at the end
    return np.round(coords.ravel(), 2).tolist()


def rasterize(geom, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a shapely (multi)polygon, holes included, rasterised by pycocotools."""
    polys = _polygons(geom)
    outer = [_flat(p.exterior) for p in polys if len(p.exterior.coords) > 3]
    holes = [_flat(r) for p in polys for r in p.interiors if len(r.coords) > 3]
    mask = np.zeros((height, width), dtype=bool)
    if outer:
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(outer, height, width))) > 0
    if holes:
        mask &= ~(
            mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(holes, height, width))) > 0
        )
    return mask


def _without_holes(poly: Polygon) -> list[Polygon]:
    """COCO polygons cannot carry holes: cut a holed polygon through each hole until none is left."""
    if not poly.interiors:
        return [poly]
    x = poly.interiors[0].centroid.x
    minx, miny, maxx, maxy = poly.bounds
    pieces = []
    for half in (box(minx - 1, miny - 1, x, maxy + 1), box(x, miny - 1, maxx + 1, maxy + 1)):
        for p in _polygons(poly.intersection(half)):
            pieces.extend(_without_holes(p))
    return pieces


def coco_polygons(geom) -> list[list[float]]:
    """Flat [x1, y1, x2, y2, ...] hole-free polygons of a visible region, tiny slivers dropped."""
    out = []
    for p in _polygons(geom):
        for piece in _without_holes(p.simplify(0.2)):
            flat = _flat(piece.exterior) if piece.area >= MIN_PIECE_AREA else []
            if len(flat) >= 6:
                out.append(flat)
    return out


# ---------------------------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------------------------


def _pattern_mask(look: PartLook, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float in [0, 1], shaped like u: where a part's pattern colour shows, in object-frame coordinates
    (so the pattern turns and scales with the object)."""
    f, a = look.frequency, look.angle
    along = f * (u * math.cos(a) + v * math.sin(a))
    if look.pattern == "stripes":
        return (np.mod(along, 1.0) < look.duty).astype(np.float32)
    if look.pattern == "bands":  # bands across the object's length, wider apart
        return (np.mod(f * 0.5 * u, 1.0) < look.duty * 0.5).astype(np.float32)
    if look.pattern == "spots":
        gu, gv = f * u, f * v
        gu = gu + 0.5 * (np.floor(gv) % 2)
        d2 = (np.mod(gu, 1.0) - 0.5) ** 2 + (np.mod(gv, 1.0) - 0.5) ** 2
        return (d2 < (look.duty * 0.5) ** 2).astype(np.float32)
    if look.pattern == "checker":
        return ((np.floor(f * u) + np.floor(f * v)) % 2).astype(np.float32)
    if look.pattern == "gradient":
        return np.clip(0.5 + along / (2 * f), 0.0, 1.0).astype(np.float32)
    return np.zeros_like(u, dtype=np.float32)


def _window(geom, size: int) -> tuple[slice, slice]:
    """Row and column slices of the pixels a geometry's bounding box touches."""
    if geom.is_empty:
        return slice(0, 0), slice(0, 0)
    minx, miny, maxx, maxy = geom.bounds
    return (
        slice(max(int(miny), 0), min(int(maxy) + 2, size)),
        slice(max(int(minx), 0), min(int(maxx) + 2, size)),
    )


@cache
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) float32 row and column coordinates of pixel centres, scaled to [0, 1]."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A colour gradient with random clutter shapes, some in object palettes."""
    # muted colours: the background should vary a lot but not outshine the object
    grey = rng.uniform(70, 190)
    c0, c1 = grey + BACKGROUND_SATURATION * (rng.uniform(40, 220, (2, 3)) - grey)
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = _unit_grid(size)
    t = np.clip(0.5 + (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a), 0, 1)[..., None]
    img = Image.fromarray(((1 - t) * c0 + t * c1).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    palettes = list(PALETTES.values())
    for _ in range(int(rng.integers(*CLUTTER_SHAPES))):
        if rng.random() < 0.5:
            pal = palettes[rng.integers(len(palettes))]
            colour = tuple(int(c) for c in pal[rng.integers(len(pal))])
        else:
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.03, 0.16) * size
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=colour)
        elif kind == 1:
            draw.rectangle(
                [x - r, y - r * rng.uniform(0.2, 1), x + r * rng.uniform(0.2, 1), y + r],
                fill=colour,
            )
        elif kind == 2:
            ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            rad = r * rng.uniform(0.4, 1.0, len(ang))
            draw.polygon(
                [(x + q * math.cos(p), y + q * math.sin(p)) for p, q in zip(ang, rad)], fill=colour
            )
        else:
            x2, y2 = rng.uniform(0, 1, 2) * size
            draw.line(
                [(x, y), (x2, y2)], fill=colour, width=int(rng.integers(1, max(2, size // 20)))
            )
    return img


def _occluder(rng: np.random.Generator, bounds: tuple[float, float, float, float]) -> Polygon:
    """A random blob, box or ellipse over part of the object's bounding box."""
    minx, miny, maxx, maxy = bounds
    cx, cy = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
    r = rng.uniform(0.12, 0.28) * max(maxx - minx, maxy - miny)
    n = int(rng.integers(4, 10))
    ang = (
        np.sort(rng.uniform(0, 2 * np.pi, n))
        if rng.random() < 0.5
        else np.linspace(0, 2 * np.pi, 24, endpoint=False)
    )
    rad = r * rng.uniform(0.6, 1.0, len(ang))
    poly = Polygon(
        np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang) * rng.uniform(0.5, 1.0)], axis=1)
    )
    return poly.convex_hull


def _drop_missing(
    shapes: list[PartShape], body_id: int, rng: np.random.Generator
) -> list[PartShape]:
    slots = sorted({s.part_id for s in shapes if s.part_id != body_id})
    gone = {pid for pid in slots if rng.random() < MISSING_SLOT_P}
    return [
        s
        for s in shapes
        if s.part_id == body_id or (s.part_id not in gone and rng.random() >= MISSING_PART_P)
    ]


def render_image(
    synset: str, index: int, *, seed: int = 0, image_size: int = 128, occlusion: bool | None = None
) -> RenderedImage:
    """Render image `index` of class `synset`. `occlusion` forces the occluder on or off (tests);
    None draws it with probability OCCLUSION_P."""
    style = class_style(synset, seed)
    rng = np.random.default_rng(stable_seed("image", seed, synset, index))
    size = image_size
    shapes = build_object(style, rng)
    body_id = part_ids(style.super_category)["Body"]
    shapes = _drop_missing(shapes, body_id, rng)

    # Pose: flip, rotate, then scale the object's bounds to a random share of the image.
    flip = -1.0 if rng.random() < 0.5 else 1.0
    sd, cap = _ROTATION.get(style.super_category, _DEFAULT_ROTATION)
    angle = math.radians(float(np.clip(rng.normal(0, sd), -cap, cap)))
    posed = [
        affinity.rotate(
            affinity.scale(s.geometry, flip, 1.0, origin=(0, 0)),
            angle,
            origin=(0, 0),
            use_radians=True,
        )
        for s in shapes
    ]
    minx, miny, maxx, maxy = unary_union(posed).bounds
    scale = rng.uniform(*OBJECT_EXTENT) * size / max(maxx - minx, maxy - miny)
    cx = size / 2 + rng.uniform(-0.14, 0.14) * size - scale * (minx + maxx) / 2
    cy = size / 2 + rng.uniform(-0.14, 0.14) * size - scale * (miny + maxy) / 2
    ca, sa = math.cos(angle), math.sin(angle)
    # object (x, y) -> pixel: p = scale * R(angle) @ diag(flip, 1) @ (x, y) + (cx, cy)
    matrix = [scale * ca * flip, -scale * sa, scale * sa * flip, scale * ca, cx, cy]

    def to_pixels(geom):
        return affinity.affine_transform(geom, matrix)

    # Inverse map of every pixel centre to the object frame, for patterns and shading.
    yy, xx = _unit_grid(size)
    dx, dy = (xx * size - cx) / scale, (yy * size - cy) / scale
    u = flip * (ca * dx + sa * dy)
    v = -sa * dx + ca * dy

    canvas = np.asarray(_background(rng, size), dtype=np.float32).copy()
    labels = np.full((size, size), -1, dtype=np.int16)
    looks = style.looks[1] if rng.random() < MORPH_P else style.looks[0]
    gain = rng.uniform(0.82, 1.15) * rng.uniform(0.94, 1.06, 3)  # illumination
    shade = (1.0 - 0.12 * np.clip(v, -1, 1))[..., None]  # (H, W, 1) lit from above
    frame = box(0, 0, size, size)
    pixel_geoms, colours = [], []
    for k, s in enumerate(shapes):
        geom = to_pixels(s.geometry).intersection(frame)
        pixel_geoms.append(geom)
        look = looks[s.part_id]
        base = np.array(look.colour, np.float32) * gain
        second = np.array(look.pattern_colour, np.float32) * gain
        mask = rasterize(geom, size, size)
        win = _window(geom, size)  # paint only the part's bounding box: most of the cost
        m = mask[win]
        mix = _pattern_mask(look, u[win][m], v[win][m])[:, None]
        canvas[win][m] = ((1 - mix) * base + mix * second) * shade[win][m]
        labels[mask] = k
        part_colours = [tuple(int(c) for c in np.clip(base, 0, 255))]
        if look.pattern != "plain":
            part_colours.append(tuple(int(c) for c in np.clip(second, 0, 255)))
        for detail, colour in s.details:
            dmask = rasterize(to_pixels(detail).intersection(geom), size, size)
            canvas[dmask] = np.array(colour, np.float32) * gain
            part_colours.append(tuple(int(c) for c in np.clip(np.array(colour) * gain, 0, 255)))
        colours.append(part_colours)

    occluded = (rng.random() < OCCLUSION_P) if occlusion is None else occlusion
    cover = Polygon()
    if occluded:
        cover = to_pixels(_occluder(rng, unary_union([s.geometry for s in shapes]).bounds))
        omask = rasterize(cover.intersection(frame), size, size)
        canvas[omask] = rng.uniform(30, 230, 3) * (0.85 + 0.3 * rng.random((size, size, 1)))[omask]
        labels[omask] = -2
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * 3.0
    pixels = np.clip(canvas, 0, 255).astype(np.uint8)

    annotations = _annotate([s.part_id for s in shapes], pixel_geoms, cover, colours, size)
    return RenderedImage(pixels=pixels, labels=labels, annotations=annotations, occluded=occluded)


def _annotate(
    part_ids_drawn: list[int], geoms: list, cover, colours: list, size: int
) -> list[PartAnnotation]:
    """One annotation per drawn part (back to front) with what nearer parts and the occluder
    leave visible of it; parts left with nothing visible get none."""
    annotations = []
    nearer = cover  # everything drawn after part k, built front to back
    for k in range(len(geoms) - 1, -1, -1):
        visible = geoms[k].difference(nearer) if not nearer.is_empty else geoms[k]
        nearer = nearer.union(geoms[k]) if not nearer.is_empty else geoms[k]
        polys = coco_polygons(visible)
        if not polys:
            continue
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, size, size))
        area = float(mask_utils.area(rle))
        if area <= 0:
            continue
        bbox = [round(float(b), 2) for b in mask_utils.toBbox(rle)]
        annotations.append(PartAnnotation(part_ids_drawn[k], polys, area, bbox, colours[k]))
    annotations.reverse()  # back to front, the order parts were drawn in
    return annotations
