"""Two independent implementations, one set of weights: ours (released layout) vs diffusers / transformers.

Our random weights are renamed into the diffusers layout (the same key maps the diffusers-folder importer
inverts) and loaded strictly into the library classes; outputs must agree to 1e-4 in fp32.
"""

import pytest
import torch

from rewas.config import debug
from rewas.convert_diffusers import from_diffusers, to_diffusers
from rewas.text_encoder import TextEncoder
from rewas.unet import UNet
from rewas.vae import VAE
from rewas.vocoder import Vocoder

CFG = debug()


def randomize(module, std=0.05):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
        for m in module.modules():  # keep norms sane
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.fill_(1.0)
    return module.eval()


def load_theirs(theirs, ours, component):
    state = to_diffusers(component, ours.state_dict(), CFG)
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(("position_ids", "token_type_ids", "mean", "scale")) for k in missing), (
        missing
    )
    back = from_diffusers(component, theirs.state_dict(), ours.state_dict(), CFG)  # and the importer's way back
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items() if k != "scale_factor")
    return theirs.eval()


def test_unet_matches_diffusers():
    from diffusers import UNet2DConditionModel

    c = CFG.unet
    chans = tuple(c.model_channels * m for m in c.channel_mult)
    attn = [2**i in c.attention_resolutions for i in range(len(chans))]
    theirs = UNet2DConditionModel(
        sample_size=(128, 16),
        in_channels=c.in_channels,
        out_channels=c.out_channels,
        block_out_channels=chans,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        layers_per_block=c.num_res_blocks,
        cross_attention_dim=chans,
        attention_head_dim=tuple(ch // c.num_head_channels for ch in chans),
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=c.film_dim,
        class_embeddings_concat=True,
        flip_sin_to_cos=True,
        freq_shift=0,
    )
    ours = randomize(UNet(c))
    theirs = load_theirs(theirs, ours, "unet")
    x, t, text = torch.randn(2, 8, 64, 16), torch.tensor([3, 870]), torch.randn(2, c.film_dim)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x, t, text), theirs(x, t, encoder_hidden_states=None, class_labels=text).sample, atol=1e-4, rtol=1e-4
        )


def test_vae_matches_diffusers():
    from diffusers import AutoencoderKL

    c = CFG.vae
    n = len(c.ch_mult)
    theirs = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(c.ch * m for m in c.ch_mult),
        layers_per_block=c.num_res_blocks,
        latent_channels=c.z_channels,
        norm_num_groups=32,
    )
    ours = randomize(VAE(c), std=0.03)
    theirs = load_theirs(theirs, ours, "vae")
    mel, z = torch.randn(1, 1, 128, 64), torch.randn(1, 8, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.encode(mel, sample=False), theirs.encode(mel).latent_dist.mean, atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(ours.decode(z), theirs.decode(z).sample, atol=1e-4, rtol=1e-4)


def test_vocoder_matches_transformers():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    c = CFG.vocoder
    theirs = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=c.n_mels,
            sampling_rate=16000,
            upsample_initial_channel=c.upsample_initial_channel,
            upsample_rates=list(c.upsample_rates),
            upsample_kernel_sizes=list(c.upsample_kernel_sizes),
            resblock_kernel_sizes=list(c.resblock_kernel_sizes),
            resblock_dilation_sizes=[list(d) for d in c.resblock_dilations],
            normalize_before=False,
        )
    )
    ours = randomize(Vocoder(c), std=0.1)
    theirs = load_theirs(theirs, ours, "vocoder")
    mel = torch.randn(2, 64, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(mel), theirs(mel.transpose(1, 2)), atol=1e-4, rtol=1e-4)


def test_clap_text_matches_transformers():
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    c = CFG.text
    theirs = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_positions,
            type_vocab_size=1,
            layer_norm_eps=c.layer_norm_eps,
            projection_dim=c.proj_dim,
            projection_hidden_act="relu",
            pad_token_id=1,
        )
    )
    ours = randomize(TextEncoder(c), std=0.05)
    theirs = load_theirs(theirs, ours, "text_encoder")
    ids, mask = ours.tokenize(["a dog growling while biting a toy", "rain"])
    with torch.no_grad():
        ref = torch.nn.functional.normalize(
            theirs(input_ids=ids, attention_mask=mask).text_embeds, dim=-1
        )  # as AudioLDM
        torch.testing.assert_close(ours(ids, mask), ref, atol=1e-4, rtol=1e-4)


def test_paper_size_maps_are_complete():
    from rewas.config import paper
    from rewas.pipeline import build_components, empty_weights

    with empty_weights():
        parts = build_components(paper())
    for name in ("unet", "vae", "vocoder", "text_encoder"):
        mapped = to_diffusers(name, parts[name].state_dict(), paper())
        assert len(set(mapped)) == len(parts[name].state_dict()) - (name == "vae")
    assert "up_blocks.3.resnets.2.conv_shortcut.weight" in to_diffusers("unet", parts["unet"].state_dict(), paper())


def test_import_a_diffusers_audioldm_folder(tmp_path, media):
    import json

    import numpy as np
    from safetensors.torch import save_file

    from rewas import ReWaSPipeline
    from rewas.convert import convert

    source = ReWaSPipeline.from_config(CFG, seed=5)
    for name, sub in (("unet", "unet"), ("vae", "vae"), ("vocoder", "vocoder"), ("text_encoder", "text_encoder")):
        (tmp_path / "ldm" / sub).mkdir(parents=True)
        state = to_diffusers(name, getattr(source, name).state_dict(), CFG)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "ldm" / sub / "model.safetensors")
    (tmp_path / "ldm" / "vae" / "config.json").write_text(json.dumps({"scaling_factor": 0.6}))
    pipe, reports = convert(tmp_path / "model", audioldm_dir=tmp_path / "ldm", config=CFG)
    for name in ("unet", "vocoder", "text_encoder"):
        assert all(
            torch.equal(v, getattr(source, name).state_dict()[k]) for k, v in getattr(pipe, name).state_dict().items()
        )
    assert float(pipe.vae.scale_factor) == pytest.approx(0.6) and pipe.config.name == "debug-backbone"
    x, t, text = torch.randn(1, 8, 128, 16), torch.tensor([10]), torch.randn(1, CFG.unet.film_dim)
    assert all(r.abs().max() == 0 for r in pipe.adapter(x, torch.randn_like(x), t, text))  # no energy control yet
    loaded = ReWaSPipeline.from_pretrained(tmp_path / "model")
    quiet = loaded(media["v25"], prompt="rain", energy=np.full(300, -11.0), steps=1, seed=0).waveform
    loud = loaded(media["v25"], prompt="rain", energy=np.full(300, -1.0), steps=1, seed=0).waveform
    assert np.array_equal(quiet, loud)  # text-to-audio only: energy is ignored without ReWaS adapter weights
