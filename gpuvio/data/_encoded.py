"""Encoded samples: what a dataset hands out with ``decode=False``, and how they are decoded.

A DataLoader worker that only reads bytes never touches CUDA, so it is safe under ``fork``. The
worker returns :class:`EncodedImage` / :class:`EncodedClip` objects; :func:`collate` gathers them
into an :class:`EncodedBatch`; :class:`~gpuvio.data.DeviceLoader` decodes that batch in the main
process. The decode functions here are the only place a sample is decoded, on the worker (CPU)
path and on the device path alike, so the two paths cannot drift apart.

Decode-time transforms travel with each sample (``transforms``). A dataset gives every sample
its own :class:`~gpuvio.transforms.RandomCrop` seeds when it hands the sample out
(:func:`gpuvio.transforms.per_item`), so a sample's window is drawn in ``__getitem__`` (from the
crop's generator, by default that process's torch RNG), whatever process or thread decodes it
later, and decoding it again gives the same window.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .._errors import InvalidArgumentError
from .._types import ColorPolicy, ImageReadMode
from ..transforms import RandomCrop, Transform, as_transforms, plan, restarted

__all__ = ["EncodedBatch", "EncodedClip", "EncodedImage", "collate", "decode_clip", "decode_images",
           "decode_items", "stack_or_list", "worker_safe_device"]

ClipFormat = Literal["TCHW", "THWC"]


def _packed(transforms: tuple[Transform, ...]) -> tuple[Any, ...]:
    """``transforms`` for pickling: a seeded crop as ``(size, seed)``, not its generator's 5 KB state
    (which a DataLoader worker would send as one more shared-memory tensor per sample)."""
    return tuple(("RandomCrop", t.size, t.seed) if isinstance(t, RandomCrop) and t.seed is not None else t
                 for t in transforms)


def _unpacked(packed: tuple[Any, ...]) -> tuple[Transform, ...]:
    return tuple(RandomCrop(p[1], seed=p[2]) if isinstance(p, tuple) else p for p in packed)


def _rebuild(cls: type, fields: dict[str, Any], packed: tuple[Any, ...]) -> Any:
    return cls(**fields, transforms=_unpacked(packed))


class _CarriesTransforms:
    """For the encoded dataclasses: check ``transforms`` on creation, pickle it compactly."""

    transforms: tuple[Transform, ...]

    def __post_init__(self) -> None:
        # a frozen dataclass: the checked tuple replaces what was given
        object.__setattr__(self, "transforms", as_transforms(self.transforms))

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                  if f.name != "transforms"}
        return _rebuild, (type(self), fields, _packed(self.transforms))

    def _transforms_repr(self) -> str:
        return f", transforms={list(self.transforms)!r}" if self.transforms else ""


@dataclass(frozen=True, repr=False)
class EncodedImage(_CarriesTransforms):
    """One image file's bytes and how to decode them.

    Attributes:
        data: ``Tensor[N] uint8``, the encoded file (a tensor, so DataLoader workers pass it
            through shared memory rather than a pipe).
        mode: the :class:`~gpuvio.ImageReadMode` to decode with.
        apply_exif_orientation: whether to turn the image upright from its EXIF tag.
        transforms: decode-time :mod:`gpuvio.transforms`, applied after decoding (and after the
            EXIF orientation); given as any ``transforms=`` value, kept as a tuple of gpuvio's.
            A :class:`~gpuvio.transforms.RandomCrop` with a seed gives the same window at every
            decode. Default ``()``: none.
    """

    data: torch.Tensor
    mode: ImageReadMode = ImageReadMode.RGB
    apply_exif_orientation: bool = False
    transforms: tuple[Transform, ...] = ()

    def decode(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``Tensor[C, H, W] uint8`` on ``device`` (see :func:`gpuvio.decode_image`), H and W after
        ``transforms``."""
        return decode_images([self], device=device)[0]

    def pin_memory(self) -> EncodedImage:
        return dataclasses.replace(self, data=self.data.pin_memory())

    def __repr__(self) -> str:
        return f"EncodedImage({self.data.numel()} bytes, mode={self.mode.name}{self._transforms_repr()})"


@dataclass(frozen=True, repr=False)
class EncodedClip(_CarriesTransforms):
    """One clip of a video file, still encoded: the file and the frames to take from it.

    Attributes:
        data: ``Tensor[N] uint8`` of the whole file, or its path (``encoded_as="path"``).
        start_pts, end_pts: pts (stream time base) of the clip's first and last frames; decoding
            reads exactly the frames in this inclusive range.
        offsets: which of those frames form the clip, counted from the first (``0, 1, 2...``
            without resampling, every n-th or a rounded pattern with ``frame_rate``).
        positions: the same frames as display indices in the file (the fallback when a file's
            decoded frames disagree with its packet timestamps).
        output_format: ``"TCHW"`` or ``"THWC"``.
        color: the colour policy, ``"torchvision"`` (default) or ``"accurate"``
            (see :func:`gpuvio.read_video`).
        transforms: decode-time :mod:`gpuvio.transforms` for every frame of the clip, with one
            random window for the whole clip; given as any ``transforms=`` value, kept as a tuple
            of gpuvio's. A :class:`~gpuvio.transforms.RandomCrop` with a seed gives the same
            window at every decode. Default ``()``: none.
    """

    data: torch.Tensor | str
    start_pts: int
    end_pts: int
    offsets: tuple[int, ...]
    positions: tuple[int, ...]
    output_format: ClipFormat = "TCHW"
    color: ColorPolicy = "torchvision"
    transforms: tuple[Transform, ...] = ()

    def decode(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``Tensor[T, C, H, W]`` (or ``[T, H, W, C]``) uint8 on ``device``, H and W after ``transforms``."""
        return decode_clip(self, device=device)

    def pin_memory(self) -> EncodedClip:
        if isinstance(self.data, str):
            return self
        return dataclasses.replace(self, data=self.data.pin_memory())

    def __repr__(self) -> str:
        what = repr(self.data) if isinstance(self.data, str) else f"{self.data.numel()} bytes"
        return (f"EncodedClip({what}, frames={len(self.offsets)}, pts={self.start_pts}..{self.end_pts}, "
                f"{self.output_format}{self._transforms_repr()})")


class EncodedBatch(Sequence):
    """A batch of encoded samples, as :func:`collate` builds it: a read-only list.

    :class:`~gpuvio.data.DeviceLoader` replaces it by the decoded batch. It pins its tensors when
    the DataLoader has ``pin_memory=True``.
    """

    def __init__(self, items: Sequence[EncodedImage | EncodedClip]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def pin_memory(self) -> EncodedBatch:
        return EncodedBatch([item.pin_memory() for item in self.items])

    def __repr__(self) -> str:
        kinds = sorted({type(i).__name__ for i in self.items})
        return f"EncodedBatch({len(self.items)} x {'/'.join(kinds) or 'nothing'})"


def decode_images(items: Sequence[EncodedImage], *, device: torch.device | str = "cpu",
                  backend: str | None = None) -> list[torch.Tensor]:
    """Decode encoded images as batches (one :func:`gpuvio.decode_image` call per read mode, EXIF
    setting and set of deterministic transforms), then apply each item's ``transforms``.

    Items with a :class:`~gpuvio.transforms.RandomCrop` are decoded in one batch too, and each is
    then transformed with its own window, exactly as ``decode_image(transforms=...)`` transforms
    (after decoding, on ``device``).

    Returns:
        ``Tensor[C, H, W] uint8`` per item (uint16 for 16-bit PNGs), in order, on ``device``, H
        and W after the item's ``transforms``.

    Raises:
        InvalidArgumentError: a crop larger than the image it crops (naming the item, or its place
            in the batch given to :func:`gpuvio.decode_image`).
    """
    from .._image import decode_image

    out: list[torch.Tensor | None] = [None] * len(items)
    groups: dict[tuple[ImageReadMode, bool, tuple[Transform, ...] | None], list[int]] = {}
    for i, item in enumerate(items):
        random = any(isinstance(t, RandomCrop) for t in item.transforms)
        # deterministic transforms are equal by value: items sharing them decode with them, as one batch
        groups.setdefault((item.mode, item.apply_exif_orientation, None if random else item.transforms),
                          []).append(i)
    for (mode, exif, shared), members in groups.items():
        decoded = decode_image([items[i].data for i in members], mode=mode, apply_exif_orientation=exif,
                               device=device, backend=backend, transforms=shared)
        for i, image in zip(members, decoded):
            if shared is None:  # each item's own random windows
                try:
                    image = plan(restarted(items[i].transforms), int(image.shape[-2]), int(image.shape[-1])).apply(image)
                except InvalidArgumentError as exc:
                    raise InvalidArgumentError(f"item {i} of {len(items)}: {exc}") from exc
            out[i] = image
    return out  # type: ignore[return-value]


def decode_clip(clip: EncodedClip, *, device: torch.device | str = "cpu",
                backend: str | None = None) -> torch.Tensor:
    """Decode one clip: the frames of ``[start_pts, end_pts]``, then the ones ``offsets`` picks.

    ``clip.transforms`` are applied while decoding (``read_video(transforms=...)``), one random
    window for all of the clip's frames.

    Returns:
        ``Tensor[T, C, H, W]`` (``output_format="TCHW"``) or ``Tensor[T, H, W, C]`` uint8 on
        ``device``, T = ``len(clip.offsets)``, H and W after ``clip.transforms``.

    Raises:
        InvalidArgumentError: a crop in ``clip.transforms`` larger than the frames it crops.
    """
    from .._video import read_video
    from .._video_reader import VideoReader

    video, _, _ = read_video(clip.data, clip.start_pts, clip.end_pts, pts_unit="pts",
                             output_format=clip.output_format, device=device, backend=backend, color=clip.color,
                             transforms=restarted(clip.transforms))
    span = clip.positions[-1] - clip.positions[0] + 1
    if video.shape[0] == span:
        if len(clip.offsets) == span:  # no resampling: every frame of the range
            return video
        return video[torch.tensor(clip.offsets, device=video.device)]
    # The decoder gave a different number of frames than the packets announced (rare: broken
    # timestamps). Random access by display index still picks the frames the index describes.
    with VideoReader(clip.data, device=device, backend=backend, color=clip.color) as reader:
        frames = reader.get_frames_at(list(clip.positions))
    if clip.transforms:
        # the reference ops, afterwards: a reader given transforms would draw a window when it
        # opens and another for get_frames_at, and the clip's window is the first one drawn
        frames = plan(restarted(clip.transforms), int(frames.shape[-2]), int(frames.shape[-1])).apply(frames)
    return frames if clip.output_format == "TCHW" else frames.permute(0, 2, 3, 1)


def decode_items(items: Sequence[EncodedImage | EncodedClip], *, device: torch.device | str = "cpu",
                 backend: str | None = None) -> list[torch.Tensor]:
    """Decode encoded images (batched per read mode) and clips, in order, on ``device``, each
    transformed by its own ``transforms``."""
    out: list[Any] = [None] * len(items)
    images = [i for i, item in enumerate(items) if isinstance(item, EncodedImage)]
    if images:
        decoded = decode_images([items[i] for i in images], device=device, backend=backend)  # type: ignore[misc]
        for i, image in zip(images, decoded):
            out[i] = image
    for i, item in enumerate(items):
        if isinstance(item, EncodedClip):
            out[i] = decode_clip(item, device=device, backend=backend)
        elif not isinstance(item, EncodedImage):
            raise TypeError(f"expected EncodedImage or EncodedClip items, got {type(item).__name__}")
    return out


def stack_or_list(items: list[Any]) -> torch.Tensor | list[Any]:
    """``torch.stack(items)`` when they are tensors of one shape and dtype, else the list itself."""
    if items and all(isinstance(x, torch.Tensor) for x in items):
        first = items[0]
        if all(x.shape == first.shape and x.dtype == first.dtype for x in items):
            return torch.stack(items)
    return items


def collate(batch: list[Any]) -> Any:
    """DataLoader ``collate_fn`` for gpuvio datasets, decoded or encoded.

    Like ``torch.utils.data.default_collate``, with two differences: encoded samples become an
    :class:`EncodedBatch` (for :class:`~gpuvio.data.DeviceLoader` to decode), and tensors of
    different shapes (images of different sizes) stay a list instead of failing to stack.
    """
    from torch.utils.data import default_collate

    elem = batch[0]
    if isinstance(elem, (EncodedImage, EncodedClip)):
        return EncodedBatch(batch)
    if isinstance(elem, torch.Tensor):
        return stack_or_list(batch)
    if isinstance(elem, Mapping):
        return type(elem)({key: collate([d[key] for d in batch]) for key in elem})  # type: ignore[call-arg]
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, (tuple, list)):
        return [collate(list(samples)) for samples in zip(*batch)]
    return default_collate(batch)


def source_for(path: str, encoded_as: Literal["bytes", "path"]) -> torch.Tensor | str:
    """What an encoded sample carries: the file's bytes (read here, in the worker) or its path."""
    if encoded_as == "path":
        return os.path.abspath(path)
    from .._source import read_file

    return read_file(path)


def worker_safe_device(device: Any) -> Any:
    """The device a dataset decodes on in ``__getitem__``.

    In the main process it is ``device`` itself. In a DataLoader worker CUDA is refused (a forked
    child cannot use its parent's CUDA context, and creating one per worker wastes GPU memory)
    and ``"auto"`` means the CPU.
    """
    from torch.utils.data import get_worker_info

    from .._dispatch import parse_device

    parsed = parse_device(device)
    if get_worker_info() is None:
        return parsed
    if parsed == "auto":
        return torch.device("cpu")
    if parsed.type == "cuda":
        raise InvalidArgumentError(
            f"device={device!r} cannot decode inside a DataLoader worker (CUDA does not survive fork); "
            "use decode=False with gpuvio.data.DeviceLoader(loader, device='cuda'), or num_workers=0")
    return parsed
