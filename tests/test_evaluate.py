"""Evaluation: known answers for every metric, the embedder's real architecture with tiny weights, the CLI."""

import json

import numpy as np
import pytest
import torch

from rewas import samples
from rewas.audio import write_wav
from rewas.cli import main
from rewas.evaluate import metrics as M
from rewas.evaluate.embedders import CNN14, CNN14Config, set_metrics

EVENTS = [0.8, 2.0, 3.2, 4.4]
BURST = (np.random.default_rng(0).normal(size=400) * np.exp(-np.arange(400) / 80)).astype(np.float32)


def clicks(times, duration=5.0, sr=16000):
    audio = np.zeros(int(duration * sr), np.float32)
    for t in times:
        audio[int(t * sr) : int(t * sr) + len(BURST)] += BURST
    return audio


def jumping_square(t):
    """A white square that jumps right at each event and is still otherwise."""
    image = np.zeros((120, 160, 3), np.uint8)
    x = 20 + 25 * sum(1 for e in EVENTS if t >= e - 1e-9)
    image[50:80, x : x + 30] = 255
    return image


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    samples.write_video(d / "jump.mkv", jumping_square, 5.0, 25, codec="ffv1")  # lossless: still frames stay still
    write_wav(d / "sync.wav", clicks(EVENTS))
    write_wav(d / "late.wav", clicks([e + 0.5 for e in EVENTS]))
    write_wav(d / "half.wav", clicks(EVENTS[:2]))
    write_wav(d / "noise.wav", (np.random.default_rng(1).normal(size=80000) * 0.5).astype(np.float32))
    write_wav(d / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * np.arange(80000) / 16000)).astype(np.float32))
    return d


def test_av_align_known_answers(clips):
    assert M.av_align(clips / "jump.mkv", clips / "sync.wav") == 1.0
    assert M.av_align(clips / "jump.mkv", clips / "late.wav") < 0.5


def test_av_align_pieces():
    assert M.local_maxima_times([0, 1, 0, 2, 2, 0, 3, 0], 10) == [0.1, 0.6]  # plateaus are not peaks
    assert M.peak_iou([0.1, 0.5], [0.1, 0.9], 25) == 1 / 3
    assert M.peak_iou([0.1], [0.1 + 0.04], 25) == 0.0  # strictly inside +-1/fps
    assert np.isnan(M.peak_iou([], [], 25))


def test_energy_mae_of_a_file_with_itself_is_zero(clips):
    assert M.energy_mae(clips / "sync.wav", clips / "sync.wav") == 0.0
    assert M.energy_mae(clips / "sync.wav", clips / "late.wav") > 0.1


def test_onset_metrics_hand_computed():
    sr = 22050

    def track(times):
        a = np.zeros(2 * sr, np.float32)
        for t in times:
            a[int(t * sr) : int(t * sr) + len(BURST)] = BURST
        return a

    target, generated = track([0.3, 0.9, 1.5]), track([0.32, 0.9, 1.75])
    r = M.onset_metrics(target, generated)
    assert (r["onsets_target"], r["onsets_generated"]) == (3, 3)
    assert r["onset_acc"] == 1.0 and r["onset_detection_acc"] == pytest.approx(2 / 3)
    # scores: two matches (confidence 1), one missed target (0), one unmatched generated onset (confidence 1)
    # labels 1, 1, 1, 0 -> threshold 1: P = 2/3, R = 2/3; threshold 0: P = 3/4, R = 1
    assert r["onset_ap"] == pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    perfect = M.onset_metrics(target, target)
    assert perfect["onset_acc"] == perfect["onset_detection_acc"] == perfect["onset_ap"] == 1.0
    assert M.onset_metrics(target, track([0.3]))["onset_acc"] == 0.0


def test_average_precision_matches_step_definition():
    assert M.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert M.average_precision([0, 0], [0.3, 0.2]) == 0.0
    assert M.average_precision([1, 1], [0.5, 0.5]) == 1.0


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert abs(M.frechet_distance(a, a)) < 1e-8
    d, mu = 3, np.array([1.0, 2.0, 0.0])
    # N(0, I) vs N(mu, 4 I): |mu|^2 + tr(I + 4I - 2 * 2I) = 5 + 3
    assert M.frechet_from_stats(np.zeros(d), np.eye(d), mu, 4 * np.eye(d)) == pytest.approx(8.0)
    b = rng.normal(size=(20000, 3)) * 2 + mu
    c = rng.normal(size=(20000, 3))
    assert M.frechet_distance(c, b) == pytest.approx(8.0, rel=0.05)


def test_kl_and_inception_score():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    same = M.kl_from_logits(logits, logits)
    assert same["kl_softmax"] == pytest.approx(0.0, abs=1e-12) and same["kl_sigmoid"] == pytest.approx(0.0, abs=1e-12)
    # one pair: reference softmax (1, 0) (very confident) vs uniform generated over 2 classes -> log 2
    kl = M.kl_from_logits(np.array([[50.0, -50.0]]), np.array([[0.0, 0.0]]))
    assert kl["kl_softmax"] == pytest.approx(np.log(2), abs=1e-9)
    assert kl["kl_sigmoid"] == pytest.approx(np.log(2) + 0.0, abs=1e-6)  # sigmoid(50) = 1 vs 0.5; sigmoid(-50) ~ 0
    confident = np.eye(4) * 50
    assert M.inception_score(confident, splits=1)[0] == pytest.approx(4.0, rel=1e-6)
    assert M.inception_score(np.zeros((8, 4)))[0] == pytest.approx(1.0)
    mean, std = M.inception_score(np.tile(np.eye(4) * 50, (10, 1)))  # 40 clips, 10 shuffled splits of 4
    assert 1.0 <= mean <= 4.0 and std >= 0


TINY = CNN14Config(channels=(4, 8, 8, 8, 8, 16), classes=5)


def test_cnn14_real_architecture_tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = CNN14(TINY).eval()
    wav = torch.randn(2, 16000)
    with torch.no_grad():
        emb, logits = model(wav)
        assert emb.shape == (2, 16) and logits.shape == (2, 5)
        torch.testing.assert_close(model(wav[:1])[0], emb[:1], atol=1e-5, rtol=0)
        assert model.logmel(wav).shape == (2, 1, 101, 64)
    # the checkpoint layout PANNs ships: {"model": state_dict incl. fixed STFT/mel extractor entries}
    state = {
        **model.state_dict(),
        "spectrogram_extractor.stft.conv_real.weight": torch.zeros(257, 1, 512),
        "logmel_extractor.melW": torch.zeros(257, 64),
    }
    torch.save({"model": state}, tmp_path / "cnn14.pth")
    loaded = CNN14.from_checkpoint(tmp_path / "cnn14.pth", TINY)
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav)[1], logits)
    with pytest.raises(FileNotFoundError, match="Cnn14_16k"):
        CNN14.from_checkpoint(tmp_path / "missing.pth")
    assert [k for k in CNN14().state_dict() if "conv_block6.conv2" in k] == ["conv_block6.conv2.weight"]


TINY_PASST = dict(clip_samples=32000, dim=16, depth=1, heads=2, time_patches=9, classes=5)


def tiny_passt(path=None):
    from rewas.evaluate.embedders import PaSST, PaSSTConfig

    return PaSST.from_checkpoint(path, PaSSTConfig(**TINY_PASST)) if path else PaSST(PaSSTConfig(**TINY_PASST))


def unlike_pairs(clips) -> tuple[list[str], list[str]]:
    """Generated clips and their references, no file in both columns."""
    return [str(clips / "sync.wav"), str(clips / "noise.wav")], [str(clips / "half.wav"), str(clips / "tone.wav")]


def paired_metrics(outputs, generated, references, name):
    """FD and KL(reference || generated) from the definitions; KL is asymmetric, so swapped columns show."""
    feat_g, log_g = outputs(generated)
    feat_r, log_r = outputs(references)
    kl = M.kl_from_logits(log_r, log_g)
    swapped = M.kl_from_logits(log_g, log_r)
    for k in kl:  # the inputs must tell the two orientations apart, or the checks below could not fail
        assert abs(kl[k] - swapped[k]) > 0.02 * max(abs(kl[k]), abs(swapped[k])), (k, kl[k], swapped[k])
    return {
        f"fd_{name}": M.frechet_distance(feat_g, feat_r),
        f"kl_{name}_softmax": kl["kl_softmax"],
        f"kl_{name}_sigmoid": kl["kl_sigmoid"],
    }


def test_set_metrics_with_tiny_embedders(clips, tmp_path, monkeypatch):
    from functools import partial

    import rewas.evaluate.embedders as E

    torch.manual_seed(0)
    torch.save({"model": CNN14(TINY).state_dict()}, tmp_path / "tiny.pth")
    torch.save({"model": tiny_passt().state_dict()}, tmp_path / "passt.pt")
    monkeypatch.setitem(E.EMBEDDERS, "panns", (lambda p: CNN14.from_checkpoint(p, TINY), E.EMBEDDERS["panns"][1]))
    monkeypatch.setitem(E.EMBEDDERS, "passt", (tiny_passt, E.EMBEDDERS["passt"][1]))
    generated, references = unlike_pairs(clips)
    rows = [{"audio": a, "reference": r} for a, r in zip(generated, references)]
    specs = {"panns": tmp_path / "tiny.pth", "passt": tmp_path / "passt.pt", "imagebind": "y", "ast": "z"}
    results, notes = set_metrics(specs, rows)
    # the tiny random CNN14 hardly tells clips apart; the tiny PaSST does, so its KL shows which column is which
    passt = partial(E.passt_outputs, tiny_passt(tmp_path / "passt.pt"))
    expected = paired_metrics(passt, generated, references, "passt")
    assert {k: results[k] for k in expected} == pytest.approx(expected, rel=1e-6, abs=1e-9)
    (feat_g, log_g), (feat_r, log_r) = [
        E.panns_outputs(CNN14.from_checkpoint(specs["panns"], TINY), x) for x in (generated, references)
    ]
    assert results["fd_panns"] == pytest.approx(M.frechet_distance(feat_g, feat_r), abs=1e-9)
    assert results["kl_panns_softmax"] == pytest.approx(
        M.kl_from_logits(log_r, log_g)["kl_softmax"], rel=1e-6, abs=1e-12
    )
    assert results["is_panns"] >= 1.0 - 1e-9 and any("'ast' is unknown" in n for n in notes)
    assert any("imagebind" in n and "left out on purpose" in n for n in notes)
    with pytest.raises(FileNotFoundError, match="VGGish"):
        set_metrics({"vggish": tmp_path / "none.pth"}, rows)


def test_vggish_front_end_and_tiny_model(clips, tmp_path):
    from rewas.evaluate.embedders import VGGish, VGGishConfig, vggish_embeddings, vggish_examples, vggish_mel_matrix

    mel = vggish_mel_matrix(VGGishConfig())
    assert mel.shape == (257, 64) and mel[0].sum() == 0 and mel.max() <= 1.0 and (mel.max(0) > 0.5).all()
    assert vggish_examples(np.zeros(16000)).shape == (1, 96, 64)  # 1 s -> one 0.96 s example
    assert vggish_examples(np.zeros(15000)).shape == (0, 96, 64)
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    ex = vggish_examples(tone)[0]
    band = int(np.argmax(ex.mean(0)))
    centers = np.argmax(mel, axis=0) * 8000 / 256
    assert abs(centers[band] - 1000) < 60  # the 1 kHz band lights up
    assert sum(p.numel() for p in VGGish().parameters()) == 72_141_184  # VGGish's published size
    tiny = VGGishConfig(channels=(4, 8, 8, 8, 8, 8), hidden=16, embedding=8)
    torch.manual_seed(0)
    torch.save(VGGish(tiny).state_dict(), tmp_path / "v.pth")
    model = VGGish.from_checkpoint(tmp_path / "v.pth", tiny)
    emb = vggish_embeddings(model, [str(clips / "sync.wav")] * 2)
    assert emb.shape == (10, 8) and np.array_equal(emb[:5], emb[5:])  # 5 s -> 5 examples per clip


def test_msclap_tiny(clips, tmp_path):
    from rewas.evaluate.embedders import MSCLAP, MSCLAPConfig, msclap_metrics

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "bark", "##ing", "ball", "rain"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    cfg = MSCLAPConfig(
        audio=CNN14Config(
            sample_rate=44100, window_size=1024, hop_size=320, fmin=50.0, fmax=14000.0, channels=(4, 8, 8, 8, 8, 16)
        ),
        d_proj=8,
        vocab_size=len(words),
        hidden=16,
        layers=1,
        heads=2,
        intermediate=32,
        duration=2.0,
    )
    torch.manual_seed(0)
    torch.save({"model": MSCLAP(cfg).state_dict()}, tmp_path / "CLAP_weights_2022.pth")
    model = MSCLAP.from_folder(tmp_path, cfg)
    text = model.embed_text(["a dog barking", "rain"])
    assert text.shape == (2, 8) and torch.allclose(text.norm(dim=-1), torch.ones(2))
    rows = [{"audio": str(clips / "sync.wav"), "prompt": "a dog barking"}, {"audio": str(clips / "late.wav")}]
    out = msclap_metrics(model, rows)
    assert (
        -1 <= out["clap_msclap"] <= 1 and rows[0]["clap_msclap"] == out["clap_msclap"] and "clap_msclap" not in rows[1]
    )
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        MSCLAP.from_folder(tmp_path / "nothing")


def test_evaluate_cli_on_generated_clips(clips, media, tmp_path, capsys):
    from rewas import ReWaSPipeline

    pipe = ReWaSPipeline.from_pretrained("debug")
    lines = []
    for i, name in enumerate(["v25", "v2997"]):
        out = tmp_path / f"gen{i}.wav"
        write_wav(out, pipe(media[name], prompt="a ball", steps=2, seed=i).waveform)
        lines.append(
            {"video": str(media[name]), "audio": out.name, "reference": str(clips / "sync.wav"), "prompt": "a ball"}
        )
    lines.append(
        {"video": str(clips / "jump.mkv"), "audio": str(clips / "sync.wav"), "reference": str(clips / "half.wav")}
    )
    lines.append({"audio": "missing.wav"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    code = main(
        ["evaluate", str(manifest), "--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), "-q"]
    )
    assert code == 1, capsys.readouterr().err  # the missing clip failed: the report is written, the run is not ok
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["items"]) == 4 and "error" in report["items"][3]
    item = report["items"][2]
    assert (item["audio"], item["reference"]) == (str(clips / "sync.wav"), str(clips / "half.wav"))
    # the audio (4 clicks, on the video's jumps) against a reference holding the first 2 of them: onsets and AV-Align
    # are asymmetric, so reading the columns the other way round gives 4 vs 2, 0.5 and 0.5
    assert (item["onsets_target"], item["onsets_generated"]) == (2, 4) and item["onset_detection_acc"] == 1.0
    assert item["av_align"] == 1.0 and item["energy_mae"] > 0.1
    assert {"energy_mae", "av_align", "onset_acc", "onset_ap"} <= set(report["mean"])
    assert any("failed" in n for n in report["notes"]) and any("embedder" in n for n in report["notes"])
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("| clips |") and "Energy MAE" in md
    assert main(["evaluate", str(manifest), "--out", str(tmp_path / "e.json"), "--embedders", "panns=/nope.pth"]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "e.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["evaluate", str(bad), "--out", str(tmp_path / "b.json")]) == 2
    assert not (tmp_path / "b.json").exists()


def _tiny_synchformer_config():
    from rewas.config import MotionformerConfig
    from rewas.evaluate.desync import SynchformerConfig

    return SynchformerConfig(
        video=MotionformerConfig(embed_dim=16, depth=1, num_heads=2, agg_heads=2, agg_ff=32),
        dim=16,
        ast_layers=1,
        ast_heads=2,
        ast_ff=32,
        sync_layers=1,
        sync_heads=2,
    )


def test_synchformer_release_layout(manifests):
    import json

    from conftest import MANIFESTS, shapes

    from rewas.evaluate.desync import Synchformer
    from rewas.pipeline import empty_weights

    raw = json.loads((MANIFESTS / "synchformer_vfeat.json").read_text())
    expected = {**manifests["synchformer_vfeat"], **raw["other_keys_in_ckpt_model"]}
    with empty_weights():
        model = Synchformer()
    assert shapes(model) == expected


def test_desync_tiny_end_to_end(media, tmp_path):
    from rewas.evaluate.desync import OFFSET_GRID, Synchformer, audio_segments, desync

    segs = audio_segments(np.zeros(80000, np.float32))
    assert segs.shape == (14, 66, 128)  # 5 s at 16 kHz -> 14 segments of 0.64 s, as 125 video frames
    assert torch.allclose(
        segs,
        torch.full_like(segs, (np.log(1e-6) + 4.2677393) / (2 * 4.5689974)).where(
            torch.arange(66)[None, :, None] < 65, torch.tensor(4.2677393 / (2 * 4.5689974))
        ),
    )
    torch.manual_seed(0)
    cfg = _tiny_synchformer_config()
    torch.save({"model": Synchformer(cfg).state_dict()}, tmp_path / "sync.pt")
    model = Synchformer.from_checkpoint(tmp_path / "sync.pt", cfg)
    write_wav(tmp_path / "a.wav", clicks(EVENTS, duration=5.0))
    samples.write_video(tmp_path / "v.mp4", jumping_square, 5.0, 25)
    score = desync(model, tmp_path / "v.mp4", tmp_path / "a.wav")
    assert score in set(np.abs(OFFSET_GRID)) and score == desync(model, tmp_path / "v.mp4", tmp_path / "a.wav")
    with pytest.raises(ValueError, match="4.8 s"):
        desync(model, media["v25"], tmp_path / "a.wav")  # a 3 s video is too short


def test_passt_tiny_and_front_end(clips, tmp_path):
    from functools import partial

    from rewas.evaluate.embedders import PaSST, PaSSTConfig, classifier_metrics, kaldi_mel_banks, passt_outputs

    banks = kaldi_mel_banks(PaSSTConfig())
    assert banks.shape == (128, 513) and banks[:, -1].abs().sum() == 0 and float(banks.max()) <= 1.0
    peaks = banks.argmax(dim=1)
    assert torch.all(peaks[1:] >= peaks[:-1]) and peaks[-1] * 32000 / 1024 < 15000  # ordered, below fmax
    assert sum(p.numel() for p in PaSST().parameters()) == 86_153_758  # PaSST-S with both heads
    cfg = PaSSTConfig(**TINY_PASST)
    torch.manual_seed(0)
    torch.save({f"net.{k}": v for k, v in PaSST(cfg).state_dict().items()}, tmp_path / "passt.pt")  # wrapper prefix
    model = PaSST.from_checkpoint(tmp_path / "passt.pt", cfg)
    with torch.no_grad():
        logits, feats = model(torch.randn(2, 32000))
    assert logits.shape == (2, 5) and feats.shape == (2, 16)
    generated, references = unlike_pairs(clips)
    out = classifier_metrics(partial(passt_outputs, model), generated, references, "passt")
    expected = paired_metrics(partial(passt_outputs, model), generated, references, "passt")
    assert {k: out[k] for k in expected} == pytest.approx(expected, rel=1e-6, abs=1e-9) and out["fd_passt"] > 1e-3
    same = classifier_metrics(partial(passt_outputs, model), generated, generated, "passt")
    assert same["fd_passt"] == pytest.approx(0.0, abs=1e-6) and same["kl_passt_softmax"] == pytest.approx(0.0, abs=1e-9)


def test_laion_clap_small_end_to_end(clips, tmp_path, monkeypatch):
    """The LAION-CLAP score through `set_metrics`, on a small HTSAT and RoBERTa (the full model is compared with the
    laion_clap package in tests/test_parity.py); a folder without its files is named with what it lacks."""
    from tokenizers import ByteLevelBPETokenizer

    from rewas.config import ClapTextConfig
    from rewas.errors import MissingFileError
    from rewas.evaluate import embedders, laion_clap

    with pytest.raises(MissingFileError, match="music_speech_audioset_epoch_15_esc_89.98.pt, vocab.json, merges.txt"):
        laion_clap.LaionCLAP.from_folder(tmp_path)
    cfg = laion_clap.LaionCLAPConfig(
        audio=laion_clap.HTSATConfig(embed_dim=8, depths=(1, 1, 2, 1), heads=(1, 1, 2, 2), classes=5),
        text=ClapTextConfig(
            vocab_size=300, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, proj_dim=8, max_length=77
        ),  # fmt: skip
        joint=8,
    )
    torch.manual_seed(0)
    model = laion_clap.LaionCLAP(cfg)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "clap.pt")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a click and a tone"], vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(tmp_path))
    small = (lambda folder: laion_clap.LaionCLAP.from_folder(folder, cfg), laion_clap.laion_clap_metrics)
    monkeypatch.setitem(embedders.EMBEDDERS, "laion_clap", small)
    rows = [{"audio": str(clips / "sync.wav"), "prompt": "a click"}, {"audio": str(clips / "tone.wav"), "prompt": "x"}]
    results, notes = embedders.set_metrics({"laion_clap": tmp_path}, rows)
    assert not notes and -1 <= results["clap_laion"] <= 1 and all(-1 <= r["clap_laion"] <= 1 for r in rows)
