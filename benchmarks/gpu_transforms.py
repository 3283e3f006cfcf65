"""Decode-time transforms on the GPU (issue 13): throughput with and without a resize, CUDA against CPU pixels.

Not a script of its own: ``gpu_video.py`` and ``gpu_image.py`` call it, in their processes and
into their records (``Recorder``), so that it needs no extra media, stage or time limit.

:func:`video`, on ``gpu_video.py``'s main clip (1080p H.264 on a GPU, a small clip in a dry run):

* ``read_video_cpu_resize224_<clip>_fps``: ``gpuvio.read_video(path, transforms=[Resize((224, 224))])``
  on the CPU (measured in a dry run too);
* ``read_video_cuda_noresize_<clip>_fps`` and ``read_video_cuda_resize224_<clip>_fps``: the same read
  with ``device="cuda"``, without then with the resize, one right after the other (the pair to compare);
* ``transform_parity_{max_abs_diff,mean_abs_diff,pass}_video``: the whole clip read with
  ``transforms=[Resize(256), CenterCrop(224)]`` on ``device="cuda"`` against ``device="cpu"``;
  pass: mean |diff| <= 0.5 (the tolerance :mod:`gpuvio.transforms` promises on every device);
* ``fused_resize_kernel_used``: 1 when the fused NV12-to-resized-RGB kernel wrote frames
  (``resize_kernel_launches()``) and no CUDA read fell back from it (``resize_kernel_status()`` is
  empty), else 0 and the reasons and launch count in the details.

:func:`image`, on ``gpu_image.py``'s batch of JPEGs:

* ``decode_image_cpu_resize224_batch_imgs_per_s``: ``gpuvio.decode_image(list, transforms=[Resize(224)])``
  on the CPU (measured in a dry run too);
* ``decode_image_cuda_resize224_batch_imgs_per_s``: the same batch with ``device="cuda"``
  (nvImageCodec), beside ``gpu_image.py``'s ``decode_jpeg_cuda_batch_imgs_per_s`` without the resize;
* ``image_transform_parity_{max_abs_diff,mean_abs_diff,pass}``: per image, the mean |diff|
  between the CUDA and the CPU result of that call (worst image reported; pass: <= 0.5).

A GPU figure counts only when the GPU backend served all of it (the caller's check, passed in as
``served``). The tables go to ``details["video_transforms"]`` / ``details["image_transforms"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BOUND", "compare", "image", "video"]

# gpuvio.transforms' promise: within this mean absolute difference (uint8 levels) of the reference
BOUND = 0.5
VIDEO_PARITY = "[Resize(256), CenterCrop(224)]"


def compare(a: Any, b: Any) -> dict[str, Any]:
    """max and mean |a - b| of two uint8 tensors of the same shape (on ``a``'s device)."""
    import torch

    if tuple(a.shape) != tuple(b.shape) or a.numel() == 0:
        raise AssertionError(f"shapes differ or are empty: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a.to(torch.int16) - b.to(a.device).to(torch.int16)).abs()
    return {"max_abs_diff": int(d.max()), "mean_abs_diff": float(d.sum(dtype=torch.int64)) / a.numel()}


def _median(fn: Callable[[], Any], repeats: int, cuda: bool) -> tuple[float, Any]:
    from gpuvio._bench._timing import median_time, sync_fn

    return median_time(fn, repeats=repeats, warmup=1, sync=sync_fn("cuda") if cuda else None)


def _self_check() -> None:
    """The parity arithmetic on known tensors (runs in a dry run too)."""
    import torch

    a = torch.zeros((2, 3, 4), dtype=torch.uint8)
    b = a.clone()
    b[0, 0, 0], b[1, 2, 3] = 255, 1
    got = compare(a, b)
    if got != {"max_abs_diff": 255, "mean_abs_diff": 256 / 24}:
        raise AssertionError(f"transform parity arithmetic is wrong: {got}")


def video(rec: Any, path: Path, tag: str, *, cuda: bool, not_measured: str,
          served: Callable[[str, Callable[[], Any]], Any]) -> None:
    """The video figures (module docstring); ``served(what, fn)`` runs ``fn`` and raises unless
    NVDEC decoded all of it (``gpu_video.py``'s fallback check)."""
    import gpuvio
    from gpuvio.transforms import CenterCrop, Resize

    resize = [Resize((224, 224))]
    parity_transforms = [Resize(256), CenterCrop(224)]
    table = rec.details.setdefault("video_transforms", {
        "clip": path.name, "tag": tag, "resize": "Resize((224, 224))", "parity_transforms": VIDEO_PARITY,
        "bound_mean_abs_diff": BOUND, "cpu_resize_fps": None, "cuda_noresize_fps": None,
        "cuda_resize_fps": None, "max_abs_diff": None, "mean_abs_diff": None, "pass": None,
        "status": not_measured})
    rec.guard("transform parity arithmetic self-check", _self_check)

    def cpu() -> None:
        elapsed, frames = _median(lambda: gpuvio.read_video(path, device="cpu", transforms=resize)[0], 2, False)
        table["cpu_resize_fps"] = round(frames.shape[0] / elapsed, 3)
        rec.add(f"read_video_cpu_resize224_{tag}_fps", table["cpu_resize_fps"], "fps")

    rec.guard("cpu read_video Resize((224, 224))", cpu)
    if not cuda:
        rec.save()
        return
    table["status"] = "error (see errors)"

    def nvdec(transforms: Any) -> Any:
        frames, _, info = gpuvio.read_video(path, device="cuda", transforms=transforms)
        if info.get("backend") != "nvdec":
            raise RuntimeError(f"{path.name} was decoded by the {info.get('backend')!r} backend: "
                               f"{info.get('fallback_reason')}")
        return frames

    def fps() -> None:
        for key, transforms, name in (("cuda_noresize_fps", None, "noresize"), ("cuda_resize_fps", resize, "resize224")):
            elapsed, frames = served(f"read_video cuda {name}", lambda t=transforms: _median(lambda: nvdec(t), 3, True))
            table[key] = round(frames.shape[0] / elapsed, 3)
            rec.add(f"read_video_cuda_{name}_{tag}_fps", table[key], "fps")

    def parity() -> None:
        got = served("read_video cuda parity", lambda: nvdec(parity_transforms))
        want = gpuvio.read_video(path, device="cpu", transforms=parity_transforms)[0]
        result = compare(got, want)
        table.update(result, mean_abs_diff=round(result["mean_abs_diff"], 6), shape=list(got.shape),
                     status="measured")
        table["pass"] = result["mean_abs_diff"] <= BOUND
        rec.add("transform_parity_max_abs_diff_video", result["max_abs_diff"], "levels")
        rec.add("transform_parity_mean_abs_diff_video", result["mean_abs_diff"], "levels", digits=6)
        rec.add("transform_parity_pass_video", float(table["pass"]), "bool")
        if not table["pass"]:
            rec.log(f"  transform parity {VIDEO_PARITY}: MISSED (mean {result['mean_abs_diff']:.4f} > {BOUND})")

    def kernel() -> None:
        from gpuvio._backends._nvdec_resize import resize_kernel_launches, resize_kernel_status

        status = resize_kernel_status()
        table["resize_kernel_status"] = status
        table["resize_kernel_launches"] = resize_kernel_launches()
        rec.add("fused_resize_kernel_used", float(not status and resize_kernel_launches() > 0), "bool")

    rec.guard("cuda read_video with and without Resize((224, 224))", fps)
    rec.guard(f"cuda read_video parity {VIDEO_PARITY}", parity)
    rec.guard("fused resize kernel", kernel)


def image(rec: Any, tensors: list[Any], *, cuda: bool, repeats: int,
          served: Callable[[str, Callable[[], Any]], Any]) -> None:
    """The image figures (module docstring) on ``tensors`` (encoded JPEGs); ``served(what, fn)``
    runs ``fn`` and raises unless nvImageCodec decoded all of it (``gpu_image.py``'s check)."""
    import gpuvio
    from gpuvio.transforms import Resize

    resize = [Resize(224)]
    count = len(tensors)
    table = rec.details.setdefault("image_transforms", {
        "images": count, "resize": "Resize(224)", "bound_mean_abs_diff": BOUND, "cpu_imgs_per_s": None,
        "cuda_imgs_per_s": None, "max_abs_diff": None, "mean_abs_diff": None, "pass": None,
        "status": "not measured" if cuda else "not measured (no GPU)"})

    def cpu() -> None:
        elapsed, _ = _median(lambda: gpuvio.decode_image(tensors, transforms=resize), repeats, False)
        table["cpu_imgs_per_s"] = round(count / elapsed, 3)
        rec.add("decode_image_cpu_resize224_batch_imgs_per_s", table["cpu_imgs_per_s"], "img/s")

    rec.guard("cpu decode_image Resize(224)", cpu)
    if not cuda:
        rec.save()
        return
    table["status"] = "error (see errors)"

    def decode() -> list[Any]:
        return gpuvio.decode_image(tensors, device="cuda", backend="nvimgcodec", transforms=resize)

    def gpu() -> None:
        elapsed, _ = served("decode_image cuda Resize(224)", lambda: _median(decode, repeats, True))
        table["cuda_imgs_per_s"] = round(count / elapsed, 3)
        rec.add("decode_image_cuda_resize224_batch_imgs_per_s", table["cuda_imgs_per_s"], "img/s")

    def parity() -> None:
        got = served("decode_image cuda parity", decode)
        want = gpuvio.decode_image(tensors, transforms=resize)
        worst = {"max_abs_diff": 0, "mean_abs_diff": 0.0}
        for g, w in zip(got, want, strict=True):
            r = compare(g, w)
            worst = {k: max(worst[k], r[k]) for k in worst}
        table.update(worst, mean_abs_diff=round(worst["mean_abs_diff"], 6), status="measured")
        table["pass"] = worst["mean_abs_diff"] <= BOUND
        rec.add("image_transform_parity_max_abs_diff", worst["max_abs_diff"], "levels")
        rec.add("image_transform_parity_mean_abs_diff", worst["mean_abs_diff"], "mean |diff| (0-255)", digits=6)
        rec.add("image_transform_parity_pass", float(table["pass"]), "bool")

    rec.guard("cuda decode_image Resize(224)", gpu)
    rec.guard("cuda decode_image Resize(224) parity", parity)
