"""Decode-time transforms (gpuvio.transforms, issue #13): the objects, torchvision's, every decoding path.

The contract: what a decode with ``transforms=`` returns is what
``torchvision.transforms.v2.functional`` (``resize`` bilinear with ``antialias=True``,
``center_crop``, ``crop``) gives on the untransformed frames, within a mean absolute difference
of 0.5; on the CPU it is exactly :func:`gpuvio.transforms.apply` of the untransformed result. Here
every path is held to that against the same call without transforms, and :func:`apply` itself to
torchvision's functions, exactly, where torchvision is importable.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import gpuvio
import gpuvio.transforms as T
from conftest import IMAGE_DEVICES, write_resolution_switch
from gpuvio import _forksafe
from gpuvio.transforms import CenterCrop, Geometry, RandomCrop, Resize

pytest.importorskip("av")  # every decode here runs through PyAV

# ============================================================================ helpers


def assert_transformed(got: torch.Tensor, want: torch.Tensor, device: str, msg: str = "") -> None:
    """``got`` (returned on ``device``) is ``want`` (the reference on the untransformed result):
    equal on the CPU, within a mean absolute difference of 0.5 elsewhere."""
    assert got.device.type == torch.device(device).type, f"{msg}: on {got.device}, asked for {device}"
    got, want = got.cpu(), want.cpu()
    assert got.dtype == want.dtype and got.shape == want.shape, \
        f"{msg}: {got.dtype} {tuple(got.shape)} != {want.dtype} {tuple(want.shape)}"
    if torch.equal(got, want):
        return
    diff = (got.double() - want.double()).abs()
    where = f"{msg}: max abs difference {float(diff.max())}, mean {float(diff.mean()):.4f} on {device}"
    assert torch.device(device).type != "cpu", where
    assert float(diff.mean()) <= 0.5, where


def reference_output_size(height: int, width: int, size: Any, max_size: int | None = None) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size`` (v2, size None allowed), written out here."""
    short, long = (width, height) if width <= height else (height, width)
    if size is None:
        new_short, new_long = int(max_size * short / long), max_size
    elif isinstance(size, int) or len(size) == 1:
        requested = size if isinstance(size, int) else size[0]
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    else:
        return size[0], size[1]
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w


def texture_frames(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``Tensor[count, H, W, 3] uint8`` of photo-like content (noise octaves and gradients)."""
    from gpuvio._samples import texture

    return torch.stack([torch.from_numpy(texture(height, width, seed=seed + i)) for i in range(count)])


def fake_torchvision(module: str, name: str, **attrs: Any) -> Any:
    """An object whose class looks like torchvision's ``module.name``, with ``attrs`` set."""
    cls = type(name, (), {"__module__": module, "__repr__": lambda self: f"<fake {name}>"})
    obj = cls()
    obj.__dict__.update(attrs)
    return obj


class FakeMode:
    """torchvision's ``InterpolationMode``: an enum member whose ``.value`` is the mode's name."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<InterpolationMode.{self.value.upper()}: {self.value!r}>"


V2 = "torchvision.transforms.v2._geometry"
V1 = "torchvision.transforms.transforms"


def fake_resize(size: Any, *, module: str = V2, interpolation: Any = None, antialias: Any = True,
                max_size: int | None = None) -> Any:
    return fake_torchvision(module, "Resize", size=size, max_size=max_size,
                            interpolation=FakeMode("bilinear") if interpolation is None else interpolation,
                            antialias=antialias)


def fake_center_crop(size: Any, *, module: str = V2) -> Any:
    return fake_torchvision(module, "CenterCrop", size=size)


def fake_random_crop(size: Any, *, module: str = V2, padding: Any = None, pad_if_needed: bool = False) -> Any:
    return fake_torchvision(module, "RandomCrop", size=size, padding=padding, pad_if_needed=pad_if_needed,
                            fill=0, padding_mode="constant")


def fake_compose(transforms: list[Any], *, module: str = "torchvision.transforms.v2._container") -> Any:
    return fake_torchvision(module, "Compose", transforms=transforms)


@contextlib.contextmanager
def backend_for(backend: str | None) -> Iterator[None]:
    """The software NVDEC stand-in registered while a ``backend="nvdec-software"`` case runs."""
    if backend != "nvdec-software":
        yield
        return
    import _software_nv12

    with _software_nv12.registered():
        yield


# decoding paths: the CPU backend, the GPU (NVDEC), and NVDEC's frame source over FFmpeg's software
# decoder (CPU surfaces: NVDEC's code paths, run in CI; see tests/_software_nv12.py)
VIDEO_PATHS = [
    pytest.param("cpu", None, id="cpu"),
    pytest.param("cuda", None, id="cuda", marks=pytest.mark.cuda("nvdec")),
    pytest.param("cpu", "nvdec-software", id="nvdec-software"),
]

# transforms for a 160x96 (or larger) clip, made afresh for each use (random crops have state)
VIDEO_TRANSFORMS: dict[str, Callable[[], list[Any]]] = {
    "resize_int": lambda: [Resize(64)],
    "resize_hw": lambda: [Resize((72, 100))],
    "resize_up": lambda: [Resize((120, 210))],
    "resize_max_size": lambda: [Resize(64, max_size=90)],
    "resize_centercrop": lambda: [Resize(64), CenterCrop(56)],
    "centercrop_resize": lambda: [CenterCrop((80, 120)), Resize(48)],
    "randomcrop_seed": lambda: [RandomCrop((60, 90), seed=5)],
    "resize_randomcrop": lambda: [Resize(72), RandomCrop(64, seed=11)],
}


@pytest.fixture(scope="module")
def clips(generated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated clips, plus a portrait one (height > width) and one of odd size (VP9)."""
    from gpuvio._samples import make_sample_video

    root = tmp_path_factory.mktemp("transform_clips")
    return {
        "small": generated["h264_noaudio"],  # 160x96, 1 s, no audio
        "h264": generated["h264"],  # 320x240, 2 s, AAC
        "mpeg4": generated["mpeg4"],
        "portrait": make_sample_video(root / "portrait.mp4", width=96, height=160, seconds=0.5, gop=6, audio=False),
        "odd": make_sample_video(root / "odd.webm", width=161, height=97, seconds=0.4, codec="libvpx-vp9",
                                 audio=False),
    }


# ============================================================================ 1. the API


@pytest.mark.parametrize("transform, text", [
    (Resize(256), "Resize(size=256)"),
    (Resize([256]), "Resize(size=256)"),
    (Resize((100, 50)), "Resize(size=(100, 50))"),
    (Resize([100, 50]), "Resize(size=(100, 50))"),
    (Resize(256, max_size=400), "Resize(size=256, max_size=400)"),
    (Resize(None, max_size=300), "Resize(size=None, max_size=300)"),
    (CenterCrop(224), "CenterCrop(size=(224, 224))"),
    (CenterCrop((10, 20)), "CenterCrop(size=(10, 20))"),
    (CenterCrop([7]), "CenterCrop(size=(7, 7))"),
    (RandomCrop(32), "RandomCrop(size=(32, 32))"),
    (RandomCrop((5, 6), seed=3), "RandomCrop(size=(5, 6), seed=3)"),
    (RandomCrop(8, generator=torch.Generator()), "RandomCrop(size=(8, 8), generator=<torch.Generator>)"),
])
def test_reprs(transform: Any, text: str) -> None:
    assert repr(transform) == text


def test_equality_and_hashing() -> None:
    assert Resize(5) == Resize([5]) == Resize((5,))
    assert hash(Resize(5)) == hash(Resize([5]))
    assert Resize(5) != Resize((5, 5))
    assert Resize(5) != Resize(5, max_size=9)
    assert Resize(5, max_size=9) == Resize(5, max_size=9)
    assert Resize((3, 4)) != Resize((4, 3))
    assert CenterCrop(5) == CenterCrop((5, 5)) == CenterCrop([5])
    assert hash(CenterCrop(5)) == hash(CenterCrop((5, 5)))
    assert CenterCrop((5, 6)) != CenterCrop((6, 5))
    assert CenterCrop(5) != Resize((5, 5)) and Resize((5, 5)) != CenterCrop(5)
    assert len({Resize(5), Resize([5]), CenterCrop(5), CenterCrop((5, 5))}) == 2
    # sizes are normalised to tuples of ints
    assert Resize([7]).size == (7,) and Resize([7, 8]).size == (7, 8)
    assert CenterCrop((2, 3)).size == (2, 3) and RandomCrop(4).size == (4, 4)


@pytest.mark.parametrize("make, error, words", [
    (lambda: Resize(0), gpuvio.InvalidArgumentError, ["positive", "0"]),
    (lambda: Resize(-3), gpuvio.InvalidArgumentError, ["positive", "-3"]),
    (lambda: Resize((4, 0)), gpuvio.InvalidArgumentError, ["(4, 0)"]),
    (lambda: Resize((-1, 4)), gpuvio.InvalidArgumentError, ["(-1, 4)"]),
    (lambda: Resize("10"), gpuvio.InvalidInputTypeError, ["'10'", "int"]),
    (lambda: Resize(2.5), gpuvio.InvalidInputTypeError, ["2.5"]),
    (lambda: Resize(True), gpuvio.InvalidInputTypeError, ["True"]),
    (lambda: Resize((1, 2, 3)), gpuvio.InvalidInputTypeError, ["(1, 2, 3)"]),
    (lambda: Resize(()), gpuvio.InvalidInputTypeError, ["()"]),
    (lambda: Resize((2.0, 3)), gpuvio.InvalidInputTypeError, ["(2.0, 3)"]),
    (lambda: Resize(None), gpuvio.InvalidArgumentError, ["max_size"]),
    (lambda: Resize(10, max_size=10), gpuvio.InvalidArgumentError, ["max_size (10)", "(10)"]),
    (lambda: Resize(10, max_size=5), gpuvio.InvalidArgumentError, ["max_size (5)"]),
    (lambda: Resize((10, 10), max_size=20), gpuvio.InvalidArgumentError, ["max_size", "(10, 10)"]),
    (lambda: Resize(10, max_size=0), gpuvio.InvalidArgumentError, ["max_size", "0"]),
    (lambda: Resize(10, max_size=25.5), gpuvio.InvalidArgumentError, ["max_size", "25.5"]),
    (lambda: Resize(10, max_size=True), gpuvio.InvalidArgumentError, ["max_size", "True"]),
    (lambda: CenterCrop(0), gpuvio.InvalidArgumentError, ["CenterCrop", "0"]),
    (lambda: CenterCrop((3, -1)), gpuvio.InvalidArgumentError, ["CenterCrop", "(3, -1)"]),
    (lambda: CenterCrop("a"), gpuvio.InvalidInputTypeError, ["CenterCrop", "'a'"]),
    (lambda: CenterCrop(None), gpuvio.InvalidInputTypeError, ["CenterCrop", "None"]),
    (lambda: RandomCrop(0), gpuvio.InvalidArgumentError, ["RandomCrop", "0"]),
    (lambda: RandomCrop([1, 2, 3]), gpuvio.InvalidInputTypeError, ["RandomCrop", "[1, 2, 3]"]),
    (lambda: RandomCrop(5, seed=1, generator=torch.Generator()), gpuvio.InvalidArgumentError, ["generator", "seed"]),
    (lambda: RandomCrop(5, generator=5), gpuvio.InvalidInputTypeError, ["torch.Generator", "5"]),
    (lambda: RandomCrop(5, seed=1.5), gpuvio.InvalidInputTypeError, ["seed", "1.5"]),
    (lambda: RandomCrop(5, seed="1"), gpuvio.InvalidInputTypeError, ["seed", "'1'"]),
    (lambda: RandomCrop(5, seed=True), gpuvio.InvalidInputTypeError, ["seed", "True"]),
    (lambda: RandomCrop(5, seed=2**64), gpuvio.InvalidArgumentError, ["seed", str(2**64), "2**64"]),
    (lambda: RandomCrop(5, seed=-2**63 - 1), gpuvio.InvalidArgumentError, ["seed", str(-2**63 - 1), "-2**63"]),
])
def test_validation_names_the_value(make: Callable[[], Any], error: type, words: list[str]) -> None:
    with pytest.raises(error) as raised:
        make()
    assert isinstance(raised.value, gpuvio.GpuvioError)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


# (height, width, size, max_size): landscape, portrait, square; truncation of the long side;
# up- and downscaling; max_size capping or not
RESIZE_SIZES = [
    (240, 320, 100, None), (240, 320, 224, None), (375, 500, 224, None), (606, 517, 224, None),
    (517, 606, 224, None), (100, 100, 37, None), (97, 161, 50, None), (161, 97, 50, None),
    (96, 160, 400, None), (1080, 1920, 256, None), (1, 300, 10, None), (300, 1, 10, None),
    (240, 320, 100, 120), (240, 320, 100, 134), (240, 320, 100, 133), (1080, 1920, 256, 400),
    (1920, 1080, 256, 400), (720, 1280, 720, 1000), (97, 161, 50, 60),
    (240, 320, (100, 50), None), (240, 320, (480, 640), None), (240, 320, (240, 320), None), (5, 7, (1, 1), None),
    (240, 320, [100], None), (240, 320, None, 200), (1080, 1920, None, 256), (1920, 1080, None, 256),
    (97, 161, None, 100),
]


@pytest.mark.parametrize("height, width, size, max_size", RESIZE_SIZES)
def test_resize_output_size_is_torchvisions(height: int, width: int, size: Any, max_size: int | None) -> None:
    got = Resize(size, max_size=max_size).output_size(height, width)
    assert got == reference_output_size(height, width, size, max_size)


def test_resize_squeezed_to_nothing_by_max_size_is_refused() -> None:
    for resize in (Resize(1, max_size=2), Resize(None, max_size=1)):
        with pytest.raises(gpuvio.InvalidArgumentError, match=r"20x300 frame gives a 0x[12] \(h x w\)"):
            resize.output_size(20, 300)
    with pytest.raises(gpuvio.InvalidArgumentError, match="max_size"):
        T.apply(torch.zeros(3, 20, 300, dtype=torch.uint8), [Resize(1, max_size=2)])


def test_resize_output_size_known_values() -> None:
    assert Resize(100).output_size(240, 320) == (100, 133)  # int(100 * 320 / 240) = 133
    assert Resize(224).output_size(375, 500) == (224, 298)  # 298.67 truncated
    assert Resize(224).output_size(606, 517) == (262, 224)  # portrait: the width is the shorter side
    assert Resize((50, 70)).output_size(1000, 10) == (50, 70)  # exact, aspect ratio ignored
    assert Resize(100, max_size=120).output_size(240, 320) == (90, 120)  # int(120 * 100 / 133) = 90
    assert Resize(100, max_size=133).output_size(240, 320) == (100, 133)  # not over: kept
    assert Resize(None, max_size=200).output_size(240, 320) == (150, 200)


def test_resize_size_none_scales_the_longer_side_up_to_max_size() -> None:
    assert Resize(None, max_size=300).output_size(100, 50) == (300, 150)
    frames = texture_frames(1, 100, 50).permute(0, 3, 1, 2)
    assert T.apply(frames, [Resize(None, max_size=300)]).shape[-2:] == (300, 150)


@pytest.mark.parametrize("height, width, crop, anchor", [
    (10, 10, (7, 7), (2, 2)),  # 1.5 -> 2
    (11, 10, (8, 8), (2, 1)),  # 1.5 -> 2, 1.0 -> 1
    (13, 13, (8, 8), (2, 2)),  # 2.5 -> 2: Python's round gives the even neighbour
    (15, 15, (8, 8), (4, 4)),  # 3.5 -> 4
    (9, 12, (4, 3), (2, 4)),  # 2.5 -> 2, 4.5 -> 4
    (240, 320, (224, 224), (8, 48)),
    (96, 160, (96, 160), (0, 0)),
    (97, 161, (1, 1), (48, 80)),
])
def test_center_crop_anchor_rounds_like_python(height: int, width: int, crop: tuple[int, int],
                                               anchor: tuple[int, int]) -> None:
    top, left, h, w = CenterCrop(crop).window(height, width)
    assert (top, left) == anchor and (h, w) == crop
    assert (top, left) == (int(round((height - crop[0]) / 2.0)), int(round((width - crop[1]) / 2.0)))


@pytest.mark.parametrize("transform", [CenterCrop((20, 20)), CenterCrop((10, 11)), CenterCrop((11, 10)),
                                       RandomCrop((11, 4), seed=0)])
def test_crop_larger_than_the_frame_names_both_sizes(transform: Any) -> None:
    name = type(transform).__name__
    with pytest.raises(gpuvio.InvalidArgumentError) as raised:
        transform.window(10, 10)
    text = str(raised.value)
    assert f"{name} size {transform.size[0]}x{transform.size[1]}" in text and "10x10 frame" in text, text


def _expected_windows(generator: torch.Generator | None, size: tuple[int, int], height: int, width: int,
                      count: int) -> list[tuple[int, int, int, int]]:
    """torchvision v2.RandomCrop's draws: torch.randint for the top, then the left; none for an
    axis the crop spans."""
    out = []
    for _ in range(count):
        top = int(torch.randint(0, height - size[0] + 1, size=(), generator=generator)) if height > size[0] else 0
        left = int(torch.randint(0, width - size[1] + 1, size=(), generator=generator)) if width > size[1] else 0
        out.append((top, left, *size))
    return out


@pytest.mark.parametrize("size, height, width", [((50, 60), 240, 320), ((240, 60), 240, 320),
                                                 ((50, 320), 240, 320), ((1, 1), 2, 1000)])
def test_random_crop_draws_like_torchvision(size: tuple[int, int], height: int, width: int) -> None:
    crop = RandomCrop(size, seed=1234)
    got = [crop.window(height, width) for _ in range(6)]
    assert got == _expected_windows(torch.Generator().manual_seed(1234), size, height, width, 6)
    # the global RNG by default
    torch.manual_seed(99)
    default = RandomCrop(size)
    got = [default.window(height, width) for _ in range(6)]
    torch.manual_seed(99)
    assert got == _expected_windows(None, size, height, width, 6)
    # a generator of the caller's, used (and advanced) in place
    generator = torch.Generator().manual_seed(7)
    got = [RandomCrop(size, generator=generator).window(height, width) for _ in range(3)]
    assert got == _expected_windows(torch.Generator().manual_seed(7), size, height, width, 3)


def test_random_crop_seeds_reproduce_and_differ() -> None:
    def windows(seed: int) -> list[tuple[int, int, int, int]]:
        crop = RandomCrop((32, 32), seed=seed)
        return [crop.window(480, 640) for _ in range(8)]

    assert windows(3) == windows(3)
    assert windows(3) != windows(4)
    assert len(set(windows(3))) > 1  # every read draws anew
    # the same crop of a full frame draws nothing, and a seeded crop does not touch the global RNG
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    assert RandomCrop((480, 640)).window(480, 640) == (0, 0, 480, 640)
    RandomCrop(10, seed=1).window(480, 640)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("how", ["seed", "generator", "global"])
def test_pickled_random_crop_continues_the_sequence(how: str) -> None:
    kwargs = {"seed": {"seed": 5}, "generator": {"generator": torch.Generator().manual_seed(5)}, "global": {}}[how]
    crop = RandomCrop((20, 30), **kwargs)
    for _ in range(3):
        crop.window(100, 200)
    copy = pickle.loads(pickle.dumps(crop))
    assert repr(copy) == repr(crop) and copy.size == crop.size
    if how == "global":
        assert copy.generator is None
        torch.manual_seed(11)
        got = [copy.window(100, 200) for _ in range(4)]
        torch.manual_seed(11)
        assert got == [crop.window(100, 200) for _ in range(4)]
    else:
        assert isinstance(copy.generator, torch.Generator) and copy.generator is not crop.generator
        assert [copy.window(100, 200) for _ in range(4)] == [crop.window(100, 200) for _ in range(4)]
        # the copies are independent: drawing from one leaves the other where it was
        ahead = [copy.window(100, 200) for _ in range(2)]
        assert [crop.window(100, 200) for _ in range(2)] == ahead


def test_as_transforms() -> None:
    resize, crop = Resize(10), CenterCrop(8)
    assert T.as_transforms(None) == ()
    assert T.as_transforms([]) == ()
    assert T.as_transforms(resize) == (resize,)
    assert T.as_transforms([resize, crop]) == (resize, crop)
    assert T.as_transforms((resize, crop)) == (resize, crop)
    assert T.as_transforms(iter([resize, crop])) == (resize, crop)
    random = RandomCrop(4, seed=0)
    assert T.as_transforms([random])[0] is random  # kept, not copied: its generator goes on


@pytest.mark.parametrize("bad, words", [
    ("Resize", ["'Resize'", "sequence"]),
    (b"Resize", ["b'Resize'"]),
    (5, ["5"]),
    ([object()], ["object"]),
    ([Resize(4), None], ["None"]),
    ([Resize(4), "CenterCrop"], ["'CenterCrop'"]),
    ([[Resize(4)]], ["[Resize(size=4)]"]),
    ([lambda x: x], ["lambda"]),
])
def test_as_transforms_rejects_what_is_not_a_transform(bad: Any, words: list[str]) -> None:
    with pytest.raises(gpuvio.InvalidInputTypeError) as raised:
        T.as_transforms(bad)
    text = str(raised.value)
    assert "Resize/CenterCrop/RandomCrop" in text, text  # says what is supported
    for word in words:
        assert word in text, (word, text)


def test_plan_resolves_and_simplifies() -> None:
    geometry = T.plan([Resize(100), CenterCrop(90)], 240, 320)
    assert geometry == Geometry((240, 320), (("resize", 100, 133), ("crop", 5, 22, 90, 90)))
    assert geometry.output_size == (90, 90) and geometry.scale == (100, 133) and not geometry.identity
    assert geometry.after_scale == (("crop", 5, 22, 90, 90),)
    # consecutive crops merge into one window of the input
    merged = T.plan([CenterCrop(200), CenterCrop(100)], 240, 320)
    assert merged.steps == (("crop", 70, 110, 100, 100),)
    assert merged.scale == (240, 320) and merged.after_scale == merged.steps
    # resizes to the current size and crops of the whole frame are no steps
    for noop in ([Resize((240, 320))], [Resize(240)], [CenterCrop((240, 320))], [RandomCrop((240, 320))], []):
        geometry = T.plan(noop, 240, 320)
        assert geometry.identity and geometry.steps == () and geometry.output_size == (240, 320), noop
    # a crop after a resize is a window of the resized frame
    chained = T.plan([CenterCrop((120, 320)), Resize(60), CenterCrop(50)], 240, 320)
    assert chained.steps == (("crop", 60, 0, 120, 320), ("resize", 60, 160), ("crop", 5, 55, 50, 50))
    assert chained.output_size == (50, 50)
    # a crop too large for the size it meets after a resize is refused, naming both sizes
    with pytest.raises(gpuvio.InvalidArgumentError, match=r"CenterCrop size 80x80 .* 60x80 frame"):
        T.plan([Resize(60), CenterCrop(80)], 240, 320)


def test_plan_draws_one_window_per_call() -> None:
    crop = RandomCrop((16, 16), seed=2)
    expected = _expected_windows(torch.Generator().manual_seed(2), (16, 16), 64, 64, 3)
    for top, left, h, w in expected:
        assert T.plan([crop], 64, 64).steps == (("crop", top, left, h, w),)


def test_per_item_gives_each_item_its_own_seed() -> None:
    steps = (Resize(32), RandomCrop(16, seed=9), CenterCrop(12))
    items = T.per_item(steps, 4)
    assert len(items) == 4
    seeds = torch.randint(0, 2**62, (4,), generator=torch.Generator().manual_seed(9)).tolist()
    for item, seed in zip(items, seeds):
        assert item[0] is steps[0] and item[2] is steps[2]
        assert isinstance(item[1], RandomCrop) and item[1].seed == seed and item[1].size == (16, 16)
    # without random crops, the same transforms for every item
    fixed = (Resize(5),)
    assert T.per_item(fixed, 3) == [fixed] * 3


def test_apply_layouts_batches_and_dtypes() -> None:
    hwc = texture_frames(3, 60, 80)
    chw = hwc.permute(0, 3, 1, 2).contiguous()
    transforms = [Resize(40), CenterCrop((36, 50))]
    out = T.apply(chw, transforms)
    assert out.shape == (3, 3, 36, 50) and out.dtype == torch.uint8
    assert torch.equal(T.apply(hwc, transforms, layout="HWC"), out.permute(0, 2, 3, 1))
    # one frame at a time gives the same: the window is per call, frames are resized independently
    assert torch.equal(torch.stack([T.apply(frame, transforms) for frame in chw]), out)
    # empty batches keep their shape
    assert T.apply(chw[:0], transforms).shape == (0, 3, 36, 50)
    assert T.apply(hwc[:0], transforms, layout="HWC").shape == (0, 36, 50, 3)
    # no transforms, or ones that change nothing: the frames untouched
    assert T.apply(chw, None) is chw or torch.equal(T.apply(chw, None), chw)
    assert torch.equal(T.apply(chw, [Resize((60, 80)), CenterCrop((60, 80))]), chw)
    # floats stay floats, computed in their own precision
    floats = chw.float() / 255
    want = torch.nn.functional.interpolate(floats, size=(40, 53), mode="bilinear", antialias=True,
                                           align_corners=False)
    assert torch.equal(T.apply(floats, [Resize(40)]), want)
    # half precision goes through float32 and back, not rounded to whole numbers
    halves = floats.half()
    want = torch.nn.functional.interpolate(halves.float(), size=(40, 53), mode="bilinear", antialias=True,
                                           align_corners=False).half()
    assert torch.equal(T.apply(halves, [Resize(40)]), want)
    assert RandomCrop(5, seed=2**64 - 1).seed == 2**64 - 1 and RandomCrop(5, seed=-2**63).seed == -2**63
    with pytest.raises(gpuvio.InvalidArgumentError, match="layout"):
        T.apply(chw, transforms, layout="NHWC")


def test_apply_rounds_uint16() -> None:
    """16-bit frames go through float32 and are rounded to the nearest level, not truncated."""
    base = texture_frames(1, 48, 64).permute(0, 3, 1, 2).to(torch.int32) * 256 + torch.arange(64) % 7
    frames = base.to(torch.uint16)
    out = T.apply(frames, [Resize(30)])
    assert out.dtype == torch.uint16 and out.shape == (1, 3, 30, 40)
    exact = torch.nn.functional.interpolate(frames.float(), size=(30, 40), mode="bilinear", antialias=True,
                                            align_corners=False)
    assert torch.equal(out.to(torch.int32), exact.round().to(torch.int32))
    assert not torch.equal(out.to(torch.int32), exact.to(torch.int32))  # truncating would differ


# ============================================================================ 2. torchvision's objects


@pytest.mark.parametrize("module", [V2, V1])
def test_fake_torchvision_objects_are_converted(module: str) -> None:
    bilinear = FakeMode("bilinear")
    cases = [
        (fake_resize([224], module=module), Resize(224)),
        (fake_resize(224, module=module), Resize(224)),
        (fake_resize([100, 50], module=module), Resize((100, 50))),
        (fake_resize((100, 50), module=module, interpolation=bilinear), Resize((100, 50))),
        (fake_resize(256, module=module, max_size=300), Resize(256, max_size=300)),
        (fake_resize(None, module=module, max_size=300), Resize(None, max_size=300)),
        (fake_resize(64, module=module, interpolation=2), Resize(64)),  # PIL's BILINEAR
        (fake_resize(64, module=module, interpolation="bilinear"), Resize(64)),
        (fake_center_crop((224, 224), module=module), CenterCrop(224)),
        (fake_center_crop((10, 20), module=module), CenterCrop((10, 20))),
    ]
    for obj, want in cases:
        (got,) = T.as_transforms([obj])
        assert type(got) is type(want) and got == want, (obj.__dict__, got, want)
    (crop,) = T.as_transforms([fake_random_crop((10, 20), module=module)])
    assert isinstance(crop, RandomCrop) and crop.size == (10, 20) and crop.generator is None and crop.seed is None
    for nothing in (0, [0, 0], [0, 0, 0, 0]):  # padding that adds nothing (v1 keeps 0, v2 makes it a list)
        (crop,) = T.as_transforms([fake_random_crop(8, module=module, padding=nothing)])
        assert isinstance(crop, RandomCrop) and crop.size == (8, 8)


def test_fake_compose_is_flattened() -> None:
    for module in ("torchvision.transforms.v2._container", "torchvision.transforms.transforms"):
        compose = fake_compose([fake_resize([64]), fake_center_crop((56, 56)),
                                fake_compose([fake_random_crop((8, 8))], module=module)], module=module)
        for given in (compose, [compose], [Resize(128), compose]):
            got = T.as_transforms(given)
            tail = got[-3:]
            assert tail[0] == Resize(64) and tail[1] == CenterCrop(56)
            assert isinstance(tail[2], RandomCrop) and tail[2].size == (8, 8)
        assert T.as_transforms([Resize(128), compose])[0] == Resize(128)


@pytest.mark.parametrize("obj, error, words", [
    (fake_resize(64, interpolation=FakeMode("nearest")), gpuvio.InvalidArgumentError, ["bilinear", "nearest"]),
    (fake_resize(64, interpolation=FakeMode("bicubic")), gpuvio.InvalidArgumentError, ["bilinear", "bicubic"]),
    (fake_resize(64, interpolation=3), gpuvio.InvalidArgumentError, ["bilinear", "interpolation=3"]),
    (fake_resize(64, antialias=False), gpuvio.InvalidArgumentError, ["antialias=True", "antialias=False"]),
    # torchvision reads antialias=None as False for tensors
    (fake_resize(64, antialias=None), gpuvio.InvalidArgumentError, ["antialias=True", "antialias=None"]),
    (fake_random_crop(8, padding=4), gpuvio.InvalidArgumentError, ["padding=4", "padding=None or 0"]),
    (fake_random_crop(8, padding=[1, 2]), gpuvio.InvalidArgumentError, ["padding=[1, 2]"]),
    (fake_random_crop(8, pad_if_needed=True), gpuvio.InvalidArgumentError, ["pad_if_needed=True",
                                                                            "pad_if_needed=False"]),
    (fake_torchvision(V2, "RandomResizedCrop", size=(8, 8)), gpuvio.InvalidArgumentError,
     ["RandomResizedCrop", "Resize/CenterCrop/RandomCrop"]),
    (fake_torchvision(V2, "RandomHorizontalFlip", p=0.5), gpuvio.InvalidArgumentError, ["RandomHorizontalFlip"]),
    (fake_torchvision("torchvision.transforms.v2._misc", "Normalize", mean=[0.5], std=[0.5]),
     gpuvio.InvalidArgumentError, ["Normalize"]),
    (fake_compose([fake_resize(8), fake_torchvision(V2, "ColorJitter")]), gpuvio.InvalidArgumentError,
     ["ColorJitter"]),
    (fake_resize(0), gpuvio.InvalidArgumentError, ["0"]),
    (fake_resize([-3]), gpuvio.InvalidArgumentError, ["-3"]),
    (fake_center_crop((0, 4)), gpuvio.InvalidArgumentError, ["(0, 4)"]),
    # lookalikes from elsewhere are not torchvision's: not recognised at all
    (fake_torchvision("mylib.transforms", "Resize", size=[8]), gpuvio.InvalidInputTypeError, ["fake Resize"]),
    (fake_torchvision("torchvision.io", "Resize", size=[8]), gpuvio.InvalidInputTypeError, ["fake Resize"]),
])
def test_unsupported_torchvision_options_are_refused(obj: Any, error: type, words: list[str]) -> None:
    for given in ([obj], [Resize(500), obj]):
        with pytest.raises(error) as raised:
            T.as_transforms(given)
        for word in words:
            assert word in str(raised.value), (word, str(raised.value))


# --------------------------------------------------------------------- real torchvision, where installed


@pytest.fixture(scope="module")
def tv() -> Any:
    # .ci/run runs this file a second time beside real torchvision and sets this: there, a
    # torchvision that cannot be imported is a failure, not a skip
    if not os.environ.get("GPUVIO_REQUIRE_TORCHVISION"):
        pytest.importorskip("torchvision")
    from torchvision.transforms import v2

    return v2


def test_real_torchvision_objects_are_converted(tv: Any) -> None:
    import torchvision.transforms as v1
    from torchvision.transforms import InterpolationMode

    for module in (tv, v1):
        assert T.as_transforms([module.Resize(224)]) == (Resize(224),)
        assert T.as_transforms([module.Resize((100, 50))]) == (Resize((100, 50)),)
        assert T.as_transforms([module.Resize(256, max_size=300)]) == (Resize(256, max_size=300),)
        assert T.as_transforms([module.Resize(64, interpolation=InterpolationMode.BILINEAR)]) == (Resize(64),)
        assert T.as_transforms([module.CenterCrop(224)]) == (CenterCrop(224),)
        assert T.as_transforms([module.CenterCrop((10, 20))]) == (CenterCrop((10, 20)),)
        (crop,) = T.as_transforms([module.RandomCrop((10, 20))])
        assert isinstance(crop, RandomCrop) and crop.size == (10, 20)
        steps = T.as_transforms(module.Compose([module.Resize(64), module.CenterCrop(56)]))
        assert steps == (Resize(64), CenterCrop(56))
        refused = [module.Resize(64, interpolation=InterpolationMode.NEAREST),
                   module.Resize(64, interpolation=InterpolationMode.BICUBIC),
                   module.Resize(64, antialias=False), module.RandomCrop(10, padding=2),
                   module.RandomCrop(10, pad_if_needed=True), module.RandomHorizontalFlip(),
                   module.Compose([module.Resize(8), module.RandomResizedCrop(8)])]
        for obj in refused:
            with pytest.raises(gpuvio.InvalidArgumentError):
                T.as_transforms([obj])
    assert T.as_transforms([tv.Resize(None, max_size=300)]) == (Resize(None, max_size=300),)


@functools.lru_cache(maxsize=None)
def _tv_inputs() -> dict[str, torch.Tensor]:
    hwc = texture_frames(2, 97, 161, seed=3)
    return {
        "chw_contiguous": hwc[0].permute(2, 0, 1).contiguous(),
        "chw_of_hwc_memory": hwc[0].permute(2, 0, 1),  # what decode_image returns on the CPU
        "tchw_contiguous": hwc.permute(0, 3, 1, 2).contiguous(),
        "tchw_of_thwc_memory": hwc.permute(0, 3, 1, 2),  # read_video's THWC frames seen as TCHW
        "gray": hwc[0, :, :, :1].permute(2, 0, 1).contiguous(),
    }


@pytest.mark.parametrize("layout", list(_tv_inputs()))
@pytest.mark.parametrize("size, max_size", [(50, None), (96, None), (200, None), ((60, 90), None), ((150, 250), None),
                                            ((97, 40), None), (40, 60), ((1, 2), None), ((2, 1), None)])
def test_apply_resize_equals_torchvision(tv: Any, layout: str, size: Any, max_size: int | None) -> None:
    from torchvision.transforms.v2 import functional as F

    frames = _tv_inputs()[layout]
    want = F.resize(frames, [size] if isinstance(size, int) else list(size), max_size=max_size, antialias=True)
    got = T.apply(frames, [Resize(size, max_size=max_size)])
    assert got.shape == want.shape and torch.equal(got, want)
    # torchvision's own object, converted, and run by torchvision
    obj = tv.Resize(size, max_size=max_size, antialias=True)
    assert torch.equal(T.apply(frames, [obj]), obj(frames))
    # and the channels-last layout read_video returns
    if frames.dim() == 4:
        hwc = frames.permute(0, 2, 3, 1)
        assert torch.equal(T.apply(hwc, [Resize(size, max_size=max_size)], layout="HWC"), want.permute(0, 2, 3, 1))


@pytest.mark.parametrize("layout", list(_tv_inputs()))
@pytest.mark.parametrize("crop", [(50, 50), (96, 160), (97, 161), (1, 1), (40, 101), (97, 2), 33])
def test_apply_center_crop_equals_torchvision(tv: Any, layout: str, crop: Any) -> None:
    from torchvision.transforms.v2 import functional as F

    frames = _tv_inputs()[layout]
    size = [crop, crop] if isinstance(crop, int) else list(crop)
    assert torch.equal(T.apply(frames, [CenterCrop(crop)]), F.center_crop(frames, size))
    assert torch.equal(T.apply(frames, [tv.CenterCrop(crop)]), tv.CenterCrop(crop)(frames))


@pytest.mark.parametrize("layout", list(_tv_inputs()))
def test_apply_crop_and_chains_equal_torchvision(tv: Any, layout: str) -> None:
    from torchvision.transforms.v2 import functional as F

    frames = _tv_inputs()[layout]
    geometry = T.plan([RandomCrop((40, 70), seed=4)], 97, 161)
    (_, top, left, h, w), = geometry.steps
    assert torch.equal(geometry.apply(frames), F.crop(frames, top, left, h, w))
    # chains: each step on the previous one's result, as torchvision's Compose runs them
    chains = [
        ([Resize(64), CenterCrop(56)], [tv.Resize(64), tv.CenterCrop(56)]),
        ([CenterCrop((80, 120)), Resize(48)], [tv.CenterCrop((80, 120)), tv.Resize(48)]),
        ([Resize(80), CenterCrop((60, 100)), Resize((30, 31))], [tv.Resize(80), tv.CenterCrop((60, 100)),
                                                                 tv.Resize((30, 31))]),
        ([CenterCrop(90), CenterCrop(50), Resize(20)], [tv.CenterCrop(90), tv.CenterCrop(50), tv.Resize(20)]),
    ]
    for ours, theirs in chains:
        want = tv.Compose(theirs)(frames)
        assert torch.equal(T.apply(frames, ours), want), ours
        assert torch.equal(T.apply(frames, tv.Compose(theirs)), want), ours


@pytest.mark.parametrize("size", [(40, 70), (97, 70), (40, 161), (97, 161), 1])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_random_crop_draws_the_window_torchvision_draws(tv: Any, size: Any, seed: int) -> None:
    frames = _tv_inputs()["tchw_contiguous"]
    for _ in range(3):  # successive draws too
        torch.manual_seed(seed)
        want = tv.RandomCrop(size)(frames)
        torch.manual_seed(seed)
        assert torch.equal(T.apply(frames, [RandomCrop(size)]), want)
        torch.manual_seed(seed)
        assert torch.equal(T.apply(frames, [tv.RandomCrop(size)]), want)  # its own object, converted
        seed += 1000
    # after the same draws, the global RNG is where torchvision leaves it
    torch.manual_seed(seed)
    tv.RandomCrop(size)(frames)
    after_tv = torch.random.get_rng_state()
    torch.manual_seed(seed)
    T.apply(frames, [RandomCrop(size)])
    assert torch.equal(torch.random.get_rng_state(), after_tv)


def test_uint16_resize_rounds_where_torchvision_truncates(tv: Any) -> None:
    """torchvision casts uint16 to float and back without rounding (it rounds only the signed
    integer dtypes and uint8); gpuvio rounds, so it is within half a level of the exact value
    and torchvision's result is at most one level below it."""
    from torchvision.transforms.v2 import functional as F

    frames = (texture_frames(1, 48, 64)[0].permute(2, 0, 1).to(torch.int32) * 257).to(torch.uint16)
    ours = T.apply(frames, [Resize(30)]).to(torch.int32)
    theirs = F.resize(frames, [30], antialias=True).to(torch.int32)
    difference = ours - theirs
    assert int(difference.min()) >= 0 and int(difference.max()) <= 1
    assert float(difference.float().mean()) <= 0.5


def test_apply_resize_to_one_pixel() -> None:
    """A 1x1 target: torch's uint8 antialiasing kernel (CPU, AVX) fails an internal assert on
    contiguous NCHW input (torch 2.13 and 2.14; torchvision's resize fails the same way), and
    ``apply`` hands it such input as it is."""
    frames = texture_frames(2, 9, 13).permute(0, 3, 1, 2)  # channels-last memory: torch copes
    want = torch.nn.functional.interpolate(frames.double(), size=(1, 1), mode="bilinear", antialias=True,
                                           align_corners=False).round().to(torch.uint8)
    got = T.apply(frames, [Resize((1, 1))])
    assert got.shape == (2, 3, 1, 1) and int((got.int() - want.int()).abs().max()) <= 1
    contiguous = frames.contiguous()
    try:
        torch.nn.functional.interpolate(contiguous, size=(1, 1), mode="bilinear", antialias=True, align_corners=False)
    except RuntimeError as exc:
        with pytest.raises(RuntimeError):
            T.apply(contiguous, [Resize((1, 1))])
        pytest.xfail(f"torch {torch.__version__} bug, not gpuvio's: uint8 antialiased bilinear resize to 1x1 of "
                     f"contiguous NCHW input raises ({str(exc)[:80]}...); gpuvio.transforms.apply inherits it")
    assert torch.equal(T.apply(contiguous, [Resize((1, 1))]), got)


# ============================================================================ 3. decoding paths


def _read(path: Path, device: str, backend: str | None, **kwargs: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    frames, _, info = gpuvio.read_video(str(path), device=device, backend=backend, **kwargs)
    if backend is not None:
        assert info.get("backend") == backend, info  # decoded by it, not handed to the CPU
    return frames, info


READ_RANGES = {
    "whole": {},
    "sec": {"start_pts": 0.2, "end_pts": 0.6, "pts_unit": "sec"},
    "pts": {"start_pts": 1536, "end_pts": 6144},  # ticks of 1/15360 s (the generated clips): frames 3 to 12
    "past_the_end": {"start_pts": 100.0, "end_pts": 101.0, "pts_unit": "sec"},
}


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
@pytest.mark.parametrize("name", list(VIDEO_TRANSFORMS))
@pytest.mark.parametrize("output_format", ["THWC", "TCHW"])
def test_read_video(clips: dict[str, Path], device: str, backend: str | None, name: str, output_format: str) -> None:
    path = clips["small"]
    layout = "HWC" if output_format == "THWC" else "CHW"
    with backend_for(backend):
        for range_name in (["whole", "sec"] if output_format == "THWC" else ["pts"]):
            kwargs = dict(READ_RANGES[range_name], output_format=output_format)
            plain, _ = _read(path, device, backend, **kwargs)
            assert plain.shape[0] > 0
            got, _ = _read(path, device, backend, transforms=VIDEO_TRANSFORMS[name](), **kwargs)
            want = T.apply(plain, VIDEO_TRANSFORMS[name](), layout=layout)
            assert_transformed(got, want, device, f"{name} {output_format} {range_name}")
            assert got.is_contiguous()


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
def test_decoding_to_one_pixel(clips: dict[str, Path], images: dict[str, bytes], device: str,
                               backend: str | None) -> None:
    """Resize((1, 1)) decodes on every path (the reference is taken from channels-last memory,
    which torch's kernel handles: see test_apply_resize_to_one_pixel)."""
    path = str(clips["small"])
    one = [Resize((1, 1))]
    with backend_for(backend):
        plain, _ = _read(path, device, backend)
        want = T.apply(plain, one, layout="HWC")
        got, _ = _read(path, device, backend, transforms=one)
        assert_transformed(got, want, device, "THWC")
        got, _ = _read(path, device, backend, transforms=one, output_format="TCHW")
        assert_transformed(got, want.permute(0, 3, 1, 2), device, "TCHW")
        reader = gpuvio.VideoReader(path, device=device, backend=backend, transforms=one)
        assert_transformed(reader.get_frames_at([0, 5]), want[[0, 5]].permute(0, 3, 1, 2), device, "get_frames_at")
        assert_transformed(next(reader)["data"], want[0].permute(2, 0, 1), device, "next")
    if device == "cpu" and backend is None:
        image = gpuvio.decode_image(images["jpeg"])  # a channels-first view of channels-last memory
        assert_transformed(gpuvio.decode_image(images["jpeg"], transforms=one), T.apply(image, one), "cpu", "image")


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
def test_read_video_shapes_and_edge_ranges(clips: dict[str, Path], device: str, backend: str | None) -> None:
    path = clips["small"]  # 160x96
    with backend_for(backend):
        got, _ = _read(path, device, backend, transforms=[Resize(48)])
        assert got.shape[1:] == (48, 80, 3) and got.dtype == torch.uint8
        got, _ = _read(path, device, backend, output_format="TCHW", transforms=[Resize(48), CenterCrop((40, 60))])
        assert got.shape[1:] == (3, 40, 60)
        # a range past the end: torchvision's rule keeps the frame before the start, transformed too
        plain, _ = _read(path, device, backend, **READ_RANGES["past_the_end"])
        got, _ = _read(path, device, backend, transforms=[Resize(48)], **READ_RANGES["past_the_end"])
        assert plain.shape[0] == 1
        assert_transformed(got, T.apply(plain, [Resize(48)], layout="HWC"), device, "past the end")
        # transforms that change nothing give the untransformed frames, bit for bit
        plain, _ = _read(path, device, backend)
        for noop in ([Resize((96, 160))], [CenterCrop((96, 160))], [Resize(96)], []):
            got, _ = _read(path, device, backend, transforms=noop)
            assert torch.equal(got.cpu(), plain.cpu()), noop


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda("nvdec"))])
@pytest.mark.parametrize("clip, transforms", [
    ("h264", [Resize(100), CenterCrop(96)]),
    ("mpeg4", [Resize((120, 90))]),
    ("portrait", [Resize(48)]),  # width is the shorter side
    ("portrait", [CenterCrop((100, 80)), Resize((33, 27))]),
    ("odd", [Resize(50)]),
    ("odd", [CenterCrop((96, 160))]),  # odd anchors
])
def test_read_video_other_clips(clips: dict[str, Path], device: str, clip: str, transforms: list[Any]) -> None:
    plain, audio, info = gpuvio.read_video(str(clips[clip]), pts_unit="sec", device=device)
    got, got_audio, got_info = gpuvio.read_video(str(clips[clip]), pts_unit="sec", device=device,
                                                 transforms=transforms)
    assert_transformed(got, T.apply(plain, transforms, layout="HWC"), device, clip)
    assert torch.equal(got_audio, audio) and got_info == info  # audio is untouched
    if clip == "portrait":
        assert got.shape[2] <= got.shape[1]


@pytest.mark.cuda("nvdec")
def test_nvdec_resizes_with_the_fused_kernel(clips: dict[str, Path]) -> None:
    """On a GPU the fused NV12 -> resized RGB kernel itself runs (a silent fall-back to the staged
    path would still pass the parity tests): it passes its self-check and writes every frame."""
    from gpuvio._backends._nvdec_resize import resize_kernel_launches, resize_kernel_status

    transforms = [Resize(128), CenterCrop(112)]
    before = resize_kernel_launches()
    frames, _, info = gpuvio.read_video(str(clips["h264"]), device="cuda", transforms=transforms)
    assert info.get("backend") == "nvdec", info
    assert resize_kernel_status() == {}
    assert resize_kernel_launches() - before >= frames.shape[0] > 0
    plain = gpuvio.read_video(str(clips["h264"]), device="cpu")[0]
    assert_transformed(frames, T.apply(plain, transforms, layout="HWC"), "cuda", "fused kernel")


def test_resolution_change_mid_stream(tmp_path: Path) -> None:
    """Transforms start from the frames the untransformed call returns: read_video's are all at
    the first kept frame's size, next()'s each at its own, get_frames_at's at the size the batch
    gets, wherever the sequential reader stands."""
    path = str(write_resolution_switch(tmp_path / "switch.ts", frames=8, pts_gap=8,
                                       shade=lambda index, i: 20 * (i + 1) + 40 * index))
    one = [Resize(37)]
    for kwargs in ({}, {"start_pts": 0.2, "end_pts": 0.5, "pts_unit": "sec"},
                   {"start_pts": 0.4, "end_pts": 1.0, "pts_unit": "sec"}):
        plain = gpuvio.read_video(path, **kwargs)[0]
        assert_transformed(gpuvio.read_video(path, transforms=one, **kwargs)[0], T.apply(plain, one, layout="HWC"),
                           "cpu", str(kwargs))
    plain = [f["data"] for f in gpuvio.VideoReader(path)]
    got = [f["data"] for f in gpuvio.VideoReader(path, transforms=one)]
    assert {tuple(f.shape) for f in plain} == {(3, 96, 160), (3, 80, 128)}
    assert len(got) == len(plain)
    for g, p in zip(got, plain):
        assert_transformed(g, T.apply(p, one), "cpu", "next()")
    last = len(plain) - 1
    want = T.apply(gpuvio.VideoReader(path).get_frames_at([0, last]), one)
    reader = gpuvio.VideoReader(path, transforms=one)
    assert_transformed(reader.get_frames_at([0, last]), want, "cpu", "get_frames_at, fresh reader")
    reader.seek(0.45)
    next(reader)  # the sequential decoder is now past the switch
    assert_transformed(reader.get_frames_at([0, last]), want, "cpu", "get_frames_at after seek")


SHARED_VIDEOS = [
    (("torchcodec", "nasa_13013.mp4"), {"start_pts": 2.0, "end_pts": 3.0, "pts_unit": "sec"}),
    (("torchcodec", "h265_video.mp4"), {}),
    (("torchcodec", "av1_video.mkv"), {"start_pts": 0, "end_pts": 0.3, "pts_unit": "sec"}),
    (("torchcodec", "testsrc2_vp9.webm"), {"start_pts": 0.5, "end_pts": 0.7, "pts_unit": "sec"}),
    (("torchcodec", "test_non_zero_start.mp4"), {}),
    (("torchvision", "videos", "RATRACE_wave_f_nm_np1_fr_goo_37.avi"), {"start_pts": 0.5, "end_pts": 1.0,
                                                                         "pts_unit": "sec"}),
    (("torchvision", "videos", "R6llTwEh07w.mp4"), {"start_pts": 3.0, "end_pts": 3.5, "pts_unit": "sec"}),
]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda("nvdec"))])
@pytest.mark.parametrize("parts, kwargs", SHARED_VIDEOS, ids=[parts[-1] for parts, _ in SHARED_VIDEOS])
def test_read_video_shared_media(media: Callable[..., Path], parts: tuple[str, ...], kwargs: dict[str, Any],
                                 device: str) -> None:
    path = media(*parts)
    plain, _, _ = gpuvio.read_video(str(path), device=device, **kwargs)
    assert plain.shape[0] > 0
    for transforms in ([Resize(96), CenterCrop(88)], [RandomCrop(64, seed=1), Resize((40, 30))]):
        got, _, _ = gpuvio.read_video(str(path), device=device, transforms=transforms, **kwargs)
        fresh = [RandomCrop(t.size, seed=t.seed) if isinstance(t, RandomCrop) else t for t in transforms]
        assert_transformed(got, T.apply(plain, fresh, layout="HWC"), device, "/".join(parts))


def test_read_video_equals_torchvision_on_decoded_frames(tv: Any, clips: dict[str, Path]) -> None:
    """The contract in torchvision's own terms: its functions on the untransformed frames."""
    from torchvision.transforms.v2 import functional as F

    plain, _, _ = gpuvio.read_video(str(clips["h264"]), 0.0, 0.5, pts_unit="sec", output_format="TCHW")
    got, _, _ = gpuvio.read_video(str(clips["h264"]), 0.0, 0.5, pts_unit="sec", output_format="TCHW",
                                  transforms=tv.Compose([tv.Resize(112), tv.CenterCrop(100)]))
    assert torch.equal(got, F.center_crop(F.resize(plain, [112], antialias=True), [100, 100]))
    torch.manual_seed(3)
    got, _, _ = gpuvio.read_video(str(clips["h264"]), 0.0, 0.5, pts_unit="sec", output_format="TCHW",
                                  transforms=[tv.RandomCrop((100, 120))])
    torch.manual_seed(3)
    assert torch.equal(got, tv.RandomCrop((100, 120))(plain))


def test_read_video_random_crop_from_the_global_rng(clips: dict[str, Path]) -> None:
    path = str(clips["small"])
    plain, _, _ = gpuvio.read_video(path)
    torch.manual_seed(77)
    first, _, _ = gpuvio.read_video(path, transforms=[RandomCrop(40)])
    second, _, _ = gpuvio.read_video(path, transforms=[RandomCrop(40)])
    torch.manual_seed(77)
    assert torch.equal(first, T.apply(plain, [RandomCrop(40)], layout="HWC"))
    assert torch.equal(second, T.apply(plain, [RandomCrop(40)], layout="HWC"))  # the next draw
    assert not torch.equal(first, second)  # one window per read
    # every frame of one read shares the window: it is one crop of the whole clip
    crop = RandomCrop(40, seed=8)
    got, _, _ = gpuvio.read_video(path, transforms=[crop])
    again, _, _ = gpuvio.read_video(path, transforms=[crop])  # the generator goes on
    reference = RandomCrop(40, seed=8)
    assert torch.equal(got, T.apply(plain, [reference], layout="HWC"))
    assert torch.equal(again, T.apply(plain, [reference], layout="HWC"))


# --------------------------------------------------------------------- VideoReader


def _frames(reader: gpuvio.VideoReader, count: int | None = None) -> tuple[torch.Tensor, list[float]]:
    items = []
    for item in reader:
        items.append(item)
        if count is not None and len(items) == count:
            break
    return torch.stack([i["data"] for i in items]), [i["pts"] for i in items]


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
@pytest.mark.parametrize("name", ["resize_int", "resize_up", "resize_centercrop", "centercrop_resize",
                                  "randomcrop_seed"])
def test_video_reader_next(clips: dict[str, Path], device: str, backend: str | None, name: str) -> None:
    path = str(clips["small"])
    with backend_for(backend):
        plain, pts = _frames(gpuvio.VideoReader(path, device=device, backend=backend))
        reader = gpuvio.VideoReader(path, device=device, backend=backend, transforms=VIDEO_TRANSFORMS[name]())
        if backend is not None:
            assert reader.backend == backend  # decoded by it, not handed to the CPU
        got, got_pts = _frames(reader)
        assert got_pts == pts
        # one window for every sequential frame: drawn when the reader opened
        assert_transformed(got, T.apply(plain, VIDEO_TRANSFORMS[name]()), device, name)
        # after a seek, the same window
        got, got_pts = _frames(reader.seek(0.5), 4)
        plain, pts = _frames(gpuvio.VideoReader(path, device=device, backend=backend).seek(0.5), 4)
        assert got_pts == pts
        assert_transformed(got, T.apply(plain, VIDEO_TRANSFORMS[name]()), device, f"{name} after a seek")


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
def test_video_reader_random_access_draws_one_window_per_call(clips: dict[str, Path], device: str,
                                                              backend: str | None) -> None:
    path = str(clips["small"])
    size = (60, 90)
    with backend_for(backend):
        plain_reader = gpuvio.VideoReader(path, device=device, backend=backend)
        indices = [0, 7, 3, 20, 7]
        plain_at = plain_reader.get_frames_at(indices)
        plain_played = plain_reader.get_frames_played_at([0.1, 0.5, 0.0])
        plain_all, _ = _frames(plain_reader)

        reader = gpuvio.VideoReader(path, device=device, backend=backend,
                                    transforms=[Resize(80), RandomCrop(size, seed=21)])
        # the reference's draws, in the reader's order: one at open (for next()), then one per call
        reference = RandomCrop(size, seed=21)
        open_window, call1, call2, call3 = (T.plan([Resize(80), reference], 96, 160) for _ in range(4))
        assert len({g.steps for g in (open_window, call1, call2, call3)}) > 1
        got = reader.get_frames_at(indices)
        assert got.shape == (5, 3, *size)
        assert_transformed(got, call1.apply(plain_at), device, "get_frames_at")
        first, _ = _frames(reader, 2)
        assert_transformed(first, open_window.apply(plain_all[:2]), device, "next after random access")
        got = reader.get_frames_played_at([0.1, 0.5, 0.0])
        assert_transformed(got, call2.apply(plain_played), device, "get_frames_played_at")
        got = reader.get_frames_at(torch.tensor([1, 2]))
        assert_transformed(got, call3.apply(plain_reader.get_frames_at([1, 2])), device, "a tensor of indices")
        rest, _ = _frames(reader)
        assert_transformed(rest, open_window.apply(plain_all[2:]), device, "next keeps its window")


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
def test_video_reader_deterministic_random_access(clips: dict[str, Path], device: str, backend: str | None) -> None:
    path = str(clips["h264"])
    transforms = [Resize(120), CenterCrop((100, 140))]
    with backend_for(backend):
        plain = gpuvio.VideoReader(path, device=device, backend=backend)
        reader = gpuvio.VideoReader(path, device=device, backend=backend, transforms=transforms)
        for indices in ([0, 1, 2], [59, 12, 30, 12], [45]):
            assert_transformed(reader.get_frames_at(indices), T.apply(plain.get_frames_at(indices), transforms),
                               device, str(indices))
        seconds = [1.9, 0.0, 0.75]
        assert_transformed(reader.get_frames_played_at(seconds), T.apply(plain.get_frames_played_at(seconds),
                                                                         transforms), device, "played_at")


def test_video_reader_audio_stream_is_untouched(clips: dict[str, Path]) -> None:
    path = str(clips["h264"])
    plain = [f["data"] for f in gpuvio.VideoReader(path, "audio")][:5]
    got = [f["data"] for f in gpuvio.VideoReader(path, "audio", transforms=[Resize(10)])][:5]
    assert all(torch.equal(a, b) for a, b in zip(plain, got)) and len(got) == 5
    # switching to the video stream applies the transforms
    reader = gpuvio.VideoReader(path, "audio", transforms=[Resize(60)])
    reader.set_current_stream("video")
    assert next(reader)["data"].shape == (3, 60, 80)


# --------------------------------------------------------------------- decode_videos


@pytest.mark.parametrize("device, backend", VIDEO_PATHS)
def test_decode_videos(clips: dict[str, Path], device: str, backend: str | None) -> None:
    paths = [clips["small"], clips["h264"], clips["small"]]
    sources = [str(paths[0]), paths[1].read_bytes(), gpuvio.read_file(paths[2])]
    kwargs = {"start_pts": 0.1, "end_pts": 0.7, "pts_unit": "sec"}
    with backend_for(backend):
        plain = gpuvio.decode_videos(sources, device=device, backend=backend, **kwargs)
        for transforms in ([Resize(64), CenterCrop(56)], [Resize((50, 70))]):
            got = gpuvio.decode_videos(sources, device=device, backend=backend, transforms=transforms, **kwargs)
            assert len(got) == 3
            for g, p in zip(got, plain):
                assert_transformed(g, T.apply(p, transforms, layout="HWC"), device, repr(transforms))
        # a random crop: one window per file, from seeds drawn up front (reproducible in any order)
        transforms = [Resize(72), RandomCrop((48, 64), seed=13)]
        got = gpuvio.decode_videos(sources, device=device, backend=backend, transforms=transforms, **kwargs)
        serial = gpuvio.decode_videos(sources, device=device, backend=backend, max_workers=1,
                                      transforms=[Resize(72), RandomCrop((48, 64), seed=13)], **kwargs)
        each = T.per_item(T.as_transforms([Resize(72), RandomCrop((48, 64), seed=13)]), 3)
        for i, (g, s, p, steps) in enumerate(zip(got, serial, plain, each)):
            assert_transformed(g, T.apply(p, steps, layout="HWC"), device, f"random {i}")
            assert torch.equal(g.cpu(), s.cpu())
        # the same file twice in one call: two windows (the draws differ for this seed)
        assert not torch.equal(got[0].cpu(), got[2].cpu())
        # a crop too large for one file (160x96, the second is 320x240) names that file's place
        with pytest.raises(gpuvio.InvalidArgumentError, match=r"video 0 of 2: CenterCrop size 200x200"):
            gpuvio.decode_videos([sources[0], sources[1]], device=device, backend=backend,
                                 transforms=[CenterCrop(200)], **kwargs)


def test_decode_videos_equals_read_video(clips: dict[str, Path]) -> None:
    transforms = [Resize(100), CenterCrop((90, 96))]
    paths = [clips["h264"], clips["mpeg4"], clips["odd"]]
    for frames, path in zip(gpuvio.decode_videos(paths, device="cpu", transforms=transforms), paths):
        assert torch.equal(frames, gpuvio.read_video(str(path), transforms=transforms)[0])


# --------------------------------------------------------------------- images


def _gif(count: int, height: int = 60, width: int = 80) -> bytes:
    from PIL import Image

    frames = [Image.fromarray(f.numpy()).quantize(64) for f in texture_frames(count, height, width, seed=40)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=40, disposal=2)
    return buf.getvalue()


IMAGE_TRANSFORMS: dict[str, Callable[[], list[Any]]] = {
    "resize_int": lambda: [Resize(37)],
    "resize_hw": lambda: [Resize((30, 50))],
    "resize_up": lambda: [Resize((90, 130))],
    "resize_centercrop": lambda: [Resize(40), CenterCrop(36)],
    "centercrop_resize": lambda: [CenterCrop(40), Resize(25)],
    "randomcrop_seed": lambda: [RandomCrop((30, 40), seed=2)],
}


@pytest.fixture(scope="module")
def images(generated: dict[str, Path], media: Callable[..., Path]) -> dict[str, bytes]:
    """Encoded images: generated photo-like JPEG and PNG, shared (or stand-in) 16-bit PNGs and a
    photo, animated and still GIFs of texture frames."""
    return {
        "jpeg": generated["jpeg"].read_bytes(),  # 500x375
        "png": generated["png"].read_bytes(),  # 300x200
        "png16": media("torchcodec", "gradient_16bit.png").read_bytes(),  # 64x48 RGB uint16
        "gray_png16": media("torchcodec", "grayscale_16bit.png").read_bytes(),
        "rgba_png16": media("torchvision", "images", "logos", "rgbalpha_pytorch16.png").read_bytes(),
        "photo_jpeg": media("torchvision", "images", "grace_hopper_517x606.jpg").read_bytes(),
        "gif": _gif(3),
        "gif1": _gif(1),
    }


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("kind", ["jpeg", "png", "png16", "gray_png16", "rgba_png16", "photo_jpeg", "gif", "gif1"])
@pytest.mark.parametrize("name", list(IMAGE_TRANSFORMS))
def test_decode_image(images: dict[str, bytes], device: str, kind: str, name: str) -> None:
    data = images[kind]
    plain = gpuvio.decode_image(data, device=device)
    got = gpuvio.decode_image(data, device=device, transforms=IMAGE_TRANSFORMS[name]())
    # one window per image, drawn as torchvision's RandomCrop would draw it on the decoded image
    want = T.apply(plain, IMAGE_TRANSFORMS[name]())
    assert_transformed(got, want, device, f"{kind} {name}")
    if kind.endswith("png16"):
        assert got.dtype == torch.uint16
    if kind == "gif":
        assert got.dim() == 4 and got.shape[0] == 3  # [N, C, H, W], one window for the animation


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_decode_image_lists_and_read_image(images: dict[str, bytes], device: str, tmp_path: Path) -> None:
    sources = images
    kinds = ["jpeg", "png", "png16", "jpeg", "gif", "photo_jpeg"]
    datas = [sources[k] for k in kinds]
    plain = gpuvio.decode_image(datas, device=device)
    for make in (IMAGE_TRANSFORMS["resize_centercrop"], IMAGE_TRANSFORMS["randomcrop_seed"],
                 lambda: [Resize(64), RandomCrop(40, seed=6), Resize((20, 21))]):
        got = gpuvio.decode_image(datas, device=device, transforms=make())
        steps = make()  # one set of transforms applied to each image in turn, as torchvision would be
        assert len(got) == len(datas)
        for kind, g, p in zip(kinds, got, plain):
            assert_transformed(g, T.apply(p, steps), device, kind)
    # one window per image: the same JPEG twice in a batch gets two
    got = gpuvio.decode_image([sources["jpeg"]] * 2, device=device, transforms=[RandomCrop(50, seed=6)])
    assert not torch.equal(got[0].cpu(), got[1].cpu())
    # read_image, and modes with transforms
    path = tmp_path / "image.jpg"
    path.write_bytes(sources["jpeg"])
    plain = gpuvio.read_image(path, device=device)
    assert_transformed(gpuvio.read_image(path, device=device, transforms=[Resize(100)]),
                       T.apply(plain, [Resize(100)]), device, "read_image")
    for mode in ("GRAY", "RGB_ALPHA"):
        plain = gpuvio.decode_image(sources["png"], mode=mode, device=device)
        got = gpuvio.decode_image(sources["png"], mode=mode, device=device, transforms=[Resize(50)])
        assert_transformed(got, T.apply(plain, [Resize(50)]), device, mode)
        assert got.shape[0] == plain.shape[0]


def test_image_random_crops_draw_from_the_global_rng_like_torchvision(images: dict[str, bytes]) -> None:
    """Without a seed, decode_image draws each image's window from torch's global RNG just as
    torchvision's RandomCrop applied to the decoded images one after another, and leaves the RNG
    in the same state."""
    datas = [images["jpeg"], images["photo_jpeg"], images["png"]]
    plain = gpuvio.decode_image(datas)
    torch.manual_seed(21)
    got = gpuvio.decode_image(datas, transforms=[RandomCrop(33)])
    after = torch.rand(3)
    torch.manual_seed(21)
    crop = RandomCrop(33)
    for g, p in zip(got, plain):
        assert torch.equal(g, T.apply(p, [crop]))
    assert torch.equal(torch.rand(3), after)
    torch.manual_seed(21)
    single = gpuvio.decode_image(datas[0], transforms=[RandomCrop(33)])
    assert torch.equal(single, got[0])


def test_sixteen_bit_png_is_resized_with_rounding(media: Callable[..., Path]) -> None:
    data = media("torchcodec", "gradient_16bit.png").read_bytes()
    plain = gpuvio.decode_image(data)
    got = gpuvio.decode_image(data, transforms=[Resize(20)])
    assert got.dtype == torch.uint16 and got.shape == (3, 20, 26)
    exact = torch.nn.functional.interpolate(plain[None].float(), size=(20, 26), mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    assert torch.equal(got.to(torch.int32), exact.round().to(torch.int32))
    # and the values stay in range (no wrap-around at the top)
    assert int(got.to(torch.int32).max()) <= 65535 and int(got.to(torch.int32).min()) >= 0


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_crop_larger_than_an_image_is_that_images_error(generated: dict[str, Path], device: str) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(texture_frames(1, 30, 40)[0].numpy()).save(buf, format="PNG")
    small, big = buf.getvalue(), generated["png"].read_bytes()
    crop = [CenterCrop(100)]
    with pytest.raises(gpuvio.InvalidArgumentError, match=r"CenterCrop size 100x100 .* 30x40 frame"):
        gpuvio.decode_image(small, device=device, transforms=crop)
    with pytest.raises(gpuvio.InvalidArgumentError, match=r"image 1 of 3: CenterCrop size 100x100 .* 30x40"):
        gpuvio.decode_image([big, small, big], device=device, transforms=crop)
    with pytest.warns(RuntimeWarning, match=r"skipped 1 of 3 .*1: CenterCrop size 100x100"):
        got = gpuvio.decode_image([big, small, big], device=device, transforms=crop, on_error="skip")
    want = T.apply(gpuvio.decode_image(big, device=device), crop)
    assert len(got) == 2
    for g in got:
        assert_transformed(g, want, device, "skip")


# ============================================================================ 4. bad input


@pytest.mark.parametrize("bad, error, word", [
    ("Resize", gpuvio.InvalidInputTypeError, "'Resize'"),
    ([object()], gpuvio.InvalidInputTypeError, "object"),
    ([Resize(10), 3], gpuvio.InvalidInputTypeError, "3"),
    (Resize, gpuvio.InvalidInputTypeError, "Resize"),  # the class, not an instance
    ([fake_resize(0)], gpuvio.InvalidArgumentError, "0"),
    ([fake_resize(-3)], gpuvio.InvalidArgumentError, "-3"),
    ([fake_resize(8, antialias=False)], gpuvio.InvalidArgumentError, "antialias=False"),
    ([CenterCrop(1000)], gpuvio.InvalidArgumentError, "1000x1000"),
    ([CenterCrop((96, 161))], gpuvio.InvalidArgumentError, "96x161"),
    ([Resize(40), CenterCrop(50)], gpuvio.InvalidArgumentError, "50x50"),
    ([RandomCrop((97, 10), seed=0)], gpuvio.InvalidArgumentError, "97x10"),
])
def test_bad_transforms_raise_everywhere(clips: dict[str, Path], bad: Any, error: type, word: str) -> None:
    path = str(clips["small"])  # 160x96
    calls = {
        "read_video": lambda: gpuvio.read_video(path, transforms=bad),
        "read_video_tchw": lambda: gpuvio.read_video(path, 0.2, 0.5, pts_unit="sec", output_format="TCHW",
                                                     transforms=bad),
        "VideoReader": lambda: gpuvio.VideoReader(path, transforms=bad),
        "decode_videos": lambda: gpuvio.decode_videos([path, path], device="cpu", transforms=bad),
    }
    import gc

    gc.collect()
    held = _forksafe.held_count()
    for name, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning, no half result: the error itself
            with pytest.raises(error) as raised:
                call()
        assert word in str(raised.value), (name, str(raised.value))
    gc.collect()
    assert _forksafe.held_count() == held  # nothing left open by the failed calls
    # and the next call works as ever
    assert gpuvio.read_video(path, transforms=[Resize(48)])[0].shape[1:] == (48, 80, 3)


def test_bad_transforms_raise_for_images(generated: dict[str, Path]) -> None:
    data = generated["png"].read_bytes()  # 300x200
    for bad, error, word in (("Resize", gpuvio.InvalidInputTypeError, "'Resize'"),
                             ([object()], gpuvio.InvalidInputTypeError, "object"),
                             ([fake_resize(0)], gpuvio.InvalidArgumentError, "0"),
                             ([Resize(10, max_size=400), CenterCrop(2000)], gpuvio.InvalidArgumentError, "2000x2000")):
        for call in (lambda: gpuvio.decode_image(data, transforms=bad),
                     lambda: gpuvio.decode_image([data, data], transforms=bad),
                     lambda: gpuvio.read_image(generated["png"], transforms=bad)):
            with pytest.raises(error, match=word):
                call()
    # type errors come before any decoding: even on_error="skip" does not skip them
    with pytest.raises(gpuvio.InvalidInputTypeError):
        gpuvio.decode_image([data], on_error="skip", transforms=[object()])


def test_a_size_that_fits_some_frames_is_checked_per_file(clips: dict[str, Path]) -> None:
    """decode_videos: a crop too large for one file fails the whole call (no partial list)."""
    paths = [str(clips["h264"]), str(clips["small"])]  # 320x240 and 160x96
    with pytest.raises(gpuvio.InvalidArgumentError, match=r"CenterCrop size 120x120 .* 96x160"):
        gpuvio.decode_videos(paths, device="cpu", transforms=[CenterCrop(120)])
    assert [t.shape[1:3] for t in gpuvio.decode_videos(paths, device="cpu", transforms=[CenterCrop(90)])] == \
        [(90, 90), (90, 90)]


# ============================================================================ 5. worker safety


@pytest.mark.parametrize("kind", ["seed", "global"])
def test_pickled_reader_keeps_its_window(clips: dict[str, Path], kind: str) -> None:
    path = str(clips["small"])
    torch.manual_seed(5)
    crop = RandomCrop((48, 64), seed=31) if kind == "seed" else RandomCrop((48, 64))
    reader = gpuvio.VideoReader(path, transforms=[Resize(80), crop])
    _frames(reader, 4)
    torch.rand(100)  # the global RNG moves on: a window drawn again would differ
    copy = pickle.loads(pickle.dumps(reader))
    got, got_pts = _frames(copy, 6)
    want, want_pts = _frames(reader, 6)
    assert got_pts == want_pts and torch.equal(got, want)
    # the window is the one drawn at open, not a new one
    plain, _ = _frames(gpuvio.VideoReader(path))
    torch.manual_seed(5)
    reference = RandomCrop((48, 64), seed=31) if kind == "seed" else RandomCrop((48, 64))
    opened = T.plan([Resize(80), reference], 96, 160)
    assert torch.equal(want, opened.apply(plain[4:10]))
    # (the test tells: a window drawn again, when the copy opened, would have been another one)
    if kind == "seed":
        redrawn = T.plan([Resize(80), reference], 96, 160)  # the generator's next draw, as pickled
    else:
        torch.manual_seed(5)
        T.plan([Resize(80), RandomCrop((48, 64))], 96, 160)  # the draw at open
        torch.rand(100)
        redrawn = T.plan([Resize(80), RandomCrop((48, 64))], 96, 160)
    assert redrawn.steps != opened.steps
    # random access: the copy draws what the original draws (its generator's state, or the global RNG)
    for _ in range(2):
        torch.manual_seed(6)
        from_copy = copy.get_frames_at([3, 1])
        torch.manual_seed(6)
        assert torch.equal(from_copy, reader.get_frames_at([3, 1]))


_FORK_SCRIPT = textwrap.dedent("""
    import faulthandler, json, os, sys, time
    import torch, gpuvio
    from gpuvio.transforms import RandomCrop, Resize

    clip, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(1234)
    reader = gpuvio.VideoReader(clip, transforms=[Resize(80), RandomCrop((48, 64))])
    before = [next(reader)["data"] for _ in range(3)]
    torch.rand(100)  # the global RNG moves on: a window drawn again in the child would differ
    pid = os.fork()
    # a watchdog each, armed after the fork (a timer armed before it could not be re-armed in the child)
    faulthandler.dump_traceback_later(60 if pid == 0 else 120, exit=True)
    if pid == 0:
        code = 1
        try:
            items = [next(reader) for _ in range(5)]
            torch.save([(i["pts"], i["data"]) for i in items], out + ".child.pt")
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 90
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise SystemExit("the forked child hung")
        time.sleep(0.02)
    items = [next(reader) for _ in range(5)]
    torch.save({"before": before, "parent": [(i["pts"], i["data"]) for i in items]}, out + ".parent.pt")
    print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}))
""")


def test_forked_child_reader_keeps_the_window(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fork"
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _FORK_SCRIPT, str(clips["small"]), str(out)],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(Path(gpuvio.__file__).parents[1])})
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"child_exit": 0}, proc.stderr[-3000:]
    child = torch.load(str(out) + ".child.pt")
    parent = torch.load(str(out) + ".parent.pt")
    assert [p for p, _ in child] == [p for p, _ in parent["parent"]]
    for (_, a), (_, b) in zip(child, parent["parent"]):
        assert torch.equal(a, b)
    # both are the window drawn at open, from the seeded global RNG, applied to frames 3..7
    plain, _ = _frames(gpuvio.VideoReader(str(clips["small"])))
    torch.manual_seed(1234)
    opened = T.plan([Resize(80), RandomCrop((48, 64))], 96, 160)
    assert torch.equal(torch.stack([d for _, d in child]), opened.apply(plain[3:8]))
    assert torch.equal(torch.stack(parent["before"]), opened.apply(plain[:3]))
    # (the test tells: a window drawn again in the child would have been another one)
    torch.rand(100)
    assert T.plan([Resize(80), RandomCrop((48, 64))], 96, 160).steps != opened.steps
