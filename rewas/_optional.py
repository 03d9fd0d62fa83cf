"""Optional dependencies: the core install is what `rewas generate` needs; the rest comes with pip extras.

    pip install "rewas[eval]"     rewas evaluate (AV-Align, onsets, FD/FAD/KL/IS, CLAP score)
    pip install "rewas[train]"    rewas train, rewas corpus
    pip install "rewas[convert]"  rewas download (rewas convert itself needs nothing more)
    pip install "rewas[plot]"     rewas energy --plot
    pip install "rewas[ui]"       rewas ui (the studio page)
    pip install "rewas[layers]"   a layer's region (the tracker that follows it)
    pip install "rewas[openvino]" --runtime openvino (large models on a CPU, rewas.runtime)
    pip install "rewas[dev]"      all of them, plus the test tools (what `make install` sets up)

A missing one is the user's to fix, so it is a UserError (the CLI: one line, exit 2) that names the extra.
EXTRAS below must match [project.optional-dependencies] in pyproject.toml (a test checks).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import UserError

# extra -> {module imported: distribution pip installs}
EXTRAS: dict[str, dict[str, str]] = {
    "eval": {"cv2": "opencv-python-headless", "librosa": "librosa", "scipy": "scipy", "transformers": "transformers"},
    "train": {"accelerate": "accelerate", "scipy": "scipy", "librosa": "librosa"},
    "convert": {"huggingface_hub": "huggingface-hub"},
    "plot": {"matplotlib": "matplotlib"},
    "ui": {"gradio": "gradio"},
    "layers": {"cv2": "opencv-python-headless"},
    "openvino": {"openvino": "openvino"},
}


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed (still an ImportError for API callers)."""


def _message(what: str, extra: str, missing: list[str], why: str = "") -> str:
    names = ", ".join(EXTRAS[extra].get(m, m) for m in missing)
    return f'{what} needs the [{extra}] extra ({names}): pip install "rewas[{extra}]"' + (f" ({why})" if why else "")


def require(module: str, *, extra: str, for_: str) -> ModuleType:
    """Import `module` (e.g. "cv2"), or raise MissingExtraError: `<for_> needs the [<extra>] extra ...`."""
    top = module.split(".")[0]
    if top not in EXTRAS[extra]:
        raise KeyError(f"{top} is not part of the [{extra}] extra")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # installed but broken (a missing shared library, an incompatible version) also lands here: say why
        why = "" if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == top else str(e).strip()
        raise MissingExtraError(_message(for_, extra, [top], why.splitlines()[0] if why else "")) from e


def require_extra(extra: str, *, for_: str, modules: tuple[str, ...] | None = None) -> None:
    """Fail fast, before any work, if modules of an extra (default: all of them) are not installed.

    Only looks for them (no import): a command checks here first, and `require` at the import reports the rest.
    """
    wanted = modules if modules is not None else tuple(EXTRAS[extra])
    missing = [m for m in wanted if not _installed(m)]
    if missing:
        raise MissingExtraError(_message(for_, extra, missing))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a stub module in sys.modules without a spec, a broken parent package
        return False


def lazy_names(package: str, where: dict[str, str]):
    """A package's module `__getattr__` that imports each of its names (name -> the submodule holding it) on first
    use and keeps it: `rewas --help` and argument errors then answer without importing torch (about 1 s)."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
