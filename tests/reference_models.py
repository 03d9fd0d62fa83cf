"""The reference implementations our embedders must equal, built offline from their PyPI packages (installed by
`make install` with --no-deps: tests/test_parity.py says why each dependency is or is not there).

`load(dotted, stubs)` imports one module of a package without running the package's `__init__`: panns_inference's
downloads its label file with wget at import, torchvggish's imports resampy for a resampling we do not use, and
laion_clap's pulls in its training stack. Stand-ins for the few dependencies that cannot be installed here are
passed as `stubs`; each test says what its stand-ins replace and why.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch


def load(dotted: str, stubs: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """`dotted` (e.g. "panns_inference.models") imported with its parent packages as bare namespaces; any module
    in `stubs` is put in sys.modules first. Skips the test if the package is not installed."""
    top = dotted.split(".")[0]
    if top in sys.modules:
        locations = getattr(sys.modules[top], "__path__", None)
    else:
        spec = importlib.util.find_spec(top)
        locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        pytest.skip(f"the reference package {top} is not installed (`make install` installs it)")
    for name, module in (stubs or {}).items():
        sys.modules.setdefault(name, module)
    root = Path(next(iter(locations)))
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            folder = str(root.joinpath(*parts[1:i]))
            package = types.ModuleType(name)
            package.__path__ = [folder]
            package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            package.__spec__.submodule_search_locations = [folder]
            sys.modules[name] = package
    return importlib.import_module(dotted)


def stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and BatchNorm statistic random, at scales that keep activations finite through a deep net:
    weights ~ N(0, 1/fan_in), biases and BN shifts ~ N(0, 0.1), BN scales and variances around 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:  # fixed front ends (torchlibrosa's STFT and mel kernels) stay as built
                continue
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("weight"):  # norm scales
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model.eval()


def sample_audio(seconds: float, sample_rate: int, count: int = 3, seed: int = 0) -> torch.Tensor:
    """(count, N) float32 clips in [-1, 1]: tones, clicks and noise in different mixes, so embeddings differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    clips = []
    for k in range(count):
        tone = np.sin(2 * np.pi * (220 * (k + 1)) * t) * (0.3 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
        clicks = (rng.random(len(t)) < 0.001) * rng.uniform(-1, 1, len(t))
        noise = 0.1 * (k + 1) * rng.standard_normal(len(t))
        clips.append(np.clip(tone + clicks + noise, -1, 1))
    return torch.from_numpy(np.stack(clips).astype(np.float32))


def close(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, tol: float = 1e-4) -> float:
    """Assert |ours - reference| <= tol * max(1, max|reference|) everywhere; -> the relative error reached."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = max(1.0, float(np.abs(reference).max()))
    err = float(np.abs(ours - reference).max()) / scale
    assert err <= tol, f"max |ours - reference| = {err:.2e} of the reference's scale, tolerance {tol:g}"
    return err


# ------------------------------------------------------------------------- the reference formulas, restated


def reference_fd(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """The Fréchet distance as the reference evaluation code computes it (scipy's sqrtm of the covariance
    product, the eps-offset retry when it is singular, the real part)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_kl(reference_logits: np.ndarray, generated_logits: np.ndarray) -> dict[str, float]:
    """audioldm_eval's paired KL: softmax KL(ref || gen) summed over classes, and the sigmoid (per-class
    Bernoulli) form, each averaged over clips."""
    p = torch.softmax(torch.from_numpy(reference_logits), 1)
    q = torch.log_softmax(torch.from_numpy(generated_logits), 1)
    soft = torch.nn.functional.kl_div(q, p, reduction="sum") / len(p)
    ps = torch.sigmoid(torch.from_numpy(reference_logits))
    qs = torch.sigmoid(torch.from_numpy(generated_logits))
    sig = torch.nn.functional.kl_div(torch.log(qs), ps, reduction="sum") / len(ps)
    return {"kl_softmax": float(soft), "kl_sigmoid": float(sig)}


def reference_is(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's inception score as audioldm_eval calls it: rows shuffled by RandomState(seed), softmax,
    `splits` chunks, exp of the mean KL of each row from its chunk's marginal; (mean, std) over chunks."""
    x = torch.from_numpy(np.asarray(logits, np.float64))
    x = x[np.random.RandomState(seed).permutation(len(x))]
    p = x.softmax(dim=1)
    log_p = p.log()
    n, scores = len(p), []
    for i in range(splits):
        part, log_part = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        q = part.mean(dim=0, keepdim=True)
        scores.append((part * (log_part - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def informative(x: torch.Tensor | np.ndarray, what: str) -> None:
    """The outputs compared must carry information, or agreement would prove nothing: not mostly zero, not
    saturated, and different from clip to clip."""
    x = np.asarray(x, np.float64)
    assert np.isfinite(x).all(), what
    assert (np.abs(x) > 1e-6).mean() > 0.2, f"{what}: mostly zero"
    assert np.std(x, axis=0).mean() > 1e-3 * (np.abs(x).mean() + 1e-12), f"{what}: the same for every clip"
