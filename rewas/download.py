"""`rewas download DIR`: fetch the released files (machines with internet), verify them, then convert.

Hugging Face files go through huggingface_hub (resumable, checked against the hub's hashes); the Synchformer
checkpoint comes from its release URL with HTTP range resume and an MD5 check. Without network this fails in
seconds with the list of files to fetch by hand.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .errors import DownloadError
from .release import COMPONENTS, MAIN, PHI, REWAS, SYNCHFORMER, Remote, components_lacking


def _listing() -> str:
    """Every file, where its link fetches it, and its licence; then the component files and when they count."""
    main = "; ".join(f"{r.filename} <- {r.link} [{r.licence.split(' (')[0]}]" for r in MAIN)
    parts = ", ".join(f"{r.filename} <- {r.link}" for r in COMPONENTS.values())
    return f"{main}; only if the ReWaS file lacks the VAE, HiFi-GAN or CLAP weights: {parts}"


def check_network(timeout: float = 5.0) -> None:
    hosts = {urlparse(r.url).hostname for r in MAIN if r.url} | {"huggingface.co"}
    for host in sorted(hosts):
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError:
            raise DownloadError(
                f"cannot reach {host} (no network?). Fetch the files by hand ({_listing()}), then run "
                "`rewas convert --rewas-ckpt ... --phi-ckpt ... --synchformer-ckpt ... --roberta-dir ... -o DIR`"
            ) from None


def _url_download(remote: Remote, target: Path) -> Path:
    partial = target.with_suffix(target.suffix + ".part")
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=30) as response, open(partial, "ab" if start else "wb") as f:
        if start and response.status != 206:  # the server ignored the range: start over
            f.truncate(0)
        while chunk := response.read(1 << 20):
            f.write(chunk)
    if remote.md5_prefix:
        md5 = hashlib.md5()
        with open(partial, "rb") as f:
            while chunk := f.read(1 << 20):
                md5.update(chunk)
        if not md5.hexdigest().startswith(remote.md5_prefix):
            partial.unlink()
            raise DownloadError(f"{remote.filename}: checksum mismatch (md5 {md5.hexdigest()}), deleted; try again")
    os.replace(partial, target)
    return target


def fetch(remote: Remote, folder: Path) -> Path:
    target = folder / remote.filename
    if target.is_file():
        return target
    if remote.repo:
        from ._optional import require

        hub = require("huggingface_hub", extra="convert", for_="rewas download")
        return Path(hub.hf_hub_download(remote.repo, remote.filename, local_dir=folder))
    return _url_download(remote, target)


def download(folder: str | os.PathLike, convert_to: str | os.PathLike | None = None, progress=print) -> Path:
    """Fetch the released files into `folder`: the ReWaS file first; AudioLDM's VAE, HiFi-GAN and CLAP files only if
    it lacks their weights. Each file's source and licence are said before it is fetched. Then (unless convert_to
    is None) write our model folder, with a LICENSES.md of what it was made from."""
    from .checkpoint import read_state

    folder = Path(folder)
    check_network()  # before the folder exists: an offline run leaves nothing behind
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for remote in MAIN:
        progress(f"fetching {remote.filename} from {remote.source}; licence: {remote.licence}")
        paths[remote.filename] = fetch(remote, folder)
    lacking = components_lacking(read_state(paths[REWAS.filename], "state_dict").keys())  # memory-mapped: keys only
    for component in lacking:
        remote = COMPONENTS[component]
        progress(
            f"the ReWaS file has no {component} weights: fetching {remote.filename} from {remote.source}; "
            f"licence: {remote.licence}"
        )
        try:
            paths[remote.filename] = fetch(remote, folder)
        except OSError as e:
            raise DownloadError(f"{remote.filename}: {e}; fetch it by hand ({remote.link}, {remote.source})") from None
    if convert_to is None:
        return folder
    from .convert import convert

    progress(f"converting into {convert_to}")
    convert(
        convert_to,
        rewas_ckpt=paths[REWAS.filename],
        phi_ckpt=paths[PHI.filename],
        synchformer_ckpt=paths[SYNCHFORMER.filename],
        roberta_dir=folder,
        # each component file by its convert option: --hifigan-ckpt -> hifigan_ckpt
        **{r.flag[2:].replace("-", "_"): paths[r.filename] for c, r in COMPONENTS.items() if c in lacking},
    )
    return Path(convert_to)
