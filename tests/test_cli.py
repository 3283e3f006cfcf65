"""The ``gpuvio`` command line: demo, info, probe, decode, bench, and its errors.

Commands run in-process through ``gpuvio.cli.main`` (fast: no new interpreter), except one
check that ``python -m gpuvio`` works as a program. Results are compared with PyAV / Pillow /
gpuvio's API called directly in the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import REPO, media_path
from PIL import Image

import gpuvio
from gpuvio.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- demo / info

def test_demo_small_runs_every_step(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--small", "--device", "cpu", "--keep", str(tmp_path))
    assert code == 0, err
    assert "FAILED" not in out
    assert "All steps succeeded" in out
    # the shapes it prints are the ones the API returns for the media it kept
    vframes, _, info = gpuvio.read_video(tmp_path / "clip.mp4", pts_unit="sec")
    assert f"vframes uint8 [{', '.join(map(str, vframes.shape))}]" in out
    assert f"'video_fps': {info['video_fps']}" in out
    for name in ("clip.mp4", "clip.avi", "photo.jpg", "graphic.png"):
        assert (tmp_path / name).stat().st_size > 0
    with av.open(str(tmp_path / "clip.avi")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert "lossless round trip: identical" in out
    assert "backend cpu" in out
    # decode-time transforms: exactly torchvision's resize and crop on the CPU
    assert f"vframes uint8 [{vframes.shape[0]}, 112, 112, 3], resized and cropped while decoding" in out
    assert "mean |diff| 0.000 from torchvision's resize and crop" in out
    assert "-> uint8 [3, 128, 128] on cpu" in out


def test_python_dash_m_gpuvio_is_the_cli():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(check=False, args=[sys.executable, "-m", "gpuvio", "--version"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"gpuvio {gpuvio.__version__}"


def test_info_json_lists_backends_and_versions(capsys):
    code, out, _ = run(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["packages"]["torch"] == torch.__version__.split("+")[0] or \
        info["packages"]["torch"] == torch.__version__
    assert info["packages"]["av (PyAV)"] == av.__version__
    names = {b["name"]: b for b in info["backends"]}
    assert set(names) == {b.name for b in gpuvio.backends()}
    assert names["cpu"]["usable"] is True
    for b in info["backends"]:
        assert b["usable"] or b["reason"], b  # an unusable backend always says why
    assert info["cpu_cores"] == os.cpu_count()


def test_info_text(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "Backends" in out and "cpu" in out and "libnvcuvid" in out


def test_info_reports_nvdec_from_the_registry_probe(capsys):
    """info's NVDEC and libnvcuvid lines come from the probe gpuvio.backends() uses: never a second check."""
    from gpuvio._backends._cuda import libnvcuvid_reason, nvdec_probe

    code, out, _ = run(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    nvdec = next(b for b in gpuvio.backends() if b.name == "nvdec")
    assert (info["nvdec_usable"], info["nvdec_reason"]) == (nvdec.usable, nvdec.reason)
    assert info["nvdec_reason"] == nvdec_probe()
    assert (info["libnvcuvid"], info["libnvcuvid_reason"]) == (libnvcuvid_reason() is None, libnvcuvid_reason())
    if info["nvdec_usable"]:
        assert info["libnvcuvid"]  # the probe needs the library
    code, out, _ = run(capsys, "info")
    line = next(l for l in out.splitlines() if l.strip().startswith("NVDEC "))
    assert line.endswith("usable" if nvdec.usable else f"not usable: {nvdec.reason}")


def test_library_modules_never_import_the_cli():
    """Only gpuvio/cli/ and ``python -m gpuvio`` import the command line; library code takes the
    environment report from gpuvio._env and raises its own errors (e.g. BenchError)."""
    import ast

    package = REPO / "gpuvio"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        parts = ["gpuvio", *rel.parent.parts]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = parts[: len(parts) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{alias.name}" for alias in node.names]
            bad = [n for n in names if n == "gpuvio.cli" or n.startswith("gpuvio.cli.")]
            assert not bad, f"gpuvio/{rel} imports {bad}"


def test_timing_harness():
    """The one harness behind bench, the CLI's timings and benchmarks/: warm-up untimed, median of
    the timed runs between syncs, rotation per round, a block timer."""
    from gpuvio._bench._timing import interleaved, median_time, synced, time_calls, timer

    calls, waits = [], []
    seconds, last = median_time(lambda: calls.append(1) or len(calls), repeats=3, warmup=2,
                                sync=lambda: waits.append(len(calls)))
    assert len(calls) == 5 and last == 5 and seconds >= 0
    assert waits == [2, 2, 3, 3, 4, 4, 5]  # after the warm-up, then before and after each timed call
    assert interleaved([1, 2, 3], 0) == [1, 2, 3] and interleaved([1, 2, 3], 4) == [2, 3, 1]
    assert interleaved([], 3) == []
    with timer("cpu") as t:
        assert t == []
    assert len(t) == 1 and t[0] >= 0
    assert time_calls(lambda: None, 10) >= 0
    fn = lambda: 7  # noqa: E731
    assert synced(fn, "cpu") is fn and synced(fn, torch.device("cpu")) is fn


# --------------------------------------------------------------------------- probe

def test_probe_json_matches_pyav():
    path = media_path("torchcodec", "nasa_13013.mp4")
    from gpuvio.cli import probe_file

    info = probe_file(path)
    with av.open(str(path)) as c:
        assert len(info["streams"]) == len(c.streams)
        for s, ref in zip(info["streams"], c.streams):
            assert s["type"] == ref.type
            if ref.type == "video":
                assert (s["width"], s["height"]) == (ref.codec_context.width, ref.codec_context.height)
                assert s["fps"] == pytest.approx(float(ref.average_rate))
                assert s["codec"] == ref.codec_context.name
                assert s["pix_fmt"] == ref.codec_context.pix_fmt
                assert s["frames"] == ref.frames
            if ref.type == "audio":
                assert s["sample_rate"] == ref.codec_context.sample_rate
                assert s["channels"] == ref.codec_context.channels


def test_probe_cli_json_and_table(capsys):
    path = media_path("torchcodec", "nasa_13013.mp4")
    code, out, _ = run(capsys, "probe", str(path), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["kind"] == "container"
    assert [s["type"] for s in info["streams"]].count("video") == 2
    code, out, _ = run(capsys, "probe", str(path))
    assert code == 0
    assert "h264" in out and "colour:" in out and "stereo" in out


def test_probe_counts_frames_when_the_container_does_not(tmp_path, generated, capsys):
    # MPEG-4 in AVI from the fixture; compare with a demux count by PyAV
    code, out, _ = run(capsys, "probe", str(generated["mpeg4"]), "--json")
    assert code == 0
    video = next(s for s in json.loads(out)["streams"] if s["type"] == "video")
    with av.open(str(generated["mpeg4"])) as c:
        count = sum(1 for p in c.demux(video=0) if p.size)
    assert video["frames"] == count


def test_probe_image(capsys):
    path = media_path("torchvision", "images", "grace_hopper_517x606.jpg")
    code, out, _ = run(capsys, "probe", str(path), "--json")
    assert code == 0
    info = json.loads(out)
    with Image.open(path) as im:
        assert (info["width"], info["height"], info["mode"]) == (im.width, im.height, im.mode)
    assert info["format"] == "jpeg"


# --------------------------------------------------------------------------- decode

def test_decode_video_range_to_pt(tmp_path, generated, capsys):
    out_file = tmp_path / "frames.pt"
    code, out, err = run(capsys, "decode", str(generated["h264"]), "--start", "0.5", "--end", "1.0",
                         "--out", str(out_file))
    assert code == 0, err
    saved = torch.load(out_file)
    expected, audio, info = gpuvio.read_video(generated["h264"], 0.5, 1.0, pts_unit="sec")
    assert torch.equal(saved["vframes"], expected)
    assert torch.equal(saved["aframes"], audio)
    assert saved["info"] == info
    assert f"vframes uint8 [{', '.join(map(str, expected.shape))}]" in out


def test_decode_video_to_dir_writes_the_frames_in_range(tmp_path, generated, capsys):
    start, end = 0.4, 0.8
    code, _, err = run(capsys, "decode", str(generated["h264"]), "--start", str(start), "--end", str(end),
                       "--out", str(tmp_path / "frames"))
    assert code == 0, err
    files = sorted((tmp_path / "frames").glob("frame_*.png"))
    with av.open(str(generated["h264"])) as c:
        s = c.streams.video[0]
        times = sorted(float(f.pts * s.time_base) for f in c.decode(s))
    wanted = [t for t in times if start - 1e-9 <= t <= end]
    assert len(files) == len(wanted)
    with gpuvio.VideoReader(generated["h264"]) as reader:
        first = next(reader.seek(start))
    assert first["pts"] == pytest.approx(wanted[0])
    assert torch.equal(gpuvio.read_image(files[0]), first["data"])


def test_decode_image_to_pt_matches_pillow(tmp_path, generated, capsys):
    out_file = tmp_path / "img.pt"
    code, _, err = run(capsys, "decode", str(generated["jpeg"]), "--mode", "GRAY", "--out", str(out_file))
    assert code == 0, err
    with Image.open(generated["jpeg"]) as im:
        im.draft("L", im.size)  # libjpeg's own grayscale output (the luma plane), as torchvision's GRAY
        expected = torch.from_numpy(np.array(im))[None]
    assert torch.equal(torch.load(out_file), expected)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, code, needle", [
    (["probe", "/no/such/file.mp4"], 1, "/no/such/file.mp4: no such file"),
    (["decode", "/no/such/file.mp4"], 1, "no such file"),
    (["decode", "{clip}", "--end", "0.2", "--start", "1"], 2, "--end (0.2) must not be before --start (1.0)"),
    (["decode", "{clip}", "--device", "tpu"], 2, "device must be"),
    (["decode", "{jpeg}", "--start", "1"], 2, "--start/--end apply to videos"),
    (["decode", "{clip}", "--mode", "GRAY"], 2, "--mode applies to images"),
    (["bench", "--repeats", "0"], 2, "--repeats must be >= 1"),
    (["bench", "--json", "/no/such/dir/out.json"], 2, "does not exist"),
    (["bench", "--media", "/no/such/dir"], 1, "not a directory"),
])
def test_bad_arguments_fail_with_a_message(argv, code, needle, generated, capsys):
    argv = [a.format(clip=generated["h264"], jpeg=generated["jpeg"]) for a in argv]
    got, _out, err = run(capsys, *argv)
    assert got == code
    assert needle in err
    assert f"gpuvio {argv[0]}: error:" in err.splitlines()[-1]


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["decode"], ["bench", "--device", "tpu"],
                                  ["decode", "x.mp4", "--start", "-1"], ["decode", "x.mp4", "--start", "abc"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: gpuvio" in capsys.readouterr().err


def test_unreadable_files_fail_cleanly(tmp_path, capsys):
    bogus = tmp_path / "not_a_video.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    code, _, err = run(capsys, "probe", str(bogus))
    assert code == 1 and "not a readable media file" in err
    code, _, err = run(capsys, "decode", str(bogus))
    assert code == 1 and str(bogus) in err
    damaged = media_path("torchvision", "images", "damaged_jpeg", "corrupt34_2.jpg")
    code, _, err = run(capsys, "decode", str(damaged))
    assert code == 1 and "error" in err


def test_decode_on_cuda_without_a_gpu_says_what_is_missing(generated, capsys):
    from gpuvio._dispatch import select_backend

    try:
        select_backend("read_video", "cuda")
    except ImportError:
        pass
    else:
        pytest.skip("a GPU video backend is usable here")
    for argv in (["decode", str(generated["h264"]), "--device", "cuda"], ["demo", "--small", "--device", "cuda"],
                 ["bench", "--quick", "--device", "cuda", "--media", str(generated["h264"].parent)]):
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        assert "needs a GPU backend" in err, argv


def test_help_teaches():
    parser_help = subprocess.run(check=False, args=[sys.executable, "-m", "gpuvio", "decode", "--help"], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert parser_help.returncode == 0
    assert "example" in parser_help.stdout and "--out frames.pt|DIR" in parser_help.stdout


# --------------------------------------------------------------------------- bench

def test_bench_quick_writes_a_valid_record(tmp_path, generated, capsys):
    media = tmp_path / "media"
    media.mkdir()
    for key in ("h264_noaudio", "jpeg", "png"):
        (media / generated[key].name).symlink_to(generated[key])
    out_json = tmp_path / "bench.json"
    code, out, err = run(capsys, "bench", "--quick", "--device", "cpu", "--repeats", "1", "--media", str(media),
                         "--json", str(out_json))
    assert code == 0, err
    record = json.loads(out_json.read_text())
    assert record["schema"] == "gpuvio-bench/1"
    assert record["quick"] is True and record["device"] == "cpu"
    system = record["system"]
    assert system["cpu"] and system["cpu_cores"] == os.cpu_count()
    assert system["packages"]["gpuvio"] == gpuvio.__version__
    assert {m["name"] for m in record["media"]} == {generated[k].name for k in ("h264_noaudio", "jpeg", "png")}
    workloads = {r["workload"] for r in record["results"]}
    for expected in ("read_video", "VideoReader seek", "VideoReader.get_frames_at", "decode_image JPEG",
                     "decode_image PNG", "encode_jpeg", "encode_png"):
        assert any(w.startswith(expected) for w in workloads), (expected, workloads)
    for w in workloads:
        rows = [r for r in record["results"] if r["workload"] == w]
        gpuvio_rows = [r for r in rows if r["is_gpuvio"]]
        assert len(gpuvio_rows) == 1 and gpuvio_rows[0]["error"] is None
        assert gpuvio_rows[0]["ratio_to_gpuvio"] == 1.0
    for r in record["results"]:
        assert set(r) >= {"name", "value", "unit"}
        assert r["unit"] in ("frames/s", "images/s")
        if r["error"] is None:
            assert r["value"] > 0 and len(r["runs_s"]) == 1
    # the peers that always exist here (PyAV, Pillow) ran and agree with gpuvio where they should
    by_name = {r["contender"]: r for r in record["results"] if r["workload"].startswith("decode_image JPEG")}
    assert by_name["Pillow (libjpeg-turbo) -> tensor"]["agreement"]["max_abs_diff"] == 0
    enc = next(r for r in record["results"]
               if r["workload"].startswith("encode_jpeg") and r["library"] == "Pillow")
    assert enc["agreement"]["identical_bytes"] == 1.0
    rv = [r for r in record["results"] if r["workload"].startswith("read_video")]
    tv08 = next(r for r in rv if r["contender"].startswith("torchvision 0.8 algorithm"))
    assert tv08["error"] is None and tv08["agreement"]["max_abs_diff"] is not None
    # frames/s is frames per call / median seconds per call
    row = gpuvio_rows[0]
    assert row["value"] == pytest.approx(row["items_per_call"] / row["median_s_per_call"], rel=1e-3)
    assert "gpuvio speed-up" in out
    # the Markdown table for the README has a row per result
    from gpuvio._bench._report import markdown_table, plot

    table = markdown_table(record)
    assert table.count("\n| ") >= len(record["results"]) + 1
    assert "**gpuvio (cpu backend, cpu)** |" in table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    plot(record, str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_media_are_cached(tmp_path, monkeypatch):
    from gpuvio._bench import _media

    made = []
    real = _media.default_media

    calls = {"n": 0}
    import gpuvio._samples as samples

    original = samples.make_sample_image

    def counting(*args, **kwargs):
        made.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(samples, "make_sample_image", counting)
    monkeypatch.setattr(samples, "make_sample_video", lambda path, **kw: Path(path).write_bytes(b"x") or path)
    n_files, n_images = len(_media._QUICK), sum(1 for f in _media._QUICK if f[1] == "image")
    first = real(quick=True, cache_dir=tmp_path, log=lambda m: calls.__setitem__("n", calls["n"] + 1))
    assert calls["n"] == n_files and len(made) == n_images
    second = real(quick=True, cache_dir=tmp_path, log=lambda m: calls.__setitem__("n", calls["n"] + 1))
    assert calls["n"] == n_files and len(made) == n_images  # nothing regenerated
    # both read_video targets have a stand-in in the quick media
    assert sorted(m.target for m in first if m.target) == ["1080p", "720p"]
    assert [m.path for m in first] == [m.path for m in second]
    assert not list(tmp_path.rglob("*.tmp*"))


@pytest.mark.parametrize("which", ["720p", "1080p"])
def test_bench_read_video_targets(which, generated):
    """The issue-12 read_video workloads: their contenders, and the targets checked on a run."""
    from types import SimpleNamespace

    from gpuvio._bench._media import MediaFile
    from gpuvio._bench._peers import build_workloads
    from gpuvio._bench._report import make_record, markdown_table, target_result
    from gpuvio._bench._runner import measure

    media = MediaFile(generated["h264_noaudio"], "video", "target_video", "test clip", target=which)
    workloads = build_workloads([media], device="cpu", quick=True)
    if which == "1080p":  # read_video alone, and its decode-time resize (issue 13)
        assert len(workloads) == 2 and workloads[1].name.startswith("read_video -> Resize 224x224, h264 160x96")
    rv = workloads[0]
    assert rv.name.startswith("read_video h264 160x96 whole clip")
    names = [c.name for c in rv.contenders]
    assert names[0] == "gpuvio (cpu backend, cpu)" and rv.contenders[0].is_gpuvio
    assert [c.is_gpuvio for c in rv.contenders].count(True) == 1
    for expected in ('gpuvio (cpu backend, cpu), color="accurate"', "torchvision 0.8 algorithm",
                     "PyAV decode only, no RGB (ceiling)"):
        assert any(n.startswith(expected) for n in names), (expected, names)
    # torchcodec: both settings measured, or both reported skipped with the reason
    for tc in ("torchcodec CPU, FFmpeg threads auto", "torchcodec CPU, default"):
        assert any(n.startswith(tc) for n in names) or any(
            s["contender"].startswith(tc) and s["reason"] for s in rv.skipped), (tc, names, rv.skipped)
    texts = [t.text for t in rv.targets]
    needs = {(t.kind, t.needs) for t in rv.targets}
    assert ("ceiling", 0.75) in needs and ("identical", 1.0) in needs
    assert ("speedup", 1.8 if which == "720p" else 1.5) in needs
    assert any("1.2x torchcodec CPU with FFmpeg threads auto" in t for t in texts) == (which == "1080p")

    results = measure(rv, repeats=1, warmup=1, min_run_s=0.0)
    args = SimpleNamespace(quick=True)
    record = make_record(results, [rv], [media], args=args, device="cpu", device_note="cpu", repeats=1,
                         started=0.0, load_before=None, load_after=None)
    targets = {t["target"]: t for t in record["targets"]}
    assert len(targets) == len(rv.targets) and all(t["issue"] in (2, 12) for t in targets.values())
    same = next(t for t in targets.values() if t["kind"] == "identical")
    assert same["status"] == "met" and same["max_abs_diff"] == 0  # default colour = torchvision 0.8's pixels
    ceiling = next(t for t in targets.values() if t["kind"] == "ceiling")
    assert ceiling["status"] in ("met", "missed") and ceiling["speedup"] > 0
    assert "of the ceiling, needs 0.75" in target_result(ceiling)
    for t in targets.values():
        if t["peer"].startswith("torchcodec") and t["status"] == "not measured":
            assert "torchcodec" in t["reason"]
    table = markdown_table(record)
    assert "| #12 |" in table and "max \\|diff\\| 0" in table  # pipes escaped in the cells
    accurate = next(r for r in record["results"] if r["contender"].endswith('color="accurate"'))
    assert accurate["agreement"]["max_abs_diff"] > 0  # the other colour policy really ran


def test_bench_transform_workloads(generated):
    """Issue 13's decode-time resize workloads: gpuvio's transformed read against decode-then-resize
    peers (torchvision's own resize, skipped with the reason when torchvision is absent), targets checked."""
    import importlib.util
    from types import SimpleNamespace

    from gpuvio._bench._media import MediaFile
    from gpuvio._bench._peers import build_workloads
    from gpuvio._bench._report import make_record, markdown_table, target_result
    from gpuvio._bench._runner import measure

    video = MediaFile(generated["h264_noaudio"], "video", "target_video", "test clip", target="1080p")
    # width=1920 as the default 1080p JPEG's params say: the image targets are attached
    jpeg = MediaFile(generated["jpeg"], "image", "jpeg", "test JPEG", params={"width": 1920})
    workloads = build_workloads([video, jpeg], device="cpu", quick=True, only=["Resize"])
    assert [w.name for w in workloads] == ["read_video -> Resize 224x224, h264 160x96 (30 frames)",
                                           "decode_image -> Resize 224, JPEG 500x375"]
    rv, di = workloads
    # issue 12's and issue 2's selections leave them out
    selected = build_workloads([video, jpeg], device="cpu", quick=True, only=["read_video h264", "decode_image JPEG"])
    assert selected and not any("Resize" in w.name for w in selected)
    have_tv = importlib.util.find_spec("torchvision") is not None
    for w, peers in ((rv, ("gpuvio read_video, then torchvision v2 resize", "gpuvio read_video, no resize",
                           "torchcodec CPU, FFmpeg threads auto, Resize transform",
                           "torchcodec CPU, FFmpeg threads auto, no resize")),
                     (di, ("gpuvio decode_image, then torchvision v2 resize", "torchvision.io.decode_jpeg, then"))):
        names = [c.name for c in w.contenders]
        assert w.contenders[0].is_gpuvio and [c.is_gpuvio for c in w.contenders].count(True) == 1
        assert names[0].startswith("gpuvio (cpu backend, cpu), transforms=[Resize(")
        for peer in peers:  # measured, or skipped with the reason
            assert any(n.startswith(peer) for n in names) or any(
                s["contender"].startswith(peer) and s["reason"] for s in w.skipped), (peer, names, w.skipped)
        assert any(n.startswith(peers[0]) for n in names) == have_tv
    assert sorted((t.kind, t.needs) for t in rv.targets) == [("close", 0.5), ("speedup", 1.0), ("speedup", 1.5)]
    assert sorted((t.kind, t.needs) for t in di.targets) == [("close", 0.5), ("speedup", 1.3), ("speedup", 1.3)]
    assert all(t.issue == 13 for t in rv.targets + di.targets)
    # the transformed outputs: 224x224 frames; the JPEG's shorter side to 224 (torchvision's arithmetic)
    assert tuple(rv.contenders[0].fn().shape) == (30, 224, 224, 3)
    assert tuple(di.contenders[0].fn().shape) == (3, 224, 298)

    results = [r for w in workloads for r in measure(w, repeats=1, warmup=1, min_run_s=0.0)]
    record = make_record(results, workloads, [video, jpeg], args=SimpleNamespace(quick=True), device="cpu",
                         device_note="cpu", repeats=1, started=0.0, load_before=None, load_after=None)
    assert all(r["error"] is None for r in record["results"]), record["results"]
    close = [t for t in record["targets"] if t["kind"] == "close"]
    assert len(close) == 2 and len(record["targets"]) == 6
    for t in close:
        if have_tv:  # gpuvio's decode-time resize is within the promised 0.5 of torchvision's
            assert t["status"] == "met" and t["mean_abs_diff"] <= 0.5, t
            assert "needs <= 0.5" in target_result(t)
        else:
            assert t["status"] == "not measured" and "torchvision is not installed" in t["reason"], t
    assert "| #13 |" in markdown_table(record)


def test_bench_close_target_judges_the_mean_difference():
    """A "close" target: met when the peer's pixels are within the mean |diff| asked, missed when
    they are not or cannot be compared (another shape)."""
    from types import SimpleNamespace

    from gpuvio._bench._media import MediaFile
    from gpuvio._bench._report import make_record, markdown_table, target_result
    from gpuvio._bench._runner import measure
    from gpuvio._bench._workload import Contender, Target, Workload

    base = torch.zeros((3, 4, 4), dtype=torch.uint8)
    near, far = base.clone(), base.clone()
    near[0, :2] = 2  # mean |diff| 16 / 48 = 0.33, max 2
    far[:, :, :2] = 3  # mean 1.5
    contenders = [Contender("gpuvio", "gpuvio", "cpu", lambda: base, is_gpuvio=True, view=lambda t: t),
                  Contender("near", "x", "cpu", lambda: near, view=lambda t: t),
                  Contender("far", "x", "cpu", lambda: far, view=lambda t: t),
                  Contender("other shape", "x", "cpu", lambda: base[:, :2], view=lambda t: t)]
    targets = [Target(13, f"within 0.5 of {name}", name, 0.5, kind="close") for name in ("near", "far", "other")]
    targets.append(Target(13, "within 0.5 of absent", "absent", 0.5, kind="close"))
    workload = Workload("w", MediaFile(Path("x.jpg"), "image", "jpeg", "none"), "images/s", 1, contenders,
                        [{"contender": "absent", "reason": "absent is not installed"}], targets=targets)
    results = measure(workload, repeats=1, warmup=1, min_run_s=0.0)
    record = make_record(results, [workload], [], args=SimpleNamespace(quick=False), device="cpu",
                         device_note="cpu", repeats=1, started=0.0, load_before=None, load_after=None)
    got = {t["peer"]: t for t in record["targets"]}
    assert got["near"]["status"] == "met" and got["near"]["mean_abs_diff"] == pytest.approx(1 / 3, abs=1e-3)
    assert got["near"]["max_abs_diff"] == 2 and got["near"]["needs_mean_abs_diff"] == 0.5
    assert "needs_speedup" not in got["near"]
    assert got["far"]["status"] == "missed" and got["far"]["mean_abs_diff"] == 1.5
    assert got["other shape"]["status"] == "missed" and got["other shape"]["reason"] == "shapes differ"
    assert got["absent"]["status"] == "not measured" and "not installed" in got["absent"]["reason"]
    assert target_result(got["far"]) == "missed (mean |diff| 1.500, needs <= 0.5; max 3)"
    assert "mean \\|diff\\| 0.333" in markdown_table(record)


def test_torchvision08_algorithm_matches_pyav_to_rgb(generated):
    """The re-implemented peer really is the to_rgb() algorithm (same frames, same pixels)."""
    from gpuvio._bench._peers import torchvision08_read_video

    got = torchvision08_read_video(str(generated["h264"]))
    with av.open(str(generated["h264"])) as c:
        frames = sorted(c.decode(video=0), key=lambda f: f.pts)
        expected = np.stack([f.to_rgb().to_ndarray() for f in frames])
    assert torch.equal(got, torch.from_numpy(expected))
    assert got.shape[0] == len(gpuvio.read_video_timestamps(generated["h264"])[0])
    assert isinstance(gpuvio.read_video_timestamps(generated["h264"], pts_unit="sec")[0][1], Fraction)


def test_decode_image_to_dir_writes_png(tmp_path, generated, capsys):
    code, _out, err = run(capsys, "decode", str(generated["png"]), "--out", str(tmp_path / "pngs"))
    assert code == 0, err
    written = tmp_path / "pngs" / (generated["png"].stem + ".png")
    with Image.open(generated["png"]) as im:
        expected = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(gpuvio.read_image(written), expected)
    deep = media_path("torchcodec", "gradient_16bit.png")
    code, _, err = run(capsys, "decode", str(deep), "--out", str(tmp_path / "deep"))
    assert code == 2 and "use --out FILE.pt" in err
