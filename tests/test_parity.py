"""Our evaluation embedders against the code they reproduce (issue: evaluation you can trust).

Each reference is built offline from its PyPI package with random weights; its state dict, which has the layout of
the released checkpoints, is saved and loaded into ours through our own loader; both run on the same audio,
front ends included. Embeddings and logits must agree to 1e-4 of their scale (fp32), and the set metrics (FD, KL,
IS) computed from ours must equal the reference formulas on the reference's outputs. Each assertion message
carries the error reached; docs/evaluation.md has the table.

What could not be built here, and why, is said at each test.
"""

from __future__ import annotations

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


def test_panns_cnn14_equals_panns_inference(tmp_path):
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


def test_vggish_equals_torchvggish(tmp_path):
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
