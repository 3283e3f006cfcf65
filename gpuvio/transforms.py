"""Decode-time transforms: resize and crop frames while they are decoded.

Pass a sequence of them as ``transforms=`` to :func:`gpuvio.read_video`, :class:`gpuvio.VideoReader`,
:func:`gpuvio.decode_videos`, :func:`gpuvio.decode_image` / :func:`gpuvio.read_image`, the
datasets of :mod:`gpuvio.data` and :mod:`gpuvio.ray`. They are applied in order. ::

    from gpuvio.transforms import CenterCrop, RandomCrop, Resize

    frames, _, _ = gpuvio.read_video("clip.mp4", pts_unit="sec", transforms=[Resize(256), CenterCrop(224)])

**Semantics.** The result is what ``torchvision.transforms.v2.functional`` gives when applied to
the untransformed decoded frames: ``resize`` (bilinear, ``antialias=True``), ``center_crop``,
``crop``, with torchvision's size rules (an int is the shorter side, ``(h, w)`` is exact).
Every device stays within a **mean absolute difference of 0.5** (uint8 levels) of that
reference; :func:`apply` is the reference itself. How the work is done:

* CPU video: each frame is converted exactly (torchvision's pixels) and resized by torch's own
  kernel straight into the small output, on the conversion threads while FFmpeg decodes: the
  result equals the reference bit for bit, and no full-size frame tensor is returned or kept.
* NVDEC: one CUDA kernel goes from the decoder's NV12 surface to the resized and cropped RGB
  (self-checked on the device, else the full-size frame then torch's ops on the GPU).
* Images: decoded, then transformed by the reference ops on the result's device.

``torchvision.transforms.v2`` (and v1) ``Resize``, ``CenterCrop`` and ``RandomCrop`` objects, and a
``Compose`` of them, are accepted in place of gpuvio's and recognised without importing
torchvision. Options gpuvio does not implement (another interpolation, ``antialias=False``, padding) raise
:class:`~gpuvio.InvalidArgumentError` naming what is supported.

**Randomness.** :class:`RandomCrop` draws one window per read: per ``read_video`` call, per
image, per clip of a dataset, per ``get_frames_at`` call; a :class:`~gpuvio.VideoReader`'s
sequential ``next()`` frames share one window, drawn when the reader opens. Windows are drawn
as torchvision draws them (``torch.randint`` for the top, then the left), from the global RNG
by default, so torch's seeding (and ``DataLoader``'s per-worker seeds) applies. Datasets and
``decode_videos`` first draw one seed per item (:func:`per_item`), so that items decoded
concurrently, or later by ``DeviceLoader``, keep the window drawn for them.

**Edge cases.** Integer frames other than uint8 (16-bit images) are resized in float32 and
rounded to the nearest level; torchvision truncates uint16, so it can be one level lower.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch

from ._errors import InvalidArgumentError, InvalidInputTypeError

__all__ = [
    "CenterCrop",
    "Geometry",
    "RandomCrop",
    "Resize",
    "Transform",
    "TransformsLike",
    "apply",
    "as_transforms",
    "per_item",
    "plan",
    "restarted",
]


def _size_pair(size: Any, what: str) -> tuple[int, int]:
    """``(h, w)`` from an int or a one- or two-element sequence of positive ints."""
    values = _size_list(size, what)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _size_list(size: Any, what: str) -> list[int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        values = [int(size)]
    elif isinstance(size, Sequence) and not isinstance(size, (str, bytes)) and len(size) in (1, 2) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        values = [int(v) for v in size]
    else:
        raise InvalidInputTypeError(f"{what} size must be an int or a sequence of one or two ints (h, w); "
                                    f"got {size!r}")
    if any(v <= 0 for v in values):
        raise InvalidArgumentError(f"{what} size must be positive; got {size!r}")
    return values


class Resize:
    """Resize to a size, bilinearly with antialiasing (torchvision's ``v2.Resize`` defaults).

    Args:
        size: an int resizes the shorter side to it, keeping the aspect ratio (the longer side is
            ``int(size * long / short)``, as torchvision computes it); ``(h, w)`` resizes to
            exactly that. ``None`` only with ``max_size``.
        max_size: with an int ``size``: if the longer side would exceed it, resize so that it
            equals ``max_size`` instead. With ``size=None``: the longer side becomes ``max_size``
            (enlarging if need be). Default None.
    """

    def __init__(self, size: int | Sequence[int] | None, *, max_size: int | None = None) -> None:
        if size is None:
            self.size: tuple[int, ...] | None = None
            if max_size is None:
                raise InvalidArgumentError("Resize needs a size, or max_size with size=None")
        else:
            self.size = tuple(_size_list(size, "Resize"))
        if max_size is not None:
            if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) or max_size <= 0:
                raise InvalidArgumentError(f"Resize max_size must be a positive int or None; got {max_size!r}")
            if self.size is not None and len(self.size) != 1:
                raise InvalidArgumentError(
                    f"Resize max_size only goes with an int size (the shorter side) or None; got size={size!r}")
            if self.size is not None and max_size <= self.size[0]:
                raise InvalidArgumentError(
                    f"Resize max_size ({max_size}) must be larger than the shorter side it asks for ({self.size[0]})")
            max_size = int(max_size)
        self.max_size = max_size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of a ``height`` x ``width`` image after this resize (torchvision's arithmetic)."""
        if self.size is not None and len(self.size) == 2:
            return self.size[0], self.size[1]
        short, long = (width, height) if width <= height else (height, width)
        if self.size is None:  # the longer side becomes max_size, up or down
            assert self.max_size is not None
            new_short, new_long = int(self.max_size * short / long), self.max_size
        else:
            new_short, new_long = self.size[0], int(self.size[0] * long / short)
            if self.max_size is not None and new_long > self.max_size:
                new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        if new_h < 1 or new_w < 1:  # max_size squeezed the shorter side to nothing (torchvision raises too)
            raise InvalidArgumentError(
                f"{self!r} of a {height}x{width} frame gives a {new_h}x{new_w} (h x w) output; every side must be "
                "at least 1 (raise max_size)")
        return new_h, new_w

    def __repr__(self) -> str:
        size = None if self.size is None else (self.size[0] if len(self.size) == 1 else self.size)
        extra = f", max_size={self.max_size}" if self.max_size is not None else ""
        return f"Resize(size={size!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resize) and (self.size, self.max_size) == (other.size, other.max_size)

    def __hash__(self) -> int:
        return hash(("Resize", self.size, self.max_size))


def _check_fits(what: str, crop: tuple[int, int], height: int, width: int) -> None:
    if crop[0] > height or crop[1] > width:
        raise InvalidArgumentError(
            f"{what} size {crop[0]}x{crop[1]} (h x w) is larger than the {height}x{width} frame it crops; "
            "resize first (e.g. Resize(min(size)) before it) or crop less")


class CenterCrop:
    """Crop the centre ``(h, w)`` window (torchvision's ``v2.CenterCrop`` anchor rounding).

    Args:
        size: an int for a square, or ``(h, w)``. A window larger than the frame raises
            :class:`~gpuvio.InvalidArgumentError` (torchvision would pad with zeros).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_pair(size, "CenterCrop")

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the window in a ``height`` x ``width`` frame."""
        h, w = self.size
        _check_fits("CenterCrop", self.size, height, width)
        # Python's round(), as torchvision uses: halves go to the even neighbour
        return int(round((height - h) / 2.0)), int(round((width - w) / 2.0)), h, w

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CenterCrop) and self.size == other.size

    def __hash__(self) -> int:
        return hash(("CenterCrop", self.size))


class RandomCrop:
    """Crop a random ``(h, w)`` window, one per read (see the module docstring).

    Args:
        size: an int for a square, or ``(h, w)``. A window larger than the frame raises
            :class:`~gpuvio.InvalidArgumentError`.
        generator: a CPU ``torch.Generator`` to draw from. Default None: torch's global RNG,
            as torchvision does (``DataLoader`` seeds it differently in each worker).
        seed: make a generator seeded with this instead (reproducible windows). Copies of the
            transform (pickled into workers) continue the same sequence, so in a multi-worker
            ``DataLoader`` prefer the default.
    """

    def __init__(self, size: int | Sequence[int], *, generator: torch.Generator | None = None,
                 seed: int | None = None) -> None:
        self.size = _size_pair(size, "RandomCrop")
        if generator is not None and seed is not None:
            raise InvalidArgumentError("RandomCrop takes a generator or a seed, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidInputTypeError(f"RandomCrop generator must be a torch.Generator; got {generator!r}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
                raise InvalidInputTypeError(f"RandomCrop seed must be an int; got {seed!r}")
            if not -(2**63) <= int(seed) < 2**64:  # what torch.Generator.manual_seed takes
                raise InvalidArgumentError(f"RandomCrop seed must be in [-2**63, 2**64); got {seed!r}")
            generator = torch.Generator().manual_seed(int(seed))
        self.generator = generator
        self.seed = seed

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw ``(top, left, h, w)`` for a ``height`` x ``width`` frame (top first, as torchvision)."""
        h, w = self.size
        _check_fits("RandomCrop", self.size, height, width)
        top = int(torch.randint(0, height - h + 1, size=(), generator=self.generator)) if height > h else 0
        left = int(torch.randint(0, width - w + 1, size=(), generator=self.generator)) if width > w else 0
        return top, left, h, w

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.generator is not None:  # a Generator does not pickle; its state does
            state["generator"] = self.generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        generator = state.get("generator")
        if generator is not None:
            state["generator"] = torch.Generator()
            state["generator"].set_state(generator)
        self.__dict__.update(state)

    def __repr__(self) -> str:
        extra = f", seed={self.seed}" if self.seed is not None else (
            ", generator=<torch.Generator>" if self.generator is not None else "")
        return f"RandomCrop(size={self.size!r}{extra})"


#: One of gpuvio's transforms.
Transform = Union[Resize, CenterCrop, RandomCrop]
#: What ``transforms=`` takes: a sequence of gpuvio's transforms or torchvision's equivalents
#: (or a torchvision ``Compose`` of them), or None for none.
TransformsLike = Union[Sequence[Any], Any, None]

def _no_padding(padding: Any) -> bool:
    """Whether a torchvision ``padding`` adds nothing: None, 0, or a sequence of zeros (v1 keeps
    ``padding=0`` as given, v2 turns it into ``[0, 0, 0, 0]``)."""
    if padding is None:
        return True
    values = padding if isinstance(padding, Sequence) and not isinstance(padding, (str, bytes)) else [padding]
    return all(isinstance(v, numbers.Number) and v == 0 for v in values)


_SUPPORTED = "gpuvio.transforms.Resize/CenterCrop/RandomCrop or torchvision.transforms(.v2) Resize/CenterCrop/RandomCrop"


def _torchvision_interpolation(value: Any) -> None:
    name = getattr(value, "value", value)
    if name not in ("bilinear", 2):  # InterpolationMode.BILINEAR, or PIL's BILINEAR constant
        raise InvalidArgumentError(
            f"gpuvio's Resize is bilinear only (InterpolationMode.BILINEAR); got interpolation={value!r}")


def _from_torchvision(obj: Any) -> list[Transform] | None:
    """gpuvio's equivalent of a torchvision transform object, or None if ``obj`` is not one."""
    cls = type(obj)
    if not cls.__module__.startswith("torchvision.transforms"):
        return None
    name = cls.__name__
    if name == "Compose":
        return list(as_transforms(obj.transforms))
    if name == "Resize":
        _torchvision_interpolation(getattr(obj, "interpolation", "bilinear"))
        antialias = getattr(obj, "antialias", True)
        if antialias is not True:
            raise InvalidArgumentError(f"gpuvio's Resize always antialiases (antialias=True); got antialias={antialias!r}")
        return [Resize(obj.size, max_size=getattr(obj, "max_size", None))]
    if name in ("CenterCrop", "RandomCrop"):
        if name == "RandomCrop":
            padding, pad = getattr(obj, "padding", None), getattr(obj, "pad_if_needed", False)
            if not _no_padding(padding) or pad:
                raise InvalidArgumentError(
                    f"gpuvio's RandomCrop does not pad; got padding={padding!r}, pad_if_needed={pad!r} "
                    "(supported: padding=None or 0, pad_if_needed=False)")
            return [RandomCrop(obj.size)]
        return [CenterCrop(obj.size)]
    raise InvalidArgumentError(f"torchvision transform {name} is not supported at decode time; supported: {_SUPPORTED}")


def as_transforms(transforms: TransformsLike) -> tuple[Transform, ...]:
    """Check ``transforms`` and give it as a tuple of gpuvio transforms (torchvision's converted).

    Raises:
        InvalidInputTypeError: ``transforms`` is not a sequence, or holds something that is not a
            supported transform.
        InvalidArgumentError: a torchvision transform with an option gpuvio does not support.
    """
    if transforms is None:
        return ()
    if isinstance(transforms, (Resize, CenterCrop, RandomCrop)) or \
            type(transforms).__module__.startswith("torchvision.transforms"):
        items: Iterable[Any] = [transforms]  # one transform (or a Compose) on its own
    elif isinstance(transforms, (str, bytes)) or not isinstance(transforms, Iterable):
        raise InvalidInputTypeError(f"transforms must be a sequence of transforms ({_SUPPORTED}); got {transforms!r}")
    else:
        items = transforms
    out: list[Transform] = []
    for item in items:
        if isinstance(item, (Resize, CenterCrop, RandomCrop)):
            out.append(item)
            continue
        converted = _from_torchvision(item)
        if converted is None:
            raise InvalidInputTypeError(f"transforms holds {item!r}, which is not a supported transform ({_SUPPORTED})")
        out.extend(converted)
    return tuple(out)


def per_item(transforms: tuple[Transform, ...], count: int) -> list[tuple[Transform, ...]]:
    """``count`` copies of ``transforms`` whose random crops each have their own seed, drawn now.

    For batches decoded concurrently: each item's window then does not depend on which thread
    draws first, and the whole batch is reproducible from the caller's RNG state.
    """
    if not any(isinstance(t, RandomCrop) for t in transforms):
        return [transforms] * count
    items: list[list[Transform]] = [[] for _ in range(count)]
    for transform in transforms:
        if isinstance(transform, RandomCrop):
            seeds = torch.randint(0, 2**62, (count,), generator=transform.generator).tolist()
            for item, seed in zip(items, seeds):
                item.append(RandomCrop(transform.size, seed=seed))
        else:
            for item in items:
                item.append(transform)
    return [tuple(item) for item in items]


def restarted(transforms: tuple[Transform, ...]) -> tuple[Transform, ...]:
    """``transforms`` with each seeded :class:`RandomCrop` started over from its seed (a fresh
    copy), so that a read done again draws the same window. Other transforms are kept as they are."""
    return tuple(RandomCrop(t.size, seed=t.seed) if isinstance(t, RandomCrop) and t.seed is not None else t
                 for t in transforms)


#: One resolved step: ``("resize", h, w)`` or ``("crop", top, left, h, w)``.
Step = tuple[Any, ...]


@dataclass(frozen=True)
class Geometry:
    """Transforms resolved for one input size, random windows drawn: what a decoder executes.

    ``steps`` is the canonical sequence: consecutive crops merged, resizes to the current size
    dropped (torchvision leaves those untouched).
    """

    input_size: tuple[int, int]
    steps: tuple[Step, ...]

    @property
    def output_size(self) -> tuple[int, int]:
        """``(h, w)`` of the transformed frames."""
        size = self.input_size
        for step in self.steps:
            size = (step[1], step[2]) if step[0] == "resize" else (step[3], step[4])
        return size

    @property
    def scale(self) -> tuple[int, int]:
        """The size a decoder first scales whole frames to (fused with the colour conversion):
        the leading resize's, else the input size."""
        return (self.steps[0][1], self.steps[0][2]) if self.steps and self.steps[0][0] == "resize" else self.input_size

    @property
    def after_scale(self) -> tuple[Step, ...]:
        """The steps left once frames are at :attr:`scale`."""
        return self.steps[1:] if self.steps and self.steps[0][0] == "resize" else self.steps

    @property
    def identity(self) -> bool:
        return not self.steps

    def apply(self, frames: torch.Tensor, *, layout: Literal["CHW", "HWC"] = "CHW",
              steps: tuple[Step, ...] | None = None) -> torch.Tensor:
        """The reference: run the steps on ``Tensor[..., C, H, W]`` (or ``[..., H, W, C]`` with
        ``layout="HWC"``) with torchvision's arithmetic (``steps``: only these)."""
        channels_last = layout == "HWC"
        x = frames.movedim(-1, -3) if channels_last else frames
        for step in self.steps if steps is None else steps:
            if step[0] == "crop":
                _, top, left, h, w = step
                x = x[..., top:top + h, left:left + w]
            else:
                x = resize(x, (step[1], step[2]))
        return x.movedim(-3, -1) if channels_last else x


def plan(transforms: Sequence[Transform], height: int, width: int) -> Geometry:
    """Resolve checked ``transforms`` (see :func:`as_transforms`) for a ``height`` x ``width``
    input, drawing random windows. Raises :class:`~gpuvio.InvalidArgumentError` for a crop
    larger than the frame it crops."""
    steps: list[Step] = []
    h, w = height, width
    for transform in transforms:
        if isinstance(transform, Resize):
            size = transform.output_size(h, w)
            if size == (h, w):
                continue
            steps.append(("resize", *size))
            h, w = size
        else:
            top, left, ch, cw = transform.window(h, w)
            if (ch, cw) == (h, w):
                continue
            if steps and steps[-1][0] == "crop":
                _, t0, l0, _, _ = steps.pop()
                top, left = top + t0, left + l0
            steps.append(("crop", top, left, ch, cw))
            h, w = ch, cw
    return Geometry((height, width), tuple(steps))


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``torchvision.transforms.v2.functional.resize`` (bilinear, antialias) of ``Tensor[..., C, H, W]``.

    uint8 on the CPU is resized natively, as torchvision does; other dtypes and devices go
    through float32 and back, integers rounded to the nearest (torchvision truncates uint16: its
    result is up to one level below this one), floating point not rounded.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    shape = frames.shape
    x = frames.reshape(-1, *shape[-3:])
    if x.numel() == 0:
        return frames.new_empty((*shape[:-2], *size))
    if x.shape[0] == 1 and x.stride(0) != x.numel() and x.is_contiguous(memory_format=torch.channels_last):
        # one channels-last image (a decoder's [C, H, W] view of [H, W, C] memory): give the batch
        # dimension the stride torch expects, so that interpolate keeps channels-last memory and
        # its fast kernel (torchvision does the same)
        x = x.as_strided(x.shape, (x.numel(), *x.stride()[1:]))
    dtype = x.dtype
    native = dtype in (torch.float32, torch.float64) or (dtype == torch.uint8 and x.device.type == "cpu")
    if not native:
        x = x.float()
    x = torch.nn.functional.interpolate(x, size=list(size), mode="bilinear", align_corners=False, antialias=True)
    if not native:
        if not dtype.is_floating_point:  # integers are rounded (uint16 too, where torchvision truncates)
            info = torch.iinfo(dtype)
            x = x.round_().clamp_(info.min, info.max)
        x = x.to(dtype)
    return x.reshape(*shape[:-2], *size)


def apply(frames: torch.Tensor, transforms: TransformsLike, *,
          layout: Literal["CHW", "HWC"] = "CHW") -> torch.Tensor:
    """Apply ``transforms`` to already decoded frames: the reference the decoders are held to.

    Args:
        frames: ``Tensor[..., C, H, W]`` (``layout="CHW"``, default) or ``Tensor[..., H, W, C]``
            (``"HWC"``), e.g. ``read_video``'s ``[T, H, W, 3]`` uint8; any device.
        transforms: as for ``transforms=``; random windows are drawn once for all frames.

    Returns:
        The transformed frames, same layout, dtype and device.
    """
    if layout not in ("CHW", "HWC"):
        raise InvalidArgumentError(f"layout must be 'CHW' or 'HWC'; got {layout!r}")
    height, width = (frames.shape[-3], frames.shape[-2]) if layout == "HWC" else (frames.shape[-2], frames.shape[-1])
    return plan(as_transforms(transforms), int(height), int(width)).apply(frames, layout=layout)
