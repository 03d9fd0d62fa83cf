"""Where the two heaviest networks run on a CPU: PyTorch, or OpenVINO (the [openvino] extra).

With the paper model, a 5 s clip's time on a CPU is almost all the Motionformer video encoder (14 segments) and the
denoiser (25 guided adapter + UNet calls). OpenVINO runs both faster than PyTorch eager on the CPUs measured
(docs/speed.md): its kernels fuse the normalisations and activations into the matmuls and convolutions, which
PyTorch runs one by one. Everything else (frames, phi, text, sampler, VAE, vocoder) stays in PyTorch.

The networks are converted from our own modules (traced in their dtype, made to compute in f32 from fp16 weights)
into OpenVINO's format once and kept in a cache folder, keyed by their weights, their config and the versions of
rewas and OpenVINO: converting the paper model takes about 31 s, compiling a converted one about 2 s. Precision
follows the pipeline's dtype (bf16 or fp32).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import mmap
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__
from ._optional import require
from .errors import UserError, one_line

RUNTIMES = ("auto", "torch", "openvino")
# `auto` takes OpenVINO for a model at least this large (the paper's adapter + UNet: 598 M). The embedded model
# (15 M) stays on PyTorch: for a short clip, importing and loading OpenVINO costs more than its faster steps save.
AUTO_MIN_PARAMETERS = 100_000_000
KEEP = 3  # converted models kept per kind (an older one is converted again if it is used again)
NAMES = {"step": "adapter and UNet", "video_encoder": "video encoder"}
FP16, DECOMPRESS = "rewas_fp16:", "rewas_decompress:"  # bf16 weights stored as fp16 after saving, and their casts
FORMAT = 2  # bump when what an entry holds changes (its graph's inputs, outputs or weights' form): older ones go unused


def cache_root() -> Path:
    """$REWAS_CACHE, else $XDG_CACHE_HOME/rewas, else ~/.cache/rewas."""
    if os.environ.get("REWAS_CACHE"):
        return Path(os.environ["REWAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rewas"


def installed() -> bool:
    from ._optional import _installed

    return _installed("openvino")


def resolve(value: str, device: torch.device, parameters: int) -> tuple[str, str]:
    """`value` (auto, torch, openvino) for a model whose adapter + UNet have `parameters` on `device` -> the runtime
    and why. An explicit openvino that cannot run is a UserError."""
    if value not in RUNTIMES:
        raise UserError(f"runtime {value!r}: choose one of {', '.join(RUNTIMES)}")
    if value == "torch":
        return "torch", "asked for"
    if device.type != "cpu":
        if value == "openvino":
            raise UserError(
                f"runtime openvino runs on a CPU, not on {device.type}: use --device cpu or --runtime torch"
            )
        return "torch", f"auto: torch on {device.type}"
    if value == "openvino":
        require("openvino", extra="openvino", for_="--runtime openvino")
        return "openvino", "asked for"
    if parameters < AUTO_MIN_PARAMETERS:
        return "torch", f"auto: torch for a model of {parameters / 1e6:.0f} M parameters (OpenVINO from 100 M)"
    if not installed():
        return "torch", 'auto: torch (OpenVINO would be faster for this model: pip install "rewas[openvino]")'
    return "openvino", f"auto: OpenVINO is installed and the model has {parameters / 1e6:.0f} M parameters"


class _Step(nn.Module):
    """One denoiser call: adapter residuals (scaled) into the UNet."""

    def __init__(self, unet: nn.Module, adapter: nn.Module):
        super().__init__()
        self.unet, self.adapter = unet, adapter

    def forward(self, x, t, text, hint, control_scale):
        control = [c * control_scale for c in self.adapter(x, hint, t, text)]
        return self.unet(x, t, text, control=control)


class _Segment(nn.Module):
    """The video encoder on one batch of segments (N, T, 3, H, W) -> (N * T', C)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder._encode(x)


class UnreadableEntry(Exception):
    """A cache entry whose files OpenVINO cannot read."""


class CompiledNet:
    """A converted network (`xml`) compiled for a precision, called with torch tensors; returns its first output as
    a torch tensor of that precision. Each call has its own infer request: the studio and `rewas batch` call from
    several threads."""

    def __init__(self, xml: Path, dtype: torch.dtype):
        import numpy as np

        self.xml, self.dtype = xml, dtype
        try:
            weights = _map(xml.with_suffix(".bin"))
            buffer = np.frombuffer(weights, np.uint8)  # while it lives, the mapping cannot be closed
            model = _read(xml, buffer)
        except (OSError, ValueError, RuntimeError) as e:  # missing, empty, cut short, not OpenVINO's
            raise UnreadableEntry(f"{xml.parent}: {one_line(e)}") from e
        self.compiled = _compile(model, dtype)  # set first, so freed first: before the memory it reads
        self._weights = (weights, buffer)
        self._shapes: set[tuple] = set()

    def with_dtype(self, dtype: torch.dtype) -> CompiledNet:
        """The same network compiled for another precision (its weights come from the converted file)."""
        try:
            return CompiledNet(self.xml, dtype)
        except UnreadableEntry as e:  # left the cache, or changed there: its PyTorch weights were freed
            raise UserError(f"the converted model cannot be read any more ({e}); load the model again") from None

    def __call__(self, *tensors) -> torch.Tensor:
        assert len(tensors) == len(self.compiled.inputs)
        inputs = [
            (t if torch.is_tensor(t) else torch.tensor(t)).detach().to("cpu", torch.float32).contiguous().numpy()
            for t in tensors
        ]
        out = self.compiled.create_infer_request().infer(inputs)[0]
        shapes = tuple(a.shape for a in inputs)
        if shapes not in self._shapes:  # OpenVINO has packed the weights for these shapes into its own memory
            self._shapes.add(shapes)
            _drop_resident(self._weights[0])
        return torch.from_numpy(out.copy()).to(self.dtype)


def release(*modules: nn.Module) -> None:
    """Free modules' weights (to the meta device: shapes and dtypes stay) once OpenVINO holds its own copy: the
    paper's adapter, UNet and video encoder are 1.2 GB in bf16, which would otherwise be held twice."""
    for module in modules:
        module.to("meta")
    _return_freed_memory()


def _return_freed_memory() -> None:
    """glibc keeps freed blocks of its heap for later; hand them back, or the freed weights stay resident."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl and others: no such library or call
        pass


def released(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


log = logging.getLogger(__name__)
_lock = threading.Lock()  # two threads converting the same model would race for its cache folder


def fingerprint(module: nn.Module, config: dict) -> str:
    """A key for a network's converted form: its weights' bytes, its config and the versions that convert it."""
    import openvino

    h = hashlib.sha256(json.dumps([config, __version__, openvino.__version__, FORMAT], sort_keys=True).encode())
    for name, t in module.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:24]


def _convert(name: str, net: nn.Module, example: tuple, shapes: list, key: str) -> Path:
    """The network's converted model in the cache (converted now if it is not there yet) -> its .xml path. Its
    inputs are f32 of `shapes` (-1: any size), whatever the example's sizes and dtypes."""
    import openvino as ov

    root = cache_root() / "openvino"
    folder = root / f"{name}-{key}"
    xml = folder / "model.xml"
    with _lock:
        if _whole(folder):
            xml.touch()  # recently used: kept by `_evict`
            return xml
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        except OSError as e:
            raise UserError(
                f"{root}: cannot keep converted models there ({e.strerror}); set REWAS_CACHE elsewhere"
            ) from None
        log.info(
            "converting the %s for OpenVINO, once for these weights (the paper's two: about 30 s) into %s",
            NAMES[name],
            root,
        )
        try:
            # traced in the weights' own dtype: cast to fp32 for it, the paper's weights were held twice more
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes read in Python: kept dynamic below
                warnings.simplefilter("ignore", DeprecationWarning)  # OpenVINO traces with torch.jit (docs/speed.md)
                # OpenVINO's conversion misreads bf16 weights held channels-last (the network gave NaNs; fp32 ones
                # convert exactly), so it gets them in the default layout; PyTorch lays them out again when it runs
                net.to(memory_format=torch.contiguous_format)
                model = ov.convert_model(**_source(net.eval(), example))
            for port, shape in zip(model.inputs, shapes):
                port.get_node().set_partial_shape(ov.PartialShape(shape))
            _compute_in_f32(model)
            ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)  # an fp32 model stays fp32
            _store_fp16(tmp / "model.xml")
            del model
            _land(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed conversion leaves nothing behind
        _evict(root, name)
        return xml


def _land(tmp: Path, folder: Path) -> None:
    """Our converted entry in `tmp` becomes the cache's `folder`, whole or not at all: another process never reads a
    half-written entry. Where another process that converted the same weights landed first, its entry is kept (removed,
    it could be read as it went) and ours is left for the caller to drop. The rename is tried first, and fails onto a
    folder that holds anything."""
    for attempt in range(3):
        try:
            tmp.rename(folder)
            return
        except OSError:
            if _whole(folder):
                return
            if attempt == 2:
                raise
        # what is left of an entry whose removal (`_evict`) was killed: moved aside at once, then removed; if it is
        # whole after all (another process landed its entry meanwhile), it is put back
        aside = folder.with_name(f".{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(aside)
        except FileNotFoundError:
            continue  # gone meanwhile
        if _whole(aside):
            try:
                aside.rename(folder)
                return
            except OSError:
                pass
        shutil.rmtree(aside, ignore_errors=True)


def _whole(folder: Path) -> bool:
    """Whether a cache entry has both its files (entries land whole, by renaming; `_evict` may be killed midway)."""
    return (folder / "model.xml").is_file() and (folder / "model.bin").is_file()


def _source(net: nn.Module, example: tuple) -> dict:
    """`ov.convert_model`'s arguments for `net`: OpenVINO's own TorchScript decoder, tracing without
    `torch.jit.trace`'s check, which traces the network twice more to compare (12 of the paper model's 42 s of
    converting); where that decoder takes no tracing options (older OpenVINO), the network and its example, which
    OpenVINO traces with the check."""
    import inspect

    try:
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder
    except ImportError:
        return {"input_model": net, "example_input": example}
    if "trace_kwargs" not in inspect.signature(TorchScriptPythonDecoder).parameters:
        return {"input_model": net, "example_input": example}
    return {"input_model": TorchScriptPythonDecoder(net, example_input=example, trace_kwargs={"check_trace": False})}


def _compute_in_f32(model) -> None:
    """Make a graph traced in bf16 compute in f32, as if it had been traced in fp32. Its bf16 weights are left as
    they are (shared with PyTorch's: no copy), each behind a cast to f32; `_store_fp16` then stores them in fp16
    in the saved files, the form OpenVINO's own fp16 compression gives. Compiled for bf16, OpenVINO packs them into
    its own copy and reads the file no more; compiled for f32, it computes in f32 (2e-6 from PyTorch fp32).
    Simpler forms do worse (docs/speed.md, Converting): a graph left in bf16 computes with the file in place and
    stays bf16 when compiled for f32; bf16 weights marked for decompression are unpacked into f32 copies."""
    import numpy as np
    import openvino as ov

    for op in model.get_ordered_ops():
        kind, out = op.get_type_name(), op.get_output_element_type(0) if op.get_output_size() else None
        if kind == "Constant" and out == ov.Type.bf16:
            users = list(op.output(0).get_target_inputs())
            wide = ov.opset13.convert(op, "f32")
            bits = op.get_data().view(np.uint16)  # OpenVINO hands bf16 data over as float16-typed bits
            if _fits_fp16(_bf16_values(bits)):  # else a plain cast, folded into f32 when compiled
                name = op.get_friendly_name()
                op.set_friendly_name(f"{FP16}{name}")
                wide.set_friendly_name(f"{DECOMPRESS}{name}")
            for user in users:
                user.replace_source_output(wide.output(0))
        elif kind == "Convert" and out == ov.Type.bf16:  # the model's own casts to its dtype
            op.set_destination_type(ov.Type.f32)
        elif kind == "Parameter":
            op.set_element_type(ov.Type.f32)
    model.validate_nodes_and_infer_types()


def _store_fp16(xml: Path) -> None:
    """In a saved graph, store the weights `_compute_in_f32` named in fp16 (same size as bf16, so in place in the
    .bin, one at a time: converting them in memory held 0.9 GB more for the paper model; exact but for values
    under 2^-17, see `_fits_fp16`), and mark their casts to f32 as OpenVINO's own fp16 compression does (the
    rt_info attribute "decompression", which Python cannot set; without it OpenVINO folds the casts when it
    compiles, holding f32 copies of the weights)."""
    import xml.etree.ElementTree as ET

    import numpy as np

    tree = ET.parse(xml)
    regions: dict[tuple[int, int], set[bool]] = {}  # (offset, size) in the .bin -> named or not (saving dedups)
    for layer in tree.getroot().iter("layer"):
        name, kind = layer.get("name", ""), layer.get("type")
        if kind == "Const":
            data, named = layer.find("data"), name.startswith(FP16)
            regions.setdefault((int(data.get("offset")), int(data.get("size"))), set()).add(named)
            if named:
                data.set("element_type", "f16")
                layer.find("output/port").set("precision", "FP16")
        elif kind == "Convert" and name.startswith(DECOMPRESS):
            layer.find("input/port").set("precision", "FP16")
            info = ET.Element("rt_info")
            ET.SubElement(info, "attribute", name="decompression", version="0")
            layer.insert(1, info)  # after <data>, as OpenVINO writes it
    shared = _shared(regions)  # saving stores equal bytes once: a zero bias may share a zero buffer's bytes
    with open(xml.with_suffix(".bin"), "r+b") as f:
        for offset, size in sorted(key for key, kinds in regions.items() if True in kinds):
            f.seek(offset)
            bits = f.read(size)
            half = _bf16_values(np.frombuffer(bits, np.uint16)).astype(np.float16).tobytes()
            if (offset, size) in shared and half != bits:  # rewritten, they would change the other constant too
                # the files being written are in a temporary folder, discarded whole when converting fails
                raise RuntimeError(f"{xml}: a weight's bytes are shared with another constant")
            f.seek(offset)
            f.write(half)
    tree.write(xml, encoding="utf-8", xml_declaration=True)


def _shared(regions: dict[tuple[int, int], set[bool]]) -> set[tuple[int, int]]:
    """The regions ((offset, size) in a .bin -> whether each constant stored there is to convert) whose bytes another
    constant also reads: one of another kind at the same place, or any constant at an overlapping one."""
    shared = {key for key, kinds in regions.items() if len(kinds) > 1}
    active: list[tuple[int, int]] = []  # the regions before this one that it may overlap
    for offset, size in sorted(regions):
        active = [key for key in active if key[0] + key[1] > offset]
        if active:
            shared |= {*active, (offset, size)}
        active.append((offset, size))
    return shared


def _fits_fp16(values) -> bool:
    """Whether a weight (float32 values of bf16 ones) is stored in fp16, by OpenVINO's own rule for its fp16
    compression (`check_f16_compression`): kept in f32 where 75% or more of its values would lose precision (fp16
    subnormals below 2^-17 drop bf16's low bits; under 2^-24 they vanish), so a weight of tiny values stays exact.
    Stricter than that rule on large values: one beyond fp16's range keeps the weight in f32 (OpenVINO clamps)."""
    import numpy as np

    magnitude = np.abs(values)
    if magnitude.max(initial=0) > 65504:
        return False
    tiny = values[(magnitude < 2**-14) & (values != 0)]  # above that, fp16 holds every bf16 value exactly
    lost = np.abs(tiny.astype(np.float16).astype(np.float32) - tiny) > 1e-4 * np.abs(tiny)
    return np.count_nonzero(lost) < 0.75 * values.size


def _bf16_values(bits):
    """bf16 bit patterns (uint16 array) -> their values as float32 (exact: bf16 is float32's upper half)."""
    import numpy as np

    return (bits.astype(np.uint32) << 16).view(np.float32)


def _evict(root: Path, name: str) -> None:
    """Keep the KEEP most recently used converted models of a kind (the paper's step is 1-2 GB on disk)."""
    entries = sorted(root.glob(f"{name}-*/model.xml"), key=lambda p: p.stat().st_mtime, reverse=True)
    for xml in entries[KEEP:]:
        shutil.rmtree(xml.parent, ignore_errors=True)
    for left in root.glob(f".{name}-*"):  # conversions and removals killed midway (a live one is minutes old)
        try:
            if time.time() - left.stat().st_mtime > 86400:
                shutil.rmtree(left, ignore_errors=True)
        except OSError:
            pass  # removed meanwhile


def _map(path: Path) -> mmap.mmap:
    """The converted weights, mapped copy-on-write: OpenVINO's tensors must be writable, though it never writes to
    its weights (its own mapping of them is read-only). On a system that never overcommits memory, such a mapping
    counts in full against the commit limit. Mapped by us, not by OpenVINO, so that `_drop_resident` can give back
    the pages it has read."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def _drop_resident(weights: mmap.mmap) -> None:
    """Unmap the resident pages of the converted weights (they stay in the page cache; a later read maps them again).
    In bf16, OpenVINO reads nearly all of them only while it packs its own copy for new input shapes: the paper
    model held 880 MiB of them in its resident memory for nothing (docs/speed.md). In fp32 it computes with some of
    them in place, and those come back at the next call."""
    if hasattr(mmap, "MADV_DONTNEED"):  # Linux and macOS; unwritten pages of a file mapping lose nothing by it
        weights.madvise(mmap.MADV_DONTNEED)


def _read(xml: Path, weights):
    """The converted model, its constants in `weights` (the .bin file's bytes as a uint8 array, which the compiled
    model reads from while it lives)."""
    import openvino as ov

    return ov.Core().read_model(xml.read_text(), ov.Tensor(weights, shared_memory=True))


def _compile(model, dtype: torch.dtype):
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if dtype == torch.bfloat16 else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
    }
    return ov.Core().compile_model(model, "CPU", config)


def compile_step(unet: nn.Module, adapter: nn.Module, dtype: torch.dtype) -> CompiledNet:
    """step(x (B, C, T, F), t (B,), text (B, D), hint (B, C, T, F), control_scale) -> eps (B, C, T, F), any B and T."""
    cfg = unet.config
    freq = adapter.input_hint_block[1].in_features
    mult = 2 ** (len(cfg.channel_mult) - 1)
    held = next(unet.parameters()).dtype
    example = (
        torch.zeros(2, cfg.in_channels, 8 * mult, freq, dtype=held),
        torch.tensor([500.0, 500.0]),
        torch.zeros(2, cfg.film_dim, dtype=held),
        torch.zeros(2, cfg.in_channels, 8 * mult, freq, dtype=held),
        torch.tensor(1.0),
    )
    shapes = [
        [-1, cfg.in_channels, -1, freq],
        [-1],  # the sampler's whole timesteps: exact in f32
        [-1, cfg.film_dim],
        [-1, cfg.in_channels, -1, freq],
        [],
    ]
    step = _Step(unet, adapter)
    key = fingerprint(step, {"unet": dataclasses.asdict(cfg), "freq": freq})
    return _compiled("step", step, example, shapes, key, dtype)


def compile_video_encoder(encoder: nn.Module, dtype: torch.dtype) -> CompiledNet:
    """encode(segments (N, T, 3, H, W)) -> (N * T', C), as `VideoEncoder._encode`."""
    cfg = encoder.config
    held = next(encoder.parameters()).dtype
    example = (torch.zeros(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size, dtype=held),)
    shapes = [[-1, cfg.num_frames, 3, cfg.img_size, cfg.img_size]]
    wrapped = _Segment(encoder)
    return _compiled("video_encoder", wrapped, example, shapes, fingerprint(wrapped, dataclasses.asdict(cfg)), dtype)


def _compiled(name: str, net: nn.Module, example: tuple, shapes: list, key: str, dtype: torch.dtype) -> CompiledNet:
    """The network compiled from its cache entry, converted first if there is none. An entry that cannot be read (a
    file cut short or changed outside rewas: a whole entry is renamed into place) is converted again, once."""
    xml = _convert(name, net, example, shapes, key)
    try:
        return CompiledNet(xml, dtype)
    except UnreadableEntry as e:
        log.warning("the cached %s cannot be read (%s): converting it again", NAMES[name], e)
        shutil.rmtree(xml.parent, ignore_errors=True)
        return CompiledNet(_convert(name, net, example, shapes, key), dtype)
