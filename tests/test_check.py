"""`rewas check`: the verdict on each released layout, built from the manifests at full size (every tensor a
zero-stride view of one number, so that the files stay tiny), on a model folder, and on a pickle that would run
code (refused, never run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import MANIFESTS, run_cli

DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32}


def full_size(name: str, half: bool = False) -> dict[str, torch.Tensor]:
    """A released state dict at its real shapes and dtypes, each tensor a view of one element."""
    data = json.loads((MANIFESTS / f"{name}.json").read_text())
    out = {}
    for key, shape in data["state_dict"].items():
        dtype = data.get("dtype_exceptions", {}).get(key, "float32")
        dtype = DTYPES.get(str(dtype["dtype"] if isinstance(dtype, dict) else dtype).replace("torch.", ""))
        dtype = torch.float16 if half and dtype == torch.float32 else dtype
        out[key] = torch.zeros((), dtype=dtype).expand(shape)
    return out


def _check(capsys, path) -> tuple[int, str, str]:
    """`rewas check PATH` in this process -> (exit code, stdout: the verdict, stderr)."""
    from rewas.cli import main

    code = main(["check", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    rewas = full_size("rewas_ldm")
    torch.save({"state_dict": rewas, "epoch": 1}, d / "audioldm_m_rewas_vggsound.ckpt")
    pruned = {k: v for k, v in rewas.items() if not k.startswith(("first_stage_model.", "cond_stage_models."))}
    torch.save({"state_dict": pruned}, d / "pruned.ckpt")
    torch.save({"state_dict": full_size("rewas_ldm", half=True)}, d / "fp16.ckpt")
    broken = dict(rewas)
    del broken["control_model.middle_block_out.0.weight"]
    torch.save({"state_dict": broken}, d / "broken.ckpt")
    torch.save({f"module.{k}": v for k, v in full_size("phi").items()}, d / "phi_vggsound.ckpt")
    vfeat = full_size("synchformer_vfeat")  # its keys as the file has them, under vfeat_extractor.
    torch.save({"model": {**vfeat, "aproj.weight": torch.zeros(2, 2)}}, d / "synch.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in rewas.items()}}, d / "wrapped.ckpt")
    no_ema = {k: v for k, v in pruned.items() if not k.startswith("model_ema.")}
    torch.save({"state_dict": no_ema}, d / "pruned_no_ema.ckpt")
    vae = {k.removeprefix("first_stage_model."): v for k, v in rewas.items() if k.startswith("first_stage_model.")}
    vae = {k: v for k, v in vae.items() if not k.startswith("vocoder.")}  # with its training loss network
    torch.save({"state_dict": vae}, d / "vae_mel_16k_64bins.ckpt")
    generator = {}
    for k, v in rewas.items():
        if k.startswith("first_stage_model.vocoder."):
            k = "_orig_mod." + k.removeprefix("first_stage_model.vocoder.")
            if k.endswith(".weight") and v.dim() == 3:  # weight-normed, as HiFi-GAN's own checkpoint holds it
                generator[k + "_v"], generator[k + "_g"] = v, torch.zeros(()).expand(v.shape[0], 1, 1)
            else:
                generator[k] = v
    torch.save({"generator": generator}, d / "hifigan_16k_64bins.ckpt")
    model = "cond_stage_models.0.model."
    clap = {f"module.{k.removeprefix(model)}": v for k, v in rewas.items() if k.startswith(model)}
    torch.save({"state_dict": clap}, d / "clap.pt")
    torch.save({"generator": {"conv_pre.weight_g": torch.ones(4, 1, 1)}}, d / "not_a_hifigan.ckpt")
    return d


@pytest.mark.parametrize(
    "name, kind, state, says, flags",
    [
        ("audioldm_m_rewas_vggsound.ckpt", "ReWaS", "ready",
         ["2688 of 2688 released keys, 0 missing", "EMA weights: present", "licence CC BY-NC-SA 4.0",
          "components: unet, adapter, vae, vocoder, text_encoder"],
         ["--rewas-ckpt"]),
        ("pruned.ckpt", "ReWaS", "ready with the component files below",
         ["no vae weights: vae_mel_16k_64bins.ckpt", "no text_encoder weights", "components: unet, adapter\n",
          "1728 of 1728 released keys (first_stage_model.encoder"],
         ["--rewas-ckpt", "--vae-ckpt vae_mel_16k_64bins.ckpt", "--hifigan-ckpt hifigan_16k_64bins.ckpt",
          "--clap-ckpt clap_music_speech_audioset_epoch_15_esc_89.98.pt"]),
        ("pruned_no_ema.ckpt", "ReWaS", "ready with the component files below",
         ["EMA weights: absent: the raw UNet weights are used", "model_ema left out"], ["--vae-ckpt"]),
        ("wrapped.ckpt", "ReWaS", "ready", ["2688 of 2688 released keys", "EMA weights: present"], ["--rewas-ckpt"]),
        ("fp16.ckpt", "ReWaS", "ready", ["float16", "0 missing"], ["--rewas-ckpt"]),
        ("broken.ckpt", "ReWaS", "NOT READY", ["1 missing", "control_model.middle_block_out.0.weight"],
         ["--rewas-ckpt"]),
        ("phi_vggsound.ckpt", "phi", "ready", ["52 of 52 released keys"], ["--phi-ckpt"]),
        ("synch.pt", "Synchformer", "ready", ["238 of 238 released keys"], ["--synchformer-ckpt"]),
        ("vae_mel_16k_64bins.ckpt", "VAE", "ready", ["completes a ReWaS file", "0 missing, 0 unexpected"],
         ["--vae-ckpt"]),
        ("hifigan_16k_64bins.ckpt", "HiFi-GAN", "ready", ["194 of 194 released keys"], ["--hifigan-ckpt"]),
        ("not_a_hifigan.ckpt", "HiFi-GAN", "NOT READY", ["194 missing"], ["--hifigan-ckpt"]),
        ("clap.pt", "CLAP", "ready", ["0 missing, 0 unexpected"], ["--clap-ckpt"]),
    ],
)  # fmt: skip
def test_each_released_layout_gets_its_verdict(fakes, capsys, name, kind, state, says, flags):
    code, out, _ = _check(capsys, fakes / name)
    assert code == (1 if state == "NOT READY" else 0)
    assert out.splitlines()[0] == f"{fakes / name}: {kind}, {state}"
    for text in says + flags:
        assert text in out, text
    assert "sha256 " in out and f"{(fakes / name).stat().st_size:,} bytes" in out


def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"x": Payload()}}, tmp_path / "evil.ckpt")
    code, err = run_cli(["check", tmp_path / "evil.ckpt"], capsys)
    assert code == 2 and "not a PyTorch checkpoint that loads without running code" in err
    assert not marker.exists()


def test_a_model_folder(debug_model_dir, tmp_path, capsys):
    import shutil

    code, out, _ = _check(capsys, debug_model_dir)
    assert code == 0 and out.startswith(f"{debug_model_dir}: model folder, ready")
    damaged = tmp_path / "damaged"
    shutil.copytree(debug_model_dir, damaged)
    (damaged / "vae.safetensors").unlink()
    code, out, _ = _check(capsys, damaged)
    assert code == 1 and "vae: MISSING vae.safetensors" in out
    code, err = run_cli(["check", tmp_path / "nothing"], capsys)
    assert code == 2 and "no such file or folder" in err


def test_check_reads_a_file_once(fakes, monkeypatch):
    """torch.load once (memory-mapped) for the whole verdict; the hash streams the bytes."""
    import rewas.check

    calls = []
    real = rewas.check.torch_load
    monkeypatch.setattr(rewas.check, "torch_load", lambda p: calls.append(p) or real(p))
    rewas.check.check(fakes / "audioldm_m_rewas_vggsound.ckpt")
    assert len(calls) == 1


def test_a_converted_folder_records_its_licences(tmp_path):
    """`rewas convert` writes LICENSES.md beside the weights: each file it read, its source and its licence."""
    from rewas import ReWaSPipeline
    from rewas.config import debug
    from rewas.convert import convert

    source = ReWaSPipeline.from_config(debug(), seed=3)
    torch.save({f"module.{k}": v for k, v in source.phi.state_dict().items()}, tmp_path / "phi_vggsound.ckpt")
    convert(tmp_path / "m", phi_ckpt=tmp_path / "phi_vggsound.ckpt", config=debug(), allow_partial=True)
    text = (tmp_path / "m" / "LICENSES.md").read_text()
    assert "`phi_vggsound.ckpt`" in text and "CC BY-NC-SA 4.0" in text
    assert Path(tmp_path / "m" / "config.json").is_file()
