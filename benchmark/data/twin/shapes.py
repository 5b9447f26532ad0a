"""Part geometry of the synthetic twin: one procedural body plan per super-category.

Every class of a super-category shares its body plan (a quadruped has a body, a head, four
legs and a tail) and differs from its siblings only in *part attributes*: the proportions and
shape of each part (`ClassStyle.shape`) and each part's colour, pattern and pattern colour
(`ClassStyle.looks`). Both are drawn once per class from an rng seeded by (seed, synset), so
what tells two classes apart lives in their parts. Colours come from a palette shared by the
super-category and every class has two colour morphs, so colour alone is a weak cue.

Geometry is built in an *object frame*: the object faces +x, y points down (as in images) and
the object spans roughly [-1, 1] in x. `build_object` returns the parts back to front, as
shapely polygons in that frame; `synth_render` poses, paints and annotates them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import shapely
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

from episodes.taxonomy import class_by_synset, parts

RGB = tuple[int, int, int]

# Pattern kinds a part's look can have, with the chance a class picks each.
PATTERNS: dict[str, float] = {
    "plain": 0.30,
    "stripes": 0.22,
    "spots": 0.16,
    "bands": 0.12,
    "checker": 0.06,
    "gradient": 0.14,
}

_EARTH = [
    (82, 52, 30),
    (188, 148, 98),
    (128, 126, 122),
    (38, 34, 32),
    (228, 218, 190),
    (168, 82, 40),
    (208, 168, 82),
    (238, 236, 230),
]
_VEHICLE = [
    (196, 38, 36),
    (40, 78, 170),
    (178, 182, 188),
    (30, 30, 34),
    (236, 236, 232),
    (232, 196, 40),
    (44, 124, 66),
    (90, 92, 98),
]
_TYRE = [(28, 28, 30), (52, 50, 48), (70, 70, 74)]
PALETTES: dict[str, list[RGB]] = {
    "Quadruped": _EARTH,
    "Biped": _EARTH,
    "Reptile": [
        (70, 128, 60),
        (112, 118, 52),
        (96, 70, 40),
        (120, 122, 110),
        (180, 160, 110),
        (44, 50, 40),
        (150, 176, 70),
        (200, 196, 170),
    ],
    "Snake": [
        (110, 120, 50),
        (96, 64, 36),
        (30, 30, 28),
        (214, 190, 60),
        (180, 52, 40),
        (60, 130, 70),
        (140, 136, 126),
        (196, 170, 120),
    ],
    "Fish": [
        (182, 192, 202),
        (238, 128, 34),
        (50, 90, 180),
        (228, 208, 52),
        (78, 150, 90),
        (188, 50, 52),
        (40, 50, 70),
        (240, 240, 236),
    ],
    "Bird": [
        (30, 30, 32),
        (238, 238, 234),
        (196, 42, 40),
        (48, 92, 186),
        (232, 200, 50),
        (120, 80, 48),
        (136, 138, 140),
        (70, 140, 70),
    ],
    "Car": _VEHICLE,
    "Bicycle": _VEHICLE,
    "Aeroplane": _VEHICLE,
    "Boat": [
        (236, 236, 230),
        (150, 96, 50),
        (40, 60, 110),
        (196, 46, 40),
        (30, 30, 32),
        (210, 196, 160),
        (60, 120, 150),
        (120, 124, 128),
    ],
    "Bottle": [
        (60, 130, 70),
        (112, 62, 22),
        (200, 214, 220),
        (50, 82, 170),
        (236, 236, 232),
        (190, 40, 40),
        (30, 70, 40),
        (150, 120, 60),
    ],
}
# Parts whose colours come from their own palette rather than the super-category's.
_PART_PALETTES: dict[str, list[RGB]] = {
    "Tier": _TYRE,
    "Sail": [(240, 238, 228), (226, 214, 180), (196, 46, 40), (40, 60, 110), (200, 200, 196)],
}
_EYE: RGB = (18, 18, 20)


@dataclass(frozen=True)
class PartLook:
    """How one part is painted: a base colour plus a pattern in a second colour.

    `frequency` is in pattern periods per object-frame unit; `angle` in radians; `duty` is the
    fraction of each period covered by the pattern colour.
    """

    colour: RGB
    pattern: str
    pattern_colour: RGB
    frequency: float
    angle: float
    duty: float


@dataclass(frozen=True)
class ClassStyle:
    """Everything that makes one class: its body-plan parameters and its part looks.

    shape: parameter name -> value (the body plan's proportions and discrete shape choices).
    looks: two colour morphs, each part id -> PartLook; an image uses morph 0 most of the time.
    """

    synset: str
    super_category: str
    shape: dict[str, float]
    looks: tuple[dict[int, PartLook], dict[int, PartLook]]


@dataclass
class PartShape:
    """One drawn part instance in the object frame.

    details: (geometry, colour) painted on top of the part (eyes, windows, hubs); they lie
    inside `geometry`, so they do not change the annotation.
    """

    part_id: int
    geometry: Polygon
    details: list[tuple[Polygon, RGB]] = field(default_factory=list)


def stable_seed(*key: object) -> int:
    """A 64-bit seed from any printable key, stable across processes and Python versions."""
    digest = hashlib.sha256("|".join(str(k) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


# ---------------------------------------------------------------------------------------------
# Geometry helpers (object frame, y down)
# ---------------------------------------------------------------------------------------------


def superellipse(
    cx: float, cy: float, rx: float, ry: float, power: float = 2.0, angle: float = 0.0, n: int = 32
) -> Polygon:
    """|x/rx|^p + |y/ry|^p = 1: a diamond for p < 2, an ellipse at 2, a rounded box above."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = rx * np.sign(c) * np.abs(c) ** (2 / power)
    y = ry * np.sign(s) * np.abs(s) ** (2 / power)
    ca, sa = math.cos(angle), math.sin(angle)
    return Polygon(np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1))


def curve(
    start: tuple[float, float], heading: float, length: float, curl: float = 0.0, n: int = 8
) -> np.ndarray:
    """(n, 2) points of an arc from `start`, leaving at `heading` and turning by `curl` rad."""
    steps = np.arange(n) / (n - 1)
    angles = heading + curl * steps
    seg = length / (n - 1)
    pts = np.zeros((n, 2))
    pts[0] = start
    for i in range(1, n):
        pts[i] = pts[i - 1] + seg * np.array([math.cos(angles[i - 1]), math.sin(angles[i - 1])])
    return pts


def limb(points: np.ndarray, half_widths: np.ndarray | float, round_end: bool = True) -> Polygon:
    """A tapered band around a polyline (legs, tails, snake bodies, bicycle bars)."""
    pts = np.asarray(points, dtype=float)
    w = np.broadcast_to(np.asarray(half_widths, dtype=float), (len(pts),))
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    ring = np.concatenate([pts + normal * w[:, None], (pts - normal * w[:, None])[::-1]])
    shape = shapely.make_valid(Polygon(ring))
    if round_end:
        shape = shape.union(Point(pts[-1]).buffer(float(w[-1]), quad_segs=4))
    return _largest_polygon(shape)


def bar(a: tuple[float, float], b: tuple[float, float], half_width: float) -> Polygon:
    """A straight bar with square ends between two points."""
    return limb(np.array([a, b], dtype=float), half_width, round_end=False)


def ring(cx: float, cy: float, r_out: float, r_in: float, n: int = 36) -> Polygon:
    """An annulus (a polygon with one hole)."""
    outer = superellipse(cx, cy, r_out, r_out, n=n)
    inner = superellipse(cx, cy, r_in, r_in, n=n)
    return Polygon(outer.exterior.coords, [inner.exterior.coords[::-1]])


def _largest_polygon(geom) -> Polygon:
    """The biggest polygon of a (multi)geometry; drawing code needs one polygon per part."""
    if isinstance(geom, Polygon):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
    if not polys:
        polys = [
            p
            for g in getattr(geom, "geoms", [])
            for p in getattr(g, "geoms", [])
            if isinstance(p, Polygon)
        ]
    return max(polys, key=lambda p: p.area)


def union(*shapes: Polygon) -> Polygon:
    return _largest_polygon(unary_union([s for s in shapes if s is not None and not s.is_empty]))


def eye(cx: float, cy: float, r: float) -> tuple[Polygon, RGB]:
    return superellipse(cx, cy, r, r, n=12), _EYE


# ---------------------------------------------------------------------------------------------
# Class styles
# ---------------------------------------------------------------------------------------------

# Body-plan parameters per super-category: name -> (low, high). Names starting with "n_" or
# "kind_" are discrete (an integer drawn in [low, high]).
SHAPE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "Quadruped": dict(
        body_rx=(0.5, 0.75),
        body_ry=(0.17, 0.3),
        body_power=(1.8, 3.4),
        neck_len=(0.1, 0.4),
        neck_angle=(0.4, 1.3),
        head_r=(0.13, 0.24),
        head_aspect=(0.9, 1.6),
        snout=(0.0, 0.22),
        kind_ears=(0, 3),
        ear_size=(0.06, 0.16),
        leg_len=(0.28, 0.62),
        leg_w=(0.04, 0.1),
        leg_taper=(0.45, 1.0),
        tail_len=(0.12, 0.75),
        tail_w=(0.025, 0.1),
        tail_angle=(-0.9, 0.7),
        tail_curl=(-1.6, 1.6),
    ),
    "Biped": dict(
        body_rx=(0.18, 0.34),
        body_ry=(0.3, 0.5),
        body_power=(1.8, 3.0),
        head_r=(0.14, 0.24),
        muzzle=(0.3, 0.75),
        ear_size=(0.0, 0.1),
        arm_len=(0.35, 0.9),
        arm_w=(0.04, 0.09),
        arm_spread=(0.1, 0.9),
        leg_len=(0.25, 0.6),
        leg_w=(0.05, 0.11),
        kind_tail=(0, 2),
        tail_len=(0.4, 1.0),
        tail_curl=(-2.5, 2.5),
    ),
    "Fish": dict(
        body_rx=(0.55, 0.85),
        body_ry=(0.16, 0.42),
        body_power=(1.6, 2.8),
        head_frac=(0.18, 0.35),
        dorsal_h=(0.08, 0.35),
        dorsal_len=(0.15, 0.6),
        dorsal_lean=(0.0, 1.0),
        ventral_h=(0.05, 0.2),
        pectoral=(0.06, 0.16),
        tail_len=(0.18, 0.45),
        tail_h=(0.15, 0.45),
        kind_tail=(0, 2),
    ),
    "Bird": dict(
        body_rx=(0.35, 0.55),
        body_ry=(0.18, 0.3),
        body_tilt=(-0.5, 0.1),
        head_r=(0.1, 0.18),
        neck_len=(0.0, 0.35),
        beak_len=(0.06, 0.32),
        beak_w=(0.025, 0.07),
        beak_curl=(-0.8, 0.8),
        kind_crest=(0, 2),
        wing_len=(0.5, 1.1),
        wing_w=(0.12, 0.24),
        tail_len=(0.15, 0.7),
        tail_spread=(0.05, 0.45),
        leg_len=(0.12, 0.5),
    ),
    "Snake": dict(
        amplitude=(0.08, 0.3),
        waves=(0.7, 2.2),
        body_w=(0.04, 0.11),
        head_len=(0.1, 0.22),
        head_w=(0.05, 0.12),
        kind_head=(0, 2),
        tail_taper=(0.1, 0.6),
    ),
    "Reptile": dict(
        body_rx=(0.3, 0.6),
        body_ry=(0.1, 0.3),
        body_power=(1.8, 3.0),
        kind_shell=(0, 1),
        head_r=(0.08, 0.17),
        snout=(0.0, 0.35),
        neck_len=(0.0, 0.2),
        leg_len=(0.1, 0.3),
        leg_w=(0.035, 0.08),
        leg_splay=(0.0, 0.8),
        tail_len=(0.1, 1.0),
        tail_w=(0.03, 0.12),
        tail_curl=(-0.8, 0.8),
    ),
    "Car": dict(
        length=(0.75, 1.0),
        base_h=(0.14, 0.34),
        cabin_h=(0.0, 0.32),
        cabin_start=(-0.95, -0.2),
        cabin_end=(0.0, 0.7),
        slant_front=(0.0, 0.3),
        slant_back=(0.0, 0.25),
        body_power=(3.0, 8.0),
        wheel_r=(0.1, 0.22),
        wheel_pos=(0.5, 0.8),
        hub=(0.3, 0.7),
        mirror=(0.03, 0.07),
    ),
    "Bicycle": dict(
        wheel_r=(0.25, 0.42),
        wheel_base=(0.5, 0.8),
        tyre_w=(0.03, 0.09),
        frame_w=(0.015, 0.045),
        bb_drop=(0.0, 0.12),
        seat_h=(0.45, 0.8),
        head_h=(0.4, 0.85),
        kind_frame=(0, 1),
        kind_bars=(0, 2),
        bar_len=(0.12, 0.3),
        seat_len=(0.1, 0.24),
        seat_h_size=(0.02, 0.07),
    ),
    "Boat": dict(
        length=(0.75, 1.0),
        hull_h=(0.12, 0.3),
        bow_rise=(0.0, 0.2),
        stern=(0.6, 0.95),
        cabin=(0.0, 0.14),
        mast_h=(0.5, 1.0),
        n_sails=(1, 3),
        sail_w=(0.25, 0.6),
        kind_sail=(0, 2),
        mast_x=(-0.2, 0.3),
    ),
    "Aeroplane": dict(
        length=(0.8, 1.0),
        body_ry=(0.06, 0.13),
        body_power=(1.8, 3.2),
        nose_frac=(0.08, 0.22),
        wing_span=(0.25, 0.6),
        wing_chord=(0.15, 0.4),
        wing_sweep=(0.0, 0.4),
        wing_x=(-0.25, 0.15),
        engine_r=(0.03, 0.07),
        n_engines=(1, 2),
        fin_h=(0.15, 0.4),
        fin_len=(0.1, 0.3),
    ),
    "Bottle": dict(
        body_rx=(0.16, 0.34),
        body_ry=(0.35, 0.7),
        shoulder=(0.05, 0.4),
        neck_w=(0.04, 0.12),
        neck_len=(0.08, 0.35),
        lip=(0.0, 0.03),
        body_power=(2.5, 8.0),
        taper=(0.7, 1.15),
    ),
}


@cache
def part_ids(super_category: str) -> dict[str, int]:
    """slot name ("Head", "Foot", ...) -> part id, for one super-category."""
    return {p.slot: p.id for p in parts() if p.super_category == super_category}


def _pick_look(rng: np.random.Generator, palette: list[RGB], base: RGB | None = None) -> PartLook:
    colour = base if base is not None else palette[rng.integers(len(palette))]
    others = [c for c in palette if c != colour]
    names = list(PATTERNS)
    pattern = names[rng.choice(len(names), p=np.array(list(PATTERNS.values())))]
    return PartLook(
        colour=tuple(colour),
        pattern=pattern,
        pattern_colour=tuple(others[rng.integers(len(others))]),
        frequency=float(rng.uniform(2.5, 9.0)),
        angle=float(rng.uniform(0, np.pi)),
        duty=float(rng.uniform(0.3, 0.6)),
    )


def _morph(rng: np.random.Generator, first: dict[int, PartLook], palette_of) -> dict[int, PartLook]:
    """A second colour morph: same patterns and shapes, base colours redrawn from the palette."""
    out = {}
    for pid, look in first.items():
        palette = palette_of(pid)
        out[pid] = PartLook(
            colour=tuple(palette[rng.integers(len(palette))]),
            pattern=look.pattern,
            pattern_colour=look.pattern_colour,
            frequency=look.frequency,
            angle=look.angle,
            duty=look.duty,
        )
    return out


@cache
def class_style(synset: str, seed: int = 0) -> ClassStyle:
    """The shape parameters and part looks of one class, a pure function of (seed, synset)."""
    info = class_by_synset().get(synset)
    if info is None:
        raise ValueError(f"unknown synset {synset!r}: not in episodes/data/classes.csv")
    sc = info.super_category
    rng = np.random.default_rng(stable_seed("class", seed, synset))
    shape: dict[str, float] = {}
    for name, (lo, hi) in SHAPE_RANGES[sc].items():
        discrete = name.startswith(("n_", "kind_"))
        shape[name] = (
            float(rng.integers(int(lo), int(hi) + 1)) if discrete else float(rng.uniform(lo, hi))
        )
    slots = part_ids(sc)
    palette_of = lambda pid: _PART_PALETTES.get(parts()[pid].slot, PALETTES[sc])  # noqa: E731
    first: dict[int, PartLook] = {}
    body_look = _pick_look(rng, palette_of(slots["Body"]))
    for slot, pid in slots.items():
        if slot == "Body":
            first[pid] = body_look
        elif palette_of(pid) is PALETTES[sc] and rng.random() < 0.4:
            first[pid] = _pick_look(rng, palette_of(pid), base=body_look.colour)  # same coat
        else:
            first[pid] = _pick_look(rng, palette_of(pid))
    return ClassStyle(
        synset=synset, super_category=sc, shape=shape, looks=(first, _morph(rng, first, palette_of))
    )


# ---------------------------------------------------------------------------------------------
# Body plans: (shape params jittered per image, rng) -> parts back to front
# ---------------------------------------------------------------------------------------------


class Params:
    """A class's shape parameters with a small per-image jitter (continuous ones only)."""

    def __init__(self, shape: dict[str, float], rng: np.random.Generator, jitter: float = 0.06):
        self._v = {
            k: (v if k.startswith(("n_", "kind_")) else v * rng.uniform(1 - jitter, 1 + jitter))
            for k, v in shape.items()
        }

    def __getattr__(self, name: str) -> float:
        try:
            return self._v[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _leg(
    top: tuple[float, float],
    length: float,
    width: float,
    taper: float,
    swing: float,
    pid: int,
    paw: float = 1.3,
) -> PartShape:
    pts = curve(top, math.pi / 2 + swing, length, curl=-0.4 * swing, n=5)
    w = np.linspace(width, width * taper, len(pts))
    foot = superellipse(
        pts[-1, 0] + width * 0.3, pts[-1, 1], width * taper * paw, width * taper * 0.9
    )
    return PartShape(pid, union(limb(pts, w), foot))


def _quadruped(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    body = superellipse(0, 0, s.body_rx, s.body_ry, s.body_power)
    neck_pts = curve((s.body_rx * 0.65, -s.body_ry * 0.2), -s.neck_angle, s.neck_len + 0.05, n=4)
    body = union(body, limb(neck_pts, s.body_ry * 0.42))
    hx, hy = neck_pts[-1]
    head = superellipse(hx + s.head_r * 0.3, hy, s.head_r * s.head_aspect, s.head_r, angle=0.25)
    snout = superellipse(
        hx + s.head_r * s.head_aspect + s.snout * 0.6,
        hy + s.head_r * 0.35,
        s.snout * 0.6 + 0.02,
        s.head_r * 0.45,
    )
    ears = []
    e, kind = s.ear_size, int(s.kind_ears)
    if kind == 1:  # pointy
        ears = [
            Polygon(
                [
                    (hx - 0.02, hy - s.head_r * 0.6),
                    (hx + e * 0.8, hy - s.head_r * 0.7),
                    (hx + e * 0.1, hy - s.head_r * 0.7 - e * 1.4),
                ]
            )
        ]
    elif kind == 2:  # round
        ears = [superellipse(hx, hy - s.head_r * 0.85, e * 0.8, e * 0.8)]
    elif kind == 3:  # floppy
        ears = [superellipse(hx - s.head_r * 0.45, hy + e * 0.6, e * 0.55, e * 1.3, angle=0.3)]
    head = union(head, snout, *ears)
    head_part = PartShape(
        ids["Head"],
        head,
        [eye(hx + s.head_r * 0.55, hy - s.head_r * 0.25, max(0.018, s.head_r * 0.14))],
    )
    bottom = s.body_ry * 0.55
    legs = [(s.body_rx * 0.55, bottom), (-s.body_rx * 0.6, bottom)]
    far = [
        _leg((x + 0.06, y - 0.03), s.leg_len, s.leg_w, s.leg_taper, rng.normal(0, 0.2), ids["Foot"])
        for x, y in legs
    ]
    near = [
        _leg((x, y), s.leg_len, s.leg_w, s.leg_taper, rng.normal(0, 0.2), ids["Foot"])
        for x, y in legs
    ]
    tail_pts = curve(
        (-s.body_rx * 0.92, -s.body_ry * 0.3),
        math.pi + s.tail_angle,
        s.tail_len,
        curl=s.tail_curl * rng.uniform(0.7, 1.3),
    )
    tail = PartShape(
        ids["Tail"], limb(tail_pts, np.linspace(s.tail_w, s.tail_w * 0.45, len(tail_pts)))
    )
    return [*far, tail, PartShape(ids["Body"], body), *near, head_part]


def _biped(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    body = superellipse(0, 0, s.body_rx, s.body_ry, s.body_power)
    hy = -s.body_ry - s.head_r * 0.7
    head = superellipse(0, hy, s.head_r, s.head_r * 1.05)
    if s.ear_size > 0.03:
        head = union(
            head,
            superellipse(-s.head_r, hy - s.head_r * 0.1, s.ear_size, s.ear_size),
            superellipse(s.head_r, hy - s.head_r * 0.1, s.ear_size, s.ear_size),
        )
    muzzle = superellipse(0, hy + s.head_r * 0.45, s.head_r * s.muzzle, s.head_r * 0.42)
    details = [
        (muzzle.intersection(head), (222, 196, 160)),
        eye(-s.head_r * 0.38, hy - s.head_r * 0.15, s.head_r * 0.13),
        eye(s.head_r * 0.38, hy - s.head_r * 0.15, s.head_r * 0.13),
    ]
    out: list[PartShape] = []
    if int(s.kind_tail) > 0:
        tail_pts = curve(
            (s.body_rx * 0.4, s.body_ry * 0.8),
            0.3,
            s.tail_len,
            curl=s.tail_curl * rng.uniform(0.6, 1.4),
            n=10,
        )
        out.append(PartShape(ids["Tail"], limb(tail_pts, 0.035)))
    for side in (-1, 1):
        top = (side * s.body_rx * 0.5, s.body_ry * 0.75)
        pts = curve(top, math.pi / 2 - side * rng.uniform(0.0, 0.35), s.leg_len, n=4)
        foot = superellipse(
            pts[-1, 0] + side * s.leg_w * 0.6, pts[-1, 1], s.leg_w * 1.5, s.leg_w * 0.7
        )
        out.append(PartShape(ids["Foot"], union(limb(pts, s.leg_w), foot)))
    out.append(PartShape(ids["Body"], body))
    for side in (-1, 1):
        top = (side * s.body_rx * 0.85, -s.body_ry * 0.6)
        heading = math.pi / 2 - side * (s.arm_spread + rng.normal(0, 0.25))
        pts = curve(top, heading, s.arm_len, curl=side * 0.3, n=5)
        hand = superellipse(pts[-1, 0], pts[-1, 1], s.arm_w * 1.4, s.arm_w * 1.4)
        out.append(PartShape(ids["Hand"], union(limb(pts, s.arm_w), hand)))
    out.append(PartShape(ids["Head"], head, details))
    return out


def _front_of(outline: Polygon, x_cut: float) -> Polygon:
    """The part of an outline in front of x = x_cut (a fish's head, a plane's nose); it is drawn
    over the whole outline, so the body's visible rest is the outline minus it."""
    minx, miny, maxx, maxy = outline.bounds
    return union(outline.intersection(box(x_cut, miny - 1, maxx + 1, maxy + 1)))


def _fish(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    rx, ry = s.body_rx, s.body_ry
    body = superellipse(0, 0, rx, ry, s.body_power, n=40)
    head = _front_of(body, rx * (1 - 2 * s.head_frac))

    def top(x: float) -> float:  # y of the outline's upper edge at x
        return -ry * max(1 - abs(x / rx) ** s.body_power, 0.0) ** (1 / s.body_power)

    d0 = -rx * 0.5 + s.dorsal_lean * 0.2
    d1 = d0 + s.dorsal_len
    apex = d0 + (d1 - d0) * (0.2 + 0.6 * s.dorsal_lean)
    dorsal = Polygon(
        [(d0, top(d0) + 0.04), (d1, top(d1) + 0.04), (apex - 0.1, top(apex) - s.dorsal_h)]
    )
    v0 = -rx * 0.45
    ventral = Polygon(
        [
            (v0, -top(v0) - 0.03),
            (v0 + 0.2, -top(v0 + 0.2) - 0.03),
            (v0 - 0.05, -top(v0) + s.ventral_h),
        ]
    )
    px = rx * (1 - 2 * s.head_frac) - 0.04
    pectoral = superellipse(
        px - s.pectoral, ry * 0.15, s.pectoral * 1.6, s.pectoral * 0.6, angle=0.3
    )
    tx, tl, th = -rx * 0.92, s.tail_len, s.tail_h
    kind = int(s.kind_tail)
    if kind == 0:  # forked
        tail = Polygon(
            [
                (tx + 0.06, -0.04),
                (tx - tl, -th),
                (tx - tl * 0.55, 0),
                (tx - tl, th),
                (tx + 0.06, 0.04),
            ]
        )
    elif kind == 1:  # truncate
        tail = Polygon([(tx + 0.06, -0.05), (tx - tl, -th), (tx - tl, th), (tx + 0.06, 0.05)])
    else:  # rounded fan
        tail = union(
            superellipse(tx - tl * 0.5, 0, tl * 0.55, th),
            bar((tx + 0.05, 0), (tx - tl * 0.4, 0), 0.05),
        )
    head_eye = eye(rx * (1 - s.head_frac * 0.8), -ry * 0.25, max(0.02, ry * 0.12))
    return [
        PartShape(ids["Fin"], dorsal),
        PartShape(ids["Fin"], ventral),
        PartShape(ids["Tail"], tail),
        PartShape(ids["Body"], body),
        PartShape(ids["Head"], head, [head_eye]),
        PartShape(ids["Fin"], pectoral),
    ]


def _bird(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    rx, ry = s.body_rx, s.body_ry
    body = superellipse(0, 0, rx, ry, angle=s.body_tilt)
    ca, sa = math.cos(s.body_tilt), math.sin(s.body_tilt)
    front = (rx * 0.8 * ca, rx * 0.8 * sa - ry * 0.3)
    neck = curve(front, -1.2, s.neck_len + 0.05, curl=0.6, n=4)
    body = union(body, limb(neck, ry * 0.4))
    hx, hy = neck[-1]
    beak_pts = curve((hx + s.head_r * 0.8, hy), 0.05, s.beak_len, curl=s.beak_curl, n=5)
    beak = limb(beak_pts, np.linspace(s.beak_w, 0.006, 5), round_end=False)
    head = union(superellipse(hx, hy, s.head_r, s.head_r), beak)
    if int(s.kind_crest) == 1:
        head = union(
            head,
            Polygon(
                [
                    (hx - s.head_r * 0.6, hy - s.head_r * 0.5),
                    (hx + s.head_r * 0.2, hy - s.head_r * 0.8),
                    (hx - s.head_r * 1.2, hy - s.head_r * 2.0),
                ]
            ),
        )
    elif int(s.kind_crest) == 2:
        head = union(head, superellipse(hx, hy - s.head_r * 0.8, s.head_r * 0.5, s.head_r * 0.5))
    head_part = PartShape(
        ids["Head"], head, [eye(hx + s.head_r * 0.35, hy - s.head_r * 0.2, s.head_r * 0.18)]
    )
    spread = rng.random() < 0.25
    if spread:  # wing raised above the back, as in flight
        wing = Polygon(
            [
                (rx * 0.35, -ry * 0.3),
                (-rx * 0.4, -ry * 0.4),
                (-rx * 0.2 - s.wing_len * 0.5, -ry - s.wing_len * 0.7),
                (rx * 0.1, -ry - s.wing_len * 0.55),
            ]
        )
    else:
        wing = superellipse(
            -rx * 0.1 - s.wing_len * 0.25 + 0.1,
            -ry * 0.05,
            s.wing_len * 0.5,
            s.wing_w,
            power=1.6,
            angle=s.body_tilt + 0.08,
        )
    back = (-rx * 0.9 * ca, -rx * 0.9 * sa)
    tail_dir = math.pi + s.body_tilt - 0.15
    tip = (back[0] + s.tail_len * math.cos(tail_dir), back[1] + s.tail_len * math.sin(tail_dir))
    tail = Polygon(
        [
            (back[0] + 0.08, back[1] - 0.05),
            (tip[0], tip[1] - s.tail_spread),
            (tip[0], tip[1] + s.tail_spread),
            (back[0] + 0.08, back[1] + 0.05),
        ]
    )
    feet = []
    for dx in (0.08, -0.06):
        top = (dx, ry * 0.8)
        pts = curve(top, math.pi / 2 + rng.normal(0, 0.15), s.leg_len, n=3)
        toes = bar((pts[-1, 0] - 0.05, pts[-1, 1]), (pts[-1, 0] + 0.08, pts[-1, 1]), 0.015)
        feet.append(PartShape(ids["Foot"], union(limb(pts, 0.018), toes)))
    return [
        feet[1],
        PartShape(ids["Tail"], tail),
        PartShape(ids["Body"], body),
        PartShape(ids["Wing"], wing),
        feet[0],
        head_part,
    ]


def _snake(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    t = np.linspace(0, 1, 48)
    amp = s.amplitude * rng.uniform(0.7, 1.3)
    phase = rng.uniform(0, 2 * np.pi)
    x = -0.95 + 1.75 * t
    y = amp * np.sin(2 * np.pi * s.waves * t + phase)
    w = s.body_w * (s.tail_taper + (1 - s.tail_taper) * np.clip(t * 3, 0, 1))
    spine = np.stack([x, y], axis=1)
    body = limb(spine, w)
    heading = math.atan2(y[-1] - y[-2], x[-1] - x[-2])
    hx, hy = spine[-1] + 0.5 * s.head_len * np.array([math.cos(heading), math.sin(heading)])
    kind = int(s.kind_head)
    if kind == 0:  # rounded
        head = superellipse(hx, hy, s.head_len * 0.6, s.head_w, angle=heading)
    else:  # arrow-shaped (1: broad, 2: narrow)
        k = 1.6 if kind == 1 else 1.1
        local = np.array(
            [
                (-0.5, -0.6 * k),
                (0.2, -0.7 * k),
                (0.6, -0.25),
                (0.6, 0.25),
                (0.2, 0.7 * k),
                (-0.5, 0.6 * k),
            ]
        ) * [s.head_len, s.head_w]
        c, sn = math.cos(heading), math.sin(heading)
        head = Polygon(local @ np.array([[c, sn], [-sn, c]]) + [hx, hy])
    ex = hx + 0.1 * s.head_len * math.cos(heading) - 0.45 * s.head_w * math.sin(heading)
    ey = hy + 0.1 * s.head_len * math.sin(heading) + 0.45 * s.head_w * math.cos(heading)
    return [
        PartShape(ids["Body"], body),
        PartShape(ids["Head"], head, [eye(ex, ey, max(0.015, s.head_w * 0.22))]),
    ]


def _reptile(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    rx, ry = s.body_rx, s.body_ry
    if int(s.kind_shell):  # a domed shell with a flat belly
        body = union(
            superellipse(0, 0, rx, ry * 1.6, s.body_power).intersection(
                box(-rx - 1, -2, rx + 1, ry * 0.35)
            )
        )
    else:
        body = superellipse(0, 0, rx, ry, s.body_power)
    neck = curve((rx * 0.8, -ry * 0.1), -0.2, s.neck_len + 0.06, n=3)
    body = union(body, limb(neck, ry * 0.45))
    hx, hy = neck[-1]
    head = union(
        superellipse(hx + s.head_r * 0.3, hy, s.head_r * 1.1, s.head_r * 0.8),
        superellipse(
            hx + s.head_r + s.snout * 0.5,
            hy + s.head_r * 0.15,
            s.snout * 0.6 + 0.02,
            s.head_r * 0.45,
            power=2.4,
        ),
    )
    head_part = PartShape(
        ids["Head"], head, [eye(hx + s.head_r * 0.5, hy - s.head_r * 0.3, s.head_r * 0.17)]
    )
    bottom = ry * 0.4
    spots = [(rx * 0.55, bottom), (-rx * 0.55, bottom)]
    far = [
        _leg(
            (x + 0.05, y - 0.03),
            s.leg_len,
            s.leg_w,
            0.8,
            s.leg_splay * 0.8 + rng.normal(0, 0.15),
            ids["Foot"],
            paw=1.8,
        )
        for x, y in spots
    ]
    near = [
        _leg(
            (x, y),
            s.leg_len,
            s.leg_w,
            0.8,
            -s.leg_splay * 0.6 + rng.normal(0, 0.15),
            ids["Foot"],
            paw=1.8,
        )
        for x, y in spots
    ]
    tail_pts = curve(
        (-rx * 0.85, 0.0), math.pi + 0.1, s.tail_len, curl=s.tail_curl * rng.uniform(0.6, 1.4), n=8
    )
    tail = PartShape(ids["Tail"], limb(tail_pts, np.linspace(s.tail_w, 0.012, len(tail_pts))))
    return [*far, tail, PartShape(ids["Body"], body), *near, head_part]


def _car(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    L, h = s.length, s.base_h
    base = superellipse(0, -h / 2, L, h / 2, s.body_power)
    c0, c1 = sorted((s.cabin_start * L, s.cabin_end * L))
    c1 = max(c1, c0 + 0.25)
    details: list[tuple[Polygon, RGB]] = []
    body = base
    if s.cabin_h > 0.04:
        roof0, roof1 = c0 + s.slant_back, c1 - s.slant_front
        if roof1 < roof0 + 0.05:
            roof1 = roof0 + 0.05
        cabin = Polygon(
            [(c0, -h + 0.02), (c1, -h + 0.02), (roof1, -h - s.cabin_h), (roof0, -h - s.cabin_h)]
        )
        body = union(base, cabin)
        window = cabin.buffer(-0.03)
        if not window.is_empty:
            details.append((union(window), (170, 196, 214)))
    wr = s.wheel_r
    wheels = []
    for x in (-s.wheel_pos * L, s.wheel_pos * L):
        tyre = superellipse(x, 0, wr, wr, n=28)
        hub = superellipse(x, 0, wr * s.hub, wr * s.hub, n=20)
        wheels.append(PartShape(ids["Tier"], tyre, [(hub, (168, 170, 176))]))
    mx = (c1 - s.slant_front * 0.5) if s.cabin_h > 0.04 else L * 0.4
    m = s.mirror
    mirror = Polygon(
        [
            (mx, -h - 0.01),
            (mx + m * 1.6, -h - m * 0.2),
            (mx + m * 1.8, -h - m * 1.4),
            (mx + m * 0.4, -h - m * 1.5),
        ]
    )
    return [PartShape(ids["Body"], body, details), *wheels, PartShape(ids["Side Mirror"], mirror)]


def _bicycle(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    R, wb, fw = s.wheel_r, s.wheel_base, s.frame_w
    rear, front = (-wb, 0.0), (wb, 0.0)
    bb = (-wb * 0.05, s.bb_drop)
    seat_top = (-wb * 0.3, -s.seat_h)
    head_top = (wb * 0.7, -s.head_h)
    head_bottom = (wb * 0.78, -s.head_h * 0.55)
    wheels = [PartShape(ids["Tier"], ring(x, y, R, R - s.tyre_w)) for x, y in (rear, front)]
    if int(s.kind_frame) == 0:  # diamond frame of bars
        frame = union(
            bar(rear, bb, fw),
            bar(rear, seat_top, fw),
            bar(bb, seat_top, fw),
            bar(seat_top, head_top, fw),
            bar(bb, head_bottom, fw * 1.2),
            bar(head_bottom, front, fw),
        )
    else:  # step-through, scooter-like: a filled shell
        frame = union(
            Polygon(
                [
                    rear,
                    (bb[0], bb[1] + 0.05),
                    head_bottom,
                    head_top,
                    (head_top[0] - 0.1, head_top[1] + 0.15),
                    (bb[0] + 0.1, bb[1] - 0.12),
                    (seat_top[0], seat_top[1] + 0.15),
                ]
            ),
            bar(head_bottom, front, fw),
        )
    stem = bar(head_top, (head_top[0] - 0.02, head_top[1] - 0.08), fw)
    bl, kind = s.bar_len, int(s.kind_bars)
    hx, hy = head_top[0] - 0.02, head_top[1] - 0.08
    if kind == 0:  # flat bar
        bars = bar((hx - bl * 0.4, hy), (hx + bl * 0.6, hy), fw)
    elif kind == 1:  # drop bar
        bars = limb(curve((hx, hy), 0.0, bl * 1.6, curl=2.8, n=7), fw)
    else:  # high riser
        bars = union(
            bar((hx, hy), (hx - bl * 0.4, hy - bl * 0.8), fw),
            bar((hx - bl * 0.4, hy - bl * 0.8), (hx - bl * 0.9, hy - bl * 0.7), fw),
        )
    head = union(stem, bars)
    post_top = (seat_top[0] - 0.02, seat_top[1] - 0.06)
    seat = union(
        bar(seat_top, post_top, fw * 0.8),
        superellipse(
            post_top[0], post_top[1] - s.seat_h_size * 0.5, s.seat_len, s.seat_h_size, power=1.8
        ),
    )
    return [
        *wheels,
        PartShape(ids["Body"], frame),
        PartShape(ids["Seat"], seat),
        PartShape(ids["Head"], head),
    ]


def _boat(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    L, h = s.length, s.hull_h
    hull = Polygon([(-L, -h), (L, -h - s.bow_rise), (L * 0.7, 0.0), (-L * s.stern, 0.0)])
    deck_y = -h
    mx = s.mast_x * L
    mast_top = deck_y - s.mast_h
    mast = bar((mx, deck_y + 0.02), (mx, mast_top), 0.014)
    body = union(hull, mast)
    if s.cabin > 0.03:
        body = union(body, box(-L * 0.5, deck_y - s.cabin, -L * 0.1, deck_y + 0.02))
    sails: list[PartShape] = []
    kind = int(s.kind_sail)
    for i in range(int(s.n_sails)):
        top = mast_top + 0.05 + i * 0.08
        w = s.sail_w * (1 - 0.25 * i)
        x = mx - i * 0.05
        if kind == 0:  # triangular mainsail aft of the mast, jib forward
            pts = (
                [(x - 0.015, top), (x - 0.015, deck_y - 0.06), (x - w, deck_y - 0.06)]
                if i % 2 == 0
                else [
                    (x + 0.015, top),
                    (x + 0.015 + w * 0.9, deck_y - 0.06),
                    (x + 0.015, deck_y - 0.06),
                ]
            )
        elif kind == 1:  # square rig: stacked rectangles
            span = (deck_y - 0.06 - (mast_top + 0.04)) / int(s.n_sails)
            y0 = mast_top + 0.04 + i * span
            pts = [
                (x - w * 0.5, y0),
                (x + w * 0.5, y0),
                (x + w * 0.55, y0 + span * 0.9),
                (x - w * 0.55, y0 + span * 0.9),
            ]
        else:  # curved gaff sail
            pts = [
                (x - 0.015, top + 0.04),
                (x - w * 0.7, top + 0.12),
                (x - w, deck_y - 0.06),
                (x - 0.015, deck_y - 0.06),
            ]
        sails.append(PartShape(ids["Sail"], Polygon(pts)))
    return [PartShape(ids["Body"], body), *sails]


def _aeroplane(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    L, ry = s.length, s.body_ry
    body = superellipse(0, 0, L, ry, s.body_power, n=40)
    nose = _front_of(body, L * (1 - 2 * s.nose_frac))
    wx, c, span, sweep = s.wing_x * L, s.wing_chord, s.wing_span, s.wing_sweep
    near_wing = Polygon(
        [
            (wx + c * 0.5, 0.0),
            (wx - c * 0.5, 0.0),
            (wx - c * 0.3 - sweep, span),
            (wx - sweep + c * 0.05, span),
        ]
    )
    far_wing = Polygon(
        [
            (wx + c * 0.4, 0.0),
            (wx - c * 0.4, 0.0),
            (wx - c * 0.3 - sweep * 0.8, -span * 0.6),
            (wx - sweep * 0.8, -span * 0.6),
        ]
    )
    fin = Polygon(
        [
            (-L * 0.72, -ry * 0.6),
            (-L * 0.72 - s.fin_len, -ry * 0.6),
            (-L * 0.98 - s.fin_len * 0.4, -ry - s.fin_h),
            (-L * 0.9 - s.fin_len * 0.2, -ry - s.fin_h),
        ]
    )
    stab = Polygon(
        [
            (-L * 0.78, ry * 0.2),
            (-L * 0.98, ry * 0.2),
            (-L * 1.02, ry * 0.2 + s.fin_h * 0.5),
            (-L * 0.92, ry * 0.2 + s.fin_h * 0.5),
        ]
    )
    engines = []
    for i in range(int(s.n_engines)):
        t = (i + 1) / (int(s.n_engines) + 1)
        ex = wx - sweep * t
        engines.append(
            PartShape(
                ids["Engine"],
                superellipse(
                    ex + c * 0.1,
                    span * t + s.engine_r * 1.2,
                    s.engine_r * 2.2,
                    s.engine_r,
                    power=2.6,
                ),
            )
        )
    windows = [
        (superellipse(L * (1 - 2 * s.nose_frac) + 0.03, -ry * 0.35, 0.05, ry * 0.25), (60, 70, 90))
    ]
    return [
        PartShape(ids["Wing"], far_wing),
        PartShape(ids["Tail"], union(fin, stab)),
        PartShape(ids["Body"], body),
        PartShape(ids["Head"], nose, windows),
        PartShape(ids["Wing"], near_wing),
        *engines,
    ]


def _bottle(s: Params, ids: dict[str, int], rng: np.random.Generator) -> list[PartShape]:
    rx, ry = s.body_rx, s.body_ry
    base = superellipse(0, 0, rx, ry, s.body_power)
    # taper the body towards the bottom (or top) by a shear of its half-widths
    coords = np.asarray(base.exterior.coords)
    scale = 1 + (s.taper - 1) * (coords[:, 1] + ry) / (2 * ry)
    body = Polygon(np.stack([coords[:, 0] * scale, coords[:, 1]], axis=1))
    shoulder_top = -ry - s.shoulder
    shoulder = Polygon(
        [
            (-rx * 0.95, -ry * 0.8),
            (rx * 0.95, -ry * 0.8),
            (s.neck_w, shoulder_top),
            (-s.neck_w, shoulder_top),
        ]
    )
    body = union(body, shoulder)
    neck_top = shoulder_top - s.neck_len
    mouth = union(
        box(-s.neck_w, neck_top, s.neck_w, shoulder_top + 0.02),
        box(-s.neck_w - s.lip, neck_top - 0.03, s.neck_w + s.lip, neck_top + 0.03),
    )
    label = box(-rx * 1.2, -ry * 0.3, rx * 1.2, ry * 0.35).intersection(body)
    return [
        PartShape(
            ids["Body"], body, [(union(label), (236, 228, 200))] if rng.random() < 0.7 else []
        ),
        PartShape(ids["Mouth"], mouth),
    ]


BODY_PLANS: dict[str, Callable[[Params, dict[str, int], np.random.Generator], list[PartShape]]] = {
    "Quadruped": _quadruped,
    "Biped": _biped,
    "Fish": _fish,
    "Bird": _bird,
    "Snake": _snake,
    "Reptile": _reptile,
    "Car": _car,
    "Bicycle": _bicycle,
    "Boat": _boat,
    "Aeroplane": _aeroplane,
    "Bottle": _bottle,
}


def build_object(style: ClassStyle, rng: np.random.Generator) -> list[PartShape]:
    """The parts of one instance of a class, back to front, in the object frame."""
    params = Params(style.shape, rng)
    return BODY_PLANS[style.super_category](params, part_ids(style.super_category), rng)
