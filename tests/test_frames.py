import numpy as np
import pytest

from rewas.config import VideoConfig
from rewas.frames import MediaError, iter_frames, iter_windows, normalize, probe, segments


def _brightness(path, **kw):
    return np.array([f.mean() for f in iter_frames(path, kw.pop("cfg", VideoConfig()), **kw)])


@pytest.mark.parametrize(
    "name,fps,duration", [("v25", 25, 3.0), ("v2997", 29.97, 3.0), ("v60", 60, 2.0), ("long12", 25, 12.0)]
)
def test_probe_and_resampled_count(media, name, fps, duration):
    info = probe(media[name])
    assert abs(info.fps - fps) < 0.01
    assert abs(info.duration - round(duration * fps) / fps) < 1e-3
    frames = list(iter_frames(media[name], VideoConfig(), info=info))
    assert len(frames) == round(info.duration * 25)
    assert frames[0].shape == (224, 224, 3) and frames[0].dtype == np.uint8


# flashes last 40 ms from 0.5 s and 1.5 s; output frame k shows the latest source frame at or before k / 25 s.
# 25 fps: sources 13 (0.52 s) and 38 are the flashes. 29.97 fps: sources 15-16 (0.5005-0.534 s) are shown at
# k = 13 (0.52 s) and 14 (0.56 s), likewise 45-46 at 38-39. 60 fps: sources 30-32 (0.5-0.533 s): only k = 13, and 38.
@pytest.mark.parametrize("name,flash", [("v25", [13, 38]), ("v2997", [13, 14, 38, 39]), ("v60", [13, 38])])
def test_flashes_land_on_the_right_25fps_frames(media, name, flash):
    brightness = _brightness(media[name])
    assert len(brightness) == round(probe(media[name]).duration * 25)
    dark = np.delete(np.arange(len(brightness)), flash)
    assert (brightness[flash] > 240).all(), brightness[flash]
    assert (brightness[dark] < 15).all(), np.flatnonzero(brightness >= 15)


def test_variable_frame_rate_follows_presentation_time(media):
    bright = _brightness(media["vfr"]) > 128
    # frames at 0, .03, .1, .5, .52, 1.0 (flash, shown until 1.04), 1.04, 1.9: at 25 fps the flash is frame 25 only
    assert np.flatnonzero(bright).tolist() == [25]
    assert len(bright) == round(probe(media["vfr"]).duration * 25)


def test_rotation_metadata_is_honoured(media):
    info = probe(media["rotated"])
    assert info.rotation == 90 and (info.width, info.height) == (120, 160)
    frame = next(iter_frames(media["rotated"], VideoConfig(resize_short=120, crop=120)))
    # the source gradient runs left->right; rotated 90 degrees counter-clockwise it runs bottom->top
    column = frame[:, 60, 0].astype(int)
    assert column[0] > column[-1] + 100


def test_other_codecs_and_containers(media):
    info = probe(media["mpeg4_avi"])
    assert info.codec == "mpeg4" and len(list(iter_frames(media["mpeg4_avi"], VideoConfig(), info=info))) == 25


@pytest.mark.parametrize(
    "name,match",
    [
        ("audio_only", "no video stream"),
        ("not_video", "not a readable media file"),
        ("zero_frames", "no frames|not a readable|no video stream"),
    ],
)
def test_bad_inputs(media, name, match):
    with pytest.raises(MediaError, match=match):
        probe(media[name])


def test_missing_and_directory(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(MediaError, match="directory"):
        probe(tmp_path)


def test_normalize_and_segments():
    frames = np.full((128, 224, 224, 3), 255, dtype=np.uint8)
    x = normalize(frames)
    assert x.shape == (128, 3, 224, 224) and float(x.max()) == 1.0
    segs = segments(x)
    assert segs.shape == (15, 16, 3, 224, 224)
    assert segments(normalize(frames[:125])).shape == (14, 16, 3, 224, 224)  # 5 s at 25 fps: 14 x 8 = 112 tokens
    assert segments(normalize(frames[:5])).shape == (1, 16, 3, 224, 224)  # short clips repeat the last frame


def test_iter_windows_streams_with_overlap_and_padding():
    stream = (np.full((2, 2, 3), i, dtype=np.uint8) for i in range(10))
    windows = [w[:, 0, 0, 0].tolist() for w in iter_windows(stream, [0, 3, 6], 5)]
    assert windows == [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [6, 7, 8, 9, 9]]
    gaps = [
        w[:, 0, 0, 0].tolist() for w in iter_windows((np.full((1, 1, 3), i, np.uint8) for i in range(10)), [0, 6], 3)
    ]
    assert gaps == [[0, 1, 2], [6, 7, 8]]


@pytest.mark.parametrize("name", ["v25", "mpeg4_avi", "rotated"])
def test_a_scaler_kept_per_size_converts_as_pyav_does_frame_by_frame(media, name):
    """A decoding pass keeps one scaler per picture size (setting one up for every frame cost most of a small
    conversion); sizes taken in turn on every frame still give each exactly PyAV's own conversion of that frame,
    turned as the display matrix says."""
    import av

    from rewas.frames import _Converter

    converter = _Converter()
    with av.open(str(media[name])) as container:
        for frame in container.decode(video=0):
            turns = int(frame.rotation or 0) % 360 // 90
            for width, height in [(64, 48), (130, 98), (64, 48), (320, 240)]:
                theirs = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC")
                assert np.array_equal(converter.rgb(frame, width, height), np.rot90(theirs.to_ndarray(), k=turns))


def test_a_kept_scaler_follows_frames_that_change_size_or_format():
    """A stream may change its picture size or pixel format midway: a kept scaler sets itself up again, so the
    sizes alone key the scalers and `arrays` needs one for the whole clip."""
    import av

    from rewas.frames import _Converter, arrays

    rng = np.random.default_rng(0)
    frames = []
    for (h, w), fmt in [((48, 64), "yuv420p"), ((90, 160), "yuv420p"), ((90, 160), "rgb24"), ((48, 64), "yuv444p")]:
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
        frames.append(frame.reformat(format=fmt))
    converter = _Converter()
    for frame, array in zip(frames, arrays(frames, "bgr24")):
        assert np.array_equal(array, frame.to_ndarray(format="bgr24"))
        theirs = frame.reformat(width=40, height=30, format="rgb24", interpolation="BICUBIC").to_ndarray()
        assert np.array_equal(converter.rgb(frame, 40, 30), theirs)
