"""Synthetic navel oranges with exact defect masks, written as a VOC data set.

So that every script of this FastSegFormer framework (Cai et al., Computers and Electronics in
Agriculture 217, 108604, 2024) runs without the paper's Orange_Navel_1.5k, this module renders
photos that imitate the paper's (see ../shared/samples/orange_real): one round-to-oval navel
orange filling most of a 512x512 frame on a pale grey table, peel from yellow-green to deep
orange with pitted oil-gland texture, soft light with a specular highlight broken up by the
pits, a stem or navel end, unlabelled natural marks (specks, green patches), camera noise,
slight blur and JPEG artefacts. Defects are drawn with exact masks:

- 1 sunburn: a large irregular patch, tan/brown or pale speckled, often with a dark rim and a
  greenish or dark halo outside it (the halo is not labelled, as in the real masks);
- 2 ulcer: small round dark-brown spots with a raised lighter ring, often several, clustered;
- 3 wind scarring: irregular light-brown, grey or reddish streaks and scratch patterns.

Defects are drawn in a flat patch and warped onto the sphere (foreshortened towards the rim).
Each image has its own random stream spawned from the seed, so the same seed gives the same
files whatever the number of worker processes.

Usage::

    python -m utils.data.synthetic --out data/synthetic_oranges --num 200 --seed 0 [--size 512]
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.cli import parse_config
from utils.data.labels import read_mask, save_index_mask
from utils.data.preprocess import CLASS_NAMES
from utils.fileio import (
    atomic_path,
    remove_stale_temp_files,
    temp_path_for,
    write_all,
    write_bytes,
    write_text,
)

SUNBURN, ULCER, WIND = 1, 2, 3

# Lit peel albedo anchors (RGB, 0..255) from deep orange to yellow-green, measured roughly on
# the real photos (fruit centres read (176, 72, 2) ... (208, 119, 27) ... (185, 139, 26)).
_PEEL_ANCHORS = np.array(
    [
        [225, 88, 8],  # deep orange (img705)
        [232, 125, 22],  # orange (img418, img279)
        [225, 145, 28],  # yellow-orange
        [215, 165, 35],  # yellow (img826)
        [178, 165, 45],  # yellow-green
    ],
    dtype=np.float32,
)


@dataclass
class Sample:
    """One rendered orange: photo (S, S, 3) uint8 RGB, mask (S, S) uint8 class ids."""

    image: np.ndarray
    mask: np.ndarray
    fruit: np.ndarray  # (S, S) bool, where the fruit is (defects lie inside it)
    jpeg_quality: int


# ----------------------------------------------------------------------------- noise helpers


def hsv_colour(rng: np.random.Generator, hue: tuple, sat: tuple, val: tuple) -> np.ndarray:
    """(3,) float32 RGB 0..255 from hue (degrees), saturation and value drawn in ranges."""
    h = rng.uniform(*hue) / 60.0
    sv, vv = rng.uniform(*sat), rng.uniform(*val) * 255.0
    c = vv * sv
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array(rgb, np.float32) + (vv - c)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float32 smooth noise, roughly N(0, 1), with about `cells` blobs across."""
    cells = max(2, int(cells))
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(grid, (w + 2 * w // cells, h + 2 * h // cells), interpolation=cv2.INTER_CUBIC)
    oy, ox = h // cells, w // cells
    return np.ascontiguousarray(big[oy : oy + h, ox : ox + w])


def _peel_texture(rng: np.random.Generator, size: int, pit: float) -> np.ndarray:
    """(S, S) float32 band-pass noise: negative = oil-gland pits, positive = ridges; std 1."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    fine = cv2.GaussianBlur(white, (0, 0), 0.55 * pit)
    coarse = cv2.GaussianBlur(white, (0, 0), 1.6 * pit)
    tex = fine - coarse
    # Sparse larger glands on top of the fine pits.
    glands = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), pit)
    tex = tex / (tex.std() + 1e-6) + 0.5 * np.minimum(glands / (glands.std() + 1e-6) + 1.2, 0)
    return tex / (tex.std() + 1e-6)


# ------------------------------------------------------------------------------- the orange


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float32 pixel coordinate grids, each (S, S); cached, never modified."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@dataclass
class Fruit:
    """Geometry of the fruit in the frame (pixels)."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float  # radians
    rho: np.ndarray  # (S, S) normalised radius, < 1 inside
    nx: np.ndarray  # (S, S) sphere normal components
    ny: np.ndarray
    nz: np.ndarray
    alpha: np.ndarray  # (S, S) float32 coverage of the fruit (anti-aliased edge)


def _make_fruit(rng: np.random.Generator, size: int) -> Fruit:
    s = float(size)
    r = rng.uniform(0.43, 0.55) * s
    squash = rng.uniform(0.78, 1.02)
    rx, ry = (r, r * squash) if rng.random() < 0.8 else (r * squash, r)
    cx = s / 2 + rng.normal(0, 0.035) * s
    cy = s / 2 + rng.normal(0, 0.035) * s + 0.02 * s
    angle = rng.uniform(-0.5, 0.5)
    ys, xs = _grid(size)
    dx, dy = xs - np.float32(cx), ys - np.float32(cy)
    ca, sa = float(np.cos(angle)), float(np.sin(angle))
    u = (ca * dx + sa * dy) / rx
    v = (-sa * dx + ca * dy) / ry
    phi = np.arctan2(v, u)
    wobble = np.ones_like(phi)
    for k in range(2, 5):  # slightly lumpy outline, about one percent
        wobble += float(rng.normal(0, 0.006)) * np.cos(k * phi + float(rng.uniform(0, 6.3)))
    rho = np.sqrt(u * u + v * v) / wobble
    edge_px = (1.0 - rho) * min(rx, ry)
    soft = rng.uniform(1.0, 5.0)  # out-of-focus rim: real fruit edges fade over a few pixels
    alpha = np.clip(edge_px / soft + 0.5, 0.0, 1.0).astype(np.float32)
    rc = np.minimum(rho, 0.999)
    nz = np.sqrt(1.0 - rc * rc)
    norm = np.sqrt(dx * dx + dy * dy) + 1e-6
    nx, ny = dx / norm * rc, dy / norm * rc
    return Fruit(cx, cy, rx, ry, angle, rho, nx, ny, nz, alpha)


def _background(rng: np.random.Generator, size: int, fruit: Fruit) -> np.ndarray:
    """(S, S, 3) float32 pale grey/white table and wall with a soft shadow under the fruit."""
    level = rng.uniform(178, 242)
    warm = rng.uniform(0, 6)
    tint = (np.array([warm, warm * 0.5, -warm * 0.8]) + rng.normal(0, 1.5, 3)).astype(np.float32)
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    horizon = rng.uniform(0.45, 0.85)
    step = rng.uniform(-8, 18) / (1 + np.exp(-(ys - horizon) * 60))  # wall -> table edge
    grad = rng.uniform(-25, 10) * (0.5 - ys) + step  # (S, 1)
    low = smooth_noise(rng, size, size, 3) * rng.uniform(2.0, 8.0)
    xs = np.linspace(-0.5, 0.5, size, dtype=np.float32)[None, :]
    side = rng.uniform(-20, 20) * xs  # light from one side
    bg = level + grad + side + low  # (S, S)
    out = bg[..., None] + tint  # (S, S, 3)
    # Contact shadow: a darker blurred ellipse under the fruit's lower half.
    q = 4  # drawn and blurred at quarter resolution: it is soft anyway
    small = np.zeros((size // q, size // q), np.float32)
    cy = int((fruit.cy + 0.55 * fruit.ry) / q)
    axes = (int(fruit.rx * 0.95 / q), int(fruit.ry * 0.45 / q))
    cv2.ellipse(small, (int(fruit.cx / q), cy), axes, 0, 0, 360, 1.0, -1)
    small = cv2.GaussianBlur(small, (0, 0), size * 0.04 / q)
    shadow = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    out *= (1.0 - rng.uniform(0.15, 0.4) * shadow)[..., None]
    return out


def _peel_albedo(rng: np.random.Generator, size: int, fruit: Fruit) -> np.ndarray:
    """(S, S, 3) float32 lit peel colour with low-frequency yellow/green variation."""
    t0 = float(np.clip(rng.normal(1.2, 0.75), 0.0, 3.8))  # mostly orange, some yellow/deep
    field = t0 + smooth_noise(rng, size, size, 4) * rng.uniform(0.2, 0.6)
    field += smooth_noise(rng, size, size, 16) * rng.uniform(0.05, 0.2)  # mottling
    field = np.clip(field, 0.0, 4.0)
    stops = np.arange(len(_PEEL_ANCHORS), dtype=np.float32)
    albedo = np.stack(
        [np.interp(field, stops, _PEEL_ANCHORS[:, c]).astype(np.float32) for c in range(3)], -1
    )  # (S, S, 3) piecewise-linear between the anchors
    # Greenish patches (unripe areas), more often near the rim; not a defect.
    if rng.random() < 0.4:
        green = np.array([172, 165, 48], np.float32) * rng.uniform(0.9, 1.05)
        blob = smooth_noise(rng, size, size, 3) + 1.4 * fruit.rho - rng.uniform(1.2, 2.0)
        weight = np.clip(blob, 0, 1) * rng.uniform(0.2, 0.6)
        albedo += (green - albedo) * weight[..., None]
    return albedo * rng.uniform(0.9, 1.05)


# ----------------------------------------------------------------------------- defect patches


@dataclass
class Patch:
    """A defect drawn flat: colour (P, P, 3), opacity (P, P) and label mask (P, P) (0/1)."""

    colour: np.ndarray
    alpha: np.ndarray
    label: np.ndarray
    height: np.ndarray  # (P, P) bump (positive raised), for shading
    cls: int


def _blob_mask(rng: np.random.Generator, p: int, radius: float, rough: float) -> np.ndarray:
    """(p, p) float32 signed field, < 0 inside an irregular blob of about `radius`."""
    ys, xs = np.mgrid[0:p, 0:p].astype(np.float32) - (p - 1) / 2
    d = np.sqrt(xs * xs + ys * ys) / radius
    shape = smooth_noise(rng, p, p, 3) * 0.22 * rough + smooth_noise(rng, p, p, 8) * 0.08 * rough
    return d + shape - 1.0


def _sunburn(rng: np.random.Generator, size: int, peel: np.ndarray) -> Patch:
    radius = rng.uniform(0.05, 0.16) * size
    p = int(radius * 3.2) | 1
    field = _blob_mask(rng, p, radius, rough=rng.uniform(1.0, 2.2))
    field += smooth_noise(rng, p, p, 24) * 0.05  # jagged edge
    label = (field < 0).astype(np.float32)
    inside = cv2.GaussianBlur(label, (0, 0), 0.7)
    kind = rng.random()
    colour = np.empty((p, p, 3), np.float32)
    if kind < 0.3:  # pale, speckled centre (img279)
        centre = np.array([222, 208, 160], np.float32) * rng.uniform(0.88, 1.02)
        colour[:] = centre
        n_dots = int(rng.uniform(0.3, 0.7) * radius * radius / 10)
        dots = np.zeros((p, p), np.float32)
        for _ in range(n_dots):
            c = (int(rng.uniform(0, p)), int(rng.uniform(0, p)))
            cv2.circle(dots, c, int(rng.integers(1, 5)), 1.0, -1, cv2.LINE_AA)
        dark = np.array([95, 62, 35], np.float32)
        colour += (dark - colour) * (dots * rng.uniform(0.6, 1.0))[..., None]
    else:  # tan / reddish-brown patch (img663)
        colour[:] = hsv_colour(rng, (22, 38), (0.55, 0.82), (0.42, 0.62))  # real: (135, 87, 34)
        mottle = smooth_noise(rng, p, p, 10)[..., None] * 14.0
        colour += mottle
        # Dense darker pits show through the burnt peel (img663).
        pits = rng.standard_normal((p, p)).astype(np.float32)
        pits = cv2.GaussianBlur(pits, (0, 0), rng.uniform(0.9, 1.6))
        pits = np.clip(pits / (pits.std() + 1e-6) - 0.6, 0, 2) * rng.uniform(0.15, 0.35)
        colour *= (1.0 - pits)[..., None]
    # Dark rim just inside the edge.
    edge = np.clip(1.0 + field * 8.0, 0, 1) * label  # 1 at the border, 0 deep inside
    rim = np.array([90, 65, 35], np.float32) * rng.uniform(0.8, 1.2)
    colour += (rim - colour) * (edge * rng.uniform(0.5, 1.0))[..., None]
    # Unlabelled halo outside: greenish or dark orange, fading over ~radius/3.
    halo_w = rng.uniform(0.15, 0.5)
    halo = np.clip(1.0 - field / halo_w, 0, 1) * (1 - label) * (field > 0)
    halo_colour = (
        np.array([105, 115, 30], np.float32)
        if rng.random() < 0.6
        else peel.astype(np.float32) * 0.75
    )
    halo_strength = rng.uniform(0.2, 0.85)
    colour = colour * inside[..., None] + halo_colour * (1 - inside[..., None])
    alpha = np.maximum(inside, halo * halo_strength * (field > 0))
    height = -0.5 * inside  # slightly sunken
    return Patch(colour, alpha.astype(np.float32), label, height, SUNBURN)


def _ulcer_cluster(rng: np.random.Generator, size: int) -> Patch:
    style = rng.random()
    r_mean = rng.uniform(0.011, 0.03) * size
    if style < 0.3:  # spots spread over much of the fruit (img418)
        n, spread = int(rng.integers(4, 13)), rng.uniform(0.12, 0.25) * size
    elif style < 0.5:  # touching spots merged into one lumpy blob (img585)
        n, spread = int(rng.integers(3, 8)), rng.uniform(0.6, 1.4) * r_mean
    else:  # a small group
        n, spread = int(rng.choice([1, 1, 2, 2, 3, 4, 5, 7])), rng.uniform(0.02, 0.09) * size
    p = int(2 * spread + 6 * r_mean + 8) | 1
    colour = np.zeros((p, p, 3), np.float32)
    alpha = np.zeros((p, p), np.float32)
    label = np.zeros((p, p), np.float32)
    height = np.zeros((p, p), np.float32)
    centre_c = hsv_colour(rng, (18, 36), (0.45, 0.75), (0.2, 0.42))  # dark brown
    ring_c = hsv_colour(rng, (20, 36), (0.4, 0.65), (0.42, 0.62))  # lighter raised ring
    for i in range(n):
        r = max(2.0, r_mean * rng.uniform(0.55, 1.35))
        cx = (p - 1) / 2 + (rng.normal(0, spread * 0.5) if i else 0.0)
        cy = (p - 1) / 2 + (rng.normal(0, spread * 0.5) if i else 0.0)
        cx, cy = (float(v) for v in np.clip([cx, cy], r + 2, p - r - 3))
        # Work in the spot's own window only.
        half = int(r * 1.3) + 2
        x0, y0 = max(int(cx) - half, 0), max(int(cy) - half, 0)
        x1, y1 = min(int(cx) + half + 1, p), min(int(cy) + half + 1, p)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        ang = np.arctan2(ys - cy, xs - cx)
        wob = 1 + 0.08 * np.cos(3 * ang + rng.uniform(0, 6)) + 0.06 * np.cos(5 * ang + 1)
        t = d / (r * wob)  # < 1 inside the spot
        spot = np.clip((1.0 - t) * r / 0.8 + 0.5, 0, 1)
        inner = np.clip((0.8 - t) * r / 1.0 + 0.5, 0, 1)  # dark centre
        ring = np.clip(1 - np.abs(t - 0.88) / 0.1, 0, 1)  # raised lighter ring
        c = centre_c * rng.uniform(0.85, 1.15)
        col = c[None, None] * inner[..., None] + ring_c[None, None] * (1 - inner[..., None])
        col += (np.array([60, 45, 30], np.float32) - col) * (t > 0.93)[..., None] * 0.6
        speck = smooth_noise(rng, y1 - y0, x1 - x0, 4)[..., None] * 12.0
        col = col + speck * inner[..., None]
        win = (slice(y0, y1), slice(x0, x1))
        new = spot > alpha[win]
        colour[win][new] = col[new]
        alpha[win] = np.maximum(alpha[win], spot)
        label[win] = np.maximum(label[win], (t < 1.0).astype(np.float32))
        height[win] = np.maximum(height[win], ring * 1.5 - inner * 0.5)
    return Patch(colour, alpha, label, height, ULCER)


def _random_walk(
    rng: np.random.Generator, start: np.ndarray, direction: float, length: float, wiggle: float
) -> np.ndarray:
    steps = max(2, int(length / 5))
    turns = np.cumsum(rng.normal(0, wiggle, steps)) + direction
    seg = rng.uniform(3, 7, steps)
    pts = start + np.cumsum(np.stack([np.cos(turns) * seg, np.sin(turns) * seg], 1), 0)
    return np.vstack([start, pts])


def _stroke(rng: np.random.Generator, mask: np.ndarray, pts: np.ndarray, thick: float) -> None:
    """Draw a polyline whose width wanders along it (scars are never uniform lines)."""
    widths = np.clip(thick + np.cumsum(rng.normal(0, 0.5, len(pts))), 1, 2 * thick + 1)
    ipts = pts.astype(np.int32)
    for a, b, w in zip(ipts[:-1], ipts[1:], widths, strict=False):
        cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, int(round(w)))


def _wind_scar(rng: np.random.Generator, size: int, peel: np.ndarray) -> Patch:
    extent = rng.uniform(0.08, 0.28) * size
    p = int(2.4 * extent) | 1
    mask = np.zeros((p, p), np.uint8)
    centre = np.array([(p - 1) / 2, (p - 1) / 2])
    style = rng.random()
    main_dir = rng.uniform(0, 2 * np.pi)
    unit = size / 512  # stroke widths are given at 512
    if style < 0.45:  # long meandering streak network with side branches (img705)
        n_strokes, thick = int(rng.integers(1, 5)), rng.uniform(2.5, 7) * unit
    elif style < 0.8:  # tangled scribble (img826)
        n_strokes, thick = int(rng.integers(4, 12)), rng.uniform(1.5, 4) * unit
    else:  # scratches: many short, roughly parallel thin lines (img585)
        n_strokes, thick = int(rng.integers(5, 14)), rng.uniform(1, 3) * unit
    for _ in range(n_strokes):
        if style < 0.45:
            start = centre + rng.normal(0, extent * 0.25, 2)
            pts = _random_walk(rng, start, main_dir + rng.normal(0, 0.4), extent * 1.3, 0.35)
            pts -= (pts.mean(0) - start) * 0.8
        elif style < 0.8:
            start = centre + rng.normal(0, extent * 0.3, 2)
            pts = _random_walk(
                rng, start, main_dir + rng.normal(0, 1.5), extent * rng.uniform(0.2, 0.6), 0.8
            )
        else:
            start = centre + rng.normal(0, extent * 0.4, 2)
            pts = _random_walk(
                rng, start, main_dir + rng.normal(0, 0.15), extent * rng.uniform(0.15, 0.5), 0.15
            )
        _stroke(rng, mask, pts, thick)
        for _ in range(int(rng.integers(0, 4))):  # short side branches
            j = int(rng.integers(0, len(pts)))
            b = _random_walk(rng, pts[j], rng.uniform(0, 2 * np.pi), extent * 0.25, 0.6)
            _stroke(rng, mask, b, max(1.0, thick * 0.6))
    # Roughen the edges so streaks are ragged, not vector lines.
    field = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.2)
    field += smooth_noise(rng, p, p, max(4, p // 6)) * 0.18
    label = (field > 0.45).astype(np.float32)
    alpha = cv2.GaussianBlur(label, (0, 0), 0.6)
    kind = rng.random()
    if kind < 0.5:  # saturated red-brown to brown (img705, img585): real (157, 55, 2)
        base = hsv_colour(rng, (10, 30), (0.7, 0.98), (0.42, 0.66))
    elif kind < 0.9:  # light brown / tan (img826): real (143, 98, 29)
        base = hsv_colour(rng, (18, 32), (0.4, 0.65), (0.5, 0.72))
    else:  # greyish brown
        base = hsv_colour(rng, (20, 36), (0.25, 0.45), (0.45, 0.62))
    colour = np.empty((p, p, 3), np.float32)
    colour[:] = base.astype(np.float32)
    colour += smooth_noise(rng, p, p, max(4, p // 8))[..., None] * 12.0
    alpha = alpha * rng.uniform(0.75, 1.0)
    height = -0.6 * alpha
    return Patch(colour, alpha.astype(np.float32), label, height, WIND)


def _place(
    patch: Patch,
    fruit: Fruit,
    rng: np.random.Generator,
    albedo: np.ndarray,
    bump: np.ndarray,
    mask: np.ndarray,
    max_rho: float,
) -> None:
    """Warp a flat patch onto the sphere at a random visible spot; update albedo, bump, mask."""
    size = mask.shape[0]
    for _ in range(20):  # a position well inside the fruit
        x, y = rng.uniform(0, size, 2)
        xi, yi = int(x), int(y)
        if fruit.rho[yi, xi] < max_rho:
            break
    else:
        x, y, xi, yi = fruit.cx, fruit.cy, int(fruit.cx), int(fruit.cy)
    nz = float(max(fruit.nz[yi, xi], 0.35))
    radial = np.arctan2(y - fruit.cy, x - fruit.cx)
    cr, sr = np.cos(radial), np.sin(radial)
    # Linear map patch -> image: rotate by a random angle, compress along the radial direction.
    spin = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(spin), -np.sin(spin)], [np.sin(spin), np.cos(spin)]])
    radial_basis = np.array([[cr, -sr], [sr, cr]])
    squeeze = radial_basis @ np.diag([nz, 1.0]) @ radial_basis.T
    lin = squeeze @ rot
    p = patch.label.shape[0]
    c = (p - 1) / 2
    offset = np.array([x, y]) - lin @ np.array([c, c])
    m = np.hstack([lin, offset[:, None]]).astype(np.float32)  # (2, 3) patch -> image
    # Only warp into the bounding box the patch can touch.
    corners = np.array([[0, 0], [p, 0], [0, p], [p, p]], np.float32) @ lin.T + offset
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if x1 <= x0 or y1 <= y0:
        return
    m_local = m.copy()
    m_local[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR
    colour = cv2.warpAffine(patch.colour, m_local, dsize, flags=flags)
    alpha = cv2.warpAffine(patch.alpha, m_local, dsize, flags=flags)
    height = cv2.warpAffine(patch.height, m_local, dsize, flags=flags)
    label = cv2.warpAffine(patch.label, m_local, dsize, flags=cv2.INTER_NEAREST)
    region = albedo[y0:y1, x0:x1]
    region += (colour - region) * alpha[..., None]
    bump[y0:y1, x0:x1] += height * alpha
    inside = fruit.alpha[y0:y1, x0:x1] > 0.5
    mask[y0:y1, x0:x1][(label > 0.5) & inside] = patch.cls


def _stem_end(rng: np.random.Generator, fruit: Fruit, albedo: np.ndarray, bump: np.ndarray) -> None:
    """An unlabelled stem scar, green calyx or navel somewhere on the visible fruit."""
    size = albedo.shape[0]
    ang = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.0, 0.85)
    x = fruit.cx + np.cos(ang) * dist * fruit.rx
    y = fruit.cy + np.sin(ang) * dist * fruit.ry
    r = rng.uniform(0.012, 0.03) * size
    half = int(2.3 * r) + 2
    x0, y0 = max(int(x) - half, 0), max(int(y) - half, 0)
    x1, y1 = min(int(x) + half + 1, size), min(int(y) + half + 1, size)
    albedo, bump = albedo[y0:y1, x0:x1], bump[y0:y1, x0:x1]  # views: edits land in place
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.sqrt((xs - x) ** 2 + (ys - y) ** 2)
    theta = np.arctan2(ys - y, xs - x)
    kind = rng.random()
    if kind < 0.35:  # green calyx star (img705)
        star = r * (0.6 + 0.4 * np.cos(5 * theta + rng.uniform(0, 6)))
        w = np.clip((star - d) / 1.5 + 0.5, 0, 1)
        colour = np.array([110, 165, 60], np.float32)
        core = np.clip((0.3 * r - d) / 1.5 + 0.5, 0, 1)
        w = np.maximum(w, core)
        albedo += (colour - albedo) * w[..., None]
        albedo += (np.array([200, 210, 150], np.float32) - albedo) * (core * 0.7)[..., None]
        bump += w * 1.5
    else:  # navel / stem scar: small dark button with radial creases
        folds = 0.5 + 0.5 * np.cos(rng.integers(7, 14) * theta)
        ring = np.clip(1 - d / (2.2 * r), 0, 1) * folds * 0.45
        core = np.clip((0.45 * r - d) / 1.2 + 0.5, 0, 1)
        dark = np.array([120, 85, 35], np.float32)
        albedo += (dark - albedo) * np.maximum(ring, core)[..., None]
        bump -= (ring + core) * 1.2


def _specks(rng: np.random.Generator, fruit: Fruit, albedo: np.ndarray) -> None:
    """Tiny dark specks and light scuffs, unlabelled (real peel has many)."""
    size = albedo.shape[0]
    n = int(rng.choice([0, 5, 15, 40, 80]))
    layer = np.zeros((size, size), np.float32)
    for _ in range(n):
        x, y = rng.uniform(0, size, 2)
        if fruit.rho[int(y), int(x)] < 0.95:
            cv2.circle(layer, (int(x), int(y)), int(rng.integers(0, 2)), 1.0, -1, cv2.LINE_AA)
    dark = np.array([110, 60, 30], np.float32)
    albedo += (dark - albedo) * (layer * rng.uniform(0.4, 0.9))[..., None]


def _blemishes(rng: np.random.Generator, fruit: Fruit, albedo: np.ndarray) -> None:
    """Soft brownish or greenish discolouration with no edge: healthy peel, not a defect."""
    size = albedo.shape[0]
    field = smooth_noise(rng, size, size, int(rng.integers(5, 12)))
    weight = np.clip(field - rng.uniform(0.8, 1.6), 0, 1) * rng.uniform(0.2, 0.5)
    weight *= fruit.rho < 1.0
    tint = hsv_colour(rng, (25, 60), (0.5, 0.8), (0.5, 0.7))
    albedo += (tint - albedo) * weight[..., None]


# ----------------------------------------------------------------------------- rendering


def render_orange(rng: np.random.Generator, size: int = 512) -> Sample:
    """Render one orange photo and its exact class-id mask."""
    fruit = _make_fruit(rng, size)
    background = _background(rng, size, fruit)
    albedo = _peel_albedo(rng, size, fruit)
    bump = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), np.uint8)
    peel_colour = albedo[int(fruit.cy), int(fruit.cx)].copy()

    if rng.random() < 0.65:
        _stem_end(rng, fruit, albedo, bump)
    _specks(rng, fruit, albedo)
    if rng.random() < 0.45:
        _blemishes(rng, fruit, albedo)

    # Which defects: ~12% clean; otherwise any mix, at least one.
    if rng.random() >= 0.12:
        kinds: list[int] = []
        while not kinds:
            if rng.random() < 0.45:
                kinds += [WIND] * int(rng.choice([1, 1, 1, 2, 3]))
            if rng.random() < 0.45:
                kinds += [SUNBURN] * int(rng.choice([1, 1, 1, 1, 2]))
            if rng.random() < 0.6:
                kinds += [ULCER] * int(rng.choice([1, 1, 2, 2, 3, 4]))
        order = {WIND: 0, SUNBURN: 1, ULCER: 2}  # ulcers last: drawn on top
        for kind in sorted(kinds, key=order.get):
            if kind == SUNBURN:
                patch = _sunburn(rng, size, peel_colour)
            elif kind == ULCER:
                patch = _ulcer_cluster(rng, size)
            else:
                patch = _wind_scar(rng, size, peel_colour)
            _place(patch, fruit, rng, albedo, bump, mask, max_rho=0.82)

    image = _shade(rng, fruit, albedo, bump, background)
    fruit_mask = (fruit.alpha > 0.5).astype(np.uint8)
    image, mask, fruit_mask = _camera(rng, image, mask, fruit_mask)
    return Sample(image, mask, fruit_mask > 0, int(rng.integers(55, 96)))


def _shade(
    rng: np.random.Generator,
    fruit: Fruit,
    albedo: np.ndarray,
    bump: np.ndarray,
    background: np.ndarray,
) -> np.ndarray:
    """Lambert + Phong shading with pitted-peel normals; composite on the background."""
    size = albedo.shape[0]
    pit = rng.uniform(1.0, 1.7)  # pit scale in pixels at 512
    pit *= size / 512
    texture = _peel_texture(rng, size, pit)  # (S, S)
    # Foreshorten the texture towards the rim: sample it at arc length from the centre.
    ys, xs = _grid(size)
    rc = np.minimum(fruit.rho, 0.995)
    stretch = np.arcsin(rc) / np.maximum(rc, 1e-3)
    map_x = (fruit.cx + (xs - fruit.cx) * stretch).astype(np.float32)
    map_y = (fruit.cy + (ys - fruit.cy) * stretch).astype(np.float32)
    texture = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    depth = rng.uniform(0.2, 0.5)
    height = texture * depth + bump  # (S, S)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) * 0.125
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) * 0.125
    tilt = 0.9 * fruit.nz  # bumps matter less at grazing angles
    nx = fruit.nx - gx * tilt
    ny = fruit.ny - gy * tilt
    nz = fruit.nz
    inv = 1.0 / np.sqrt(nx * nx + ny * ny + nz * nz + 1e-6)
    nx, ny, nz = nx * inv, ny * inv, nz * inv

    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.7, 0.1), 1.0])
    light /= np.linalg.norm(light)
    lx, ly, lz = (float(c) for c in light)  # Python floats keep the arrays float32
    diffuse = np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
    ambient = rng.uniform(0.62, 0.85)
    shade = ambient + (1 - ambient) * diffuse
    shade *= 0.78 + 0.22 * np.sqrt(fruit.nz)  # soft darkening towards the rim
    shade *= 1.0 + rng.uniform(0.06, 0.12) * np.clip(texture, -3, 1)  # dark pits, light ridges
    half = light + np.array([0.0, 0.0, 1.0])
    hx, hy, hz = (float(c) for c in half / np.linalg.norm(half))
    n_dot_h = np.clip(nx * hx + ny * hy + nz * hz, 0, 1)
    gloss = rng.uniform(12, 60)
    sparkle = np.clip(1.0 + 0.8 * texture, 0, 2.5)  # highlight broken up by the pits
    spec = rng.uniform(0.1, 0.6) * n_dot_h**gloss * sparkle + rng.uniform(0, 0.04) * n_dot_h**4
    white = np.array([255.0, 248.0, 230.0], np.float32)
    peel = albedo * shade[..., None] + spec[..., None] * white
    # Grazing angles reflect the grey surroundings: the rim turns darker and greyish-brown
    # (real rims read about (160, 118, 60) against (183, 113, 22) at the centre).
    fresnel = (1.0 - fruit.nz) ** rng.uniform(2.0, 4.0) * rng.uniform(0.4, 0.85)
    env = background.mean((0, 1)) * rng.uniform(0.6, 1.0)  # (3,)
    peel += (env - peel) * fresnel[..., None]
    a = fruit.alpha[..., None]
    return peel * a + background * (1 - a)


def _camera(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, fruit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """White balance, blur, noise, sometimes the authors' 'enhanced' rotation/downscale."""
    size = image.shape[0]
    image = image * rng.normal(1.0, 0.012, 3).astype(np.float32) * rng.uniform(0.9, 1.08)
    sigma = rng.uniform(0.3, 1.1) * size / 512
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(1.0, 4.0)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:  # small photo, upscaled: soft like img585
        f = rng.uniform(0.4, 0.7)
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.12:  # rotated with black corners like img663
        rot = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-25, 25), 1.0)
        image = cv2.warpAffine(image, rot, (size, size), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(mask, rot, (size, size), flags=cv2.INTER_NEAREST)
        fruit = cv2.warpAffine(fruit, rot, (size, size), flags=cv2.INTER_NEAREST)
    return image, mask, fruit


# ----------------------------------------------------------------------------- data set


def _render_and_save(job: tuple[int, np.random.SeedSequence, int, str]) -> np.ndarray:
    """Render image `i` from its own seed sequence and write it; return its class histogram."""
    i, seq, size, voc = job
    sample = render_orange(np.random.default_rng(seq), size)
    name = f"synth_{i:05d}"
    bgr = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, sample.jpeg_quality])
    if not ok:
        raise OSError(f"could not encode {voc}/JPEGImages/{name}.jpg")
    write_bytes(Path(voc) / "JPEGImages" / f"{name}.jpg", jpeg.tobytes())
    save_index_mask(Path(voc) / "SegmentationClass" / f"{name}.png", sample.mask)
    return np.bincount(sample.mask.ravel(), minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]


def generate_dataset(
    out: str | Path,
    num: int = 200,
    seed: int = 0,
    size: int = 512,
    workers: int | None = None,
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
    overwrite: bool = False,
) -> Path:
    """Write ``out/VOC2007`` (JPEGImages, SegmentationClass, split files); return ``out``.

    Also writes ``out/VOC2007/class_frequencies.json`` (pixel counts and shares per class).
    Refuses to write into an existing VOC2007 folder unless ``overwrite``.
    """
    if num < 3:
        raise ValueError(f"num={num}: need at least 3 images for train/val/test splits")
    out = Path(out)
    final = out / "VOC2007"
    if final.exists():
        if not overwrite:
            raise FileExistsError(
                f"{final} already exists; pass overwrite=True (--overwrite) to replace it"
            )
        shutil.rmtree(final)
    remove_stale_temp_files(out)  # the half-built folder of a generation that was killed
    # built under a temporary name and renamed when complete: an interrupted generation never
    # leaves a VOC2007/ that looks usable
    voc = temp_path_for(final)
    try:
        _generate_into(voc, num, seed, size, workers, ratios)
        os.replace(voc, final)
    except BaseException:
        shutil.rmtree(voc, ignore_errors=True)
        raise
    return out


def _generate_into(
    voc: Path,
    num: int,
    seed: int,
    size: int,
    workers: int | None,
    ratios: tuple[float, float, float],
) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)

    seqs = np.random.SeedSequence(seed).spawn(num)
    jobs = [(i, seqs[i], size, str(voc)) for i in range(num)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if workers > 1 and num >= 8:
        with ProcessPoolExecutor(workers) as pool:
            hists = list(pool.map(_render_and_save, jobs, chunksize=4))
    else:
        hists = [_render_and_save(job) for job in jobs]
    counts = np.sum(hists, axis=0)

    names = [f"synth_{i:05d}" for i in range(num)]
    order = np.random.default_rng(seed).permutation(num)
    n_train = int(round(ratios[0] / sum(ratios) * num))
    n_val = int(round(ratios[1] / sum(ratios) * num))
    splits = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    splits["trainval"] = np.concatenate([splits["train"], splits["val"]])
    write_all(
        {
            voc / "ImageSets" / "Segmentation" / f"{split}.txt": "".join(
                f"{names[i]}\n" for i in sorted(idx)
            ).encode("utf-8")
            for split, idx in splits.items()
        }
    )

    report = {
        "num_images": num,
        "seed": seed,
        "size": size,
        "pixels": {n: int(c) for n, c in zip(CLASS_NAMES, counts, strict=False)},
        "share": {n: float(c / counts.sum()) for n, c in zip(CLASS_NAMES, counts, strict=False)},
        "images_with": {
            n: int(sum(int(h[k] > 0) for h in hists)) for k, n in enumerate(CLASS_NAMES)
        },
    }
    write_text(voc / "class_frequencies.json", json.dumps(report, indent=2) + "\n")


def format_frequencies(report: dict) -> str:
    """Human-readable class pixel frequencies table."""
    lines = [f"{'class':<15}{'pixels':>12}{'share %':>10}{'images':>8}"]
    for name in report["pixels"]:
        lines.append(
            f"{name:<15}{report['pixels'][name]:>12}{100 * report['share'][name]:>10.3f}"
            f"{report['images_with'][name]:>8}"
        )
    return "\n".join(lines)


# Bright overlay colours for the contact sheet: sunburn red, ulcer green, wind scarring yellow.
_SHEET_COLOURS = np.array([[0, 0, 0], [255, 30, 30], [30, 255, 30], [255, 255, 0]], np.float32)


def contact_sheet(voc: str | Path, path: str | Path, n: int = 8, thumb: int = 160) -> Path:
    """Save a PNG grid: photos on top, their colour masks over the photos below."""
    voc = Path(voc)
    names = sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg"))[:n]
    tops, bottoms = [], []
    for name in names:
        image = cv2.cvtColor(cv2.imread(str(voc / "JPEGImages" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        mask = read_mask(voc / "SegmentationClass" / f"{name}.png")
        over = image.copy()
        sel = (mask > 0) & (mask < len(_SHEET_COLOURS))
        over[sel] = 0.35 * image[sel] + 0.65 * _SHEET_COLOURS[mask[sel]]
        tops.append(cv2.resize(image, (thumb, thumb), interpolation=cv2.INTER_AREA))
        bottoms.append(cv2.resize(over, (thumb, thumb), interpolation=cv2.INTER_AREA))
    sheet = np.vstack([np.hstack(tops), np.hstack(bottoms)])
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
    return path


@dataclass
class Config:
    out: str  # folder to write VOC2007/ into (required)
    num: int = 200  # number of images
    seed: int = 0  # random seed
    size: int = 512  # image side in pixels
    workers: int | None = None  # processes (None: min(2, CPUs))
    overwrite: bool = False  # replace an existing VOC2007/
    sheet: str | None = None  # also save a contact sheet PNG here


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m utils.data.synthetic --out DIR [--num 200 ...]`: write a synthetic set."""
    args = parse_config(Config, argv, description=__doc__)
    t0 = time.perf_counter()
    try:
        out = generate_dataset(
            args.out, args.num, args.seed, args.size, args.workers, overwrite=args.overwrite
        )
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    voc = out / "VOC2007"
    report = json.loads((voc / "class_frequencies.json").read_text())
    print(
        f"wrote {args.num} synthetic oranges ({args.size}x{args.size}) to {voc} in {elapsed:.1f} s"
    )
    print(format_frequencies(report))
    if args.sheet:
        print(f"contact sheet: {contact_sheet(voc, args.sheet)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
