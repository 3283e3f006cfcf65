"""GPU video benchmark: gpuvio's NVDEC backend vs raw PyNvVideoCodec vs the CPU backend.

Run by ``benchmarks/device_check.py`` as a child process (so that a driver abort or a hang
costs only this script's figures), or alone::

    python benchmarks/gpu_video.py [--dry-run] [--json OUT.json] [--workdir DIR]

It generates its own media at once (a 1080p H.264 clip of realistic bitrate, 4 s, and one
640x360 2 s clip per codec: ``h264``, ``hevc``, ``vp9``, ``av1`` (SVT-AV1), ``hevc10``
(10-bit, NVDEC's P016 path)), then measures, each after a warm-up run, as the median of a few
runs, for each clip ``<clip>`` (``1080p_h264`` first) and each colour policy ``<policy>``
(``torchvision``, the default, and ``accurate``):

* ``read_video_cpu_<policy>_<clip>_fps``: ``gpuvio.read_video(path, device="cpu", color=policy)``;
* ``read_video_cuda_<policy>_<clip>_fps``: the same call with ``device="cuda"``;
* ``parity_{max_abs_diff,mean_abs_diff,differing_pixels,equal,pass}_<policy>_<clip>``: the last
  NVDEC read against the CPU one: max and mean |difference| (levels, over every value), pixels
  with any channel differing, ``torch.equal``, and whether the clip met its target: bit for bit
  (``torch.equal``) for ``torchvision`` on 8-bit 4:2:0, else max <= 1 and mean <= 0.05 (issue #12);
* per policy ``parity_max_abs_diff_<policy>`` / ``parity_mean_abs_diff_<policy>`` (the worst over
  the clips NVDEC decoded), ``parity_clips_on_nvdec_<policy>`` (how many that was) and
  ``parity_pass_<policy>`` (1 only when every clip was decoded by NVDEC and met its target);
  ``parity_max_abs_diff`` / ``parity_mean_abs_diff`` / ``parity_pass`` over both policies;
* ``fused_kernel_used``: the 1080p ``accurate`` read got the fused CUDA kernel (a colour setting
  a later read tried without it is an error entry; the default policy never uses the kernel:
  swscale's arithmetic runs as torch ops);

then, on the 1080p clip only:

* ``raw_pynvvideocodec_1080p_h264_fps``: PyNvVideoCodec's own demuxer + core decoder, NV12 left
  in device memory, nothing else (the ceiling); ``overhead_vs_raw_percent_<policy>`` compares;
* ``decode_videos_cuda_torchvision_1080p_h264_fps``: frames per second over 2 files per NVDEC
  engine at once (default policy), and ``raw_pynvvideocodec_multi_1080p_h264_fps`` for the same
  work with raw decoders in threads;
* ``read_video_cuda_accurate_torchops_1080p_h264_fps``: ``accurate`` with the fused kernel
  disabled (its fallback);

and, on the same clip, the decode-time transform figures of ``gpu_transforms.py`` (issue 13):
``read_video_cuda_{noresize,resize224}_1080p_h264_fps``, ``read_video_cpu_resize224_1080p_h264_fps``
and ``transform_parity_*_video`` (CUDA against CPU for ``[Resize(256), CenterCrop(224)]``,
mean <= 0.5), in ``details["video_transforms"]`` (after ``decode_videos``, before the torch-ops
figure; a dry run measures the CPU one on its small clip).

The same figures, with the targets and a per-policy summary (clips passed / failed / not
measured), form the ``details["video_parity"]`` table of ``--json``; a row a run could not
measure keeps ``null`` there and a ``status`` that says why (``not measured (dry run)``, or
``error (see errors)``). The per-codec fps come from short clips, so decoder set-up weighs in
them: the 1080p figures are the throughput ones.

A figure is a GPU figure only when NVDEC decoded every frame of it: a call that gpuvio handed to
the CPU backend (its "NVDEC cannot decode" warning, or ``info["backend"] == "cpu"``) is recorded
in ``errors`` instead. With ``--dry-run`` only the CPU parts run (to check the script without a
GPU). ``--json`` is rewritten after every figure (see ``_record.py``). Exit status: 0 when every
part ran, 1 when some failed (they are in ``errors``), anything else when the script died.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import gpu_transforms  # noqa: E402
from _record import Recorder, caught_warnings  # noqa: E402

if TYPE_CHECKING:
    from gpuvio._types import ColorPolicy

__all__ = ["run"]

# gpuvio's RuntimeWarning when a file goes to the CPU backend (gpuvio/_backends/_nvdec.py)
_FALLBACK_WARNING = "NVDEC cannot decode"

# the colour policies (``color=``), default first
POLICIES: tuple[ColorPolicy, ...] = ("torchvision", "accurate")
# issue #12's parity targets, NVDEC against the CPU backend for the same call: within
# TOLERANCE always, and bit for bit (torch.equal) for the default policy on 8-bit 4:2:0
TOLERANCE = {"max_abs_diff": 1, "mean_abs_diff": 0.05}
_BIT_EXACT_PIX_FMTS = ("yuv420p", "yuvj420p")
TARGETS = {
    "torchvision": "bit-exact on 8-bit 4:2:0 (yuv420p), tolerance otherwise",
    "accurate": "tolerance",
    "bit-exact": "torch.equal(cuda frames, cpu frames)",
    "tolerance": TOLERANCE,
}


@dataclass(frozen=True)
class Clip:
    """One generated clip the check reads with each policy on both devices."""

    tag: str  # in the figures' names
    encoder: str
    filename: str
    width: int = 640
    height: int = 360
    seconds: float = 2.0
    pix_fmt: str = "yuv420p"
    gop: int = 30
    repeats: int = 3  # timed NVDEC reads after the warm-up


# one clip per codec NVDEC serves here (each also read with its CPU fps), after the 1080p H.264 one
SMALL_CLIPS = (
    Clip("h264", "libx264", "small_h264.mp4"),
    Clip("hevc", "libx265", "small_hevc.mp4"),
    Clip("vp9", "libvpx-vp9", "small_vp9.webm"),
    Clip("av1", "libsvtav1", "small_av1.mp4"),
    Clip("hevc10", "libx265", "small_hevc10.mp4", pix_fmt="yuv420p10le"),  # NVDEC's P016 path
)


# a table row's fields that only a GPU run fills (null until then)
GPU_FIELDS = ("cuda_fps", "max_abs_diff", "mean_abs_diff", "differing_pixels", "pixels", "equal", "within_tolerance",
              "pass")


class CpuServed(RuntimeError):
    """The CPU backend decoded (part of) what was meant to be an NVDEC measurement."""


def _median_time(fn: Callable[[], Any], *, repeats: int, sync: bool) -> tuple[float, Any]:
    """(median seconds, last output) of ``fn`` after one warm-up call (decoder creation, kernel
    compilation, caches), by gpuvio's benchmark harness; with ``sync`` each run waits for the GPU."""
    from gpuvio._bench._timing import median_time, sync_fn

    return median_time(fn, repeats=repeats, warmup=1, sync=sync_fn("cuda") if sync else None)


def _on_nvdec(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, raising :class:`CpuServed` if gpuvio handed any file in it to the CPU backend."""
    with caught_warnings() as messages:
        out = fn()
    fell = [m for m in messages if _FALLBACK_WARNING in m]
    if fell:
        raise CpuServed(f"{what}: {len(fell)} decode(s) fell back to the CPU, so this is no GPU figure; "
                        f"first: {fell[0]}")
    return out


def _read_nvdec(path: Path, color: ColorPolicy) -> Any:
    """``gpuvio.read_video(path, device="cuda", color=color)``'s frames, raising
    :class:`CpuServed` unless NVDEC decoded them."""
    import gpuvio

    video, _, info = gpuvio.read_video(path, device="cuda", color=color)
    if info.get("backend") != "nvdec":
        raise CpuServed(f"{path.name} was decoded by the {info.get('backend')!r} backend: "
                        f"{info.get('fallback_reason')}")
    return video


def _compare(a: Any, b: Any) -> dict[str, Any]:
    """|a - b| of two uint8 THWC videos, in chunks on ``a``'s device (a 1080p clip as int16 is GBs):
    max, mean (over every value), pixels with any channel differing, and ``torch.equal``."""
    import torch

    if a.shape != b.shape or a.numel() == 0:
        raise AssertionError(f"shapes differ or are empty: {tuple(a.shape)} vs {tuple(b.shape)}")
    worst, total, differing, equal = 0, 0, 0, True
    for i in range(0, a.shape[0], 16):
        x, y = a[i:i + 16], b[i:i + 16].to(a.device)
        equal = torch.equal(x, y) and equal
        d = (x.to(torch.int16) - y.to(torch.int16)).abs()
        worst = max(worst, int(d.max()))
        total += int(d.sum(dtype=torch.int64))
        differing += int((d.amax(dim=-1) > 0).sum())
    return {"max_abs_diff": worst, "mean_abs_diff": total / a.numel(), "differing_pixels": differing,
            "pixels": a.numel() // a.shape[-1], "equal": bool(equal)}


def target_for(policy: str, pix_fmt: str) -> str:
    return "bit-exact" if policy == "torchvision" and pix_fmt in _BIT_EXACT_PIX_FMTS else "tolerance"


def _judge(target: str, parity: dict[str, Any]) -> dict[str, bool]:
    within = (parity["max_abs_diff"] <= TOLERANCE["max_abs_diff"]
              and parity["mean_abs_diff"] <= TOLERANCE["mean_abs_diff"])
    return {"within_tolerance": within, "pass": parity["equal"] if target == "bit-exact" else within}


def _self_check() -> None:
    """The parity arithmetic on known tensors (it runs on the CPU too, so a dry run checks it)."""
    import torch

    a = torch.zeros((17, 4, 6, 3), dtype=torch.uint8)  # 17 frames: two chunks
    b = a.clone()
    b[0, 1, 2, 0] = 1
    b[16, 3, 5, 1] = 255  # no uint8 wrap-around
    b[16, 3, 5, 2] = 1  # same pixel: counted once
    got = _compare(a, b)
    want = {"max_abs_diff": 255, "mean_abs_diff": 257 / a.numel(), "differing_pixels": 2, "pixels": 17 * 24,
            "equal": False}
    same = _compare(a, a.clone())
    b[16, 3, 5] = 0
    near = _compare(a, b)
    checks = [
        (got == want, f"{got} != {want}"),
        (same["equal"] and same["max_abs_diff"] == 0, f"identical clips: {same}"),
        (_judge("bit-exact", got) == {"within_tolerance": False, "pass": False}, "bit-exact, 255 off"),
        (_judge("tolerance", near) == {"within_tolerance": True, "pass": True}, f"tolerance, 1 off: {near}"),
        (_judge("bit-exact", near) == {"within_tolerance": True, "pass": False}, "bit-exact, 1 off"),
        (_judge("bit-exact", same)["pass"], "bit-exact, identical"),
    ]
    for ok, what in checks:
        if not ok:
            raise AssertionError(f"parity arithmetic is wrong: {what}")


def _measure(rec: Recorder, clip: Clip, path: Path, policy: ColorPolicy, row: dict[str, Any], *, cuda: bool) -> None:
    """One clip, one policy: CPU fps, then NVDEC fps and parity; ``row`` is its entry in the table."""
    import gpuvio

    label = f"{policy} {clip.tag}"
    reference: dict[str, Any] = {}

    def cpu() -> None:
        elapsed, video = _median_time(lambda: gpuvio.read_video(path, device="cpu", color=policy)[0],
                                      repeats=2, sync=False)
        reference["video"] = video
        row["frames"] = int(video.shape[0])
        row["cpu_fps"] = round(video.shape[0] / elapsed, 3)
        rec.add(f"read_video_cpu_{policy}_{clip.tag}_fps", row["cpu_fps"], "fps")

    rec.guard(f"cpu read_video {label}", cpu)
    if not cuda:
        return
    row["status"] = "error (see errors)"

    def gpu() -> None:
        elapsed, video = _on_nvdec(f"read_video {label}", lambda: _median_time(
            lambda: _read_nvdec(path, policy), repeats=clip.repeats, sync=True))
        row["cuda_fps"] = round(video.shape[0] / elapsed, 3)
        rec.add(f"read_video_cuda_{policy}_{clip.tag}_fps", row["cuda_fps"], "fps")
        ref = reference.pop("video", None)
        if ref is None:
            raise RuntimeError("no CPU reference (its error is above): no parity figure")
        if tuple(video.shape) != tuple(ref.shape):
            row.update({"equal": False, "within_tolerance": False, "pass": False, "shape_cuda": list(video.shape),
                        "shape_cpu": list(ref.shape), "status": "measured: the shapes differ"})
            rec.add(f"parity_pass_{policy}_{clip.tag}", 0.0, "bool")
            raise AssertionError(f"NVDEC gave {tuple(video.shape)}, the CPU {tuple(ref.shape)}")
        parity = _compare(video, ref)
        parity.update(_judge(row["target"], parity))
        row.update(parity)
        row["mean_abs_diff"] = round(parity["mean_abs_diff"], 6)
        row["status"] = "measured"
        rec.add(f"parity_max_abs_diff_{policy}_{clip.tag}", parity["max_abs_diff"], "levels")
        rec.add(f"parity_mean_abs_diff_{policy}_{clip.tag}", parity["mean_abs_diff"], "levels", digits=6)
        rec.add(f"parity_differing_pixels_{policy}_{clip.tag}", parity["differing_pixels"], "pixels")
        rec.add(f"parity_equal_{policy}_{clip.tag}", float(parity["equal"]), "bool")
        rec.add(f"parity_pass_{policy}_{clip.tag}", float(parity["pass"]), "bool")
        if not parity["pass"]:
            rec.log(f"  parity {label}: target {row['target']} MISSED (max {parity['max_abs_diff']}, "
                    f"mean {parity['mean_abs_diff']:.4f}, {parity['differing_pixels']} of {parity['pixels']} "
                    "pixels differ)")

    rec.guard(f"cuda read_video {label}", gpu)
    reference.clear()


def _summarise(rec: Recorder, table: dict[str, Any], tags: list[str]) -> None:
    """Per policy: which clips met their target; the worst differences over the clips NVDEC decoded."""
    summary: dict[str, Any] = {}
    everything: list[dict[str, Any]] = []
    for policy in POLICIES:
        rows = {tag: table["clips"].get(tag, {}).get("policies", {}).get(policy, {}) for tag in tags}
        passed = [t for t, r in rows.items() if r.get("pass") is True]
        failed = [t for t, r in rows.items() if r.get("pass") is False]
        missing = [t for t, r in rows.items() if r.get("pass") is None]
        measured = [r for r in rows.values() if r.get("max_abs_diff") is not None]
        everything += measured
        rec.add(f"parity_clips_on_nvdec_{policy}", len(measured), "count")
        if measured:
            rec.add(f"parity_max_abs_diff_{policy}", max(r["max_abs_diff"] for r in measured), "levels")
            rec.add(f"parity_mean_abs_diff_{policy}", max(r["mean_abs_diff"] for r in measured), "levels", digits=6)
        ok = bool(passed) and not failed and not missing
        rec.add(f"parity_pass_{policy}", float(ok), "bool")
        summary[policy] = {"pass": ok, "passed": passed, "failed": failed, "not_measured": missing}
    table["summary"] = summary
    rec.save()
    if everything:
        rec.add("parity_max_abs_diff", max(r["max_abs_diff"] for r in everything), "levels")
        rec.add("parity_mean_abs_diff", max(r["mean_abs_diff"] for r in everything), "levels", digits=6)
        rec.add("parity_pass", float(all(s["pass"] for s in summary.values())), "bool")
    else:
        rec.error("parity", "NVDEC decoded none of the parity clips: no parity figure")


def _raw_decode(nvc: Any, path: Path, gpu: int, stream_handle: int) -> int:
    """PyNvVideoCodec alone: its demuxer, its core decoder, NV12 surfaces left on the device."""
    demuxer = nvc.CreateDemuxer(filename=str(path))
    decoder = nvc.CreateDecoder(gpuid=gpu, codec=demuxer.GetNvCodecId(), cudacontext=0,
                                cudastream=stream_handle, usedevicememory=True)
    count = 0
    for packet in demuxer:  # its last packet is empty, which flushes the decoder
        count += len(decoder.Decode(packet))
    count += len(decoder.Decode(nvc.PacketData()))  # in case the iteration stopped before that
    return count


def run(rec: Recorder, *, dry_run: bool = False, workdir: str | os.PathLike[str] | None = None) -> None:
    """Measure and add every figure to ``rec``; a failing part becomes an error entry."""
    import torch

    import gpuvio
    from gpuvio._samples import make_sample_video

    log = rec.log
    work = Path(workdir or tempfile.mkdtemp(prefix="gpuvio-gpu-video-"))
    work.mkdir(parents=True, exist_ok=True)
    cuda = not dry_run and torch.cuda.is_available()
    if not dry_run and not cuda:
        rec.error("gpu_video", "torch sees no CUDA device: no GPU figure measured")
    not_measured = "not measured (dry run)" if dry_run else ("not measured" if cuda else "not measured (no CUDA device)")
    # the GPU needs 1080p; a dry run on a small CPU machine checks the code path on 640x360
    width, height, seconds = (1920, 1080, 4.0) if cuda else (640, 360, 1.0)
    tag = "1080p_h264" if (width, height) == (1920, 1080) else f"{height}p_h264"
    clips = [Clip(tag, "libx264", f"main_{height}p.mp4", width, height, seconds, gop=60, repeats=5),
             *SMALL_CLIPS]
    table = rec.details.setdefault("video_parity", {
        "targets": TARGETS, "policies": list(POLICIES), "clips": {},
        "note": f"the per-codec clips are {SMALL_CLIPS[0].width}x{SMALL_CLIPS[0].height}, {SMALL_CLIPS[0].seconds:g} s: "
                f"their fps are indicative (decoder set-up weighs in them); the {tag} figures are the throughput ones"})
    paths: dict[str, Path] = {}

    def make_media() -> None:
        # all clips at once (the encoders release the GIL): VP9 alone takes several seconds
        start = time.perf_counter()

        def make(clip: Clip) -> Path:
            return make_sample_video(work / clip.filename, width=clip.width, height=clip.height,
                                     seconds=clip.seconds, codec=clip.encoder, pix_fmt=clip.pix_fmt,
                                     gop=clip.gop, audio=False)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(clips)) as pool:
            futures = {clip.tag: pool.submit(make, clip) for clip in clips}
        for clip in clips:
            try:
                paths[clip.tag] = futures[clip.tag].result()
            except Exception as exc:  # noqa: BLE001 - an encoder missing from PyAV's build costs its clip only
                rec.error(f"media {clip.tag}", f"{clip.encoder}: {type(exc).__name__}: {exc}")
        log(f"  media generated in {time.perf_counter() - start:.1f} s ({len(paths)} of {len(clips)} clips; "
            f"main {width}x{height}, {seconds} s)")

    rec.guard("media", make_media)
    rec.guard("parity arithmetic self-check", _self_check)
    if tag not in paths:
        rec.error("gpu_video", f"no {tag} clip: no throughput figure")
    else:
        rec.guard("frame count", lambda: rec.add(f"benchmark_clip_{tag}_frames",
                                                 len(gpuvio.read_video_timestamps(paths[tag])[0]), "frames"))

    reported: set[str] = set()

    def check_fused() -> None:
        """``fused_kernel_used``: every colour setting the reads tried got its fused kernel (the
        'accurate' kernel, and the 'torchvision' one on 8-bit surfaces; 10/12-bit 'torchvision'
        reads run the torch ops and try none)."""
        from gpuvio._backends._nvdec_color import fused_kernel_status

        status = fused_kernel_status()
        if not status and "fused kernel: none tried" not in reported:
            reported.add("fused kernel: none tried")
            rec.error("fused kernel", "no read tried a fused kernel (fused_kernel_status() is empty)")
        if "fused_kernel_used" not in {r["name"] for r in rec.results}:
            rec.add("fused_kernel_used", float(bool(status) and all(v == "fused" for v in status.values())), "bool")
        for key, value in status.items():
            if value != "fused" and key not in reported:
                reported.add(key)
                rec.error("fused kernel", f"{key}: {value}")

    # per clip and policy: CPU fps, NVDEC fps, and NVDEC's pixels against the CPU's
    for clip in clips:
        if clip.tag not in paths:
            continue
        path = paths[clip.tag]
        entry = table["clips"].setdefault(clip.tag, {
            "encoder": clip.encoder, "file": path.name, "bytes": path.stat().st_size, "width": clip.width,
            "height": clip.height, "seconds": clip.seconds, "pix_fmt": clip.pix_fmt, "policies": {}})
        for policy in POLICIES:
            row = entry["policies"].setdefault(policy, {
                "target": target_for(policy, clip.pix_fmt), "frames": None, "cpu_fps": None,
                **dict.fromkeys(GPU_FIELDS), "status": not_measured})
            _measure(rec, clip, path, policy, row, cuda=cuda)
            if cuda and policy == "accurate" and clip.tag == tag:
                rec.guard("fused kernel", check_fused)
    if not cuda:
        table["summary"] = {p: {"pass": None, "status": not_measured} for p in POLICIES}
        rec.save()
        if tag in paths:  # the CPU half of the transform figures (a dry run checks the code path)
            gpu_transforms.video(rec, paths[tag], tag, cuda=False, not_measured=not_measured, served=_on_nvdec)
        return
    rec.guard("fused kernel", check_fused)
    rec.guard("parity summary", lambda: _summarise(rec, table, [clip.tag for clip in clips]))

    from gpuvio import _dispatch
    from gpuvio._backends._cuda import load_notes, load_pynvvideocodec
    from gpuvio._multi import decode_videos

    if tag not in paths:
        return
    main = paths[tag]
    device = torch.device("cuda", 0)

    def raw_fps() -> None:
        nvc = load_pynvvideocodec()
        for note in load_notes():
            rec.error("PyNvVideoCodec import", note)
        stream = torch.cuda.Stream(device)
        elapsed, count = _median_time(lambda: _raw_decode(nvc, main, 0, stream.cuda_stream), repeats=5, sync=True)
        raw = count / elapsed
        rec.add(f"raw_pynvvideocodec_{tag}_fps", raw, "fps")
        rec.add("raw_pynvvideocodec_frames", count, "frames")
        elapsed0, _ = _median_time(lambda: _raw_decode(nvc, main, 0, 0), repeats=3, sync=True)
        rec.add(f"raw_pynvvideocodec_stream0_{tag}_fps", count / elapsed0, "fps")
        for policy in POLICIES:
            ours = table["clips"][tag]["policies"][policy].get("cuda_fps")
            if ours:
                rec.add(f"overhead_vs_raw_percent_{policy}", (raw / ours - 1.0) * 100.0, "%")

    rec.guard("raw PyNvVideoCodec", raw_fps)

    def multi_fps() -> None:
        backend: Any = _dispatch.get_backend("nvdec")  # NvdecBackend: engines(), pool_stats()
        engines = backend.engines(device)
        rec.add("nvdec_engines", engines, "count")
        files = [main] * max(8, 2 * engines)
        # count the frames and drop the clips at once: holding one call's output while the next
        # runs would double the peak (14 x 240 x 1080p is 21 GB)
        elapsed, total = _on_nvdec("decode_videos", lambda: _median_time(
            lambda: sum(v.shape[0] for v in decode_videos(files, device="cuda")), repeats=3, sync=True))
        rec.add(f"decode_videos_cuda_torchvision_{tag}_fps", total / elapsed, "fps")
        rec.add("decode_videos_files", len(files), "files")
        stats = backend.pool_stats()
        rec.add("nvdec_sessions_created", stats["created"], "count")
        rec.add("nvdec_sessions_reused", stats["reused"], "count")
        nvc = load_pynvvideocodec()
        streams = [torch.cuda.Stream(device) for _ in files]

        def raw_all() -> int:
            counts = [0] * len(files)

            def one(i: int) -> None:
                counts[i] = _raw_decode(nvc, files[i], 0, streams[i].cuda_stream)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(files))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts)

        elapsed, count = _median_time(raw_all, repeats=3, sync=True)
        rec.add(f"raw_pynvvideocodec_multi_{tag}_fps", count / elapsed, "fps")

    rec.guard("decode_videos", multi_fps)
    # decode-time transforms (issue 13): fps with and without Resize((224, 224)), CUDA vs CPU pixels
    gpu_transforms.video(rec, main, tag, cuda=True, not_measured=not_measured, served=_on_nvdec)

    def torchops_fps() -> None:
        # the 'accurate' policy without the fused kernel (its fallback when the kernel is unavailable)
        os.environ["GPUVIO_NVDEC_FUSED"] = "0"
        try:
            elapsed, video = _on_nvdec("read_video accurate, torch ops", lambda: _median_time(
                lambda: _read_nvdec(main, "accurate"), repeats=3, sync=True))
        finally:
            os.environ.pop("GPUVIO_NVDEC_FUSED", None)
        rec.add(f"read_video_cuda_accurate_torchops_{tag}_fps", video.shape[0] / elapsed, "fps")

    rec.guard("cuda read_video accurate, torch ops", torchops_fps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU parts only")
    parser.add_argument("--json", help="write {results, errors, running, complete} here, after every figure")
    parser.add_argument("--workdir", help="where the generated clips go (default: a new temporary folder)")
    args = parser.parse_args()
    rec = Recorder(args.json)
    try:
        run(rec, dry_run=args.dry_run, workdir=args.workdir)
    except Exception as exc:  # noqa: BLE001 - e.g. an import error: recorded, like every other failure
        rec.error("gpu_video", f"{type(exc).__name__}: {exc}")
    return rec.finish()


if __name__ == "__main__":
    sys.exit(main())
