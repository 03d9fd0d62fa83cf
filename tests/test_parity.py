"""Our evaluation embedders against the code they reproduce (issue: evaluation you can trust).

Each reference is built offline from its PyPI package with random weights; its state dict, which has the layout of
the released checkpoints, is saved and loaded into ours through our own loader; both run on the same audio,
front ends included. Embeddings and logits must agree to 1e-4 of their scale (fp32), and the set metrics (FD, KL,
IS) computed from ours must equal the reference formulas on the reference's outputs. Each assertion message
carries the error reached; docs/evaluation.md has the table.

What could not be built here, and why, is said at each test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_models import (
    close,
    informative,
    load,
    randomize,
    reference_fd,
    reference_is,
    reference_kl,
    sample_audio,
    stub,
)

from rewas.evaluate import metrics as M
from rewas.evaluate.embedders import CNN14

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
STAND_INS = ("torchaudio", "timm", "resampy", "torchvision", "h5py")
REFERENCES = ("panns_inference", "torchvggish", "hear21passt", "msclap", "laion_clap")


@pytest.fixture(autouse=True)
def _forget_references_and_stand_ins():
    """The stand-ins must not outlive the test that needs them (another test may check that torchaudio is absent),
    nor the reference packages loaded around their __init__."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] in STAND_INS + REFERENCES:
            del sys.modules[name]


def _set_metrics_agree(ours_a, ours_b, ref_a, ref_b, logits_a, logits_b, ref_logits_a, ref_logits_b) -> dict:
    """FD (embeddings), KL (paired logits) and IS (logits) from our functions on our outputs against the reference
    formulas on the reference's outputs; -> the relative differences."""
    errors = {}
    fd, ref_fd = M.frechet_distance(ours_a, ours_b), reference_fd(ref_a, ref_b)
    errors["fd"] = abs(fd - ref_fd) / max(1.0, abs(ref_fd))
    kl, ref_kl = M.kl_from_logits(logits_b, logits_a), reference_kl(ref_logits_b, ref_logits_a)
    for key in kl:
        errors[key] = abs(kl[key] - ref_kl[key]) / max(1.0, abs(ref_kl[key]))
    is_mean, _ = M.inception_score(np.concatenate([logits_a, logits_b]), splits=2)
    ref_is_mean, _ = reference_is(np.concatenate([ref_logits_a, ref_logits_b]), splits=2)
    errors["is"] = abs(is_mean - ref_is_mean) / max(1.0, abs(ref_is_mean))
    assert max(errors.values()) <= 1e-4, errors
    return errors


def test_panns_cnn14_equals_panns_inference_to_1e_4(tmp_path):
    """PANNs CNN14 16 kHz (panns_inference.models.Cnn14, torchlibrosa front end) against ours; FD/KL/IS."""
    models = load("panns_inference.models")  # its package __init__ downloads a label file: bypassed
    reference = randomize(models.Cnn14(16000, 512, 160, 64, 50, 8000, 527))
    torch.save({"model": reference.state_dict()}, tmp_path / "Cnn14_16k.pth")  # the zenodo file's layout
    ours = CNN14.from_checkpoint(tmp_path / "Cnn14_16k.pth").eval()
    outputs = {}
    for side, clips in (("a", sample_audio(2.0, 16000, 4, seed=1)), ("b", sample_audio(2.0, 16000, 4, seed=2))):
        with torch.no_grad():
            ref = reference(clips)
            embedding, logits = ours(clips)
        informative(embedding, "CNN14 embedding")
        informative(logits, "CNN14 logits")
        assert 0.01 < float(ref["clipwise_output"].mean()) < 0.99  # not saturated: the sigmoids say something
        err_e = close(embedding, ref["embedding"])
        err_p = close(torch.sigmoid(logits), ref["clipwise_output"])
        outputs[side] = (
            embedding.numpy(),
            logits.numpy(),
            ref["embedding"].numpy(),
            torch.logit(ref["clipwise_output"].double()).numpy(),
        )
        print(f"CNN14 {side}: embedding to {err_e:.1e}, sigmoid outputs to {err_p:.1e}")
    (ea, la, ra, rla), (eb, lb, rb, rlb) = outputs["a"], outputs["b"]
    print("CNN14 set metrics:", _set_metrics_agree(ea, eb, ra, rb, la, lb, rla, rlb))


def _never(*args, **kwargs):
    raise AssertionError("the reference resampled: the test feeds it 16 kHz audio, which it must take as is")


def test_vggish_equals_torchvggish_to_1e_4(tmp_path):
    """VGGish: torchvggish 0.2's front end (vggish_input.waveform_to_examples) and network (VGG, postprocess off,
    the last ReLU removed as the FAD implementations do) against ours; FAD's Fréchet distance.

    resampy (a numba-compiled resampler torchvggish imports at module level) is replaced by a function that
    fails if called: the audio is already at VGGish's 16 kHz, where torchvggish never resamples."""
    from rewas.evaluate.embedders import VGGish, vggish_examples

    net = load("torchvggish.torchvggish")
    front = load("torchvggish.vggish_input", {"resampy": stub("resampy", resample=_never)})
    reference = randomize(net.VGG(net.make_layers(), postprocess=False))
    torch.save(reference.state_dict(), tmp_path / "vggish-10086976.pth")  # the released file: a bare state dict
    reference.embeddings = torch.nn.Sequential(*list(reference.embeddings)[:-1])
    ours = VGGish.from_checkpoint(tmp_path / "vggish-10086976.pth").eval()
    sets = {}
    for side, seed in (("a", 1), ("b", 2)):
        clips = sample_audio(3.0, 16000, 3, seed=seed)
        ours_e, ref_e = [], []
        for wav in clips.numpy():
            ref_examples = front.waveform_to_examples(wav.astype(np.float64), 16000, return_tensor=True)
            our_examples = vggish_examples(wav)
            err_x = close(our_examples, ref_examples[:, 0].detach().numpy())
            with torch.no_grad():
                ours_e.append(ours(torch.from_numpy(our_examples)).numpy())
                ref_e.append(reference(ref_examples.detach()).numpy())
        ours_e, ref_e = np.concatenate(ours_e), np.concatenate(ref_e)
        informative(ours_e, "VGGish embedding")
        err_e = close(ours_e, ref_e)
        print(f"VGGish {side}: log-mel examples to {err_x:.1e}, embeddings to {err_e:.1e}")
        sets[side] = ours_e, ref_e
    fd, ref_fd = M.frechet_distance(sets["a"][0], sets["b"][0]), reference_fd(sets["a"][1], sets["b"][1])
    assert abs(fd - ref_fd) <= 1e-4 * max(1.0, abs(ref_fd)), (fd, ref_fd)
    print(f"VGGish FAD: {fd:.6g} against {ref_fd:.6g}")


def _kaldi_stand_in():
    """torchaudio is not installed in this project (a rule of the repository: no torchaudio). PaSST's front end
    uses it for two things: SpecAugment masks, used only in training (stand-ins: identity), and
    `compliance.kaldi.get_mel_banks`, restated here from torchaudio's implementation of Kaldi's definition (float32,
    as torchaudio computes it), so that nothing of ours is on the reference's side. The rest of the front end
    (pre-emphasis, STFT, power, log, normalisation) is the reference's code."""

    def get_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq, vtln_low, vtln_high,
                      vtln_warp_factor):  # fmt: skip
        assert vtln_warp_factor == 1.0  # no vocal-tract-length warping in PaSST
        num_fft_bins, nyquist = window_length_padded // 2, 0.5 * sample_freq
        high_freq = high_freq + nyquist if high_freq <= 0 else high_freq
        to_mel = lambda f: 1127.0 * torch.log(1.0 + torch.as_tensor(f, dtype=torch.float32) / 700.0)  # noqa: E731
        mel_low, mel_high = to_mel(low_freq), to_mel(high_freq)
        delta = (mel_high - mel_low) / (num_bins + 1)
        b = torch.arange(num_bins).unsqueeze(1)
        left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
        mel = to_mel(sample_freq / window_length_padded * torch.arange(num_fft_bins)).unsqueeze(0)
        up, down = (mel - left) / (center - left), (right - mel) / (right - center)
        return torch.max(torch.zeros(1), torch.min(up, down)), 700.0 * (torch.exp(center / 1127.0) - 1.0)

    masks = dict(FrequencyMasking=lambda *a, **k: torch.nn.Identity(), TimeMasking=lambda *a, **k: torch.nn.Identity())
    kaldi = stub("torchaudio.compliance.kaldi", get_mel_banks=get_mel_banks)
    compliance = stub("torchaudio.compliance", kaldi=kaldi)
    torchaudio = stub("torchaudio", transforms=stub("torchaudio.transforms", **masks), compliance=compliance)
    timm_hub = stub("timm.models._hub", download_cached_file=_never)  # hear21passt imports it; nothing is fetched
    return {
        "torchaudio": torchaudio,
        "torchaudio.compliance": compliance,
        "torchaudio.compliance.kaldi": kaldi,
        "timm": stub("timm", models=stub("timm.models", _hub=timm_hub)),
        "timm.models": stub("timm.models", _hub=timm_hub),
        "timm.models._hub": timm_hub,
    }


def test_passt_equals_hear21passt_to_1e_4(tmp_path):
    """PaSST-S (`passt_s_swa_p16_128_ap476`, hear21passt's AugmentMelSTFT in eval mode + its PaSST) against ours;
    FD/KL/IS. timm (which hear21passt imports only for a download helper) and torchaudio: see `_kaldi_stand_in`."""
    from rewas.evaluate.embedders import PaSST

    stand_ins = _kaldi_stand_in()
    preprocess = load("hear21passt.models.preprocess", stand_ins)
    passt = load("hear21passt.models.passt", stand_ins)
    mel = preprocess.AugmentMelSTFT(
        n_mels=128,
        sr=32000,
        win_length=800,
        hopsize=320,
        n_fft=1024,
        freqm=48,
        timem=192,
        htk=False,
        fmin=0.0,
        fmax=None,
        norm=1,
        fmin_aug_range=10,
        fmax_aug_range=2000,
    ).eval()  # fmt: skip  (hear21passt's get_basic_model)
    net = randomize(passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False))
    state = {**{f"net.{k}": v for k, v in net.state_dict().items()}}  # the wrapper's layout, as released
    torch.save(state, tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt")
    ours = PaSST.from_checkpoint(tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt").eval()
    outputs = {}
    for side, seed in (("a", 1), ("b", 2)):
        clips = sample_audio(3.0, 32000, 3, seed=seed)
        with torch.no_grad():
            ref_mel = mel(clips)
            ref_logits, ref_features = net(ref_mel[:, None])
            our_mel = ours.mel(clips)
            logits, features = ours(clips)
        informative(features, "PaSST features")
        informative(logits, "PaSST logits")
        err_m = close(our_mel, ref_mel)
        err_f, err_l = close(features, ref_features), close(logits, ref_logits)
        print(f"PaSST {side}: mel to {err_m:.1e}, features to {err_f:.1e}, logits to {err_l:.1e}")
        outputs[side] = features.numpy(), logits.numpy(), ref_features.numpy(), ref_logits.numpy()
    (fa, la, rfa, rla), (fb, lb, rfb, rlb) = outputs["a"], outputs["b"]
    print("PaSST set metrics:", _set_metrics_agree(fa, fb, rfa, rfb, la, lb, rla, rlb))


def test_msclap_equals_microsoft_clap_to_1e_4(tmp_path):
    """MS-CLAP 2022 (msclap's CLAP: CNN14 at 44.1 kHz + bert-base-uncased, projections) against ours, and the CLAP
    score (cosine of the unit embeddings).

    Offline, msclap's TextEncoder would fetch bert-base-uncased from the hub: here `AutoModel.from_pretrained` builds
    a BertModel from BertConfig's defaults, which are bert-base-uncased's architecture. The WordPiece tokenizer is
    not msclap's code (it calls transformers' AutoTokenizer, also from the hub): both sides get the same ids from
    ours. Clips are tiled to 9 s as the ReWaS evaluation's clap_config.yml says (msclap's own 2022 default is 5 s)."""
    import transformers

    from rewas.evaluate.embedders import MSCLAP

    clap = load("msclap.models.clap")
    offline = stub("AutoModel", from_pretrained=lambda name, *a, **k: transformers.BertModel(transformers.BertConfig()))
    clap.AutoModel = offline
    reference = clap.CLAP(
        audioenc_name="Cnn14",
        sample_rate=44100,
        window_size=1024,
        hop_size=320,
        mel_bins=64,
        fmin=50,
        fmax=14000,
        classes_num=527,
        out_emb=2048,
        text_model="bert-base-uncased",
        transformer_embed_dim=768,
        d_proj=1024,
    )  # fmt: skip  (configs/config_2022.yml)
    randomize(reference)
    folder = tmp_path / "msclap"
    folder.mkdir()
    torch.save({"model": reference.state_dict()}, folder / "CLAP_weights_2022.pth")
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += ["a", "dog", "barking", "rain", "on", "roof", "car", "engine", "##s", "the"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    ours = MSCLAP.from_folder(folder).eval()

    clips = sample_audio(2.0, 44100, 3, seed=3).numpy()
    n = 9 * 44100
    tiled = np.stack([np.tile(c, int(np.ceil(n / len(c))))[:n] for c in clips])  # load_audio_into_tensor's repeat
    with torch.no_grad():
        ref_audio, _ = reference.audio_encoder(torch.from_numpy(tiled))
    our_audio = torch.stack([ours.embed_audio(c) for c in clips])
    informative(ref_audio, "MS-CLAP audio embedding")
    err_a = close(our_audio, torch.nn.functional.normalize(ref_audio, dim=-1))

    prompts = ["a dog barking", "rain on the roof", "car engines"]
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)
    tok.enable_truncation(100)
    tok.enable_padding(length=100)
    enc = tok.encode_batch(prompts)
    ids = torch.tensor([e.ids for e in enc])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([e.attention_mask for e in enc]),
             "token_type_ids": torch.zeros_like(ids)}  # fmt: skip
    with torch.no_grad():
        ref_text = reference.caption_encoder(batch)
    our_text = ours.embed_text(prompts)
    informative(ref_text, "MS-CLAP text embedding")
    err_t = close(our_text, torch.nn.functional.normalize(ref_text, dim=-1))
    ref_score = torch.nn.functional.normalize(ref_audio, dim=-1) @ torch.nn.functional.normalize(ref_text, dim=-1).T
    err_s = close(our_audio @ our_text.T, ref_score)
    print(f"MS-CLAP: audio embedding to {err_a:.1e}, text embedding to {err_t:.1e}, CLAP scores to {err_s:.1e}")


# ----------------------------------------------------------------------------------------------------- DeSync
# Synchformer has no PyPI package. av-benchmark's DeSync is restated below from its extraction and evaluation
# scripts (encode_video_with_sync, encode_audio_with_sync, the DeSync loop of evaluate.py), torchaudio's
# MelSpectrogram included (its HTK filterbank restated in numpy, since torchaudio is not installed here).


def _av_benchmark_mel(x: torch.Tensor) -> torch.Tensor:
    """torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, win_length=400, hop_length=160, n_mels=128) as
    av-benchmark builds it: periodic Hann, centred reflect padding, power 2, HTK mel (2595 log10), no norm."""
    n_freqs, sr, n_mels = 513, 16000, 128
    all_freqs = np.linspace(0, sr // 2, n_freqs)
    to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    m_pts = np.linspace(to_mel(0.0), to_mel(sr / 2), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]
    fb = np.maximum(0.0, np.minimum(-slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]))  # (513, 128)
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), 1024, 160, 400, window=torch.hann_window(400), center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2  # fmt: skip
    mel = torch.from_numpy(fb.T).float() @ spec  # (N, 128, frames)
    return mel.reshape(*lead, n_mels, -1)


def _av_benchmark_desync(model, frames: torch.Tensor, wav: torch.Tensor) -> float:
    """frames (T, 3, 224, 224) normalised, wav (N,) at 16 kHz -> DeSync as av-benchmark computes it for one clip."""
    video = frames[None]
    n_seg = (video.shape[1] - 16) // 8 + 1
    video = torch.stack([video[:, i * 8 : i * 8 + 16] for i in range(n_seg)], dim=1)  # (1, S, 16, 3, H, W)
    audio = wav[None]
    a_seg = (audio.shape[1] - 10240) // 5120 + 1
    audio = torch.stack([audio[:, i * 5120 : i * 5120 + 10240] for i in range(a_seg)], dim=1)  # (1, S, 10240)
    spec = torch.log(_av_benchmark_mel(audio) + 1e-6)
    spec = torch.nn.functional.pad(spec, (0, max(0, 66 - spec.shape[-1])))[..., :66]  # pad_or_truncate
    spec = (spec - -4.2677393) / (2 * 4.5689974)  # (1, S, 128, 66)
    v_feat = model.vfeat_extractor(video).reshape(1, n_seg, -1, model.config.dim)
    a_feat = model.afeat_extractor(spec.transpose(-1, -2))
    grid = np.linspace(-2, 2, 21)  # make_class_grid(-2, 2, 21)
    scores = []
    for window in (slice(None, 14), slice(-14, None)):
        top = int(model.offset_logits(v_feat[:, window], a_feat[:, window]).argmax(-1))
        scores.append(abs(grid[top]))
    return float(np.mean(scores)), spec[0].transpose(-1, -2)


@pytest.mark.parametrize("seconds", [5.0, 6.4])
def test_desync_equals_av_benchmark_restated_exactly(tmp_path, seconds):
    """Our audio segments equal av-benchmark's restated front end, and our DeSync its restated computation, on a
    small random Synchformer (the network itself is checked against the release's key layout elsewhere)."""
    from rewas import samples
    from rewas.audio import write_wav
    from rewas.config import MotionformerConfig, VideoConfig
    from rewas.evaluate.desync import Synchformer, SynchformerConfig, audio_segments, desync
    from rewas.frames import iter_frames, normalize, probe

    cfg = SynchformerConfig(video=MotionformerConfig(embed_dim=16, depth=1, num_heads=2, agg_heads=2, agg_ff=32),
                            dim=16, ast_layers=1, ast_heads=2, ast_ff=32, sync_layers=1, sync_heads=2)  # fmt: skip
    torch.manual_seed(0)
    torch.save({"model": Synchformer(cfg).state_dict()}, tmp_path / "sync.pt")
    model = Synchformer.from_checkpoint(tmp_path / "sync.pt", cfg).eval()
    wav = sample_audio(seconds, 16000, 1, seed=5)[0]
    write_wav(tmp_path / "a.wav", wav.numpy(), 16000)
    samples.write_video(tmp_path / "v.mp4", samples.bouncing_ball_frames(0.6, size=(120, 160)), seconds, 25)
    from rewas.evaluate import metrics

    decoded = torch.from_numpy(metrics.load_audio(tmp_path / "a.wav", 16000))
    frames = np.stack(list(iter_frames(tmp_path / "v.mp4", VideoConfig(resize_short=224, crop=224),
                                       probe(tmp_path / "v.mp4"))))  # fmt: skip
    with torch.no_grad():
        ref_score, ref_segments = _av_benchmark_desync(model, normalize(frames), decoded)
        ours = audio_segments(decoded.numpy(), cfg)
        err = close(ours, ref_segments)
        score = desync(model, tmp_path / "v.mp4", tmp_path / "a.wav")
    assert score == ref_score, (score, ref_score)
    print(f"DeSync {seconds} s: audio segments to {err:.1e}, score {score} equal to the restatement's")


# ------------------------------------------------------------------------------------------------ LAION-CLAP


def _laion_clap_module():
    """laion_clap.clap_module.model, offline. transformers is imported first (it probes for torchvision, which a
    stand-in would confuse). Stand-ins: torchvision's FrozenBatchNorm2d (imported by laion_clap's utils for
    fine-tuning only; not installed here) and h5py when missing (dataset code). RobertaModel.from_pretrained
    ('roberta-base') would download: it builds roberta-base's architecture from its configuration instead."""
    import transformers

    stand_ins = {}
    misc = stub("torchvision.ops.misc", FrozenBatchNorm2d=type("FrozenBatchNorm2d", (torch.nn.Module,), {}))
    ops = stub("torchvision.ops", misc=misc)
    stand_ins.update(
        {"torchvision": stub("torchvision", ops=ops), "torchvision.ops": ops, "torchvision.ops.misc": misc}
    )
    try:
        import h5py  # noqa: F401
    except ImportError:
        stand_ins["h5py"] = stub("h5py")
    model = load("laion_clap.clap_module.model", stand_ins)
    roberta_base = transformers.RobertaConfig(
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1
    )
    model.RobertaModel = stub("RobertaModel", from_pretrained=lambda *a, **k: transformers.RobertaModel(roberta_base))
    return model


def test_laion_clap_equals_laion_clap_package_to_1e_4(tmp_path):
    """LAION-CLAP (HTSAT-base, no fusion, RoBERTa; laion_clap 1.1.7's CLAP with model_configs/HTSAT-base.json)
    against ours: audio embeddings of `repeatpad` clips, text embeddings, CLAP scores. The tokenizer is ours on both
    sides (the package's comes from the hub)."""
    import json

    from tokenizers import ByteLevelBPETokenizer

    from rewas.evaluate.laion_clap import LaionCLAP

    module = _laion_clap_module()
    config = json.loads((Path(module.__file__).parent / "model_configs" / "HTSAT-base.json").read_text())
    audio_cfg = module.CLAPAudioCfp(**config["audio_cfg"])
    text_cfg = module.CLAPTextCfg(**config["text_cfg"], model_type="roberta")
    reference = randomize(module.CLAP(config["embed_dim"], audio_cfg, text_cfg, enable_fusion=False))
    folder = tmp_path / "laion_clap"
    folder.mkdir()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # as the released file: DDP-prefixed
    torch.save({"epoch": 15, "state_dict": state}, folder / "music_speech_audioset_epoch_15_esc_89.98.pt")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a dog barking on a street", "rain on a tin roof"], vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.save_model(str(folder))
    ours = LaionCLAP.from_folder(folder).eval()

    clips = [c.numpy() for c in sample_audio(3.0, 48000, 2, seed=7)] + [sample_audio(12.0, 48000, 1, seed=8)[0].numpy()]
    padded = []
    for clip in clips:  # laion_clap's get_audio_features, data_filling="repeatpad" (and the first 10 s of longer)
        x = torch.from_numpy(clip)[:480000]
        if len(x) < 480000:
            x = x.repeat(int(480000 / len(x)))
            x = torch.nn.functional.pad(x, (0, 480000 - len(x)))
        padded.append({"waveform": x, "longer": torch.tensor([False])})
    with torch.no_grad():
        ref_audio = reference.get_audio_embedding(padded)
    our_audio = torch.stack([ours.embed_audio(c) for c in clips])
    with torch.no_grad():
        raw = reference.audio_branch({"waveform": torch.stack([p["waveform"] for p in padded])}, device="cpu")
    informative(raw["embedding"], "HTSAT embedding")
    err_a = close(our_audio, ref_audio)

    prompts = ["a dog barking", "rain on a tin roof"]
    ids, mask = ours.tokenize(prompts)
    with torch.no_grad():
        ref_text = reference.get_text_embedding({"input_ids": ids, "attention_mask": mask})
    our_text = ours.embed_text(prompts)
    informative(ref_text, "LAION-CLAP text embedding")
    err_t = close(our_text, ref_text)
    err_s = close(our_audio @ our_text.T, ref_audio @ ref_text.T)
    print(f"LAION-CLAP: audio embedding to {err_a:.1e}, text embedding to {err_t:.1e}, scores to {err_s:.1e}")
