"""The released files ReWaS needs: where each comes from, its licence, its checksum where one is published, and
what it holds. `rewas download`, `rewas convert` and `rewas check` read these facts from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFESTS = Path(__file__).parent / "assets" / "manifests"  # every key and shape of the released files

CC_BY_NC_SA = "CC BY-NC-SA 4.0 (non-commercial, share-alike): https://creativecommons.org/licenses/by-nc-sa/4.0/"
AUDIOLDM_SOURCE = "AudioLDM's training code (https://github.com/haoheliu/AudioLDM-training-finetuning), Zenodo 15678883"


@dataclass(frozen=True)
class Remote:
    filename: str
    licence: str
    source: str
    repo: str | None = None  # a Hugging Face model repository
    url: str | None = None
    md5_prefix: str | None = None  # where the publisher gives a checksum
    flag: str = ""  # the `rewas convert` option that takes it

    @property
    def link(self) -> str:
        """A link that fetches the file itself (Hugging Face's /resolve/, not the /blob/ web page)."""
        return self.url or f"https://huggingface.co/{self.repo}/resolve/main/{self.filename}"


REWAS = Remote(
    "audioldm_m_rewas_vggsound.ckpt",
    CC_BY_NC_SA,
    "ReWaS (NAVER AI Lab), https://huggingface.co/lee-j/ReWaS",
    repo="lee-j/ReWaS",
    flag="--rewas-ckpt",
)
PHI = Remote(
    "phi_vggsound.ckpt",
    CC_BY_NC_SA,
    "ReWaS (NAVER AI Lab), https://huggingface.co/lee-j/ReWaS",
    repo="lee-j/ReWaS",
    flag="--phi-ckpt",
)
SYNCHFORMER = Remote(
    "24-01-04T16-39-21.pt",
    "MIT (Synchformer, Vladimir Iashin)",
    "Synchformer, https://github.com/v-iashin/Synchformer",
    url="https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/sync/sync_models/24-01-04T16-39-21/24-01-04T16-39-21.pt",
    md5_prefix="54037d2",
    flag="--synchformer-ckpt",
)
ROBERTA = tuple(
    Remote(
        name, "MIT (RoBERTa, fairseq)", "https://huggingface.co/FacebookAI/roberta-base", repo="FacebookAI/roberta-base"
    )
    for name in ("vocab.json", "merges.txt")
)
# AudioLDM's VAE, HiFi-GAN and CLAP, each in its own file: needed only where a ReWaS file lacks their keys (the
# release builds each from its file, then loads the ReWaS file over it). Their licence is AudioLDM's: not stated
# with the files; read it at the source before use.
AUDIOLDM_LICENCE = "AudioLDM's (not stated with the files; see its repository before use)"
COMPONENTS = {
    "vae": Remote(
        "vae_mel_16k_64bins.ckpt", AUDIOLDM_LICENCE, AUDIOLDM_SOURCE,
        url="https://zenodo.org/records/15678883/files/vae_mel_16k_64bins.ckpt", flag="--vae-ckpt",
    ),
    "vocoder": Remote(
        "hifigan_16k_64bins.ckpt", AUDIOLDM_LICENCE, AUDIOLDM_SOURCE,
        url="https://zenodo.org/records/15678883/files/hifigan_16k_64bins.ckpt", flag="--hifigan-ckpt",
    ),
    "text_encoder": Remote(
        "clap_music_speech_audioset_epoch_15_esc_89.98.pt", AUDIOLDM_LICENCE, AUDIOLDM_SOURCE,
        url="https://zenodo.org/records/15678883/files/clap_music_speech_audioset_epoch_15_esc_89.98.pt",
        flag="--clap-ckpt",
    ),
}  # fmt: skip
MAIN = (REWAS, PHI, SYNCHFORMER, *ROBERTA)
# the prefixes of a ReWaS file's keys that each component file can stand in for
COMPONENT_PREFIXES = {
    "vae": ("first_stage_model.encoder.", "first_stage_model.decoder."),
    "vocoder": ("first_stage_model.vocoder.",),
    "text_encoder": ("cond_stage_models.0.model.text_branch.",),
}


def components_lacking(keys) -> list[str]:
    """The components a ReWaS file holds no weights of (a pruned file), by its keys."""
    keys = [k.removeprefix("module.") for k in keys]  # a file saved from a DDP-wrapped model
    return [c for c, prefixes in COMPONENT_PREFIXES.items() if not any(k.startswith(prefixes) for k in keys)]


def licences_markdown(files: dict[str, Remote]) -> str:
    """LICENSES.md of a converted model folder: every file it was made from, its source and its licence."""
    lines = [
        "# Licences of this model's weights",
        "",
        "This folder was converted from the files below. Their licences apply to it; the most restrictive is",
        "ReWaS's CC BY-NC-SA 4.0: non-commercial use, and anything made from it under the same licence.",
        "",
        "| file | source | licence |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {r.source} | {r.licence} |" for name, r in files.items()]
    return "\n".join(lines) + "\n"


def known(filename: str) -> Remote | None:
    """The released file of this name, if it is one."""
    return next((r for r in (*MAIN, *COMPONENTS.values()) if r.filename == filename), None)
