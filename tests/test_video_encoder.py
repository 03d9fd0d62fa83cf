import torch
from conftest import manifest_part, shapes

from rewas.config import MotionFeaturesConfig, MotionformerConfig, VideoConfig, paper
from rewas.video_encoder import DividedAttention, VideoEncoder


def naive_divided_attention(attn: DividedAttention, x: torch.Tensor, frames: int, over_time: bool) -> torch.Tensor:
    """Token by token: CLS attends to everything; a patch token to CLS + its group (same position or same frame)."""
    b, n, c = x.shape
    h = attn.heads
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    split = lambda t: t.view(b, -1, h, c // h).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    per_frame = (n - 1) // frames
    out = torch.zeros_like(q)
    for i in range(n):
        if i == 0:
            keys = list(range(n))
        else:
            f, p = divmod(i - 1, per_frame)
            group = (
                [1 + ff * per_frame + p for ff in range(frames)]
                if over_time
                else [1 + f * per_frame + pp for pp in range(per_frame)]
            )
            keys = [0] + group
        w = torch.softmax(q[:, :, i : i + 1] @ k[:, :, keys].transpose(-1, -2) / (c // h) ** 0.5, dim=-1)
        out[:, :, i] = (w @ v[:, :, keys])[:, :, 0]
    return attn.proj(out.transpose(1, 2).reshape(b, n, c))


def test_divided_attention_matches_naive_definition():
    torch.manual_seed(0)
    attn = DividedAttention(8, 2)
    for frames, per_frame in ((3, 4), (2, 40)):  # groups of up to 32 tokens take batched matmuls, longer ones SDPA
        x = torch.randn(2, 1 + frames * per_frame, 8)
        for over_time in (True, False):
            torch.testing.assert_close(
                attn(x, frames, over_time), naive_divided_attention(attn, x, frames, over_time), atol=1e-5, rtol=0
            )


def test_output_shape_and_determinism():
    torch.manual_seed(0)
    enc = VideoEncoder(
        MotionformerConfig(img_size=64, embed_dim=32, depth=2, num_heads=2, agg_heads=2, agg_ff=64)
    ).eval()
    x = torch.randn(2, 3, 16, 3, 64, 64)
    with torch.no_grad():
        y = enc(x)
        assert y.shape == (2, 3 * 8, 32)
        torch.testing.assert_close(enc(x[:1]), y[:1], atol=1e-5, rtol=0)
        # a CPU encodes one segment at a time; all at once (as on a GPU) gives the same features
        torch.testing.assert_close(enc._encode(x.flatten(0, 1)).reshape(2, 3 * 8, 32), y, atol=1e-5, rtol=0)


def test_release_layout(manifests):
    from rewas.pipeline import empty_weights

    with empty_weights():
        enc = VideoEncoder(paper().video_encoder)
    assert shapes(enc) == manifest_part(manifests["synchformer_vfeat"], "vfeat_extractor.")


def test_motion_features_follow_motion_and_need_no_weights(media):
    import dataclasses

    import numpy as np

    from rewas import ReWaSPipeline
    from rewas.config import debug
    from rewas.frames import iter_frames, normalize, segments
    from rewas.video_encoder import MotionFeatures

    cfg = MotionFeaturesConfig()
    enc = MotionFeatures(cfg)
    assert not list(enc.parameters())
    cells = cfg.motion_grid**2
    grid, quads, activity = slice(0, cells), slice(cells, cells + 4), cells + 4  # activity: 10 x mean |difference|

    def features(frames):
        return enc(segments(normalize(frames))[None])[0].numpy()

    # still: no difference anywhere, only the brightness term is left
    gradient = np.tile(np.linspace(0, 255, 224, dtype=np.uint8)[None, :, None], (224, 1, 3))
    still = features(np.stack([gradient] * 32))
    assert still.shape == (3 * 8, cfg.out_dim)
    assert np.abs(still[:, : activity + 1]).max() < 1e-6
    np.testing.assert_allclose(still[:, activity + 1], np.log(1e-4), rtol=1e-5)

    # when: whole-frame flashes (frames 13 and 38 of the 25 fps video) light up exactly the tubelets holding a
    # brightness change, by its size; a segment's first frame has no predecessor inside the segment
    frames = np.stack(list(iter_frames(media["v25"], VideoConfig())))[:64]
    feats = features(frames)
    assert feats.shape == (7 * 8, cfg.out_dim)
    gray = frames.mean(axis=(1, 2, 3)) / 255
    expected = np.zeros((7, 8))
    for seg in range(7):
        for tok in range(8):
            first = seg * 8 + tok * 2
            steps = [abs(gray[f] - gray[f - 1]) if f > seg * 8 else 0.0 for f in (first, first + 1)]
            expected[seg, tok] = 10 * np.mean(steps)
    assert (expected > 4).sum() == 6  # the tubelets holding each flash's on and off, in both segments that overlap it
    np.testing.assert_allclose(feats[:, activity], expected.reshape(-1), atol=0.05)

    # where: a white square appearing at frame 20 in the top-right cell of the grid, then vanishing at frame 26
    frames = np.zeros((32, 224, 224, 3), np.uint8)
    frames[20:26, :56, 168:] = 255
    feats = features(frames).reshape(3, 8, -1)
    expected = {(1, 6): 1, (2, 2): 1, (2, 5): -1}  # (segment, token): the change at frame 20 (on) or 26 (off)
    for (seg, tok), sign in expected.items():
        np.testing.assert_allclose(feats[seg, tok, grid], np.eye(cells)[3] * 5.0, atol=1e-4)  # |diff| 1 in 1 frame of 2
        np.testing.assert_allclose(feats[seg, tok, quads], [0, sign * 1.25, 0, 0], atol=1e-4)  # a quarter of a quadrant
    quiet = [(seg, tok) for seg in range(3) for tok in range(8) if (seg, tok) not in expected]
    assert np.abs(np.stack([feats[k][: activity + 1] for k in quiet])).max() < 1e-6

    # a whole model with this encoder runs
    c = debug()
    c = dataclasses.replace(c, video_encoder=cfg, phi=dataclasses.replace(c.phi, in_dim=cfg.out_dim))
    pipe = ReWaSPipeline.from_config(c)
    assert pipe(media["v25"], prompt="x", steps=1, seed=0).waveform.shape == (48000,)


def test_camera_compensated_motion_sees_the_object_not_the_camera():
    """A textured scene filmed by a camera that moves 1-2 px a frame while its light flickers: the plain
    differences light up the whole grid, the compensated ones only the cell where a small square moves; the shift
    term reports the camera's step. Without camera_search the features are the old ones, bit for bit."""
    import numpy as np

    from rewas.frames import normalize
    from rewas.video_encoder import MotionFeatures, camera_compensated_difference

    rng = np.random.default_rng(0)
    size, n = 64, 16
    world = np.kron(rng.uniform(40, 215, (40, 40)), np.ones((3, 3)))  # 120 x 120, 3 px texture
    frames = []
    for k in range(n):
        oy, ox = k * 1, k * 2  # the camera pans down 1 px and right 2 px per frame
        img = world[oy : oy + size, ox : ox + size].copy()
        img *= 1.0 + 0.1 * np.sin(k)  # flicker
        sy, sx = 40, 10 + 2 * k  # a 6 px square moving 2 px a frame in the scene (bottom-left cell)
        img[sy - oy + 10 : sy - oy + 16, sx - ox + 20 : sx - ox + 26] = 255
        frames.append(np.repeat(np.clip(img, 0, 255)[..., None], 3, axis=-1).astype(np.uint8))
    frames = np.stack(frames)

    gray = torch.from_numpy(frames[..., 0].astype(np.float32) / 255)[None]  # (1, T, H, W)
    still, shift = camera_compensated_difference(gray, 3)
    assert still.shape == (1, n, 58, 58)
    np.testing.assert_allclose(shift[0, 1:].numpy(), np.hypot(1, 2), atol=1e-6)
    assert shift[0, 0] == 0  # the first frame is compared with itself

    cfg = MotionFeaturesConfig(camera_search=3)
    x = normalize(frames)
    x = x.reshape(1, 1, n, *x.shape[1:])  # one segment of 16 frames
    plain = MotionFeatures(MotionFeaturesConfig())(x)[0].numpy()
    feats = MotionFeatures(cfg)(x)[0].numpy()
    assert feats.shape == (8, cfg.out_dim) and cfg.out_dim == MotionFeaturesConfig().out_dim + 16 + 3
    np.testing.assert_array_equal(feats[:, : plain.shape[1]], plain)
    g = cfg.motion_grid**2
    camera_grid = feats[1:, plain.shape[1] : plain.shape[1] + g]  # tubelets after the first
    plain_grid = plain[1:, :g]
    assert (plain_grid > 0.5).all()  # the moving camera: every cell changes
    busiest = camera_grid.mean(axis=0).reshape(4, 4)
    square = np.zeros((4, 4), bool)
    square[2:, 1:3] = True  # the cells the square crosses, in the frame
    assert busiest[square].min() > 1.5 * busiest[~square].max(), busiest
    assert busiest[~square].mean() < 0.1 * plain_grid.mean(), (busiest, plain_grid.mean())
    np.testing.assert_allclose(feats[1:, -1], np.hypot(1, 2), atol=1e-6)
