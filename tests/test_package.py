"""Package-level promises: nothing GPU at import, the error hierarchy, typing marker, public API."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gpuvio


def test_import_and_cpu_work_load_no_cuda(generated):
    """CPU decoding must stay fork-safe: no CUDA library loaded, no CUDA context created."""
    script = textwrap.dedent(f"""
        import sys, torch, gpuvio
        gpuvio.read_video({str(generated['h264'])!r}, pts_unit="sec")
        gpuvio.decode_image(gpuvio.read_file({str(generated['jpeg'])!r}))
        reader = gpuvio.VideoReader({str(generated['h264'])!r})
        next(reader); reader.get_frames_at([3, 1])
        gpuvio.backends()
        assert not torch.cuda.is_initialized(), "a CUDA context was created"
        maps = open("/proc/self/maps").read()
        for lib in ("libcuda.so", "libnvcuvid", "libnvjpeg", "libnvimgcodec", "libcudart"):
            assert lib not in maps, lib + " was loaded"
        for module in ("PyNvVideoCodec", "nvidia.nvimgcodec", "nvidia.dali", "cupy"):
            assert module not in sys.modules, module + " was imported"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    ("error", "builtins"),
    [
        (gpuvio.DecodeError, (RuntimeError,)),
        (gpuvio.UnsupportedFormatError, (RuntimeError, ValueError)),
        (gpuvio.InvalidArgumentError, (ValueError, RuntimeError)),
        (gpuvio.InvalidInputTypeError, (TypeError, RuntimeError)),
        (gpuvio.MediaFileNotFoundError, (FileNotFoundError, RuntimeError)),
        (gpuvio.BackendUnavailableError, (ImportError, RuntimeError)),
        (gpuvio.ResourceLimitError, (ValueError, RuntimeError)),
    ],
)
def test_errors_inherit_root_and_builtins(error, builtins):
    assert issubclass(error, gpuvio.GpuvioError)
    for builtin in builtins:
        assert issubclass(error, builtin)


def test_missing_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError) as info:
        gpuvio.read_video(missing)
    assert str(missing) in str(info.value)


def test_typed_package_marker():
    assert (Path(gpuvio.__file__).parent / "py.typed").exists()


def test_torchvision_io_names_are_all_there():
    names = ["read_video", "read_video_timestamps", "write_video", "VideoReader", "read_image", "decode_image",
             "encode_jpeg", "write_jpeg", "encode_png", "write_png", "read_file", "write_file", "decode_jpeg",
             "decode_png", "ImageReadMode"]
    missing = [n for n in names if not hasattr(gpuvio, n)]
    assert not missing
    assert set(gpuvio.__all__) <= set(dir(gpuvio))


REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Absolute module names a source file imports (relative imports resolved against gpuvio)."""
    import ast

    tree = ast.parse(path.read_text())
    package = ["gpuvio", *path.relative_to(REPO / "gpuvio").parent.parts] if "gpuvio" in path.parts else []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
    return out


def test_imports_are_one_directional():
    """gpuvio's own modules never import the CPU backend (the registry names it by a loader
    string); the CPU backend imports gpuvio's shared layer, never a GPU backend."""
    for path in (REPO / "gpuvio").rglob("*.py"):
        bad = {m for m in _imports(path) if m == "gpuvio.cpu_fallback" or m.startswith("gpuvio.cpu_fallback.")
               or m == "cpu_fallback" or m.startswith("cpu_fallback.")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
    for path in (REPO / "cpu_fallback").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("gpuvio._backends", "gpuvio.cli", "gpuvio.data"))}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_package_list_names_every_package_and_no_top_level_cpu_fallback():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "gpuvio").rglob("__init__.py")}
    assert set(config["packages"]) == folders | {"gpuvio.cpu_fallback"}
    assert config["package-dir"]["gpuvio.cpu_fallback"] == "cpu_fallback"
    assert not any(p == "cpu_fallback" or p.startswith("cpu_fallback.") for p in config["packages"])
    import gpuvio.cpu_fallback

    assert gpuvio.cpu_fallback.__name__ == "gpuvio.cpu_fallback" and "cpu_fallback" not in sys.modules


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in [*(REPO / "gpuvio").rglob("*.py"), *(REPO / "cpu_fallback").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
