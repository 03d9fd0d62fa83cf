import torch
import torch.nn as nn
from conftest import shapes

from rewas.config import PhiConfig, paper
from rewas.phi import Phi

CFG = PhiConfig(in_dim=16, width=16, depth=2, num_heads=2, mlp_dim=32, head_dims=(8, 4, 2))


def _phi(released: bool) -> Phi:
    torch.manual_seed(0)
    import dataclasses

    return Phi(dataclasses.replace(CFG, released_attention=released)).eval()


def release_forward(phi: Phi, x: torch.Tensor) -> torch.Tensor:
    """The released computation, spelled out: batch_first=False attention fed (B, T, C) directly."""
    h = phi.projection1(x)
    for block in phi.hint_blocks.blocks:
        mha = nn.MultiheadAttention(CFG.width, CFG.num_heads, bias=True, add_bias_kv=True)  # batch_first=False
        mha.load_state_dict(block.attn.state_dict())
        n = block.norm_1(h)
        h = h + mha(n, n, n, need_weights=False)[0]
        h = h + block.mlp(block.norm_2(h))
    return phi.projection2(h)[..., 0]


def test_released_flag_reproduces_the_release_on_a_batch():
    phi = _phi(released=True)
    x = torch.randn(3, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(phi(x), release_forward(phi, x))


def test_released_attention_mixes_batch_not_time():
    phi = _phi(released=True)
    x = torch.randn(2, 20, 16)
    y = x.clone()
    y[0, 5] += 1.0
    features = lambda v: phi.hint_blocks(phi.projection1(v)).abs().sum(-1)  # noqa: E731  (before the ReLU head)
    with torch.no_grad():
        d = (features(y) - features(x)).abs()
        single = features(x[:1])
    assert d[0, 5] > 0 and torch.all(d[0, torch.arange(20) != 5] == 0)  # no temporal mixing
    assert d[1].max() > 0  # the other clip in the batch changes
    assert not torch.allclose(single, features(x)[:1])


def test_default_attention_mixes_time_not_batch():
    phi = _phi(released=False)
    x = torch.randn(2, 20, 16)
    y = x.clone()
    y[0, 5] += 1.0
    features = lambda v: phi.hint_blocks(phi.projection1(v)).abs().sum(-1)  # noqa: E731
    with torch.no_grad():
        d = (features(y) - features(x)).abs()
        torch.testing.assert_close(phi(x[:1]), phi(x)[:1], atol=1e-6, rtol=0)
    assert (d[0] > 0).sum() > 1 and d[1].max() == 0


def test_release_layout(manifests):
    from rewas.pipeline import empty_weights

    with empty_weights():
        phi = Phi(paper().phi)
    assert shapes(phi) == manifests["phi"]
    assert sum(p.numel() for p in phi.parameters()) == 21_966_561


def test_output_shape():
    assert _phi(False)(torch.randn(4, 112, 16)).shape == (4, 112)


def test_a_phi_that_reads_the_prompt():
    import dataclasses

    import pytest

    torch.manual_seed(0)
    phi = Phi(dataclasses.replace(CFG, text_dim=6)).eval()
    x = torch.randn(2, 20, 16)
    rain, knock = torch.randn(1, 6).expand(2, -1), torch.randn(1, 6).expand(2, -1)
    with torch.no_grad():
        assert phi(x, rain).shape == (2, 20) and not torch.allclose(phi(x, rain), phi(x, knock))
    with pytest.raises(ValueError, match="prompt"):
        phi(x)
    assert "text_projection.weight" not in Phi(CFG).state_dict()  # the paper's phi has no such weight
