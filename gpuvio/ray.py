"""Decoding in Ray Data pipelines: encoded bytes travel, GPU actors decode, the CPU steps in.

A Ray Data pipeline that decodes early ships decoded frames between nodes: a 224x224 RGB image
is 150 KB against about 15 KB of JPEG, and a second of 720p video is 80 MB against 0.5 MB of
H.264. So read *bytes* (``ray.data.read_binary_files``), move bytes, and decode as late as
possible, on the actors that use the pixels. The callable classes here go into
``Dataset.map_batches``: on an actor given a GPU (``num_gpus=1``) they decode on it with the GPU
backends; on a CPU actor, or where no GPU backend can run, they decode with the CPU backend.

- :class:`DecodeImages`: a column of encoded images (JPEG, PNG, GIF, WebP) to pixels.
- :class:`DecodeVideoClips`: a column of video files (bytes or paths) plus start/end times in
  seconds to clips.

Both take ``transforms=`` (:mod:`gpuvio.transforms`: ``Resize``, ``CenterCrop``, ``RandomCrop``
or torchvision's), applied on the actor as part of decoding, one random window per image or
clip: what leaves the actor is already the training size, which keeps the object store small.

Both return numpy batches by default (``output="torch"`` for torch tensors). To keep decoded
frames out of the object store entirely, call :meth:`DecodeImages.decode` /
:meth:`DecodeVideoClips.decode` yourself where the frames are consumed, e.g. in a Ray Train
worker iterating over a dataset of bytes: it returns tensors on the actor's GPU.

Single machine::

    import ray, gpuvio.ray
    ds = ray.data.read_binary_files("images/", include_paths=True)           # columns: bytes, path
    ds = ds.map_batches(gpuvio.ray.DecodeImages,
                        fn_constructor_kwargs={"mode": "RGB"},
                        compute=ray.data.ActorPoolStrategy(size=2), num_gpus=1, batch_size=64)
    for batch in ds.iter_batches(batch_format="numpy"):
        batch["image"]                                     # [64, 3, H, W] uint8 (ragged: object array)

Several machines (a Ray cluster; every node has gpuvio installed and sees the same storage)::

    # node 1 (head):        ray start --head --port=6379
    # nodes 2..N (workers): ray start --address=<head-ip>:6379
    # then, on any node:
    import ray, gpuvio.ray
    ray.init(address="auto")
    clips = ray.data.read_parquet("s3://bucket/clips.parquet")   # columns: path, start, end
    clips = clips.map_batches(gpuvio.ray.DecodeVideoClips,
                              fn_constructor_kwargs={"column": "path", "output_format": "TCHW"},
                              compute=ray.data.ActorPoolStrategy(min_size=1, max_size=16),
                              num_gpus=1, batch_size=8)
    # Ray places one actor per GPU across the nodes; each opens its files from the shared
    # storage (a "path" column) or receives the bytes (a "bytes" column from read_binary_files).
    # For CPU-only nodes, run a second map_batches with num_gpus=0 (decoding then uses PyAV).

Ray is not a dependency of gpuvio: ``pip install "gpuvio[ray]"``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import torch

from ._errors import InvalidArgumentError, InvalidInputTypeError
from ._types import ColorPolicy, DeviceLike, ImageReadMode, check_color
from .transforms import TransformsLike, as_transforms

__all__ = ["DecodeImages", "DecodeVideoClips"]

Output = Literal["numpy", "torch"]


def _check_choice(value: Any, name: str, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _as_source(value: Any, row: int) -> Any:
    """A cell of the input column: a path (str/PathLike), or encoded bytes (bytes or uint8 array)."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return torch.from_numpy(value)
    raise InvalidInputTypeError(f"row {row}: expected a path or encoded bytes, got {type(value).__name__}")


def _column(batch: dict[str, Any], name: str) -> Any:
    try:
        return batch[name]
    except KeyError:
        raise InvalidArgumentError(f"the batch has no column {name!r}; its columns are {sorted(batch)}") from None


class _Decoder:
    """What both decoders share: device choice, transforms, output conversion, fallback reporting."""

    def __init__(self, *, device: DeviceLike, output: Output, backend: str | None,
                 transforms: TransformsLike) -> None:
        from ._dispatch import parse_device

        self.device = parse_device(device)
        self.output = _check_choice(output, "output", ("numpy", "torch"))
        self.backend = backend
        #: the checked transforms (gpuvio's objects; torchvision's are converted)
        self.transforms = as_transforms(transforms)
        #: device the last batch was decoded on: a string such as "cuda:0" or "cpu"
        self.decoded_on: str | None = None

    def _finish(self, tensors: list[torch.Tensor]) -> Any:
        self.decoded_on = str(tensors[0].device) if tensors else self.decoded_on
        if self.output == "torch":
            host = [t.cpu() for t in tensors]  # Ray moves batches through host memory
            if host and all(t.shape == host[0].shape for t in host):
                return torch.stack(host)
            return host
        arrays = [t.cpu().numpy() for t in tensors]
        if arrays and all(a.shape == arrays[0].shape for a in arrays):
            return np.stack(arrays)
        ragged = np.empty(len(arrays), dtype=object)  # Ray stores this as a variable-shaped tensor
        ragged[:] = arrays
        return ragged


class DecodeImages(_Decoder):
    """``map_batches`` callable: decode a column of encoded images.

    Args:
        column: input column of encoded images (bytes, or paths); default ``"bytes"``, the column
            ``ray.data.read_binary_files`` makes.
        output_column: where the pixels go; default ``"image"``.
        mode: :class:`~gpuvio.ImageReadMode` or its name; default ``"RGB"``.
        layout: ``"CHW"`` (default, torchvision's) or ``"HWC"``.
        device: ``"auto"`` (default: the actor's GPU when a GPU backend can run, else the CPU),
            ``"cuda"``, ``"cpu"``...
        output: ``"numpy"`` (default) or ``"torch"``.
        drop_input: drop the encoded column from the output (default True: don't carry the
            bytes further).
        backend: force a decoding backend by name.
        transforms: decode-time :mod:`gpuvio.transforms`, applied to each image after decoding
            (as ``gpuvio.decode_image(transforms=...)``), one random window per image, drawn
            from the crop's generator (by default the actor's torch RNG). Default None. A crop
            larger than an image raises :class:`~gpuvio.InvalidArgumentError` for the batch.

    Returns (per batch): the input columns plus ``output_column``: ``[B, C, H, W]`` uint8 when all
    images share a shape (H and W after ``transforms``: with a ``(h, w)`` resize or a crop last,
    always), else a length-B object array of ``[C, H, W]`` arrays.
    """

    def __init__(self, *, column: str = "bytes", output_column: str = "image",
                 mode: ImageReadMode | str = ImageReadMode.RGB, layout: Literal["CHW", "HWC"] = "CHW",
                 device: DeviceLike = "auto", output: Output = "numpy", drop_input: bool = True,
                 backend: str | None = None, transforms: TransformsLike = None) -> None:
        super().__init__(device=device, output=output, backend=backend, transforms=transforms)
        self.column = column
        self.output_column = output_column
        self.mode = ImageReadMode.parse(mode)
        self.layout = _check_choice(layout, "layout", ("CHW", "HWC"))
        self.drop_input = drop_input

    def decode(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """The batch's images as tensors on the decoding device: ``Tensor[C, H, W]`` (or HWC),
        after ``transforms``."""
        from ._image import decode_image

        sources = [_as_source(v, i) for i, v in enumerate(_column(batch, self.column))]
        if not sources:
            return []
        images = decode_image(sources, mode=self.mode, device=self.device, backend=self.backend,
                              transforms=self.transforms)
        if self.layout == "HWC":
            images = [im.permute(1, 2, 0) for im in images]
        return images

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if not (self.drop_input and k == self.column)}
        out[self.output_column] = self._finish(self.decode(batch))
        return out


class DecodeVideoClips(_Decoder):
    """``map_batches`` callable: decode clips given by file and time range.

    Each row names a video file (column ``column``: a path, or the file's bytes) and a time range
    in seconds (``start_column``, ``end_column``, inclusive, as :func:`gpuvio.read_video` with
    ``pts_unit="sec"``); a missing or None end reads to the end of the file.

    Args:
        column: ``"bytes"`` (default) or e.g. ``"path"``.
        start_column, end_column: default ``"start"`` and ``"end"``.
        output_column: default ``"clip"``.
        output_format: ``"TCHW"`` (default) or ``"THWC"``.
        color: ``"torchvision"`` (default) or ``"accurate"``, as for :func:`gpuvio.read_video`.
        transforms: decode-time :mod:`gpuvio.transforms`, applied to every frame as it is
            decoded (as ``gpuvio.read_video(transforms=...)``), one random window per clip,
            drawn from the crop's generator (by default the actor's torch RNG). Default None.
        device, output, drop_input, backend: as for :class:`DecodeImages`.

    Returns (per batch): the input columns plus ``output_column``: ``[B, T, C, H, W]`` uint8 when
    all clips share a shape (H and W after ``transforms``), else a length-B object array of
    ``[T, C, H, W]`` arrays.
    """

    def __init__(self, *, column: str = "bytes", start_column: str = "start", end_column: str = "end",
                 output_column: str = "clip", output_format: Literal["TCHW", "THWC"] = "TCHW",
                 device: DeviceLike = "auto", output: Output = "numpy", drop_input: bool = True,
                 backend: str | None = None, color: ColorPolicy = "torchvision",
                 transforms: TransformsLike = None) -> None:
        super().__init__(device=device, output=output, backend=backend, transforms=transforms)
        self.color = check_color(color)
        self.column = column
        self.start_column = start_column
        self.end_column = end_column
        self.output_column = output_column
        self.output_format = _check_choice(output_format, "output_format", ("TCHW", "THWC"))
        self.drop_input = drop_input

    def decode(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """The batch's clips as tensors on the decoding device: ``Tensor[T, C, H, W]`` (or THWC),
        after ``transforms``."""
        from ._video import read_video

        sources = _column(batch, self.column)
        starts = _column(batch, self.start_column)
        ends = batch.get(self.end_column)
        clips = []
        for i, value in enumerate(sources):
            end = None if ends is None or ends[i] is None or np.isnan(ends[i]) else float(ends[i])
            video, _, _ = read_video(_as_source(value, i), float(starts[i]), end, pts_unit="sec",
                                     output_format=self.output_format, device=self.device, backend=self.backend,
                                     color=self.color, transforms=self.transforms)
            clips.append(video)
        return clips

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if not (self.drop_input and k == self.column)}
        out[self.output_column] = self._finish(self.decode(batch))
        return out
