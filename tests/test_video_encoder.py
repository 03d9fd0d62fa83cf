import torch

from rewas.config import VideoEncoderConfig, paper
from rewas.video_encoder import DividedAttention, VideoEncoder

from conftest import manifest_part, shapes


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
            group = [1 + ff * per_frame + p for ff in range(frames)] if over_time else [1 + f * per_frame + pp for pp in range(per_frame)]
            keys = [0] + group
        w = torch.softmax(q[:, :, i : i + 1] @ k[:, :, keys].transpose(-1, -2) / (c // h) ** 0.5, dim=-1)
        out[:, :, i] = (w @ v[:, :, keys])[:, :, 0]
    return attn.proj(out.transpose(1, 2).reshape(b, n, c))


def test_divided_attention_matches_naive_definition():
    torch.manual_seed(0)
    attn = DividedAttention(8, 2)
    frames, per_frame = 3, 4
    x = torch.randn(2, 1 + frames * per_frame, 8)
    for over_time in (True, False):
        torch.testing.assert_close(attn(x, frames, over_time), naive_divided_attention(attn, x, frames, over_time),
                                   atol=1e-5, rtol=0)


def test_output_shape_and_determinism():
    torch.manual_seed(0)
    enc = VideoEncoder(VideoEncoderConfig(img_size=64, embed_dim=32, depth=2, num_heads=2, agg_heads=2, agg_ff=64)).eval()
    x = torch.randn(2, 3, 16, 3, 64, 64)
    with torch.no_grad():
        y = enc(x)
        assert y.shape == (2, 3 * 8, 32)
        torch.testing.assert_close(enc(x[:1]), y[:1], atol=1e-5, rtol=0)


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

    cfg = VideoEncoderConfig(kind="motion")
    enc = MotionFeatures(cfg)
    assert not list(enc.parameters())
    frames = np.stack(list(iter_frames(media["v25"])))[:64]  # flashes at 0.5 s and 1.5 s (frames 12-13, 37-38)
    feats = enc(segments(normalize(frames))[None])
    assert feats.shape == (1, 7 * 8, cfg.motion_dim)
    from rewas.energy import token_times

    times = token_times(7, 8, 8, 2, 25.0)
    activity = feats[0, :, cfg.motion_grid**2 + 4].numpy()  # global mean |difference|
    assert set(np.round(times[activity > activity.max() / 2] * 25 - 0.5).astype(int)) <= {12, 14, 36, 38}
    # a whole model with this encoder runs, saves and loads
    c = debug()
    c = dataclasses.replace(c, video_encoder=cfg, phi=dataclasses.replace(c.phi, in_dim=cfg.motion_dim))
    pipe = ReWaSPipeline.from_config(c)
    assert pipe(media["v25"], prompt="x", steps=1, seed=0).waveform.shape == (48000,)
