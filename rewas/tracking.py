"""① A region of the picture, followed through the clip: what a layer's video features and pan see of one object.

    box drawn on the frame at `at` s ─► the object in it, found again in each frame (OpenCV's template
    matching), forwards to the end and backwards to the start, on the whole picture at a small size; a box with
    no object in it stays ─► a box per frame (T, 4) ─► its smoothed path ─► the square the video encoder is
    given per frame (T, 3), and the pan that follows it (T,)

The square follows the object's slow travel (its centre averaged over `follow_s`) and is wide enough to hold the
object's own faster motion around it: a tracked ball that bounces stays in view and keeps bouncing in its square,
where a crop centred on the box itself would hold it still, and φ would see no impacts.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._optional import require
from .errors import UserError

if TYPE_CHECKING:
    from .frames import VideoInfo

FIXED_NOTE = (  # what a user is told of a region whose box stays (`FixedBox`), in the CLI and the studio
    "nothing in the box stands out from around it, and it lies on no object that does, so the box stays where it "
    "was drawn (draw it around the whole object for it to follow the object)"
)
TRACK_BOX_PX = 32  # the object's larger side in the frames the tracker sees: enough detail, little work
TRACK_SHORT_RANGE = (96, 480)  # the tracking frames' short side, at least and at most
FOLLOW_S = 1.0  # the square follows the object's path averaged over this long
SPREAD_PERCENTILE = 95  # the square holds the object's motion around that path this often
MARGIN = 1.5  # the square's side, at least this many times the box's larger side
COLOUR_LEVELS = 16  # per channel, for the colours that tell the object in a box from what is around it
OBJECT_RATIO = 4.0  # a colour is the object's where it is this many times as frequent inside the box as around it
HUE_LEVELS = 24  # per share of r + g + b, for the hues a tracker knows its object by
DARK = 60  # r + g + b under which a pixel's hue is noise
HOLDING_SCALES = (3, 9, 27)  # how far around a box with no object in it the object it lies in is looked for
HOLDING_SHARE = 0.5  # that object covers at least this share of the box
HOLDING_RATIO = 16.0  # its colours are this many times as frequent in the picture around the box as around that
HOLDING_MARGIN = 0.05  # of its larger side, around it
THIN = 2.5  # a part with fewer pixels than this many times its length is a line, not an object
AREA = 4  # cv2.CC_STAT_AREA: the column of a part's pixel count in OpenCV's stats


@dataclass(frozen=True)
class Region:
    """A box drawn on the picture at one time: (left, top, right, bottom) as fractions of its width and height."""

    box: tuple[float, float, float, float]
    at: float = 0.0  # seconds into the clip: the frame the box was drawn on

    def __post_init__(self):
        try:
            box = tuple(float(v) for v in self.box)
        except (TypeError, ValueError):
            raise UserError(f"region: the box must be 4 numbers left,top,right,bottom (got {self.box!r})") from None
        try:
            at = float(self.at)
        except (TypeError, ValueError):
            raise UserError(f"region: the time the box was drawn must be seconds (got {self.at!r})") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise UserError(f"region: the box must be 4 finite numbers left,top,right,bottom (got {self.box!r})")
        left, top, right, bottom = box
        named = f"region: the box {','.join(f'{v:g}' for v in box)}"
        if not all(0 <= v <= 1 for v in box):
            raise UserError(f"{named} is not inside the frame (fractions of the picture's width and height, 0 to 1)")
        if left == right or top == bottom:
            raise UserError(f"{named} has no size (its left and right, or its top and bottom, are the same)")
        if not (left < right and top < bottom):
            raise UserError(f"{named} has its corners swapped: give left,top,right,bottom, left < right, top < bottom")
        if not (math.isfinite(at) and at >= 0):
            raise UserError(f"region: the time the box was drawn must be >= 0 seconds (got {self.at!r})")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "at", at)


def parse_box(text: str) -> tuple[tuple[float, ...], float] | None:
    """ "LEFT,TOP,RIGHT,BOTTOM[@SECONDS]" -> (the 4 numbers, the seconds or 0), or None if it is not that form (the
    caller says how in its own words; `Region` then checks the box is inside the picture)."""
    box, sep, at = str(text).replace(" ", "").partition("@")
    if sep and not at:
        return None
    try:
        numbers = tuple(float(v) for v in box.split(","))
        seconds = float(at) if at else 0.0
    except ValueError:
        return None
    return (numbers, seconds) if len(numbers) == 4 else None


@dataclass
class Track:
    """A region followed through a clip at `fps`: one box per frame, fractions of the picture's width and height."""

    # (T, 4) left, top, right, bottom; past 0 or 1 where the box, kept around its object as drawn, reaches past the
    # picture's edge: clipped there, its centre (the pan) would move inwards of the object by half of what is cut
    boxes: np.ndarray
    found: np.ndarray  # (T,) bool: the tracker saw the object (elsewhere its last box is held)
    width: int  # the picture as displayed, pixels
    height: int
    fps: float
    fixed: bool = False  # no object in the box or under it stood out: it stays where it was drawn (`FixedBox`)

    def centres(self) -> np.ndarray:
        """(T, 2) box centres, fractions of the width and height (inside the picture)."""
        centres = np.stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2], 1)
        return np.clip(centres, 0, 1)

    def path(self, follow_s: float = FOLLOW_S) -> np.ndarray:
        """(T, 2) the centres averaged over `follow_s`: the object's travel without its own faster motion."""
        width = max(1, round(follow_s * self.fps)) | 1
        return np.stack([_moving_average(c, width) for c in self.centres().T], 1)

    def squares(self, follow_s: float = FOLLOW_S) -> np.ndarray:
        """(T, 3) left, top, side: the square of the picture the video encoder sees per frame (left and top as
        fractions of the width and height, the side as a fraction of the short side), one size for the clip."""
        short = min(self.width, self.height)
        scale = np.array([self.width, self.height]) / short  # fractions -> short-side units
        path = self.path(follow_s) * scale
        spread = np.abs(self.centres() * scale - path)  # the object's own motion around its path
        extent = (self.boxes[:, 2:] - self.boxes[:, :2]) * scale  # (T, 2) width, height
        size = extent.max(axis=1)
        big = float(np.percentile(size, SPREAD_PERCENTILE))
        side = max(MARGIN * big, 2 * float(np.percentile(spread, SPREAD_PERCENTILE)) + big)
        side = min(1.0, side)
        corner = np.clip(path - side / 2, 0, scale - side)  # inside the picture
        return np.concatenate([corner / scale, np.full((len(path), 1), side)], 1)

    def pan(self, follow_s: float = FOLLOW_S) -> np.ndarray:
        """(T,) -1 (left) to 1 (right): where the object is across the picture, along its smoothed path."""
        return np.clip(2 * self.path(follow_s)[:, 0] - 1, -1, 1)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred mean over `width` (odd) values; the ends held (edge padding)."""
    half = width // 2
    padded = np.pad(np.asarray(x, dtype=np.float64), half, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _object_and_short(region: Region, info: VideoInfo, picture: np.ndarray) -> tuple[np.ndarray | None, int]:
    """What the region follows, found once on `picture` (the frame the box was drawn on, at up to the largest
    tracking size; `target`: the object in the box or the one it lies on) as fractions (left, top, right, bottom), or
    None; and the short side of the frames the tracker sees, where the object's larger side (else the box's) becomes
    about TRACK_BOX_PX. At the box's scale a small object was a speck: a ball of 1/64 of the height in a box drawn
    with margins of 15% was 3 px there, and the box lost it (scripts/measure_tracking.py --radius). Found once, and
    scaled to the tracking frames: found again there, at a smaller size, the two could disagree (half a bus's door
    gave the bus at one size and the door alone at the other)."""
    short = min(info.width, info.height)
    left, top, right, bottom = region.box
    size = max((right - left) * info.width, (bottom - top) * info.height) / short  # short-side units
    h, w = picture.shape[:2]
    found = target(picture, _pixels(region.box, w, h))
    if found is not None:
        size = max(found[2:]) / min(h, w)
        found = _fractions(found, w, h)
    lo, hi = TRACK_SHORT_RANGE
    return found, int(min(short, max(lo, min(hi, round(TRACK_BOX_PX / max(size, 1e-3))))))


def _pixels(box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """A box as fractions (left, top, right, bottom) -> pixels (x, y, w, h) of a width x height picture."""
    left, top, right, bottom = box
    return np.array([left * width, top * height, (right - left) * width, (bottom - top) * height])


def _fractions(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """`_pixels` undone: boxes as pixels (..., 4) x, y, w, h of a width x height picture -> fractions (left, top,
    right, bottom)."""
    x, y, w, h = np.moveaxis(np.asarray(box, dtype=np.float64), -1, 0)
    return np.stack([x / width, y / height, (x + w) / width, (y + h) / height], -1)


def object_box(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The object in a box drawn on an RGB `image` (x, y, w, h pixels), as its own tighter box, or None when nothing
    in it stands out. The object's colours are those far more frequent inside the box than in a ring just around it
    (where the picture's edges cut the ring, a band along the box's own edge stands in); its pixels' largest
    connected part, with a margin, is the object. A loose box is mostly background, and matching all of it lets the
    background decide where it goes: a box drawn around a ball on a plain wall or over half the picture slid across
    the frame."""
    parts = _parts(image, box)
    if parts is None:
        return None
    _, stats, _ = parts
    return _padded(stats[1 + int(np.argmax(stats[1:, AREA]))], box, image.shape)


def holding_object(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The larger object a box (x, y, w, h pixels) was drawn inside, as its own box, or None: for a box on part of
    something big (a bus's side, a plain stretch of its paint), where nothing stands out from the ring just around
    it, which is the same object. The picture around the box is searched, 3, 9 and then 27 times the box's size, for
    an object that stands out there (its colours `HOLDING_RATIO` times as frequent as in the ring around that area)
    and covers at least half of the box. Where the picture's edges cut that ring, a band along the area's own edge
    stands in, as for `object_box`; an object the picture's edge cuts has its colours in that band too, so it is
    also looked for against what is left of the ring alone, and in the area stretched to the edges that cut its ring.
    What spans the picture (sky, floor) is no object."""
    height, width = image.shape[:2]
    drawn = _clipped(box, image.shape)
    if drawn is None:
        return None
    x0, y0, x1, y1 = drawn
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    for scale in HOLDING_SCALES:
        around = np.array([cx - scale * w / 2, cy - scale * h / 2, scale * w, scale * h])
        tries = [(around, True)]
        compared = _ring(around, image.shape)
        if compared is not None and any(compared[2]):
            # an object the picture's edge cuts has its colours in the edge band too: it is asked for against what is
            # left of the ring alone, then in the area stretched to the edges that cut the ring (what lay between
            # them, part of that object, was in the ring)
            stretched = _stretched(around, image.shape)
            tries += [(around, False)] + ([] if stretched is None else [(stretched, False)])
        for area, edge_band in tries:
            parts = _parts(image, area, HOLDING_RATIO, edge_band)
            if parts is None:
                continue
            (ax, ay), stats, labels = parts
            inside = labels[y0 - ay : y1 - ay, x0 - ax : x1 - ax]  # the drawn box (inside `area`)
            counts = np.bincount(inside.ravel(), minlength=len(stats))[1:] * (stats[1:, AREA] > 0)  # no specks
            if not counts.size or counts.max() < HOLDING_SHARE * inside.size:
                continue
            part = stats[1 + int(np.argmax(counts))]
            left, top, right, bottom = ax + part[0], ay + part[1], ax + part[0] + part[2], ay + part[1] + part[3]
            if (left <= 0 and right >= width) or (top <= 0 and bottom >= height):
                continue
            # its own edges are what it is matched by: a margin as wide as a small object's would be mostly
            # background, and a template near the picture's size cannot be followed to its edges
            return _padded(part, area, image.shape, HOLDING_MARGIN)
        if around[0] <= 0 and around[1] <= 0 and around[0] + around[2] >= width and around[1] + around[3] >= height:
            break  # the whole picture was searched
    return None


def target(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """What a box (x, y, w, h pixels) drawn on `image` follows: the object in it (`object_box`), else the larger
    object it lies in (`holding_object`); None where neither stands out (the box stays: `FixedBox`)."""
    found = object_box(image, box)
    return found if found is not None else holding_object(image, box)


def _parts(image: np.ndarray, box: np.ndarray, ratio: float = OBJECT_RATIO, edge_band: bool = True):
    """The connected parts of what stands out in `box` (x, y, w, h pixels, clipped to the picture) from a ring around it
    (colours `ratio` times as frequent inside; where the picture's edges cut the ring, a band along the box's own
    edge stands in, with `edge_band`, else what is left of the ring must be a tenth of it): ((x0, y0) of the clipped
    box, OpenCV's stats per part (row 0 the rest; specks and lines have their AREA set to 0: not objects), the labels
    (H, W) over the box), or None when nothing does."""
    cv2 = require("cv2", extra="layers", for_="a layer's region (its tracker)")

    levels = COLOUR_LEVELS
    split = _inside_and_around(image, box, lambda p: p[..., :3].astype(np.int32) * levels // 256)  # bins per channel
    if split is None:
        return None
    (x0, y0, x1, y1), ring, cut, inside, outside = split
    full = (x1 - x0 + 2 * ring) * (y1 - y0 + 2 * ring) - (x1 - x0) * (y1 - y0)
    if any(cut) and edge_band:  # the picture's edges cut the ring: the box's edge stands in for it
        band = max(1, ring // 4)
        edge = np.ones(inside.shape[:2], bool)
        edge[band:-band, band:-band] = False
        outside = np.concatenate([outside, inside[edge]])

    if len(outside) < 0.1 * full:  # too little of a ring to tell what stands out from
        return None

    def frequency(colours: np.ndarray) -> np.ndarray:  # (N, 3) bins -> share of each colour, neighbours pooled
        codes = (colours[:, 0] * levels + colours[:, 1]) * levels + colours[:, 2]
        counts = np.bincount(codes, minlength=levels**3).reshape((levels,) * 3).astype(np.float64)
        return _pooled(counts) / len(colours)  # a colour counts for its neighbours: noise moves it by a bin

    own = frequency(inside.reshape(-1, 3)) > ratio * frequency(outside)
    mask = own[inside[..., 0], inside[..., 1], inside[..., 2]].astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    area = stats[1:, AREA]
    small = area < max(6, 0.002 * (x1 - x0) * (y1 - y0))  # specks of noise are not objects
    # nor is a line a pixel or two wide: where a blurred edge between two colours runs through the box, the colours
    # between them are in it and not around it (half a bus's door, boxed, gave a sliver of its edge, 5 x 14 px)
    small |= area < THIN * stats[1:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]].max(axis=1)
    if small.all():
        return None
    stats[1:, AREA][small] = 0
    return (x0, y0), stats, labels


def _inside_and_around(image: np.ndarray, box: np.ndarray, values):
    """`values(pixels)` (per pixel, of the picture around a box, x, y, w, h pixels) split as `_parts` compares them:
    ((x0, y0, x1, y1) the box clipped to the picture, the ring's width, which sides of the ring the picture's edges
    cut (`_ring`), the box's values (H, W, ...), the ring's (N, ...)), or None where less than 2 x 2 of the box is in
    the picture."""
    around = _ring(box, image.shape)
    if around is None:
        return None
    (x0, y0, x1, y1), ring, cut = around
    height, width = image.shape[:2]
    rx0, ry0, rx1, ry1 = max(0, x0 - ring), max(0, y0 - ring), min(width, x1 + ring), min(height, y1 + ring)
    found = values(image[ry0:ry1, rx0:rx1])
    inner = np.zeros((ry1 - ry0, rx1 - rx0), bool)
    inner[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = True
    return (x0, y0, x1, y1), ring, cut, found[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0], found[~inner]


def _pooled(table: np.ndarray) -> np.ndarray:
    """A table over bins (L, L, ...) of colours or hues, each bin's value summed with its neighbours' (26 in 3
    dimensions)."""
    padded, pooled = np.pad(table, 1), np.zeros_like(table)
    for offset in np.ndindex(*(3,) * table.ndim):
        pooled += padded[tuple(slice(o, o + n) for o, n in zip(offset, table.shape))]
    return pooled


def _hue_codes(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) RGB pixels -> (...) int: the bin of each one's chromaticity (its r and g shares of r + g + b, which
    light and shade leave as they are), `HUE_LEVELS` each; HUE_LEVELS ** 2 for a pixel too dark to have one."""
    p = pixels[..., :3].astype(np.float32)
    total = p.sum(-1)
    scale = HUE_LEVELS / np.maximum(total, 1)
    r = np.minimum((p[..., 0] * scale).astype(np.int32), HUE_LEVELS - 1)
    g = np.minimum((p[..., 1] * scale).astype(np.int32), HUE_LEVELS - 1)
    return np.where(total < DARK, HUE_LEVELS**2, r * HUE_LEVELS + g)


def _hue_counts(codes: np.ndarray) -> np.ndarray:
    """`_hue_codes` (any shape) -> (HUE_LEVELS ** 2,) float: how many pixels have each hue (too dark: none)."""
    return np.bincount(codes.ravel(), minlength=HUE_LEVELS**2 + 1)[:-1].astype(np.float64)


def _pooled_hues(table: np.ndarray) -> np.ndarray:
    """(HUE_LEVELS ** 2,) values per hue -> each summed with its neighbours' (`_pooled`), flat again."""
    return _pooled(table.reshape(HUE_LEVELS, HUE_LEVELS)).ravel()


def _beside(hues: np.ndarray) -> np.ndarray:
    """A table over `_hue_codes` (as `TemplateTracker._own_hues` gives) -> the hues next to those in it, not in it."""
    return np.append(_pooled_hues(hues[:-1].astype(np.float64)) > 0, False) & ~hues


def _hues_standing_out(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The hues of a look (`box`, x, y, w, h pixels, on `image`) that stand out from what is just around it
    (`OBJECT_RATIO`, a bin's neighbours pooled with it), as a flat table over `_hue_codes` less its last code (too
    dark); the look's codes (H, W); and its largest part (H, W) bool, told by its colours as `object_box` tells
    them. None where less ring than a tenth of the look is in the picture, or no part stands out."""
    # where the picture's edges cut the ring, by what is left of it alone: an object filling its look in a corner of
    # the picture has its colours in the band along the look's edge that would stand in, and nothing stood out
    parts = _parts(image, box, edge_band=False)
    split = _inside_and_around(image, box, _hue_codes)
    if parts is None or split is None:
        return None
    _, stats, labels = parts
    (x0, y0, x1, y1), _, _, inside, outside = split
    if len(outside) < 0.1 * (x1 - x0) * (y1 - y0):
        return None

    def frequency(hues: np.ndarray) -> np.ndarray:  # share of each hue, neighbours pooled (too dark: none)
        return _pooled_hues(_hue_counts(hues)) / hues.size

    own = frequency(inside) > OBJECT_RATIO * frequency(outside)
    return own, inside, labels == 1 + int(np.argmax(stats[1:, AREA]))


def _ring(box: np.ndarray, shape: tuple[int, ...]):
    """A box (x, y, w, h pixels) as `_parts` compares it with the ring around it: the box clipped to the picture (x0,
    y0, x1, y1), the ring's width, and whether the picture's edges cut the ring on its left, top, right and bottom;
    None where less than 2 x 2 of the box is inside."""
    clipped = _clipped(box, shape)
    if clipped is None:
        return None
    x0, y0, x1, y1 = clipped
    ring = max(3, round(0.25 * min(x1 - x0, y1 - y0)))
    return clipped, ring, (x0 < ring, y0 < ring, x1 + ring > shape[1], y1 + ring > shape[0])


def _stretched(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A box (x, y, w, h pixels) clipped to the picture and stretched to each of its edges that cuts the box's ring;
    None where it reaches them already, where the edges cut no ring, or where less than 2 x 2 of it is inside."""
    ring = _ring(box, shape)
    if ring is None:
        return None
    (x0, y0, x1, y1), _, (left, top, right, bottom) = ring
    ends = (0 if left else x0, 0 if top else y0, shape[1] if right else x1, shape[0] if bottom else y1)
    if ends == (x0, y0, x1, y1):
        return None
    return np.array([ends[0], ends[1], ends[2] - ends[0], ends[3] - ends[1]], dtype=np.float64)


def _clipped(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """A box (x, y, w, h pixels) as whole pixels inside a picture of `shape`: (x0, y0, x1, y1), or None where less
    than 2 x 2 of it is inside."""
    height, width = shape[:2]
    x, y, w, h = box
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    return None if x1 - x0 < 2 or y1 - y0 < 2 else (x0, y0, x1, y1)


def _padded(part: np.ndarray, box: np.ndarray, shape: tuple[int, ...], margin: float = 0.25) -> np.ndarray:
    """One of `_parts`' parts with a margin of `margin` times its larger side, inside the box it was found in:
    (x, y, w, h) pixels."""
    x0, y0, x1, y1 = _clipped(box, shape)  # as `_parts` found it in
    left, top, bw, bh = (int(v) for v in part[:4])
    pad = max(2, round(margin * max(bw, bh)))
    ox0, oy0 = max(x0, x0 + left - pad), max(y0, y0 + top - pad)
    ox1, oy1 = min(x1, x0 + left + bw + pad), min(y1, y0 + top + bh + pad)
    return np.array([ox0, oy0, ox1 - ox0, oy1 - oy0], dtype=np.float64)


class TemplateTracker:
    """The object found again in every frame by normalised cross-correlation (OpenCV's matchTemplate, in colour) with
    its appearance: the object's own box on the frame it was drawn on (`target`), and a copy that follows slow changes
    of it (blended in where the match is sure). The drawn box moves with it. The search looks around where the object's
    last motion would take it and, unless the match there is sure, more widely around where it was (a bounce reverses
    it; a weak match may be the background); an object that left the picture, only where it left and where it would come
    back in by the same edge. Nothing matching: the object is lost for that frame, and the box stays. A match short of
    sure must also show the object's own hues (`_own_hues`, learnt when it is drawn, and next to them those it shows as
    the light changes, `_follow_hues`), and near where it is expected, and in the size checks, where its hues are laid
    out as in its look also matches: the background the look holds (a round object's corners, its margin) outweighed the
    object on a textured picture. Near where it is expected, a match that shows the object's hues only blurred (its
    parts have turned) counts as found, and no more (`LOOSE`).

    Measured on two balls that fall, bounce and drift (scripts/measure_tracking.py, docs/layers.md): boxes drawn
    tight or loose, up to half the picture (both halves alike), stay on their ball, on a plain background and on a
    textured one filmed with shake and noise (worst error 4.3% of the picture). OpenCV's MIL tracker lagged the
    falling ball by up to 16% at 20 ms a frame; Median Flow on Lucas-Kanade points lost it to the floor's edge."""

    SURE, FOUND = 0.8, 0.5  # match scores: blend the appearance in; the object is there
    BLEND = 0.1
    # the fastest move fades on each frame the object is found (by half in about 23 frames, 0.9 s at 25 fps): an
    # object thrown and then at rest, hidden for a frame, was otherwise searched for as far as its throw reached, and
    # its twin 120 px off taken for good
    FASTEST_DECAY = 0.97
    VERY_SURE = 0.95  # a match this good is at the object's size: no other size is tried
    SCALE_STEP, SCALES, RESCALE_EVERY = 1.1, (0.25, 4.0), 2  # sizes tried, how far from the drawn one, how often
    RESCALE_GAIN = 0.04  # a size is taken where it matches this much better, twice in a row (balls took wrong ones)
    LOOSE = np.float32(FOUND + 0.1)  # a match by where the object's hues lie blurred (`_match`) counts up to this
    TIE = 0.06  # matches within this of the best score are as good as it (a look-alike, in noise): the nearest is taken
    COVERED = 0.5  # a match short of sure shows the object's own hues on this share of the pixels they cover
    # the share of its look the object's hues cover, at least (else they tell nothing) and at most (else they have no
    # layout); and the fewest pixels of them a look (cut by the picture's edge, or small) must have to be checked
    HUE_SHARE, HUE_PIXELS = (0.1, 0.9), 4
    # a found object that shows its hues on less than this share of what its look did, or hues next to them on more
    # than its look did by the rest of that share, learns new ones (`_follow_hues`)
    HUE_FOLLOW = 0.8
    HUE_NEW = 0.1  # that its largest part shows on this share of its pixels, at least
    VISIBLE = 0.25  # an object the picture's edge cuts is matched by what is in it, down to this share of its sides
    START_FRAMES = 2  # the frames after the drawn one whose moves tell the backward pass how the object moved

    def __init__(self, cv2, image: np.ndarray, box: np.ndarray, found: np.ndarray):
        self.cv2 = cv2
        drawn = np.asarray(box, dtype=np.float64)
        x, y, w, h = (int(round(v)) for v in found)
        x, y = min(x, image.shape[1] - 2), min(y, image.shape[0] - 2)  # a box on the last pixel keeps 2 of them
        self.size = (max(2, w), max(2, h))
        self.anchor = image[y : y + self.size[1], x : x + self.size[0]].astype(np.float32)
        self.size = (self.anchor.shape[1], self.anchor.shape[0])
        self.template = self.anchor.copy()
        self.first = self.anchor  # its look as drawn, at the size drawn: `anchor` is this at the object's scale
        self.scale = 1.0  # the object's size now against its size when drawn
        self.pending = None  # a scale the last check found better
        self.centre = np.array([x + self.size[0] / 2, y + self.size[1] / 2])
        self.velocity = np.zeros(2)
        self.missed = 0  # frames since the object was last found
        self.fastest = np.zeros(2)  # its largest move in a frame lately (`FASTEST_DECAY`), x and y pixels
        self.updates = 0  # frames followed
        self.start_speed = np.zeros(2)  # `fastest` over its first START_FRAMES frames: how it moved when drawn
        self.offset = drawn[:2] - self.centre  # the drawn box's corner from the object's centre
        self.drawn_size = drawn[2:]
        self.own_hues = self._own_hues(image, np.array([x, y, *self.size], dtype=np.float64))
        # the hues it is looked for by in the picture: its own, and those it has shown since next to them
        self.seen_hues = None
        if self.own_hues is not None:
            self.seen_hues = self.own_hues.copy()
            self.hue_share = float(self._shown(self.first).mean())  # of its look as drawn
            self._hues_beside()

    def _match(
        self,
        image: np.ndarray,
        centre: np.ndarray,
        reach: np.ndarray,
        looks: tuple[np.ndarray, ...] | None = None,
        layout: bool = False,
        loose: bool = False,
    ) -> tuple[float, np.ndarray]:
        """The best match within `reach` (x, y pixels) of `centre` of the object's two looks (`anchor`, `template`;
        or `looks`, another size of them): its score and centre. With `layout`, where the object's hues are laid out
        as in its look also matches (never as a sure match); with `loose`, where they show only blurred, laid out or
        not, also matches, up to `LOOSE`."""
        looks = looks or (self.anchor, self.template)
        h, w = looks[0].shape[:2]
        height, width = image.shape[:2]
        # an object the picture's edge cuts where it is looked for is matched by the part of its looks still in the
        # picture, were it further out by its fastest move (it can be found further out than it is looked for): with
        # its whole look, a bus driving out of the picture was lost as soon as any of it was out
        cut = self._cut(centre, (w, h), image.shape)
        if cut is None:
            return -1.0, centre
        left, top, right, bottom = cut
        if any(cut):
            looks = tuple(look[top : h - bottom, left : w - right] for look in looks)
        ox, oy = w / 2 - left, h / 2 - top  # the whole look's centre from the matched part's corner
        h, w = looks[0].shape[:2]
        x0, y0 = (int(max(0, c - r)) for c, r in zip(centre, reach))
        x1, y1 = int(min(width, centre[0] + reach[0])), int(min(height, centre[1] + reach[1]))
        area = image[y0:y1, x0:x1]
        if area.shape[0] < h or area.shape[1] < w:
            return -1.0, centre
        cv2 = self.cv2
        scores = cv2.matchTemplate(area, looks[0], cv2.TM_CCOEFF_NORMED)
        for look in looks[1:]:
            scores = np.maximum(scores, cv2.matchTemplate(area, look, cv2.TM_CCOEFF_NORMED))
        # on a textured picture, the background in the look (a round object's corners, its margin) can outweigh the
        # object: the place it was drawn on, the object gone from it, matched better than the object 60 px on, and
        # the box went back there. A match short of sure must show the object's own hues where its look has them
        # (where the best is sure by more than a tie, every match that counts is sure: nothing to check). Near where
        # it is expected, the layout of its hues matches too; in the wider search that took a blotch of its hue as
        # it left, and as a sure match it would let the edge search take such a blotch for it coming back
        shown = None if self.own_hues is None or scores.max() >= self.SURE + self.TIE else self._shown(looks[0])
        checked = shown is not None and shown.sum() >= self.HUE_PIXELS
        loosely_best = False  # the best match shows the object's hues only loosely (`loose`)
        if checked:
            present = self._shown(area, self.seen_hues)
            # (a look all of its hues has no layout: normalised, it would match equally anywhere)
            laid = layout and shown.mean() < self.HUE_SHARE[1]
            if laid:
                laid_out = cv2.matchTemplate(present, shown, cv2.TM_CCOEFF_NORMED)
                scores = np.maximum(scores, np.minimum(laid_out, np.float32(self.SURE - 0.01)))
            covered = cv2.matchTemplate(present, shown, cv2.TM_CCORR) / shown.sum()
            strict = np.where((covered >= self.COVERED) | (scores >= self.SURE), scores, np.float32(-1))
            if loose:
                # and loosely: where its hues lie, blurred over about a sixth of the look's shorter side (odd, 3 px at
                # least), up to `LOOSE` (the blurred layout may also lift a match that passes the exact check). An
                # object's parts may have turned (a striped ball that rolls) and cover much the same ground: by the
                # hues' exact pixels, the check and the layout failed a ball whose stripes had turned a quarter, and
                # it was lost until they turned back (10 of 10 pictures). Never more than found, and only where no
                # exact match is as good: loose matches let by at up to 0.65, or beside a better exact one, made one
                # island of matches (`others`, below) with the ball's twin crossing its path, and the box went with it
                k = max(3, min(h, w) // 6) | 1
                spread, spread_look = cv2.blur(present, (k, k)), cv2.blur(shown, (k, k))
                loosely = scores
                if laid:
                    loosely = np.maximum(loosely, cv2.matchTemplate(spread, spread_look, cv2.TM_CCOEFF_NORMED))
                covered = cv2.matchTemplate(spread, spread_look, cv2.TM_CCORR) / float((spread_look**2).sum())
                loosely = np.where(covered >= self.COVERED, np.minimum(loosely, self.LOOSE), np.float32(-1))
                loosely_best = bool(loosely.max() > strict.max())
            scores = np.maximum(strict, loosely) if loosely_best else strict
        # of matches as good as each other (a bus's windows, a row of look-alikes), the nearest to where the search
        # looks: without that, noise picked a neighbouring window, the move it made became the next frame's
        # prediction, and the box hopped along the row a window per frame. Only near-ties: weighing every match
        # down by its distance lost small balls that bounce faster than the prediction (8 of 48 tracks over 5% off)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if loosely_best:
            # loose matches capped alike make a flat top: its middle, not its first point in OpenCV's scan order,
            # which put the box 4-5 px above a rolling ball and a little to its left, and its motion with it
            _, tops = cv2.connectedComponents((scores >= best).astype(np.uint8), connectivity=8)
            ys, xs = np.nonzero(tops == tops[by, bx])
            middle = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            by, bx = int(ys[middle]), int(xs[middle])
        others = scores.copy()  # another object's match, not the best one's own slope: half a template off or more
        if checked and best < self.SURE:
            # checked by hue, another island of matches within a tie of the best: a ball's twin crossing its path made
            # one patch of its hue with it, matched about as well 8 px across and 10 down, within half a look, and the
            # box went off with the twin (a box a quarter of a look wide let the flat top that the layout's cap makes
            # count as other matches, and moved the box by a few pixels)
            _, islands = cv2.connectedComponents((scores >= best - self.TIE).astype(np.uint8), connectivity=8)
            others[islands == islands[by, bx]] = -1
        else:
            ry, rx = (h - 1) // 2, (w - 1) // 2
            others[max(0, by - ry) : by + ry + 1, max(0, bx - rx) : bx + rx + 1] = -1
        # peaks of the scores themselves: the masked copy's border makes false peaks on the best match's own slope
        if cv2.minMaxLoc(others)[1] >= best - self.TIE:
            peaks = scores == cv2.dilate(scores, np.ones((3, 3), np.uint8))
            ys, xs = np.nonzero(peaks & (others >= best - self.TIE))
            ys, xs = np.append(ys, by), np.append(xs, bx)
            near = np.argmin((xs + x0 + ox - centre[0]) ** 2 + (ys + y0 + oy - centre[1]) ** 2)
            by, bx = ys[near], xs[near]
        return float(scores[by, bx]), np.array([x0 + bx + ox, y0 + by + oy])

    def _own_hues(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The object's hues in its look (`box`, x, y, w, h pixels, on `image`), as a table over `_hue_codes`: those
        that stand out from what is just around the look (`OBJECT_RATIO`), and that its largest part has where it
        lies in the middle of the look (the middle half of its width and height, unless under a quarter of that is
        the part), a bin's neighbours with them; None where they cover under `HUE_SHARE[0]` of the look (nothing to
        tell it by) or where less ring than a tenth of the look is in the picture. Only the middle: a blotch of a
        textured picture in the look's margin stands out as well, and stays where the object was drawn. Hues, not
        colours: in a shadow the object's colours are others, and it was lost."""
        found = _hues_standing_out(image, box)
        if found is None:
            return None
        own, inside, part = found
        h, w = part.shape
        core = np.zeros_like(part)
        core[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
        if (part & core).sum() >= 0.25 * core.sum():  # the middle of its look, where the margin's blotches are not
            part &= core
        shown = _pooled_hues(_hue_counts(inside[part])) > 0
        hues = np.append(own & shown, False)  # a pixel with no hue is never the object's
        return hues if hues.take(inside).mean() >= self.HUE_SHARE[0] else None  # `inside` is the look

    def _shown(self, pixels: np.ndarray, hues: np.ndarray | None = None) -> np.ndarray:
        """(H, W) float32: 1 where `pixels` (H, W, 3) have one of the object's hues (`hues`, else its own), else 0."""
        return (self.own_hues if hues is None else hues).take(_hue_codes(pixels)).astype(np.float32)

    def _follow_hues(self, image: np.ndarray) -> None:
        """Where the object, found, shows the hues it is looked for by (`seen_hues`) on less than `HUE_FOLLOW` of the
        share of its look they covered when drawn, or hues next to them on more of its look than its look as drawn did
        by the rest of that share, those of the hues next to them that stand out from around its look now and that its
        largest part shows (`HUE_NEW`) are looked for too. A picture whose colour balance drifted (a camera's white
        balance, light of another colour) moved its hues out of those learnt when it was drawn, and every match short of
        sure failed the check; into a warmer light, a third of a ball's moved at once, and the next frame, with half,
        was a miss, so waiting for its hues to fall was too late. Next to them only, so that a box that took something
        else does not learn to look for it."""
        at = self._look_now(image)
        if at is None:  # the picture's edge cuts it: no measure of its hues
            return
        x, y, look = at
        # shares of the look: every other pixel tells them as well, in a quarter of the time
        codes = _hue_codes(look[::2, ::2])
        seen, beside = self.seen_hues.take(codes).mean(), self.beside_hues.take(codes).mean()
        more = (1 - self.HUE_FOLLOW) * self.hue_share
        if seen >= self.HUE_FOLLOW * self.hue_share and beside < self.beside_share + more:
            return
        found = _hues_standing_out(image, np.array([x, y, *self.size], dtype=np.float64))
        if found is not None:
            own, inside, part = found
            # those its largest part itself shows, not their neighbours: those pooled in grew the hues it was looked
            # for by from 11 to 34 bins in 2 s of a ball crossing a blotchy picture in light that did not change
            shown = _hue_counts(inside[part]) >= self.HUE_NEW * part.sum()
            new = np.append(own & shown, False) & self.beside_hues
            if new.any():
                self.seen_hues |= new
                self._hues_beside()

    def _look_now(self, image: np.ndarray) -> tuple[int, int, np.ndarray] | None:
        """The object's look at its centre now, at its size now, with its corner (x, y pixels), or None where the
        picture's edge cuts it."""
        x, y = (int(round(c - s / 2)) for c, s in zip(self.centre, self.size))
        look = image[max(0, y) : y + self.size[1], max(0, x) : x + self.size[0]]
        return (x, y, look) if look.shape[:2] == (self.size[1], self.size[0]) else None

    def _hues_beside(self) -> None:
        """The hues next to those the object is looked for by (`beside_hues`), and the share of its look as drawn
        that they cover (`beside_share`): a ball's edges, blended with what is around it, show some of them."""
        self.beside_hues = _beside(self.seen_hues)
        self.beside_share = float(self._shown(self.first, self.beside_hues).mean())

    def _wide_reach(self, size: np.ndarray, missed: int) -> np.ndarray:
        """How far the wider search reaches (x, y pixels) after `missed` frames without the object."""
        return (3 + min(missed, 2)) * size + 2 * self.fastest

    def _exits(self, shape: tuple[int, ...], size: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The picture's edges that the object's last look crossed, as searches (centre, reach) for it coming back in
        by them: centred on the edge, reaching along it as far as the wide search does, and across it by half the
        look, so that only a look the edge cuts is found (a look-alike wholly in the picture is something else)."""
        along = self._wide_reach(size, missed=2)  # as far as the wider search ever reaches
        searches = []
        for axis, end in ((0, shape[1]), (1, shape[0])):
            for edge in (0, end):
                crossed = (
                    self.centre[axis] - size[axis] / 2 < 0 if edge == 0 else self.centre[axis] + size[axis] / 2 > end
                )
                if crossed:
                    where, reach = self.centre.copy(), along.copy()
                    where[axis], reach[axis] = edge, size[axis] / 2 + 1
                    searches.append((where, reach))
        return searches

    def _cut(self, centre: np.ndarray, size: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The columns and rows (left, top, right, bottom) of a look `size` (w, h) that fall off a picture of `shape`
        when it is centred up to the object's fastest move + 2 px further out than `centre`, or, where that would
        leave less than `VISIBLE` of its width or height in the picture, centred on `centre`; None where even that
        would."""
        picture = (shape[1], shape[0])
        for more in (self.fastest + 2, np.zeros(2)):
            (left, right), (top, bottom) = (
                (max(0, math.ceil(s / 2 - c + d)), max(0, math.ceil(c + d + s / 2 - n)))
                for c, s, n, d in zip(centre, size, picture, more)
            )
            width, height = size[0] - left - right, size[1] - top - bottom
            if min(width, height) >= 2 and width >= self.VISIBLE * size[0] and height >= self.VISIBLE * size[1]:
                return left, top, right, bottom
        return None

    def update(self, image: np.ndarray) -> tuple[bool, np.ndarray]:
        self.updates += 1
        image = image.astype(np.float32)
        size = np.array(self.size, dtype=np.float64)
        ahead = self.centre + self.velocity
        exits = self._exits(image.shape, size)
        # where a missed object would be by now, moving on as it did, tells whether it has left: kept where it was
        # last seen, a ball lost half out of the picture never left, and the wider search took the background
        gone = bool(exits) and self._cut(ahead + self.missed * self.velocity, self.size, image.shape) is None
        if gone:
            # last seen across the picture's edge, its motion took it out (less than `VISIBLE` of it would be in): it
            # is looked for where it was last seen, give or take its size, and where it would be coming back in by
            # the same edge. Looked for widely, a look-alike near where it left was taken for it (a ball that left by
            # the right edge, its twin at rest 40 px away). An object near the edge that moves fast is not gone:
            # small balls that bounced on a floor near the bottom were lost
            score, centre = self._match(image, self.centre, size)
            for where, reach in exits if score < self.SURE else ():
                back, found = self._match(image, where, reach)
                if back >= self.SURE and back > score:  # half its look along a whole edge: only a sure match
                    score, centre = back, found
        else:
            score, centre = self._match(image, ahead, 1.5 * size, layout=True, loose=True)
        if not gone and score < self.SURE:  # a weak match where the motion led may be the background: look wider too
            # a small, fast object can move by more than its size, and a bounce takes it from rest to full speed in
            # a frame: the reach grows with the fastest it has moved, and for two frames it is not found (no more:
            # an object that left the picture would be taken for anything that looks like it)
            wide, where = self._match(image, self.centre, self._wide_reach(size, self.missed))
            if wide > score:
                score, centre = wide, where
        # an object that comes nearer or goes away changes its size: every other frame where the match is less than
        # very sure, a size a step larger and one smaller are tried (a sure match is the size it was)
        if self.updates % self.RESCALE_EVERY == 0:
            # (not while the picture's edge cuts its look, as `_match` would: part of it is no measure of its size)
            whole = self._cut(centre, self.size, image.shape) == (0, 0, 0, 0)
            if self.FOUND <= score < self.VERY_SURE and whole:
                score, centre = self._rescale(image, score, centre)
            else:  # "two checks in a row": a check skipped breaks the row
                self.pending = None
        ok = score >= self.FOUND
        if ok:
            self.velocity, self.centre = (centre - self.centre) / (1 + self.missed), centre  # a move per frame
            self.fastest = np.maximum(self.fastest * self.FASTEST_DECAY, np.abs(self.velocity))
            # (a match sure by more than a tie is not checked by hue: there, every fourth frame keeps up with the light)
            if self.seen_hues is not None and (score < self.SURE + self.TIE or self.updates % 4 == 0):
                self._follow_hues(image)
            at = self._look_now(image) if score >= self.SURE else None
            if at is not None:
                self.template = (1 - self.BLEND) * self.template + self.BLEND * at[2]
        if self.updates <= self.START_FRAMES:
            self.start_speed = self.fastest.copy()
        self.missed = 0 if ok else self.missed + 1
        return ok, np.array([*(self.centre + self.offset * self.scale), *(self.drawn_size * self.scale)])

    def _rescale(self, image: np.ndarray, score: float, centre: np.ndarray) -> tuple[float, np.ndarray]:
        """The object's first look at its size now and a step larger and smaller, matched around `centre`: a size
        that matches better than the one now by `RESCALE_GAIN` at two checks in a row becomes the object's (its
        recent look is made that size too). Returns the score and centre of the size kept. Without it, a car that
        came nearer and grew 4 times over 4 s was lost once it had doubled, and its box held 0.29 of the picture
        behind. The first look, not the recent one: the recent look blends in the object as it is found, zoomed
        in as it grows, so at its old size it kept matching about as well, and the box grew only 0.64 of the way."""
        cv2 = self.cv2
        h0, w0 = self.first.shape[:2]
        reach = 0.75 * np.array(self.size, dtype=np.float64) + 2
        base, _ = self._match(image, centre, reach, (self.anchor,), layout=True)
        best = None
        for step in (self.SCALE_STEP, 1 / self.SCALE_STEP):
            scale = self.scale * step
            size = (round(w0 * scale), round(h0 * scale))
            # a size that does not move the way the step goes (rounding, tiny looks) is no other size
            if not self.SCALES[0] <= scale <= self.SCALES[1] or min(size) < 2:
                continue
            if (step > 1) != (size[0] * size[1] > self.size[0] * self.size[1]) or size == self.size:
                continue
            if self._cut(centre, size, image.shape) != (0, 0, 0, 0):
                continue  # a size whose look the picture's edge would cut (or larger than the picture)
            look = cv2.resize(self.first, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            reach = 0.75 * np.array(size, dtype=np.float64) + 2
            found, where = self._match(image, centre, reach, (look,), layout=True)
            if found > base + self.RESCALE_GAIN and (best is None or found > best[0]):
                best = (found, where, scale, look)
        if best is None or best[2] != self.pending:  # a size is taken once two checks in a row find it better
            self.pending = None if best is None else best[2]
            return score, centre
        _, centre, self.scale, self.anchor = best
        self.pending = None
        self.size = (self.anchor.shape[1], self.anchor.shape[0])
        grow = self.size[0] * self.size[1] > self.template.shape[0] * self.template.shape[1]
        self.template = cv2.resize(self.template, self.size, interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)
        # both looks, this size, as the sizes were compared: by their look alone, the size just taken often matched
        # under 0.5 on a textured picture, and the frame counted as one the object was not seen in
        reach = 0.75 * np.array(self.size, dtype=np.float64) + 2
        return self._match(image, centre, reach, layout=True)


class FixedBox:
    """A box with nothing in it that stands out from what is around it: a part of the picture, not an object, and it
    stays where it was drawn. Followed like an object, its plain or evenly textured background matched as well a
    little way off, and such boxes slid by up to 80% of the picture (scripts/measure_tracking.py). A camera that
    follows its subject keeps it in the same part of the picture, which a fixed box then holds; a still camera's
    box holds the same part of the scene."""

    def __init__(self, box: np.ndarray):
        self.box = np.array(box, dtype=np.float64)

    def update(self, image: np.ndarray) -> tuple[bool, np.ndarray]:
        return True, self.box.copy()


def follower(cv2, image: np.ndarray, box: np.ndarray, found: np.ndarray | None) -> TemplateTracker | FixedBox:
    """What follows a box (x, y, w, h pixels) drawn on `image`: the object `found` (`target`: the object in it or the
    one it lies on), or where there is none (None), nothing (the box stays)."""
    return FixedBox(box) if found is None else TemplateTracker(cv2, image, box, found)


def track(video: str | os.PathLike, region: Region, fps: float, info: VideoInfo | None = None) -> Track:
    """Follow `region` through `video` at `fps` (the model's frame rate): forwards from the frame it was drawn on
    to the end, and backwards to the start. Only the frames before that one are held in memory."""
    return track_many(video, [region], fps, info)[0]


def track_many(
    video: str | os.PathLike, regions: list[Region], fps: float, info: VideoInfo | None = None
) -> list[Track]:
    """`track` for several regions of one clip, from one decoding (each region's tracker sees the picture at its own
    size, as `track` gives it: a region is followed the same whatever others are). Each region's frames before its
    drawing time are held in memory for its backward pass, all regions' at once: a box drawn late in a long clip
    costs that region's tracking frames up to then (about 30 MB a second of clip at the largest tracking size)."""
    if not regions:
        return []
    from .frames import iter_pictures, pictures_at, probe  # decoding (and torch) only when regions are followed

    cv2 = require("cv2", extra="layers", for_="a layer's region (its tracker)")
    info = info or probe(video)
    for i, region in enumerate(regions):
        if region.at > info.duration:
            which = f"region {i + 1} of {len(regions)}" if len(regions) > 1 else "region"
            raise UserError(f"{which}: drawn at {region.at:g} s, after the end of the clip ({info.duration:.2f} s)")
    total = info.num_frames(fps)
    ats = [min(total - 1, round(region.at * fps)) for region in regions]
    drawn_on = pictures_at(video, fps, ats, min(info.width, info.height, TRACK_SHORT_RANGE[1]), info)
    objects, shorts = zip(*(_object_and_short(region, info, drawn_on[at]) for region, at in zip(regions, ats)))
    before: list[list[np.ndarray | None]] = []  # per frame, each region's picture while before its drawing time
    last = max(ats)
    firsts: list[np.ndarray] = [np.zeros(0)] * len(regions)  # each region's frame as drawn on
    forwards: list[TemplateTracker | FixedBox | None] = [None] * len(regions)
    targets: list[np.ndarray | None] = [None] * len(regions)  # each region's object on its frame (both passes')
    boxes: list[list[np.ndarray]] = [[] for _ in regions]  # from the drawing time on
    found: list[list[bool]] = [[] for _ in regions]
    # the regions' trackers are apart from each other: where there are cores, they follow their objects side by side
    # (OpenCV's matching releases the GIL)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(len(regions), cores)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="rewas-track") if workers > 1 else None
    run = pool.map if pool is not None else map
    try:
        for k, pictures in enumerate(iter_pictures(video, fps, shorts, info)):
            if k < last:
                before.append([p if k < at else None for p, at in zip(pictures, ats)])  # each region's own
            for i, (region, at) in enumerate(zip(regions, ats)):
                if k == at:
                    firsts[i] = pictures[i]
                    h, w = firsts[i].shape[:2]
                    box = _pixels(region.box, w, h)
                    targets[i] = None if objects[i] is None else _pixels(objects[i], w, h)
                    forwards[i] = follower(cv2, firsts[i], box, targets[i])
                    boxes[i].append(box)
                    found[i].append(True)
            moving = [i for i, at in enumerate(ats) if k > at]
            updates = run(lambda i, picture: forwards[i].update(picture), moving, [pictures[i] for i in moving])
            for i, (ok, box) in zip(moving, updates):
                boxes[i].append(box)
                found[i].append(ok)

        def backwards(i: int) -> list[tuple[bool, np.ndarray]]:
            follow = follower(cv2, firsts[i], boxes[i][0], targets[i])
            if isinstance(follow, TemplateTracker):
                # starting from rest, it lost a small ball that had landed just before the box was drawn (several of
                # its sizes off on the frame before); how the object moved just after is the best guess of how it
                # moved just before, and only that: its fastest move later on would widen the whole pass's search
                follow.fastest = forwards[i].start_speed.copy()
            behind = [follow.update(pictures[i]) for pictures in reversed(before[: ats[i]])]
            for pictures in before:  # its frames are done with
                pictures[i] = None
            return behind

        behinds = list(run(backwards, range(len(regions))))
    finally:
        if pool is not None:
            pool.shutdown()
    tracks = []
    for i, behind in enumerate(behinds):
        px = np.array([*(box for _, box in reversed(behind)), *boxes[i]], dtype=np.float64)
        seen_at = np.array([*(ok for ok, _ in reversed(behind)), *found[i]])
        h, w = firsts[i].shape[:2]
        fixed = targets[i] is None
        tracks.append(Track(_fractions(px, w, h), seen_at, info.width, info.height, fps, fixed))
    return tracks
