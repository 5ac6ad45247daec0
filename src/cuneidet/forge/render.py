"""Render a forged tablet photograph: clay height field → lit surface → camera.

Per view (segment) of a tablet, in its own pixel region of the composite photo:

1. a tablet-shaped surface (rounded rectangle with irregular outline, rounded edges, a gentle
   bulge) plus low- and high-frequency clay texture, cracks and chipped corners;
2. each sign's glyph mask warped into its box (affine jitter, stroke-width variation) and pressed
   into the clay with a V-shaped wedge profile (depth from the distance to the stroke edge);
   damaged signs (status 2) lose part of their strokes, broken ones (status 0) keep only traces
   inside a rough broken patch;
3. Lambertian + a little specular shading under one directional light per tablet, clay albedo
   with colour noise and darker dirt in the impressions;

then the views are composited onto a museum-photo background (black, grey or white, with a soft
shadow on light ones) and the camera adds blur and noise. Every random choice comes from the
generator passed in, so a tablet seed gives one image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from cuneidet.forge.glyphs import GlyphBank
from cuneidet.forge.layout import ForgedSign, TabletSpec, ViewSpec, clip_to_view, layout_view


@dataclass(frozen=True)
class ForgeParams:
    """Ranges the per-tablet and per-sign style is drawn from (uniform unless stated)."""

    light_azimuth_deg: tuple[float, float] = (95.0, 175.0)  # where light comes from; 135 = top-left
    light_elevation_deg: tuple[float, float] = (25.0, 55.0)
    ambient: tuple[float, float] = (0.25, 0.4)
    specular: tuple[float, float] = (0.0, 0.15)
    wedge_slope: tuple[float, float] = (0.6, 1.3)  # wall steepness of impressions
    wedge_depth: tuple[float, float] = (0.05, 0.1)  # max depth, fraction of sign height
    ink_threshold: tuple[float, float] = (0.3, 0.7)  # stroke width variation after warping
    glyph_fill: tuple[float, float] = (0.85, 1.0)  # fraction of the box the glyph spans
    max_anisotropy: float = 1.6  # limit on stretching a glyph to its box
    rotation_deg: float = 4.0  # std of per-sign rotation
    shear: float = 0.08  # std of per-sign shear
    edge_radius: tuple[float, float] = (0.05, 0.12)  # rounded-edge width / shorter view side
    bulge: tuple[float, float] = (0.01, 0.04)  # surface bulge height / shorter view side
    texture: tuple[float, float] = (0.3, 1.0)  # clay roughness
    cracks: tuple[int, int] = (0, 3)  # per view, inclusive
    chip_probability: float = 0.5  # chance per view of a chipped corner
    damaged_keep: tuple[float, float] = (0.4, 0.75)  # stroke fraction kept for status 2
    broken_keep: tuple[float, float] = (0.0, 0.2)  # stroke fraction kept for status 0
    stroke_dilation: tuple[float, float] = (0.0, 0.05)  # stroke thickening / sign height
    clay_colours: tuple[tuple[int, int, int], ...] = (
        (200, 170, 122),
        (186, 158, 112),
        (170, 140, 100),
        (206, 186, 150),
        (160, 134, 104),
        (152, 142, 126),
        (196, 160, 120),
    )
    background_weights: tuple[float, float, float] = (0.55, 0.25, 0.2)  # black, grey, white
    blur_sigma: tuple[float, float] = (0.3, 1.1)
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    jpeg_quality: tuple[int, int] = (72, 95)


@dataclass
class TabletStyle:
    """The per-tablet draw from :class:`ForgeParams`."""

    light: np.ndarray
    ambient: float
    specular: float
    clay: np.ndarray
    background: str
    background_level: float
    texture: float
    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int
    wedge_slope: float
    wedge_depth: float

    @classmethod
    def draw(cls, params: ForgeParams, rng: np.random.Generator) -> TabletStyle:
        azimuth = math.radians(rng.uniform(*params.light_azimuth_deg))
        elevation = math.radians(rng.uniform(*params.light_elevation_deg))
        light = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                -math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ],
            dtype=np.float32,
        )
        colours = np.asarray(params.clay_colours, dtype=np.float32)
        clay = colours[rng.integers(len(colours))] * rng.uniform(0.9, 1.1, size=3)
        weights = np.asarray(params.background_weights, dtype=float)
        background = str(rng.choice(["black", "grey", "white"], p=weights / weights.sum()))
        level = {"black": (5, 30), "grey": (80, 150), "white": (200, 245)}[background]
        return cls(
            light=light,
            ambient=float(rng.uniform(*params.ambient)),
            specular=float(rng.uniform(*params.specular)),
            clay=np.clip(clay, 40, 235).astype(np.float32) / 255.0,
            background=background,
            background_level=float(rng.uniform(*level)),
            texture=float(rng.uniform(*params.texture)),
            blur_sigma=float(rng.uniform(*params.blur_sigma)),
            noise_sigma=float(rng.uniform(*params.noise_sigma)),
            jpeg_quality=int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1)),
            wedge_slope=float(rng.uniform(*params.wedge_slope)),
            wedge_depth=float(rng.uniform(*params.wedge_depth)),
        )


@dataclass
class RenderedView:
    view: ViewSpec
    layout: str
    signs: list[ForgedSign] = field(default_factory=list)


@dataclass
class ForgedPhoto:
    image: np.ndarray  # uint8 RGB, before JPEG compression
    views: list[RenderedView]
    jpeg_quality: int


# -- noise helpers ----------------------------------------------------------------------------


def smooth_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with features about ``cell`` pixels wide."""
    h, w = shape
    cell = max(cell, 1.0)
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# -- one sign ---------------------------------------------------------------------------------


def _glyph_transform(
    glyph_shape: tuple[int, int],
    box_size: tuple[int, int],
    params: ForgeParams,
    rng: np.random.Generator,
) -> np.ndarray:
    gh, gw = glyph_shape
    bw, bh = box_size
    fill = rng.uniform(*params.glyph_fill, size=2)
    sx, sy = bw * fill[0] / gw, bh * fill[1] / gh
    a = params.max_anisotropy
    sx, sy = min(sx, sy * a), min(sy, sx * a)
    theta = math.radians(rng.normal(0.0, params.rotation_deg))
    shear = rng.normal(0.0, params.shear)
    linear = (
        np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        @ np.array([[1.0, shear], [0.0, 1.0]])
        @ np.diag([sx, sy])
    )
    corners = np.array([[0, 0], [gw, 0], [0, gh], [gw, gh]], dtype=float) - [gw / 2, gh / 2]
    extent = np.abs(corners @ linear.T).max(axis=0)  # half-size of the warped glyph
    slack = np.maximum(np.array([bw / 2, bh / 2]) - extent, 0.0)
    centre = np.array([bw / 2, bh / 2]) + rng.uniform(-1, 1, size=2) * slack * 0.8
    offset = centre - linear @ np.array([gw / 2, gh / 2])
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def sign_impression(
    glyph: np.ndarray,
    box_size: tuple[int, int],
    status: int,
    unit: float,
    style: TabletStyle,
    params: ForgeParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth (>= 0) of one sign pressed into clay, exactly ``box_size`` (w, h) large.

    Returns ``(depth, ink)``: the impression and the binary stroke mask it came from. Nothing is
    drawn outside the box, so the ink always lies inside the sign's ground-truth box.
    """
    bw, bh = box_size
    matrix = _glyph_transform(glyph.shape, box_size, params, rng)
    warped = cv2.warpAffine(glyph.astype(np.float32), matrix, (bw, bh), flags=cv2.INTER_LINEAR)
    ink = (warped > rng.uniform(*params.ink_threshold)).astype(np.uint8)
    grow = round(rng.uniform(*params.stroke_dilation) * unit)
    if grow > 0:
        ink = cv2.dilate(ink, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    if status != 1:
        keep = rng.uniform(*(params.damaged_keep if status == 2 else params.broken_keep))
        erosion = smooth_noise((bh, bw), max(bw, bh) / 5, rng)
        ink &= (erosion < np.quantile(erosion, keep) if keep > 0 else 0).astype(np.uint8)
    distance = cv2.distanceTransform(ink, cv2.DIST_L2, 3)
    depth = np.minimum(distance * style.wedge_slope, style.wedge_depth * unit)
    if status == 0:  # a rough broken patch over the slot
        yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
        ellipse = 1.0 - ((xx - bw / 2) / (bw / 2)) ** 2 - ((yy - bh / 2) / (bh / 2)) ** 2
        rough = 0.6 + 0.4 * smooth_noise((bh, bw), max(bw, bh) / 6, rng)
        depth = np.maximum(depth, np.clip(ellipse, 0, 0.35) * rough * 0.3 * unit)
    return depth.astype(np.float32), ink


# -- one view ---------------------------------------------------------------------------------


def _surface_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Rounded rectangle with an irregular outline filling most of an h×w region."""
    radius = rng.uniform(0.06, 0.22) * min(h, w)
    yy, xx = _grid(h, w)
    dx = np.maximum(np.abs(xx - (w - 1) / 2) - ((w - 1) / 2 - radius), 0)
    dy = np.maximum(np.abs(yy - (h - 1) / 2) - ((h - 1) / 2 - radius), 0)
    wobble = smooth_noise((h, w), min(h, w) / 4, rng) * np.float32(0.006 * min(h, w))
    return (np.sqrt(dx * dx + dy * dy) + wobble <= radius).astype(np.uint8)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as broadcastable float32 vectors (h, 1) and (1, w)."""
    return (
        np.arange(h, dtype=np.float32)[:, None],
        np.arange(w, dtype=np.float32)[None, :],
    )


def _chip(
    mask: np.ndarray, signs_local: list[tuple[int, int, int, int]], rng: np.random.Generator
) -> None:
    """Cut an elliptical chip off a corner, unless it would touch a sign."""
    h, w = mask.shape
    cx, cy = rng.choice([0, w - 1]), rng.choice([0, h - 1])
    ax, ay = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
    for x1, y1, x2, y2 in signs_local:
        if x2 >= cx - ax and x1 <= cx + ax and y2 >= cy - ay and y1 <= cy + ay:
            return
    cv2.ellipse(
        mask,
        (int(cx), int(cy)),
        (int(ax), int(ay)),
        float(rng.uniform(0, 180)),
        0,
        360,
        0,
        thickness=-1,
    )


def _cracks(h: int, w: int, count: int, unit: float, rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(count):
        point = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        angle = rng.uniform(0, 2 * math.pi)
        points = [point.copy()]
        for _ in range(int(rng.integers(6, 20))):
            angle += rng.normal(0, 0.35)
            point = point + unit * rng.uniform(0.3, 0.8) * np.array(
                [math.cos(angle), math.sin(angle)]
            )
            points.append(point.copy())
        cv2.polylines(
            canvas, [np.round(points).astype(np.int32)], False, 1, thickness=int(rng.integers(1, 3))
        )
    return cv2.GaussianBlur(canvas.astype(np.float32), (3, 3), 0)


def local_boxes(view: ViewSpec, signs: list[ForgedSign]) -> list[tuple[int, int, int, int]]:
    """Integer sign boxes relative to the view's bbox (rounded outwards, as in the truth)."""
    x0, y0 = view.bbox[:2]
    return [
        (math.floor(s.x1) - x0, math.floor(s.y1) - y0, math.ceil(s.x2) - x0, math.ceil(s.y2) - y0)
        for s in signs
    ]


def press_signs(
    shape: tuple[int, int],
    signs: list[ForgedSign],
    local: list[tuple[int, int, int, int]],
    bank: GlyphBank,
    style: TabletStyle,
    params: ForgeParams,
    unit: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The impression depth map of a view: every sign pressed in, each only inside its box."""
    impressions = np.zeros(shape, np.float32)
    for sign, (lx1, ly1, lx2, ly2) in zip(signs, local, strict=True):
        box_size = (lx2 - lx1, ly2 - ly1)
        depth, _ = sign_impression(
            bank.mask(sign.mzl), box_size, sign.status, unit, style, params, rng
        )
        region = impressions[ly1:ly2, lx1:lx2]
        np.maximum(region, depth, out=region)
    return impressions


def render_view(
    view: ViewSpec,
    signs: list[ForgedSign],
    bank: GlyphBank,
    style: TabletStyle,
    params: ForgeParams,
    unit: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB float32 image (h, w, 3) in [0, 1] and alpha (h, w) of one view's surface."""
    x0, y0, x1, y1 = view.bbox
    h, w = y1 - y0, x1 - x0
    local = local_boxes(view, signs)
    mask = _surface_mask(h, w, rng)
    if rng.random() < params.chip_probability:
        _chip(mask, local, rng)
    side = float(min(h, w))
    edge = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    radius = max(rng.uniform(*params.edge_radius) * side, 2.0)
    t = np.minimum(edge * np.float32(1.0 / radius), 1.0)
    height = np.float32(0.5 * radius) * np.sqrt(1.0 - (1.0 - t) ** 2)
    yy, xx = _grid(h, w)
    bulge = np.float32(rng.uniform(*params.bulge) * side)
    height += bulge * (1 - ((xx - w / 2) / (w / 2)) ** 2) * (1 - ((yy - h / 2) / (h / 2)) ** 2)
    texture = np.float32(style.texture)
    height += smooth_noise((h, w), 4 * unit, rng) * (texture * np.float32(0.08 * unit))
    height += smooth_noise((h, w), 0.6 * unit, rng) * (texture * np.float32(0.02 * unit))
    height += smooth_noise((h, w), 1.5, rng) * (texture * np.float32(0.35))
    low, high = params.cracks
    height -= _cracks(h, w, int(rng.integers(low, high + 1)), unit, rng) * np.float32(0.08 * unit)

    impressions = press_signs((h, w), signs, local, bank, style, params, unit, rng)
    height -= cv2.GaussianBlur(impressions, (3, 3), 0)

    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    lx, ly, lz = (float(v) for v in style.light)
    lambert = cv2.addWeighted(gx, -lx, gy, -ly, lz)
    lambert /= np.sqrt(gx * gx + gy * gy + 1.0)
    np.clip(lambert, 0.0, 1.0, out=lambert)
    shade = lambert * np.float32(1 - style.ambient) + np.float32(style.ambient)
    if style.specular > 0:
        shade += np.float32(style.specular) * lambert**12
    shade *= 1.0 - np.float32(0.35) * np.minimum(impressions * np.float32(1 / (0.1 * unit)), 1.0)
    shade *= smooth_noise((h, w), 8 * unit, rng) * np.float32(0.09) + 1.0
    shade += smooth_noise((h, w), unit, rng) * (shade * np.float32(0.04))
    np.minimum(shade, 1.0 / float(style.clay.max()), out=shade)
    rgb = cv2.merge([shade * float(c) for c in style.clay])
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)
    return rgb, alpha


# -- the tablet -------------------------------------------------------------------------------


def _background(
    height: int, width: int, style: TabletStyle, rng: np.random.Generator
) -> np.ndarray:
    """A uint8 RGB backdrop with a faint, slightly tinted gradient."""
    cell = max(height, width) / 2
    small = 1.0 + 0.06 * rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2))
    tint = rng.uniform(0.97, 1.03, size=3)
    colour = np.clip(small[..., None] * tint * style.background_level, 0, 255)
    return cv2.resize(
        colour.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    ).astype(np.uint8)


def _view_unit(view: ViewSpec, signs: list[ForgedSign]) -> float:
    if signs:
        return float(np.median([s.y2 - s.y1 for s in signs]))
    x0, y0, x1, y1 = view.bbox
    if np.isfinite(view.scale) and view.scale > 0:
        return 128.0 / view.scale
    return max(12.0, min(x1 - x0, y1 - y0) / 12.0)


def render_tablet(
    spec: TabletSpec,
    bank: GlyphBank,
    priors: Mapping[int, tuple[float, float]],
    params: ForgeParams,
    rng: np.random.Generator,
    layout: str = "auto",
) -> ForgedPhoto:
    """Render a whole composite photo with its laid-out views.

    Views are drawn in order, unassigned (sign-less) ones first so text views are on top.
    """
    style = TabletStyle.draw(params, rng)
    canvas = _background(spec.height, spec.width, style, rng)
    rendered: list[RenderedView] = []
    for view in sorted(spec.views, key=lambda v: v.has_text):
        kind, signs = layout_view(view, rng, priors, layout)
        signs = clip_to_view(signs, view.bbox)
        unit = _view_unit(view, signs)
        rgb, alpha = render_view(view, signs, bank, style, params, unit, rng)
        x0, y0, x1, y1 = view.bbox
        target = canvas[y0:y1, x0:x1]
        backdrop = target.astype(np.float32) * np.float32(1 / 255)
        if style.background != "black":  # soft shadow, cast away from the light
            shift = np.float32(
                [
                    [1, 0, -style.light[0] * 0.02 * unit * 10],
                    [0, 1, -style.light[1] * 0.02 * unit * 10],
                ]
            )
            shadow = cv2.warpAffine(alpha, shift, (x1 - x0, y1 - y0))
            shadow = cv2.GaussianBlur(shadow, (0, 0), max(unit * 0.15, 1.0))
            backdrop *= (1.0 - np.float32(0.35) * shadow)[..., None]
        weight = alpha[..., None]
        blended = (rgb - backdrop) * weight + backdrop
        target[:] = cv2.convertScaleAbs(blended, alpha=255.0)
        rendered.append(RenderedView(view, kind, signs))
    image = camera(canvas, style, rng)
    rendered.sort(key=lambda r: (r.view.collection, r.view.segm_idx))
    return ForgedPhoto(image, rendered, style.jpeg_quality)


def camera(canvas: np.ndarray, style: TabletStyle, rng: np.random.Generator) -> np.ndarray:
    """Blur and luminance noise on a uint8 RGB image (JPEG compression happens when saving)."""
    image = cv2.GaussianBlur(canvas, (0, 0), style.blur_sigma)
    noise = np.empty(image.shape[:2], np.int16)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # OpenCV's generator is fast; seeded from ours
    cv2.randn(noise, 0.0, float(style.noise_sigma))
    return cv2.add(image, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)


__all__ = [
    "ForgeParams",
    "ForgedPhoto",
    "RenderedView",
    "TabletStyle",
    "camera",
    "local_boxes",
    "press_signs",
    "render_tablet",
    "render_view",
    "sign_impression",
    "smooth_noise",
]
