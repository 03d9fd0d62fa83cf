"""The README cannot drift from the code: its commands parse with the real CLI parser, the quick ones run, its
Python example runs, it stays a front page, and every relative link in the docs resolves.

What runs, and what the test changes before running it (nothing else is changed):

* Every `rewas ...` line in a fenced block of README.md, docs/training.md and docs/default_model.md must parse
  with `rewas.cli.build_parser()` as written, placeholders (VIDEO, OUT.mp4, CACHE_DIR, ...) included.
* README lines of `rewas info`, `rewas energy`, `rewas evaluate` and `rewas generate` run in a temporary folder,
  through `rewas.cli.main`. Inputs the README names that do not exist are made there under those names:
  a video for `generate` (a 2 s bouncing ball, `samples.bouncing_ball_frames`), a video with a click-track
  soundtrack for `energy`, an energy CSV for `--energy-in`, a click track for `--energy-from`, a one-clip
  manifest for `evaluate`.
* Substitutions, to keep this test near 30 s on 2 cores: a `generate` line whose `--model` is a folder the test
  does not have (the converted paper model) runs with `--model debug --steps 1` instead, and with `--device cpu`
  where it asks for CUDA and the machine has none. The first `generate` line with the embedded default model
  runs as written (the model's own 20 steps); later ones get `--steps 2`.
* Only parsed: `convert` and `download` (they need the released files or the network), `train` (a cache and
  minutes), `corpus` (minutes at 40 clips per class), `ui` (a server; tests/test_studio_browser.py runs it).
* The README's Python block runs with `exec`, in the temporary folder where its video file name is a generated
  clip, with `steps=2` in place of the example's `steps=N`. So does every Python block of docs/*.md, as written
  (the default model's 20 steps), with warnings as errors. A `py` block needs something the test does not
  start (the studio's API example needs a server; tests/test_studio_api.py runs its flow) and is not run.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from rewas import samples
from rewas.cli import build_parser, main
from rewas.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CHECKED_DOCS = [README, ROOT / "docs" / "training.md", ROOT / "docs" / "default_model.md"]
MAX_LINES = 150
RUN = ("info", "energy", "evaluate", "generate")
PARSE_ONLY = ("convert", "download", "train", "corpus", "ui")
REGISTRY_HOSTS = (
    "pypi.org",
    "pythonhosted.org",
    "download.pytorch.org",
    "huggingface.co",
    "anaconda.org",
    "npmjs.com",
    "crates.io",
)


# --------------------------------------------------------------------------------------------------- extraction


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(info string, body) of every fenced code block, in order."""
    return re.findall(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def shell_lines(path: Path) -> list[str]:
    """Command lines of the non-Python fenced blocks, backslash continuations joined."""
    lines = []
    for info, body in fenced_blocks(path):
        if info not in ("", "sh", "bash", "console", "shell"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        lines += [line.strip() for line in joined.splitlines() if line.strip()]
    return lines


def rewas_argv(line: str) -> list[str] | None:
    """The argument list after `rewas` (or `... -m rewas`), or None if the line is not a rewas command."""
    tokens = shlex.split(line, comments=True)
    if tokens[:1] == ["rewas"]:
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i : i + 2] == ["-m", "rewas"]:
            return tokens[i + 2 :]
    return None


def rewas_lines(path: Path) -> list[str]:
    return [line for line in shell_lines(path) if rewas_argv(line) is not None]


def without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```[ \t]*$", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M)}


# --------------------------------------------------------------------------------------------------- static checks


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"README.md has {len(text.splitlines())} lines (at most {MAX_LINES})"
    quick_start = [line for info, body in fenced_blocks(README)[:1] for line in body.splitlines()]
    assert [shlex.split(line, comments=True) for line in quick_start] == [["make", "demo"], ["make", "test"]]
    assert "make install" in text
    for host in REGISTRY_HOSTS:
        assert host not in text.lower(), f"README.md names a registry host: {host}"
    assert "CC BY-NC-SA" in text, "the licence note about the released code is gone"


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = set(re.findall(r"`make (\w+)`", README.read_text(encoding="utf-8")))
    named |= {
        tokens[1]
        for tokens in (shlex.split(line, comments=True) for line in shell_lines(README))
        if tokens[:1] == ["make"]
    }
    assert named and named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_scripts_named_in_docs_exist():
    for path in CHECKED_DOCS:
        for line in shell_lines(path):
            tokens = shlex.split(line, comments=True)
            if tokens[:1] == ["python"] and tokens[1:2] and tokens[1].endswith(".py"):
                assert (ROOT / tokens[1]).is_file(), f"{path.name}: {tokens[1]} does not exist"


@pytest.mark.parametrize(
    "path",
    [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_resolve(path):
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code(path.read_text(encoding="utf-8")))
    for link in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: link {link} points to a missing file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{path.name}: link {link}: no heading with that anchor in {file.name}"


def test_docs_have_rewas_commands():
    assert len(rewas_lines(README)) >= 8, "the README's command-line section lost its commands"
    covered = {rewas_argv(line)[0] for line in rewas_lines(README)}
    assert covered >= set(RUN) | set(PARSE_ONLY), (
        f"README shows no line for {sorted(set(RUN) | set(PARSE_ONLY) - covered)}"
    )


@pytest.mark.parametrize("path", CHECKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rewas_line_parses(path):
    parser = build_parser()
    for line in rewas_lines(path):
        try:
            parser.parse_args(rewas_argv(line))
        except SystemExit:
            pytest.fail(f"{path.name}: `{line}` does not parse with rewas.cli.build_parser()")


# --------------------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread while the README runs, restored afterwards. With two OpenMP threads per process, a 2-core
    machine busy with other processes ran this module in 122 s; with one, in 15 s under the same load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clip(path: Path, with_sound: bool = False) -> None:
    """A 2 s MP4 clip at `path`, whatever its name (placeholders such as VIDEO have no suffix to pick a format)."""
    audio = samples.click_track(2.0, [0.4, 1.2, 1.6]) if with_sound else None
    tmp = path.with_name(path.name + ".tmp.mp4")
    samples.write_video(tmp, samples.bouncing_ball_frames(bounce_period=0.8), 2.0, 25, audio=audio)
    tmp.rename(path)


def _make_inputs(args) -> None:
    """Make the inputs a README command names (in the current folder) that do not exist yet."""
    from rewas.config import AudioConfig
    from rewas.energy import write_csv

    if args.command == "generate":
        if not Path(args.video).exists():
            _clip(Path(args.video))
        if args.energy_in and not Path(args.energy_in).exists():
            t = np.arange(200) / 100.0
            write_csv(args.energy_in, (-8 + 4 * np.exp(-((t % 0.8) / 0.1))).astype(np.float32), AudioConfig())
        if args.energy_from and not Path(args.energy_from).exists():
            from rewas.audio import write_wav

            write_wav(args.energy_from, samples.click_track(2.0, [0.3, 0.9, 1.5]), 16000)
    elif args.command == "energy" and not Path(args.input).exists():
        _clip(Path(args.input), with_sound=True)
    elif args.command == "evaluate" and not Path(args.manifest).exists():
        _clip(Path("generated_clip.mp4"), with_sound=True)
        _clip(Path("reference_clip.mp4"), with_sound=True)
        item = {
            "video": "generated_clip.mp4",
            "audio": "generated_clip.mp4",
            "reference": "reference_clip.mp4",
            "prompt": "a rubber ball bouncing on a wooden floor",
        }
        Path(args.manifest).write_text(json.dumps(item) + "\n")


def _set_option(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def _default_model(argv: list[str]) -> bool:
    return "--model" not in argv or argv[argv.index("--model") + 1] == "default"


def _substitute(argv: list[str], first_default: bool) -> list[str]:
    """The substitutions listed in the module docstring; nothing else changes."""
    import torch

    argv = list(argv)
    if argv[0] != "generate":
        return argv
    if _default_model(argv):
        if not first_default:
            _set_option(argv, "--steps", "2")
        return argv
    model = argv[argv.index("--model") + 1]
    if model in PRESETS or Path(model).is_dir():
        return argv
    _set_option(argv, "--model", "debug")
    _set_option(argv, "--steps", "1")
    if "--device" in argv and argv[argv.index("--device") + 1].startswith("cuda") and not torch.cuda.is_available():
        _set_option(argv, "--device", "cpu")
    return argv


README_RUNS = [line for line in rewas_lines(README) if rewas_argv(line)[0] in RUN]
FIRST_DEFAULT = next(
    (line for line in README_RUNS if rewas_argv(line)[0] == "generate" and _default_model(rewas_argv(line))), None
)


@pytest.mark.parametrize("line", README_RUNS, ids=[f"{i}-{rewas_argv(line)[0]}" for i, line in enumerate(README_RUNS)])
def test_readme_command_runs(line, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    argv = _substitute(rewas_argv(line), first_default=line == FIRST_DEFAULT)
    args = build_parser().parse_args(argv)
    _make_inputs(args)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, f"`rewas {shlex.join(argv)}` exited {code}: {err.strip()[-800:]}"
    outputs = [getattr(args, name, None) for name in ("output", "wav", "energy_out", "out", "plot", "markdown")]
    for out in filter(None, outputs):
        assert Path(out).is_file() and Path(out).stat().st_size > 0, f"`rewas {shlex.join(argv)}` did not write {out}"


def test_readme_python_example_runs(workdir, monkeypatch):
    blocks = [body for info, body in fenced_blocks(README) if info == "python"]
    assert len(blocks) == 1, "the README should have one Python example"
    code = blocks[0]
    assert "from rewas import ReWaSPipeline" in code and 'ReWaSPipeline.from_pretrained("default")' in code
    videos = set(re.findall(r"""pipe\(\s*["']([^"']+)["']""", code))
    assert videos, "the example should call the pipeline on a video file"
    code = re.sub(r"\bsteps=\d+", "steps=2", code)  # fewer steps: the only change to the example
    monkeypatch.chdir(workdir)
    for video in videos:
        if not Path(video).exists():
            _clip(Path(video))
    namespace: dict = {}
    exec(compile(code, "README.md (python block)", "exec"), namespace)
    result = namespace["result"]
    assert result.sample_rate == 16000 and result.seed is not None
    assert result.waveform.dtype == np.float32 and result.waveform.shape == (round(result.duration * 16000),)
    assert abs(result.duration - 2.0) < 0.05 and np.isfinite(result.waveform).all()
    assert len(result.energy) == len(result.waveform) // 160
    assert {"frames", "text", "energy", "diffusion", "decode", "total"} <= set(result.timings)


DOC_BLOCKS = [
    (path.name, i, body)
    for path in sorted((ROOT / "docs").glob("*.md"))
    for i, (info, body) in enumerate(b for b in fenced_blocks(path) if b[0] == "python")
]


@pytest.mark.parametrize("name, index, code", DOC_BLOCKS, ids=[f"{n}-{i}" for n, i, _ in DOC_BLOCKS])
def test_docs_python_examples_run(name, index, code, tmp_path, monkeypatch):
    """The docs' Python examples run as written (a generated clip under their video's name), without a warning:
    an example that drifts from the API, or one that does what the API warns about, fails here."""
    import warnings

    monkeypatch.chdir(tmp_path)
    for video in set(re.findall(r"""["']([\w./-]+\.mp4)["']""", code)) - {"out.mp4"}:
        _clip(Path(video))
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        exec(compile(code, f"{name} (python block {index})", "exec"), namespace)
    if "clip" in namespace and "result" in namespace:  # design.md: frames read by the model's config = the file
        direct = namespace["pipe"]("video.mp4", prompt="wood knocks", seed=0)
        np.testing.assert_allclose(namespace["result"].energy, direct.energy, atol=1e-5)
        assert np.array_equal(namespace["result"].waveform, direct.waveform)


def test_the_reliability_table_names_real_tests():
    """docs/reliability.md: every row names a test that exists, and the table has the classes issue 30 asks for
    (at least 40 of hostile input, 6 of faults)."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (\d+|F\d+) \|", line)]
    inputs = [r for r in rows if re.match(r"\| \d+ \|", r)]
    faults = [r for r in rows if re.match(r"\| F\d+ \|", r)]
    assert len(inputs) >= 40 and len(faults) >= 6, (len(inputs), len(faults))
    for row in rows:
        refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert refs, f"a row without a test: {row}"
        for file, name in refs:
            assert re.search(rf"^\s*def {name}\(", (ROOT / file).read_text(), re.M), f"{file}::{name} does not exist"
