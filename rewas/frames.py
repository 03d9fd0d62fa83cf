"""① Video file -> frames at 25 fps (by presentation time), resized and centre-cropped, then encoder segments.

Decoding streams: frames are resampled as they are decoded (each output time t_k = k / fps takes the latest
frame shown at t_k, as ffmpeg's fps filter does), so variable frame rates, any codec PyAV reads and rotation
metadata are handled, and `iter_windows` holds no more than one generation window of frames at a time.
Preprocessing is Synchformer's: short side to 256 (bicubic), centre crop 224, /255, mean 0.5, std 0.5.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from ._optional import require
from .config import VideoConfig
from .errors import MediaError  # noqa: F401  (re-exported: frames.MediaError predates errors.py)
from .files import check_input_file


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # as displayed (after rotation)
    height: int
    fps: float  # native average rate
    duration: float  # seconds, from the first frame's presentation time to the end of the last frame
    start_time: float  # presentation time of the first frame, seconds
    rotation: int  # degrees, from the display matrix
    codec: str

    def num_frames(self, fps: float) -> int:
        """Frames of a resampled stream at `fps` covering the whole duration."""
        return max(1, round(self.duration * fps))


def _check_file(path: str | os.PathLike) -> str:
    return check_input_file(path, "file", missing=MediaError, invalid=MediaError)


def open_container(path: str | os.PathLike):
    path = _check_file(path)
    try:
        return av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
        raise MediaError(f"{path}: not a readable media file ({e.__class__.__name__})") from None


def video_streams(container) -> list:
    """The container's moving-picture streams: cover art in audio files (an attached picture) is not one."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def _video_stream(container, path: str):
    streams = video_streams(container)
    if not streams:
        raise MediaError(f"{path}: has no video stream")
    stream = streams[0]
    stream.thread_type = "AUTO"
    return stream


def _decode(container, stream, path: str) -> Iterator[av.VideoFrame]:
    """Decoded frames that have a presentation time. A stream whose frames have none (a raw elementary stream:
    nothing says when they are shown) is refused rather than guessed at."""
    timed, untimed = False, 0
    try:
        for frame in container.decode(stream):
            if _valid_time(frame.time):
                timed = True
                yield frame
            elif not timed:
                untimed += 1
                if untimed == 16:
                    break
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: video stream could not be decoded ({e.__class__.__name__})") from None
    if untimed and not timed:
        raise MediaError(
            f"{path}: the video frames carry no timestamps (a raw {stream.codec_context.name} stream?); "
            "put it in a container first, e.g. ffmpeg -r 25 -i IN -c copy OUT.mp4"
        )


MIN_FRAME_RATE = 1 / 60  # a frame a minute: fewer is a damaged header, not footage a soundtrack can follow


def probe(path: str | os.PathLike) -> VideoInfo:
    """Stream facts. Decodes only the first frame, then demuxes every packet for the exact duration (cheap).

    The timeline is the one a player shows: edit lists, B-frame delay and a non-zero or negative first timestamp
    are applied by the demuxer and decoder, so `start_time` is the presentation time of the first frame displayed
    and `duration` runs from it to the end of the last frame. Packets the demuxer marks for discard (before an
    edit list's start) are never counted.
    """
    path = _check_file(path)
    with open_container(path) as container:
        stream = _video_stream(container, path)
        first_frame = _first_frame(container, stream, path)
    with open_container(path) as container:
        stream = _video_stream(container, path)
        tb = float(stream.time_base)
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        end, count = -math.inf, 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.is_discard:
                    continue
                count += 1
                step = packet.duration * tb if packet.duration else (1.0 / rate if rate else 0.0)
                end = max(end, packet.pts * tb + step)
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: video stream could not be read ({e.__class__.__name__})") from None
        duration = end - first_frame.time
        if not (math.isfinite(duration) and duration > 0):
            raise MediaError(
                f"{path}: the video has no duration ({count} frame{'s' * (count != 1)} with no frame "
                "rate or timing to place them)"
            )
        if count / duration < MIN_FRAME_RATE:  # a header's time scale or frame durations that lie
            raise MediaError(
                f"{path}: {count} frame{'s' * (count != 1)} over {duration:.6g} s, one every {duration / count:.3g} "
                "s: these timestamps are not a video's (a damaged header?); re-encode it with FFmpeg"
            )
        rotation = int(first_frame.rotation or 0) % 360
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        if width <= 0 or height <= 0:
            raise MediaError(f"{path}: the video has no picture size ({width}x{height})")
        return VideoInfo(
            path, width, height, count / duration, duration, first_frame.time, rotation, stream.codec_context.name
        )


def first_frame_time(path: str | os.PathLike) -> float:
    """Presentation time (seconds) of the first frame a player shows: time 0 of everything rewas writes for `path`."""
    path = _check_file(path)
    with open_container(path) as container:
        return _first_frame(container, _video_stream(container, path), path).time


def _first_frame(container, stream, path: str) -> av.VideoFrame:
    # discard-flagged packets are decoded too (later frames may reference them); the decoder drops their frames
    frame = next(_decode(container, stream, path), None)
    if frame is None:
        raise MediaError(f"{path}: the video stream has no frames")
    return frame


def _valid_time(t: float | None) -> bool:
    return t is not None and math.isfinite(t)


def _resize_dims(width: int, height: int, short: int) -> tuple[int, int]:
    scale = short / min(width, height)
    return max(short, round(width * scale)), max(short, round(height * scale))


class _Converter:
    """Decoded frames -> (H, W, 3) uint8 RGB as displayed, at any of several sizes: resized (bicubic) as stored,
    then rotated by the display matrix. One per decoding pass, keeping a scaler per size: setting one up for each
    frame (what `frame.reformat` does) was most of the cost of converting a small frame (docs/speed.md#on-a-gpu).
    A scaler sets itself up again when the frames it is given change size or format, so that needs no key here."""

    def __init__(self):
        self._scalers: dict[tuple[int, int], VideoReformatter] = {}

    def rgb(self, frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        """`frame` resized to width x height as stored."""
        scaler = self._scalers.get((width, height))
        if scaler is None:
            scaler = self._scalers[width, height] = VideoReformatter()
        image = scaler.reformat(frame, width=width, height=height, format="rgb24", interpolation="BICUBIC")
        image = image.to_ndarray()
        rotation = int(frame.rotation or 0) % 360
        if rotation:  # display matrix angle is counter-clockwise
            image = np.rot90(image, k=rotation // 90)
        return image

    def crop(self, frame: av.VideoFrame, short: int, crop: int) -> np.ndarray:
        """`frame` -> (crop, crop, 3): rotation applied, short side resized, centre crop."""
        image = self.rgb(frame, *_resize_dims(frame.width, frame.height, short))
        top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
        return np.ascontiguousarray(image[top : top + crop, left : left + crop])


def crop_frames(images: Iterable[np.ndarray], short: int, crop: int) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB arrays -> (crop, crop, 3) each, with the same resampling as decoded frames."""
    converter = _Converter()
    for image in images:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
        yield converter.crop(frame, short, crop)


def arrays(decoded: Iterable[av.VideoFrame], format: str = "rgb24") -> Iterator[np.ndarray]:
    """Decoded frames -> arrays in `format`, at their own size, through one scaler (`to_ndarray(format=)` sets one up
    for each frame)."""
    scaler = VideoReformatter()
    for frame in decoded:
        yield scaler.reformat(frame, format=format).to_ndarray()


def _resampled(path: str | os.PathLike, fps: float, info: VideoInfo | None, convert) -> Iterator[np.ndarray]:
    """convert(frame) of the frame shown at each time k / fps, k < `info.num_frames(fps)`, in order."""
    info = info or probe(path)
    total = info.num_frames(fps)
    with open_container(path) as container:
        stream = _video_stream(container, info.path)
        k = 0
        previous = None
        for frame in _decode(container, stream, info.path):
            t = frame.time - info.start_time
            # every output time before this frame's presentation time shows the previous frame
            while previous is not None and k < total and k / fps < t - 1e-6:
                yield previous
                k += 1
            if k >= total:
                return
            previous = convert(frame)
        while previous is not None and k < total:
            yield previous
            k += 1


def iter_frames(path: str | os.PathLike, cfg: VideoConfig, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Yield (crop, crop, 3) uint8 RGB frames at cfg.fps, `info.num_frames(cfg.fps)` of them, in order. `cfg` is
    the model's (`pipe.config.video`): the paper and the default model read different sizes and rates, and no
    default would be right for both."""
    converter = _Converter()
    return _resampled(path, cfg.fps, info, lambda frame: converter.crop(frame, cfg.resize_short, cfg.crop))


def _stored_dims(frame: av.VideoFrame, width: int, height: int) -> tuple[int, int]:
    """A displayed width x height as the frame stores it (a quarter turn swaps them)."""
    return (height, width) if int(frame.rotation or 0) % 180 else (width, height)


def iter_whole_frames(
    path: str | os.PathLike, fps: float, short: int, info: VideoInfo | None = None
) -> Iterator[np.ndarray]:
    """Yield the whole picture, (H, W, 3) uint8 RGB with its short side resized to `short` (no crop), at `fps`:
    what a tracker follows a region on."""
    return (pictures[0] for pictures in iter_pictures(path, fps, [short], info))


def iter_pictures(
    path: str | os.PathLike, fps: float, shorts: list[int], info: VideoInfo | None = None
) -> Iterator[list[np.ndarray]]:
    """`iter_whole_frames` at several sizes from one decoding: yield one picture per entry of `shorts` (each size
    converted once per frame, so a picture is the same whatever other sizes it is decoded with)."""
    info = info or probe(path)
    sizes = {short: _resize_dims(info.width, info.height, short) for short in shorts}
    converter = _Converter()

    def convert(frame: av.VideoFrame) -> list[np.ndarray]:
        pictures = {short: converter.rgb(frame, *_stored_dims(frame, *size)) for short, size in sizes.items()}
        return [pictures[short] for short in shorts]

    return _resampled(path, fps, info, convert)


def pictures_at(
    path: str | os.PathLike, fps: float, indices: list[int], short: int, info: VideoInfo | None = None
) -> dict[int, np.ndarray]:
    """The pictures `iter_whole_frames` gives at frames `indices` (at `fps`, short side `short`), and only those:
    the others are decoded, not converted, and decoding stops after the last."""
    info = info or probe(path)
    size = _resize_dims(info.width, info.height, short)
    wanted, out, converter = set(indices), {}, _Converter()
    for k, frame in enumerate(_resampled(path, fps, info, lambda frame: frame)):
        if k in wanted:
            out[k] = converter.rgb(frame, *_stored_dims(frame, *size))
        if len(out) == len(wanted):
            break
    return out


def iter_region_frames(
    path: str | os.PathLike, cfg: VideoConfig, squares: np.ndarray, info: VideoInfo | None = None
) -> Iterator[np.ndarray]:
    """Yield (crop, crop, 3) uint8 RGB frames at cfg.fps, each frame k the square `squares[k]` = (left, top, side)
    of the picture (fractions of its width, height and short side) resized to the model's input: what the video
    encoder sees of a region."""
    return (views[0] for views in iter_views(path, cfg, [squares], info))


def iter_views(
    path: str | os.PathLike, cfg: VideoConfig, views: list[np.ndarray | None], info: VideoInfo | None = None
) -> Iterator[np.ndarray]:
    """Several views of one clip from one decoding: yield (V, crop, crop, 3) uint8 RGB at cfg.fps, view v of frame
    k being what `iter_frames` gives (`views[v]` None: the whole picture) or the square `views[v][k]` = (left, top,
    side) of the picture (fractions of its width, height and short side) resized to the model's input (`views[v]`
    a (T, 3) array): what the video encoder sees of a region. For a region the picture is converted just large
    enough for its square to keep the model's resolution (at most its own size), the square cut from it and
    resized with OpenCV (the layers extra). Each size is converted once per frame, so a view is the same whatever
    other views it is decoded with."""
    info = info or probe(path)
    sizes = [None if view is None else _region_size(view, cfg, info) for view in views]
    cv2 = require("cv2", extra="layers", for_="a region of the picture") if any(sizes) else None
    converter = _Converter()

    def convert(frame: av.VideoFrame) -> dict:
        """This frame at each size the views need (None: the whole picture's crop)."""
        out = {}
        for size in set(sizes):
            out[size] = (
                converter.crop(frame, cfg.resize_short, cfg.crop)
                if size is None
                else converter.rgb(frame, *_stored_dims(frame, *size))
            )
        return out

    for k, pictures in enumerate(_resampled(path, cfg.fps, info, convert)):
        out = np.empty((len(views), cfg.crop, cfg.crop, 3), np.uint8)
        for v, (view, size) in enumerate(zip(views, sizes)):
            if view is None:
                out[v] = pictures[None]
                continue
            picture = pictures[size]
            left, top, s = view[min(k, len(view) - 1)]
            h, w = picture.shape[:2]
            px = max(1, round(s * min(h, w)))
            x, y = min(max(0, round(left * w)), w - px), min(max(0, round(top * h)), h - px)
            out[v] = cv2.resize(picture[y : y + px, x : x + px], (cfg.crop, cfg.crop), interpolation=cv2.INTER_AREA)
        yield out


def _region_size(squares: np.ndarray, cfg: VideoConfig, info: VideoInfo) -> tuple[int, int]:
    """The (width, height) a picture is converted to for a region's squares: its largest square keeps the model's
    resolution, at most the picture's own size."""
    side = float(np.max(squares[:, 2])) if len(squares) else 1.0
    work = min(min(info.width, info.height), max(cfg.crop, math.ceil(cfg.crop / max(side, 1e-3))))
    return _resize_dims(info.width, info.height, work)


def normalize(frames: np.ndarray | torch.Tensor, cfg: VideoConfig = VideoConfig()) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float: /255, then (x - mean) / std."""
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return (x - mean) / std


def segments(frames: torch.Tensor, cfg: VideoConfig = VideoConfig()) -> torch.Tensor:
    """(T, 3, H, W) -> (S, segment_frames, 3, H, W), stride cfg.segment_stride; shorter clips repeat their last
    frame."""
    if frames.shape[0] < cfg.segment_frames:
        pad = frames[-1:].expand(cfg.segment_frames - frames.shape[0], -1, -1, -1)
        frames = torch.cat([frames, pad])
    starts = range(0, cfg.num_segments(frames.shape[0]) * cfg.segment_stride, cfg.segment_stride)
    return torch.stack([frames[s : s + cfg.segment_frames] for s in starts])


def iter_windows(frames: Iterable[np.ndarray], starts: list[int], length: int) -> Iterator[np.ndarray]:
    """Cut a frame stream into windows [start, start + length) (starts ascending, windows may overlap).

    Windows running past the end repeat the last frame. Only the current window's frames are held.
    Yields (length, H, W, 3) uint8 arrays.
    """
    it = iter(frames)
    buffer: list[np.ndarray] = []
    offset = 0  # absolute index of buffer[0]
    exhausted = False
    for start in starts:
        drop = max(0, min(start - offset, len(buffer)))
        del buffer[:drop]
        offset += drop
        while not exhausted and offset + len(buffer) < start + length:
            try:
                frame = next(it)
            except StopIteration:
                exhausted = True
                break
            if offset + len(buffer) < start:  # frames between windows are skipped
                offset += 1
                continue
            buffer.append(frame)
        if not buffer:
            raise MediaError("window starts past the end of the video")
        window = buffer[start - offset : start - offset + length] if start >= offset else buffer[:length]
        window = window + [window[-1]] * (length - len(window))
        yield np.stack(window)
