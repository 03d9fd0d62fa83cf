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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class Remote:
    filename: str
    repo: str | None = None  # a Hugging Face model repository
    url: str | None = None
    md5_prefix: str | None = None


REWAS = Remote("audioldm_m_rewas_vggsound.ckpt", repo="lee-j/ReWaS")
PHI = Remote("phi_vggsound.ckpt", repo="lee-j/ReWaS")
SYNCHFORMER = Remote(
    "24-01-04T16-39-21.pt",
    url="https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/sync/sync_models/24-01-04T16-39-21/24-01-04T16-39-21.pt",
    md5_prefix="54037d2",
)
ROBERTA = (Remote("vocab.json", repo="FacebookAI/roberta-base"), Remote("merges.txt", repo="FacebookAI/roberta-base"))
FILES = (REWAS, PHI, SYNCHFORMER, *ROBERTA)


class DownloadError(RuntimeError):
    pass


def _where(remote: Remote) -> str:
    return remote.url or f"https://huggingface.co/{remote.repo}/resolve/main/{remote.filename}"  # the file, not a page


def check_network(timeout: float = 5.0) -> None:
    hosts = {urlparse(r.url).hostname for r in FILES if r.url} | {"huggingface.co"}
    for host in sorted(hosts):
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError:
            listing = "; ".join(f"{r.filename} <- {_where(r)}" for r in FILES)
            raise DownloadError(
                f"cannot reach {host} (no network?). Fetch the files by hand ({listing}), then run "
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
    """Fetch every released file into `folder`; then (unless convert_to is None) write our model folder."""
    folder = Path(folder)
    check_network()  # before the folder exists: an offline run leaves nothing behind
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for remote in FILES:
        progress(f"fetching {remote.filename}")
        paths[remote.filename] = fetch(remote, folder)
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
    )
    return Path(convert_to)
