"""ImageDataset: images from a class-per-folder tree (like torchvision's ImageFolder) or a file list."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .._dispatch import parse_device
from .._errors import (
    InvalidArgumentError,
    InvalidInputTypeError,
    MediaFileNotFoundError,
)
from .._types import DeviceLike, ImageReadMode
from ..transforms import TransformsLike, as_transforms, per_item
from ._encoded import EncodedImage, decode_images, source_for, worker_safe_device

__all__ = ["IMAGE_EXTENSIONS", "ImageDataset"]

#: File suffixes an image folder is scanned for (case-insensitive): what gpuvio can decode.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def _scan(root: Path, extensions: tuple[str, ...]) -> tuple[list[str], list[str], list[int]]:
    """ImageFolder's layout: one sub-folder per class, classes sorted by name, files sorted."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise MediaFileNotFoundError(2, "no class folder (one sub-folder per class) found in", str(root))
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = []
        for folder, _, names in os.walk(root / name, followlinks=True):
            found.extend(os.path.join(folder, n) for n in names if n.lower().endswith(extensions))
        if not found:
            raise MediaFileNotFoundError(
                2, f"class folder has no image file ({', '.join(extensions)})", str(root / name))
        found.sort()
        files.extend(found)
        labels.extend([label] * len(found))
    return classes, files, labels


class ImageDataset(Dataset):
    """Images for a ``torch.utils.data.DataLoader``, decoded by gpuvio.

    Given a folder, it reads it as torchvision's ``ImageFolder`` does: each sub-folder is a class
    (labels 0, 1, ... in sorted name order; sub-folders of a class folder are searched too), and
    files with an image suffix are the samples, sorted. Given a list of files, those are the
    samples and ``labels`` (optional) their labels.

    Each item is ``(image, label)``: ``image`` is ``Tensor[C, H, W] uint8`` (C from ``mode``; uint16
    for a 16-bit PNG in ``UNCHANGED`` mode), H and W after ``transforms``, passed through
    ``transform`` if given, or an :class:`~gpuvio.data.EncodedImage` (carrying ``transforms``)
    with ``decode=False``; ``label`` is an int (-1 for a file list without labels). Batch with
    ``collate_fn=gpuvio.data.collate`` unless every image has the same size: it keeps images of
    different sizes as a list.

    ``transforms`` (e.g. ``[Resize(256), RandomCrop(224)]``) resize and crop each image after
    decoding, as ``gpuvio.decode_image(transforms=...)`` does, with one random window per image
    drawn in ``__getitem__`` (from the crop's generator, by default torch's global RNG, which each
    DataLoader worker seeds its own way). With ``decode=False`` the
    :class:`~gpuvio.data.EncodedImage` carries a seed for that window, so the image gets the same
    one wherever it is decoded. With a ``(h, w)`` resize or a crop last, images of every size
    stack into one batch.

    Args:
        root_or_files: a folder, or a list of image files.
        mode: :class:`~gpuvio.ImageReadMode` or its name; default ``RGB`` (3 channels, as
            ImageFolder's loader gives).
        transforms: decode-time :mod:`gpuvio.transforms` (``Resize``, ``CenterCrop``,
            ``RandomCrop``, or torchvision's), applied in order, one random window per image.
            Default None. A crop larger than a (resized) image raises
            :class:`~gpuvio.InvalidArgumentError` when that image is decoded.
        transform: any callable, applied to each decoded image after ``transforms`` (not allowed
            with ``decode=False``: give it to :class:`~gpuvio.data.DeviceLoader`).
        labels: with a file list, one int per file.
        extensions: suffixes a folder is scanned for; default :data:`IMAGE_EXTENSIONS`.
        apply_exif_orientation: turn images upright from their EXIF tag. Default False.
        decode: True (default) decodes in ``__getitem__``; False returns encoded bytes for
            :class:`~gpuvio.data.DeviceLoader`.
        device: where ``__getitem__`` decodes: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``,
            ``"auto"``; CUDA only in the main process (in a DataLoader worker ``"auto"`` is the CPU).
        backend: force a decoding backend by name.

    Attributes:
        files: ``list[str]``; labels: ``list[int]``; classes: class names (folder input, else
        ``[]``); class_to_idx: ``dict[str, int]``.
    """

    def __init__(self, root_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                 mode: ImageReadMode | str = ImageReadMode.RGB,
                 transform: Callable[[torch.Tensor], Any] | None = None,
                 labels: Sequence[int] | None = None, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 apply_exif_orientation: bool = False, decode: bool = True, device: DeviceLike = "cpu",
                 backend: str | None = None, transforms: TransformsLike = None) -> None:
        self.mode = ImageReadMode.parse(mode)
        exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        if isinstance(root_or_files, (str, os.PathLike)):
            root = Path(root_or_files)
            if not root.is_dir():
                raise MediaFileNotFoundError(2, "No such directory", str(root))
            if labels is not None:
                raise InvalidArgumentError("labels come from the class folders; pass labels only with a file list")
            self.classes, self.files, self.labels = _scan(root, exts)
        elif isinstance(root_or_files, Sequence):
            self.files = [os.fspath(f) for f in root_or_files]
            self.classes = []
            if labels is None:
                self.labels = [-1] * len(self.files)
            else:
                self.labels = [int(x) for x in labels]
                if len(self.labels) != len(self.files):
                    raise InvalidArgumentError(
                        f"labels has {len(self.labels)} entries for {len(self.files)} files")
        else:
            raise InvalidInputTypeError(
                f"root_or_files must be a folder or a list of files; got {type(root_or_files).__name__}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        if not decode and transform is not None:
            raise InvalidArgumentError(
                "transform runs on decoded images; with decode=False pass it to DeviceLoader(transform=...), "
                "or resize and crop at decode time with transforms=[...]")
        self.transform = transform
        self.transforms = as_transforms(transforms)
        self.apply_exif_orientation = bool(apply_exif_orientation)
        self.decode = bool(decode)
        parse_device(device)
        self.device = device
        self.backend = backend

    def __len__(self) -> int:
        return len(self.files)

    def encoded_image(self, idx: int) -> EncodedImage:
        """Item ``idx``'s file bytes, as an :class:`EncodedImage`.

        Its ``transforms`` are the dataset's, each ``RandomCrop`` given a seed of its own drawn
        here: each call draws a new window.
        """
        data = source_for(self.files[idx], "bytes")
        return EncodedImage(data, self.mode, self.apply_exif_orientation,  # type: ignore[arg-type]
                            per_item(self.transforms, 1)[0])

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        encoded = self.encoded_image(idx)
        if not self.decode:
            return encoded, self.labels[idx]
        image = decode_images([encoded], device=worker_safe_device(self.device), backend=self.backend)[0]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[idx]

    def __repr__(self) -> str:
        return (f"ImageDataset({len(self)} images, {len(self.classes)} classes, mode={self.mode.name}, "
                f"decode={self.decode}" + (f", transforms={list(self.transforms)!r})" if self.transforms else ")"))

