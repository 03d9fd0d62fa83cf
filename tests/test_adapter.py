import torch

from rewas.adapter import EnergyAdapter
from rewas.config import debug
from rewas.unet import UNet


def _models(seed=0):
    torch.manual_seed(seed)
    cfg = debug().unet
    unet = UNet(cfg).eval()
    for p in unet.parameters():  # break the UNet's own zero inits so its output is non-trivial
        torch.nn.init.normal_(p, std=0.05)
    return cfg, unet, EnergyAdapter.from_unet(unet, latent_freq=16).eval()


def test_zero_initialised_adapter_leaves_unet_output_identical():
    cfg, unet, adapter = _models()
    x, t, text = torch.randn(2, 8, 128, 16), torch.tensor([10, 900]), torch.randn(2, cfg.film_dim)
    hint = torch.randn(2, 8, 128, 16)
    control = adapter(x, hint, t, text)
    assert len(control) == 1 + 3 * cfg.num_res_blocks + 1 == 5  # debug: conv_in, 2 levels x 1 res (+1 down), middle
    assert all(c.abs().max() == 0 for c in control)
    assert torch.equal(unet(x, t, text), unet(x, t, text, control=control))


def test_paper_adapter_gives_thirteen_residuals_with_release_shapes():
    from rewas.config import paper
    from rewas.pipeline import empty_weights

    with empty_weights():
        adapter = EnergyAdapter(paper().unet, 16)
    assert len(adapter.zero_convs) == 12
    chans = [m[0].out_channels for m in adapter.zero_convs] + [adapter.middle_block_out[0].out_channels]
    assert chans == [192] * 4 + [384] * 3 + [576] * 3 + [960] * 3


def test_trained_adapter_changes_output_and_follows_hint():
    cfg, unet, adapter = _models()
    for p in adapter.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t, text = torch.randn(1, 8, 64, 16), torch.tensor([500]), torch.randn(1, cfg.film_dim)
    a = unet(x, t, text, control=adapter(x, torch.zeros(1, 8, 64, 16), t, text))
    b = unet(x, t, text, control=adapter(x, torch.ones(1, 8, 64, 16), t, text))
    assert not torch.allclose(a, unet(x, t, text)) and not torch.allclose(a, b)


def test_adapter_is_initialised_from_the_unet_encoder():
    _, unet, adapter = _models()
    own = unet.state_dict()
    for key, value in adapter.state_dict().items():
        if key.startswith(("input_blocks", "middle_block.", "time_embed", "film_emb")):
            assert torch.equal(value, own[key]), key
