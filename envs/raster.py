"""A tiny numpy rasteriser for the gym tasks' `render` (host side; no pygame needed).

Gymnasium draws classic control with pygame; pygame is not a dependency here, so the few
shapes those scenes need are drawn with boolean masks over pixel centres: filled convex
polygons (cart, car, flag), thick segments with round caps (poles, links, rods) and discs
(joints, wheels). No anti-aliasing: the frames are for looking at a policy, not for print.

Coordinates follow gymnasium's drawing code before its final flip: x to the right and y
*up*, in pixels from the bottom-left corner. Draw with these helpers, then return
`to_image(canvas)`, which flips the rows so that row 0 is the top of the picture.
"""

from __future__ import annotations

import numpy as np

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def blank(height: int, width: int, color=WHITE) -> np.ndarray:
    """A (height, width, 3) uint8 canvas filled with `color`."""
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[...] = color
    return canvas


def _paint(canvas, lo, hi, inside, color) -> None:
    """Paint the pixels whose centres (x, y) satisfy `inside(x, y)` within the box [lo, hi].

    Only the bounding box is evaluated, so a small shape costs little on a large canvas.
    """
    h, w = canvas.shape[:2]
    x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    x1, y1 = min(int(np.ceil(hi[0])) + 1, w), min(int(np.ceil(hi[1])) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return  # entirely off the canvas
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres, each (h', w')
    canvas[y0:y1, x0:x1][inside(xs, ys)] = color


def fill_polygon(canvas, points, color) -> None:
    """Fill a convex polygon; `points` (K, 2) in either winding order."""
    p = np.asarray(points, np.float64)
    q = np.roll(p, -1, axis=0)  # the next vertex of each edge

    def inside(xs, ys):
        # The sign of the cross product (edge) x (pixel - edge start) tells the side of each
        # edge; a pixel is inside a convex polygon when it is on the same side of all of them.
        cross = ((q[:, 0] - p[:, 0])[:, None, None] * (ys - p[:, 1, None, None])
                 - (q[:, 1] - p[:, 1])[:, None, None] * (xs - p[:, 0, None, None]))
        return np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)

    _paint(canvas, p.min(0), p.max(0), inside, color)


def fill_circle(canvas, center, radius: float, color) -> None:
    """Fill the disc of `radius` pixels around `center` (x, y)."""
    cx, cy = float(center[0]), float(center[1])
    _paint(canvas, (cx - radius, cy - radius), (cx + radius, cy + radius),
           lambda xs, ys: (xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2, color)


def draw_segment(canvas, start, end, width: float, color) -> None:
    """A segment `width` pixels thick with round ends (the set of points within width/2)."""
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    d = b - a
    r = width / 2

    def inside(xs, ys):
        # Project each pixel onto the segment, clamp to its ends, measure the distance.
        s = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-12), 0.0, 1.0)
        return (xs - a[0] - s * d[0]) ** 2 + (ys - a[1] - s * d[1]) ** 2 <= r ** 2

    _paint(canvas, np.minimum(a, b) - r, np.maximum(a, b) + r, inside, color)


def rotate(points, angle: float, origin=(0.0, 0.0)) -> np.ndarray:
    """`points` (K, 2) rotated counter-clockwise by `angle` radians, then moved to `origin`.

    The same as pygame's `Vector2.rotate_rad` followed by a translation, which is how
    gymnasium places its rotated shapes.
    """
    c, s = np.cos(angle), np.sin(angle)
    p = np.asarray(points, np.float64)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1) + origin


def to_image(canvas: np.ndarray) -> np.ndarray:
    """The finished frame: rows flipped so that y points down, as images expect."""
    return np.ascontiguousarray(canvas[::-1])
