"""The image workloads: decode_image (JPEG, PNG, batches) and encode_jpeg / encode_png, with their peers."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._media import MediaFile
from ._timing import synced
from ._workload import Contender, Target, Workload, add_peer, gpuvio_label, import_peer

__all__ = ["image_workloads"]


def _pil_decode(raw: bytes) -> torch.Tensor:
    """The naive Pillow path: open, load, wrap as CHW (a view of the HWC array)."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        arr = np.asarray(im)
    with warnings.catch_warnings():  # the array is read-only; the tensor is only read
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(arr)
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def _pil_encode(image: torch.Tensor, fmt: str, **kwargs: Any) -> bytes:
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _chw(t: torch.Tensor) -> torch.Tensor:
    return t.cpu()


def _nchw_list(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.cpu() for t in ts[:2]])


def _hwc_to_chw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(2, 0, 1).cpu()


def image_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    import gpuvio

    raw = media.path.read_bytes()
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    tv, tv_reason = import_peer("torchvision.io")
    cuda = device.startswith("cuda")
    gpu_index = torch.device(device).index or 0 if cuda else 0
    workloads: list[Workload] = []
    image = gpuvio.decode_image(data)
    size = f"{image.shape[2]}x{image.shape[1]}"

    if media.role == "jpeg":
        nvi, nvi_reason = import_peer("nvidia.nvimgcodec") if cuda else (None, None)
        _dali, dali_reason = import_peer("nvidia.dali") if cuda else (None, None)
        batch = 8 if quick else 16
        for n_images in (1, batch):
            items = raw if n_images == 1 else [raw] * n_images
            tensors = data if n_images == 1 else [data] * n_images
            view = _chw if n_images == 1 else _nchw_list
            cs: list[Contender] = [Contender(
                gpuvio_label("decode_image", device), "gpuvio", device,
                synced(lambda t=tensors: gpuvio.decode_image(t, device=device), device),
                is_gpuvio=True, view=view)]
            skip: list[dict[str, str]] = []
            if cuda:
                cs.append(Contender("gpuvio (cpu backend, cpu)", "gpuvio", "cpu",
                                    lambda t=tensors: gpuvio.decode_image(t), view=view))
            # add_peer() calls these makers at once; the defaults bind this iteration's values anyway
            add_peer(cs, skip, "torchvision.io.decode_jpeg", tv_reason, lambda t=tensors, v=view: Contender(
                f"torchvision.io.decode_jpeg ({'cuda' if cuda else 'cpu'})", "torchvision", device,
                synced(lambda: tv.decode_jpeg(t, device=device), device), view=v))
            if cuda:
                add_peer(cs, skip, "torchvision.io.decode_jpeg (cpu)", tv_reason, lambda t=tensors, v=view: Contender(
                    "torchvision.io.decode_jpeg (cpu)", "torchvision", "cpu",
                    lambda: tv.decode_jpeg(t), view=v))
            if cpu_peers:
                cs.append(Contender("Pillow (libjpeg-turbo) -> tensor", "Pillow", "cpu",
                                    (lambda: _pil_decode(raw)) if n_images == 1
                                    else (lambda k=n_images: [_pil_decode(raw) for _ in range(k)]),
                                    view=view))
            if cuda:
                add_peer(cs, skip, "nvImageCodec", nvi_reason,
                     lambda it=items, v=view: _nvimgcodec_contender(nvi, it, device, gpu_index, v))
                add_peer(cs, skip, "DALI", dali_reason,
                     lambda k=n_images, v=view: _dali_contender(raw, k, device, gpu_index, v))
            title = f"decode_image JPEG {size}" + (f" (list of {n_images})" if n_images > 1 else "")
            targets = []
            if n_images == 1 and media.params.get("width") == 1920 and not cuda:
                jpeg_peer = "torchvision.io.decode_jpeg" if tv is not None else "Pillow"
                targets = [Target(2, f"decode_image JPEG 1080p at least as fast as {jpeg_peer}", jpeg_peer)]
            workloads.append(Workload(title, media, "images/s", n_images, cs, skip, short=True,
                                      targets=targets))
    if media.role == "png":
        cs = [Contender(gpuvio_label("decode_image", device), "gpuvio", device,
                        synced(lambda: gpuvio.decode_image(data, device=device), device),
                        is_gpuvio=True, view=_chw)]
        skip = []
        if cpu_peers:
            add_peer(cs, skip, "torchvision.io.decode_png", tv_reason, lambda: Contender(
                "torchvision.io.decode_png", "torchvision", "cpu", lambda: tv.decode_png(data), view=_chw))
            cs.append(Contender("Pillow (libpng) -> tensor", "Pillow", "cpu", lambda: _pil_decode(raw),
                                view=_chw))
        workloads.append(Workload(f"decode_image PNG {size}", media, "images/s", 1, cs, skip, short=True))

    # encoding: the decoded image back to JPEG (quality 75) or PNG (level 6)
    cpu_image = image[:3].contiguous() if image.shape[0] >= 3 else image
    if media.role == "jpeg":
        dev_image = cpu_image.to(device) if cuda else cpu_image
        cs = [Contender("gpuvio encode_jpeg " + ("(cuda tensor)" if cuda else "(cpu backend)"), "gpuvio",
                        device, synced(lambda: gpuvio.encode_jpeg(dev_image, quality=75), device),
                        is_gpuvio=True)]
        skip = []
        if cuda:
            cs.append(Contender("gpuvio encode_jpeg (cpu tensor)", "gpuvio", "cpu",
                                lambda: gpuvio.encode_jpeg(cpu_image, quality=75)))
        add_peer(cs, skip, "torchvision.io.encode_jpeg", tv_reason, lambda: Contender(
            f"torchvision.io.encode_jpeg ({'cuda' if cuda else 'cpu'})", "torchvision", device,
            synced(lambda: tv.encode_jpeg(dev_image, quality=75), device)))
        if cpu_peers:
            cs.append(Contender("Pillow save(JPEG, quality=75)", "Pillow", "cpu",
                                lambda: _pil_encode(cpu_image, "JPEG", quality=75)))
        if cuda:
            add_peer(cs, skip, "nvImageCodec encoder", import_peer("nvidia.nvimgcodec")[1],
                 lambda: _nvimgcodec_encoder(dev_image, gpu_index, device))
        for c in cs:
            c.view = _bytes_view
        workloads.append(Workload(f"encode_jpeg {size} quality 75", media, "images/s", 1, cs, skip,
                                  short=True, compare="bytes"))
    if media.role == "png":
        cs = [Contender("gpuvio encode_png (cpu backend)", "gpuvio", "cpu",
                        lambda: gpuvio.encode_png(cpu_image, compression_level=6), is_gpuvio=True)]
        skip = []
        if cpu_peers:
            add_peer(cs, skip, "torchvision.io.encode_png", tv_reason, lambda: Contender(
                "torchvision.io.encode_png", "torchvision", "cpu",
                lambda: tv.encode_png(cpu_image, compression_level=6)))
            cs.append(Contender("Pillow save(PNG, compress_level=6)", "Pillow", "cpu",
                                lambda: _pil_encode(cpu_image, "PNG", compress_level=6)))
        for c in cs:
            c.view = _bytes_view
        workloads.append(Workload(f"encode_png {size} level 6", media, "images/s", 1, cs, skip, short=True,
                                  compare="bytes"))
    return workloads


def _bytes_view(out: Any) -> torch.Tensor | None:
    """Encoded output of any library as a flat CPU uint8 tensor (None if it cannot be read)."""
    if isinstance(out, torch.Tensor):
        return out.cpu().flatten()
    try:
        return torch.frombuffer(bytearray(memoryview(out)), dtype=torch.uint8)
    except (TypeError, ValueError):
        return None


def _nvimgcodec_contender(nvi: Any, items: Any, device: str, gpu: int,
                          view: Callable[[Any], torch.Tensor]) -> Contender:
    decoder = nvi.Decoder(device_id=gpu)

    def run() -> Any:
        out = decoder.decode(items)
        if isinstance(out, list):
            return [torch.as_tensor(o, device=device).permute(2, 0, 1) for o in out]
        return torch.as_tensor(out, device=device).permute(2, 0, 1)

    return Contender("nvImageCodec Decoder.decode (raw)", "nvImageCodec", device, synced(run, device),
                     view=view)


def _nvimgcodec_encoder(image: torch.Tensor, gpu: int, device: str) -> Contender:
    import nvidia.nvimgcodec as nvi

    encoder = nvi.Encoder(device_id=gpu)
    hwc = image.permute(1, 2, 0).contiguous()
    params = nvi.EncodeParams(quality_type=nvi.QualityType.QUALITY, quality_value=75)
    return Contender("nvImageCodec Encoder.encode (raw)", "nvImageCodec", device,
                     synced(lambda: encoder.encode(nvi.as_image(hwc), "jpeg", params=params), device))


def _dali_contender(raw: bytes, batch: int, device: str, gpu: int,
                    view: Callable[[Any], torch.Tensor]) -> Contender:
    """DALI's mixed (nvJPEG) decoder in a pipeline fed from Python, outputs copied into torch."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import feed_ndarray

    @pipeline_def(batch_size=batch, num_threads=2, device_id=gpu, prefetch_queue_depth=1)
    def pipe() -> Any:
        jpegs = fn.external_source(name="jpegs", device="cpu")
        return fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)

    pipeline = pipe()
    pipeline.build()
    encoded = [np.frombuffer(raw, dtype=np.uint8)] * batch

    def run() -> Any:
        pipeline.feed_input("jpegs", encoded)
        (out,) = pipeline.run()
        images = []
        for i in range(batch):
            t = out[i]
            dst = torch.empty(t.shape(), dtype=torch.uint8, device=device)
            feed_ndarray(t, dst)
            images.append(dst.permute(2, 0, 1))
        return images[0] if batch == 1 else images

    return Contender("DALI fn.decoders.image (mixed)", "DALI", device, synced(run, device), view=view)
