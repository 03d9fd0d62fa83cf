"""Importing the released checkpoints: the full layouts from the manifests, and numerics at debug size."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MANIFESTS

from rewas import ReWaSPipeline
from rewas.config import debug
from rewas.convert import convert, load_into, phi_state, split_rewas, synchformer_state
from rewas.errors import UserError
from rewas.pipeline import build_components, empty_weights

DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32}


def meta_state(name: str) -> dict[str, torch.Tensor]:
    """The released state dict as meta tensors: exactly its keys, shapes and dtypes, no memory."""
    data = json.loads((MANIFESTS / f"{name}.json").read_text())
    exceptions = data.get("dtype_exceptions", {})
    out = {}
    for key, shape in data["state_dict"].items():
        dtype = exceptions.get(key, "float32")
        dtype = dtype["dtype"] if isinstance(dtype, dict) else dtype
        out[key] = torch.empty(shape, device="meta", dtype=DTYPES.get(str(dtype).replace("torch.", ""), torch.float32))
    return out, data


def test_full_released_checkpoints_import_with_nothing_missing_or_unexpected(manifests):
    from rewas.config import paper

    state, data = meta_state("rewas_ldm")
    parts, report = split_rewas(state)
    with empty_weights():
        components = build_components(paper())
    for name, part in parts.items():
        load_into(components[name], part, name, report, allow_partial=False)
    phi, _ = meta_state("phi")
    load_into(components["phi"], phi_state({f"module.{k}": v for k, v in phi.items()}), "phi", report, False)
    synch, raw = meta_state("synchformer_vfeat")
    full = {**synch, **{k: torch.empty(v, device="meta") for k, v in raw["other_keys_in_ckpt_model"].items()}}
    vfeat, other = synchformer_state(full)
    load_into(components["video_encoder"], vfeat, "video_encoder", report, False)
    assert not report.missing and not report.unexpected, report.problems()
    assert other == 275
    assert report.loaded == {
        "unet": 690,
        "adapter": 332,
        "vae": 205,
        "vocoder": 194,
        "text_encoder": 203,
        "phi": 52,
        "video_encoder": 238,
    }
    skipped = report.skipped
    assert (
        skipped["VAE training loss (LPIPS + discriminator), training only"]
        == len(data["first_stage_model_loss_keys"])
        == 56
    )
    assert skipped["raw UNet weights (the EMA copy is used, as the release samples)"] == 690
    assert skipped["diffusion schedule buffers (checked against our schedule)"] == 12
    assert sum(skipped.values()) + sum(report.loaded.values()) - 52 - 238 == len(state)


def released_layout(pipe: ReWaSPipeline, raw_unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A debug-size checkpoint written the way the release writes its own (keys, EMA naming, extras)."""
    from rewas.config import DiffusionConfig
    from rewas.diffusion import NoiseSchedule

    sd = {
        "logvar": torch.zeros(1000),
        "betas": NoiseSchedule(DiffusionConfig()).betas.float(),
        "scale_factor": pipe.vae.scale_factor.clone(),
        "model_ema.decay": torch.tensor(0.9999),
        "model_ema.num_updates": torch.tensor(10, dtype=torch.int32),
    }
    for k, v in raw_unet.state_dict().items():
        sd[f"model.diffusion_model.{k}"] = v
    for k, v in pipe.unet.state_dict().items():
        sd[f"model_ema.{('diffusion_model.' + k).replace('.', '')}"] = v
    sd.update({f"control_model.{k}": v for k, v in pipe.adapter.state_dict().items()})
    sd.update({f"first_stage_model.{k}": v for k, v in pipe.vae.state_dict().items() if k != "scale_factor"})
    sd.update({f"first_stage_model.vocoder.{k}": v for k, v in pipe.vocoder.state_dict().items()})
    sd["first_stage_model.loss.logvar"] = torch.zeros(())
    sd.update({f"cond_stage_models.0.model.{k}": v for k, v in pipe.text_encoder.state_dict().items()})
    sd["cond_stage_models.0.model.logit_scale_a"] = torch.zeros(())
    sd["cond_stage_models.0.model.audio_branch.bn0.weight"] = torch.ones(64)
    return sd


@pytest.fixture()
def released_files(tmp_path):
    torch.manual_seed(1)
    source = ReWaSPipeline.from_config(debug(), seed=3)
    source.vae.scale_factor.fill_(0.7)
    for p in source.adapter.parameters():  # a trained adapter is not zero
        torch.nn.init.normal_(p, std=0.02)
    raw = build_components(debug())["unet"]
    with torch.no_grad():  # every UNet tensor differs between the copies: no key compares zeros or ones with themselves
        for p in (*source.unet.parameters(), *raw.parameters()):
            p.copy_(torch.randn(p.shape) * 0.02)
    torch.save({"state_dict": released_layout(source, raw), "epoch": 3}, tmp_path / "rewas.ckpt")
    torch.save({f"module.{k}": v for k, v in source.phi.state_dict().items()}, tmp_path / "phi.ckpt")
    vfeat = {f"vfeat_extractor.{k}": v for k, v in source.video_encoder.state_dict().items()}
    torch.save({"model": {**vfeat, "aproj.weight": torch.zeros(2, 2)}}, tmp_path / "synch.pt")
    return source, tmp_path


def assert_same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    ours = module.state_dict()
    assert ours.keys() == expected.keys()
    differ = [k for k in ours if not torch.equal(ours[k], expected[k])]
    assert not differ, f"{len(differ)} of {len(ours)} tensors differ, e.g. {differ[:3]}"


def test_converted_model_reproduces_the_source_exactly(released_files, media):
    source, d = released_files
    pipe, reports = convert(
        d / "out", rewas_ckpt=d / "rewas.ckpt", phi_ckpt=d / "phi.ckpt", synchformer_ckpt=d / "synch.pt", config=debug()
    )
    assert pipe.config.phi.released_attention
    for name in ("unet", "adapter", "vae", "vocoder", "text_encoder", "phi", "video_encoder"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(source, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert reports[0].skipped["raw UNet weights (the EMA copy is used, as the release samples)"] > 0
    for block in source.phi.hint_blocks.blocks:
        block.released_attention = True
    a = source(media["v25"], prompt="knock", steps=2, seed=0)
    b = ReWaSPipeline.from_pretrained(d / "out")(media["v25"], prompt="knock", steps=2, seed=0)
    assert np.array_equal(a.waveform, b.waveform)


def test_partial_or_wrong_files_are_refused(released_files):
    source, d = released_files
    with pytest.raises(ValueError, match="missing: phi"):
        convert(None, rewas_ckpt=d / "rewas.ckpt", synchformer_ckpt=d / "synch.pt", config=debug())
    sd = torch.load(d / "rewas.ckpt", weights_only=True)["state_dict"]
    del sd["control_model.middle_block_out.0.weight"]
    sd["control_model.bogus"] = torch.zeros(1)
    torch.save({"state_dict": sd}, d / "broken.ckpt")
    with pytest.raises(ValueError, match="refusing a partial import.*adapter: missing 1 keys"):
        convert(
            None, rewas_ckpt=d / "broken.ckpt", phi_ckpt=d / "phi.ckpt", synchformer_ckpt=d / "synch.pt", config=debug()
        )
    pipe, reports = convert(None, rewas_ckpt=d / "broken.ckpt", config=debug(), allow_partial=True)
    assert reports[0].missing["adapter"] == ["middle_block_out.0.weight"] and "adapter.bogus" in reports[0].unexpected
    # the UNet is complete in the file: it is the EMA copy, as in a full import, not a random stand-in
    assert_same(pipe.unet, source.unet.state_dict())
    adapter, theirs = pipe.adapter.state_dict(), source.adapter.state_dict()
    assert all(torch.equal(adapter[k], theirs[k]) for k in adapter if k != "middle_block_out.0.weight")
    sd = torch.load(d / "rewas.ckpt", weights_only=True)["state_dict"]
    sd["betas"] = sd["betas"] * 2
    torch.save({"state_dict": sd}, d / "schedule.ckpt")
    with pytest.raises(ValueError, match="schedule"):
        convert(None, rewas_ckpt=d / "schedule.ckpt", config=debug(), allow_partial=True)


def test_import_without_ema_takes_the_raw_unet(released_files):
    source, d = released_files
    state = torch.load(d / "rewas.ckpt", weights_only=True)["state_dict"]
    raw = {k[len("model.diffusion_model.") :]: v for k, v in state.items() if k.startswith("model.diffusion_model.")}
    ema = source.unet.state_dict()
    assert raw.keys() == ema.keys() and not any(torch.equal(raw[k], ema[k]) for k in raw)
    pipe, reports = convert(None, rewas_ckpt=d / "rewas.ckpt", config=debug(), allow_partial=True, use_ema=False)
    assert_same(pipe.unet, raw)
    assert reports[0].skipped["EMA UNet weights (import without EMA was asked)"] == len(raw)
    pipe, _ = convert(None, rewas_ckpt=d / "rewas.ckpt", config=debug(), allow_partial=True)
    assert_same(pipe.unet, ema)


def test_convert_and_download_commands(released_files, media, capsys):
    import time

    from rewas.cli import main

    _, d = released_files
    args = [
        "convert",
        "--rewas-ckpt",
        d / "rewas.ckpt",
        "--phi-ckpt",
        d / "phi.ckpt",
        "--synchformer-ckpt",
        d / "synch.pt",
        "--preset",
        "debug",
        "-o",
        d / "model",
    ]
    assert main([str(a) for a in args]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "wrote" in err and "PARTIAL" not in err
    assert main([str(a) for a in args]) == 2  # the folder is no longer empty
    assert main(["convert", "--rewas-ckpt", str(d / "rewas.ckpt"), "--preset", "debug", "-o", str(d / "m2")]) == 2
    assert "missing: phi, synchformer" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(media["v25"]),
                "--prompt",
                "x",
                "-o",
                str(d / "o.mp4"),
                "--model",
                str(d / "model"),
                "--steps",
                "1",
                "-q",
            ]
        )
        == 0
    )
    from rewas.download import DownloadError, check_network

    try:
        check_network(timeout=2)
    except DownloadError:
        pass
    else:
        pytest.skip("this machine has network access (the command would start a multi-GB download)")
    start = time.monotonic()
    code = main(["download", str(d / "dl")])  # no network on the test machines: must fail fast and clearly
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - start < 30 and "rewas convert" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------- the component files of a pruned file


def _weight_normed(state: dict) -> dict:
    """A vocoder state dict as HiFi-GAN's own checkpoint stores it: every conv weight as weight_g / weight_v
    (torch's weight_norm, dim 0), under torch.compile's `_orig_mod.` prefix."""
    out = {}
    for k, v in state.items():
        if k.endswith(".weight") and v.dim() == 3:
            stem = k[: -len(".weight")]
            out[f"_orig_mod.{stem}.weight_v"] = v * 1.7  # any direction: only v / ||v|| counts
            out[f"_orig_mod.{stem}.weight_g"] = v.flatten(1).norm(dim=1).reshape(-1, 1, 1) * 0.9
        else:
            out[f"_orig_mod.{k}"] = v
    return out


def _folded(normed: dict) -> dict:
    """What the release's remove_weight_norm leaves in the vocoder, and so in the full ReWaS file."""
    out = {}
    for k, v in normed.items():
        k = k.removeprefix("_orig_mod.")
        if k.endswith(".weight_v"):
            out[k[: -len("_v")]] = torch._weight_norm(v, normed[f"_orig_mod.{k[: -len('_v')]}_g"], 0)
        elif not k.endswith(".weight_g"):
            out[k] = v
    return out


@pytest.fixture()
def pruned_files(released_files):
    """The released files, and the same model as a pruned ReWaS file (UNet, EMA, adapter, the scale factor and the
    schedule: no first-stage or CLAP keys) with the VAE, HiFi-GAN and CLAP files in their published layouts."""
    source, d = released_files
    full = torch.load(d / "rewas.ckpt", weights_only=True)
    normed = _weight_normed(source.vocoder.state_dict())
    vocoder = "first_stage_model.vocoder."
    full["state_dict"] = {k: v for k, v in full["state_dict"].items() if not k.startswith(vocoder)}
    full["state_dict"].update({vocoder + k: v for k, v in _folded(normed).items()})
    torch.save(full, d / "rewas.ckpt")  # the full file, its vocoder as the release's remove_weight_norm left it
    pruned = {k: v for k, v in full["state_dict"].items() if not k.startswith(("first_stage_model.", "cond_stage"))}
    torch.save({"state_dict": pruned}, d / "pruned.ckpt")
    vae = {k: v for k, v in source.vae.state_dict().items() if k != "scale_factor"}
    vae["loss.logvar"] = torch.zeros(())  # training-only keys ride along in AudioLDM's VAE file
    vae["loss.discriminator.main.0.weight"] = torch.zeros(64, 1, 4, 4)
    torch.save({"state_dict": vae, "global_step": 10}, d / "vae_mel_16k_64bins.ckpt")
    torch.save({"generator": normed, "optim_g": {}}, d / "hifigan_16k_64bins.ckpt")
    clap = {f"module.{k}": v for k, v in source.text_encoder.state_dict().items()}
    clap["module.text_branch.embeddings.position_ids"] = torch.arange(16)[None]
    clap["module.audio_branch.bn0.weight"] = torch.ones(64)
    clap["module.logit_scale_a"] = torch.zeros(())
    torch.save({"state_dict": clap, "epoch": 15}, d / "clap.pt")
    return source, d


COMPONENTS = ("unet", "adapter", "vae", "vocoder", "text_encoder", "phi", "video_encoder")


def _convert(d, rewas, out, **files):
    kinds = {"vae": "vae_mel_16k_64bins.ckpt", "hifigan": "hifigan_16k_64bins.ckpt", "clap": "clap.pt"}
    given = {f"{k}_ckpt": d / kinds[k] for k in files}
    return convert(
        d / out, rewas_ckpt=d / rewas, phi_ckpt=d / "phi.ckpt", synchformer_ckpt=d / "synch.pt", config=debug(), **given
    )


def test_a_pruned_file_with_the_component_files_converts_to_the_full_files_model(pruned_files):
    _, d = pruned_files
    full, _ = _convert(d, "rewas.ckpt", "full")
    pruned, reports = _convert(d, "pruned.ckpt", "pruned", vae=1, hifigan=1, clap=1)
    for name in COMPONENTS:
        assert_same(getattr(pruned, name), getattr(full, name).state_dict())
    origins = reports[0].origins
    assert origins["vae"] == {str(d / "vae_mel_16k_64bins.ckpt"): 156, str(d / "pruned.ckpt"): 1}  # scale_factor
    assert origins["vocoder"] == {
        str(d / "hifigan_16k_64bins.ckpt"): len(full.vocoder.state_dict()),
        str(d / "pruned.ckpt"): 0,
    }
    assert list(origins["text_encoder"].values()) == [len(full.text_encoder.state_dict()), 0]
    # the full file with the component files: the ReWaS file's keys win, as in the release
    both, reports = _convert(d, "rewas.ckpt", "both", vae=1, hifigan=1, clap=1)
    assert reports[0].origins["vae"][str(d / "vae_mel_16k_64bins.ckpt")] == 0
    for name in COMPONENTS:
        assert_same(getattr(both, name), getattr(full, name).state_dict())


def test_a_pruned_file_alone_names_the_file_to_fetch(pruned_files, capsys):
    from conftest import run_cli

    _, d = pruned_files
    with pytest.raises(UserError, match=r"fetch vae_mel_16k_64bins\.ckpt .*Zenodo 15678883.* and pass --vae-ckpt"):
        _convert(d, "pruned.ckpt", "none")
    with pytest.raises(UserError, match=r"fetch hifigan_16k_64bins\.ckpt"):
        _convert(d, "pruned.ckpt", "none", vae=1)
    code, err = run_cli(
        ["convert", "--rewas-ckpt", d / "pruned.ckpt", "--phi-ckpt", d / "phi.ckpt", "--synchformer-ckpt",
         d / "synch.pt", "--preset", "debug", "--vae-ckpt", d / "vae_mel_16k_64bins.ckpt", "--hifigan-ckpt",
         d / "hifigan_16k_64bins.ckpt", "--clap-ckpt", d / "clap.pt", "-o", d / "cli"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "vae: 156 from vae_mel_16k_64bins.ckpt, 1 from pruned.ckpt" in err
    assert "vocoder: " in err and "from hifigan_16k_64bins.ckpt" in err and "text_encoder: " in err


def test_fp16_files_convert_alike(pruned_files):
    """An fp16 ReWaS file and fp16 component files: the pruned path still equals the full one, tensor for tensor."""
    _, d = pruned_files
    for name in ("rewas.ckpt", "pruned.ckpt", "vae_mel_16k_64bins.ckpt", "hifigan_16k_64bins.ckpt", "clap.pt"):
        obj = torch.load(d / name, weights_only=True)
        torch.save(
            {k: {n: t.half() if t.is_floating_point() else t for n, t in v.items()} if isinstance(v, dict) else v
             for k, v in obj.items()},
            d / name,
        )  # fmt: skip
    full, _ = _convert(d, "rewas.ckpt", "full16")
    pruned, _ = _convert(d, "pruned.ckpt", "pruned16", vae=1, hifigan=1, clap=1)
    for name in ("unet", "adapter", "vae", "text_encoder"):
        assert_same(getattr(pruned, name), getattr(full, name).state_dict())
    # the model is fp32 in memory, as a saved folder loads (before: fp16 biases beside fp32 folded weights, which
    # could not run), and its vocoder runs
    assert {p.dtype for name in COMPONENTS for p in getattr(pruned, name).parameters()} == {torch.float32}
    assert torch.isfinite(pruned.vocoder(torch.randn(1, 64, 20))).all()
    # the vocoder: folded from fp16 g and v here, by the release's remove_weight_norm (in fp16) there
    for k, v in pruned.vocoder.state_dict().items():
        torch.testing.assert_close(v.float(), full.vocoder.state_dict()[k].float(), atol=2e-3, rtol=2e-3, msg=k)


def test_a_module_prefixed_rewas_file_converts_alike(pruned_files):
    """A ReWaS file saved from a DDP-wrapped model (every key under `module.`) is the same model."""
    _, d = pruned_files
    full = torch.load(d / "rewas.ckpt", weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in full["state_dict"].items()}}, d / "wrapped.ckpt")
    a, _ = _convert(d, "rewas.ckpt", "a")
    b, _ = _convert(d, "wrapped.ckpt", "b")
    for name in COMPONENTS:
        assert_same(getattr(b, name), getattr(a, name).state_dict())


@pytest.mark.parametrize("rewas_file, fetched", [("rewas.ckpt", []), ("pruned.ckpt", ["vae", "hifigan", "clap"])])
def test_download_fetches_the_component_files_only_for_a_pruned_file(
    pruned_files, tmp_path, monkeypatch, rewas_file, fetched
):
    """The ReWaS file first; its keys decide whether AudioLDM's files are needed. Each file's source and licence is
    said before it is fetched. (The network is a folder of the fakes here.)"""
    import shutil

    import rewas.convert
    from rewas import download, release

    _, d = pruned_files
    files = {release.REWAS.filename: d / rewas_file, release.PHI.filename: d / "phi.ckpt",
             release.SYNCHFORMER.filename: d / "synch.pt", "vocab.json": d / "phi.ckpt", "merges.txt": d / "phi.ckpt",
             release.COMPONENTS["vae"].filename: d / "vae_mel_16k_64bins.ckpt",
             release.COMPONENTS["vocoder"].filename: d / "hifigan_16k_64bins.ckpt",
             release.COMPONENTS["text_encoder"].filename: d / "clap.pt"}  # fmt: skip
    got, said, converted = [], [], {}

    def fetch(remote, folder):
        got.append(remote.filename)
        return Path(shutil.copy(files[remote.filename], folder / remote.filename))

    monkeypatch.setattr(download, "check_network", lambda: None)
    monkeypatch.setattr(download, "fetch", fetch)
    monkeypatch.setattr(rewas.convert, "convert", lambda out, **kw: converted.update(kw))
    download.download(tmp_path / "w", tmp_path / "w" / "model", progress=said.append)
    assert got[0] == release.REWAS.filename
    components = {"vae": "vae_mel_16k_64bins.ckpt", "hifigan": "hifigan_16k_64bins.ckpt", "clap": "clap_music_speech"}
    assert [k for k, name in components.items() if any(g.startswith(name) for g in got)] == fetched
    assert sorted(k for k in converted if k.endswith("_ckpt") and k not in ("rewas_ckpt", "phi_ckpt",
                                                                            "synchformer_ckpt")) == sorted(
        f"{k}_ckpt" for k in fetched
    )  # fmt: skip
    assert said[0].startswith(f"fetching {release.REWAS.filename} from ") and "CC BY-NC-SA 4.0" in said[0]
