"""The "accurate" colour policy: gpuvio._color's torch ops against the CPU backend's swscale conversion.

:func:`gpuvio._color.yuv_to_rgb` / :func:`nv12_to_rgb` are what GPU backends run on decoder
surfaces; the CPU backend converts with swscale's accurate path. Fed with PyAV's own planes (and
NV12/P010 frames from ``frame.reformat``), the two must agree to within 1 on real clips: 8-bit
4:2:0 untagged BT.601, BT.709-tagged, full range, 4:2:2, 4:4:4, 10-bit, and the centre-sited
codecs (VP9, AV1, MJPEG). Documented departures, checked here as such:

* odd sizes: swscale spreads the ``ceil(W/2)`` chroma samples over ``W`` columns (off the 2:1
  grid, up to 9 levels away from the policy); the CPU backend converts those frames with
  ``yuv_to_rgb`` itself, so the backends agree exactly;
* a stream that signals a non-default chroma location (x264 ``chromaloc=2``): swscale follows
  the signal, :func:`chroma_siting` (the codec's default) does not; ``siting="topleft"`` matches.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from gpuvio.cpu_fallback._frames import RgbConverter
from gpuvio._color import chroma_siting, color_policy, nv12_to_rgb, yuv_to_rgb
from gpuvio._samples import texture


def _accurate(frame: Any) -> np.ndarray:
    """swscale's accurate conversion of one frame, asked for directly (the CPU backend's path)."""
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    rgb = frame.reformat(format="rgb24", interpolation=flags, src_color_range=frame.color_range or None,
                         dst_color_range="JPEG")
    return rgb.to_ndarray()


def _planes(frame: Any) -> list[torch.Tensor]:
    """The Y, U, V planes of a planar frame as int32 tensors (8 or 16-bit storage)."""
    bits = frame.format.components[0].bits
    dtype = np.uint16 if bits > 8 else np.uint8
    out = []
    for plane in frame.planes[:3]:
        rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // np.dtype(dtype).itemsize)
        out.append(torch.from_numpy(rows[:, : plane.width].astype(np.int32)))
    return out


def _nv12(frame: Any, fmt: str) -> torch.Tensor:
    """``frame.reformat(format=fmt)`` ("nv12" or "p010le") as one [H * 3 / 2, W] tensor."""
    semi = frame.reformat(format=fmt)
    dtype = np.uint16 if fmt.startswith("p01") else np.uint8
    size = np.dtype(dtype).itemsize
    luma = np.frombuffer(semi.planes[0], dtype).reshape(frame.height, -1)[:, : frame.width]
    chroma = np.frombuffer(semi.planes[1], dtype).reshape(frame.height // 2, -1)[:, : frame.width]
    assert semi.planes[0].line_size % size == 0
    return torch.from_numpy(np.concatenate([luma, chroma]).astype(np.int32))


def _policy(frame: Any, siting: str) -> np.ndarray:
    matrix, full = color_policy(frame.colorspace, frame.color_range, frame.format.name)
    y, u, v = _planes(frame)
    return yuv_to_rgb(y, u, v, matrix=matrix, full_range=full, bit_depth=frame.format.components[0].bits,
                      siting=siting).numpy()  # type: ignore[arg-type]


def _encode(codec: str, pix_fmt: str, width: int, height: int, *, container: str = "matroska",
            frames: int = 2, options: dict[str, str] | None = None, **tags: int) -> bytes:
    """A short clip of textured content, encoded in memory."""
    buf = io.BytesIO()
    scene = texture(height + 16, width + 16, seed=3)
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[i * 4:i * 4 + height, i * 6:i * 6 + width]),
                                               format="rgb24").reformat(format=pix_fmt)
            for name, value in tags.items():
                setattr(frame, name, value)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _decoded(source: Any, count: int = 2, stream_index: int = 0) -> tuple[str, list[Any]]:
    src = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(src) as container:
        stream = container.streams.video[stream_index]
        frames = [f for _, f in zip(range(count), container.decode(stream))]
        return stream.codec_context.name, frames


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


CASES = {
    # name: (codec, pix_fmt, width, height, encoder tags/options); decoded format in the comment
    "h264_420_untagged": ("libx264", "yuv420p", 320, 240, {}),
    "h264_420_bt709": ("libx264", "yuv420p", 320, 240, {"colorspace": 1, "color_primaries": 1, "color_trc": 1}),
    "h264_420_full_range": ("libx264", "yuv420p", 320, 240, {"color_range": 2}),  # decodes as yuvj420p
    "h264_422": ("libx264", "yuv422p", 320, 240, {}),
    "h264_444": ("libx264", "yuv444p", 320, 240, {}),
    "h264_10bit": ("libx264", "yuv420p10le", 320, 240, {}),
    "hevc_10bit_bt2020": ("libx265", "yuv420p10le", 320, 240,
                          {"colorspace": 9, "color_primaries": 9, "color_trc": 14}),
    "mpeg4": ("mpeg4", "yuv420p", 320, 240, {}),
    "vp9_center": ("libvpx-vp9", "yuv420p", 320, 240, {}),
    "mjpeg_full_center": ("mjpeg", "yuvj420p", 322, 242, {}),
    "ffv1_12bit_center": ("ffv1", "yuv420p12le", 320, 240, {}),
}


@pytest.fixture(scope="module")
def encoded() -> dict[str, bytes]:
    return {name: _encode(codec, fmt, w, h, **tags) for name, (codec, fmt, w, h, tags) in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_policy_matches_swscale_on_generated_clips(encoded: dict[str, bytes], name: str) -> None:
    codec, frames = _decoded(encoded[name])
    converter = RgbConverter(codec, "accurate")
    for frame in frames:
        reference = _accurate(frame)
        # the CPU backend is swscale's accurate path, unchanged, for these even sizes
        np.testing.assert_array_equal(converter.to_array(frame), reference)
        diff = _diff(_policy(frame, chroma_siting(codec)), reference)
        assert diff.max() <= 1, f"{name} ({frame.format.name}): max {diff.max()}, mean {diff.mean():.4f}"
        assert diff.mean() < 0.02


def test_generated_cases_cover_what_they_claim(encoded: dict[str, bytes]) -> None:
    # the decoded formats and tags are what the case names say (a silent encoder change would
    # otherwise turn a full-range or 10-bit check into a plain one)
    seen = {}
    for name in CASES:
        codec, (frame, *_) = _decoded(encoded[name], 1)
        seen[name] = (codec, frame.format.name, frame.colorspace, frame.color_range)
    assert seen["h264_420_full_range"][1] == "yuvj420p"
    assert seen["h264_420_bt709"][2] == 1
    assert seen["h264_10bit"][1] == seen["hevc_10bit_bt2020"][1] == "yuv420p10le"
    assert seen["hevc_10bit_bt2020"][2] == 9
    assert seen["h264_422"][1] == "yuv422p" and seen["h264_444"][1] == "yuv444p"
    assert seen["mjpeg_full_center"][1] == "yuvj420p"
    assert {seen[n][0] for n in ("vp9_center", "mjpeg_full_center", "ffv1_12bit_center")} == {"vp9", "mjpeg", "ffv1"}


SHARED = [
    ("torchcodec", "nasa_13013.mp4"),  # BT.709-tagged H.264, limited range
    ("torchcodec", "testsrc2.mp4"),
    ("torchcodec", "h265_video.mp4"),
    ("torchcodec", "testsrc2_vp9.webm"),  # VP9: centre siting
    ("torchcodec", "av1_video.mkv"),  # AV1 (libdav1d): centre siting
    ("torchcodec", "testsrc2_mpeg4.avi"),
    ("torchvision", "videos", "R6llTwEh07w.mp4"),  # untagged BT.601
    ("torchvision", "videos", "v_SoccerJuggling_g23_c01.avi"),  # XviD
]


@pytest.mark.parametrize("parts", SHARED, ids=lambda p: p[-1])
def test_policy_matches_swscale_on_shared_media(parts: tuple[str, ...], media) -> None:
    # (without ../shared, on the stand-ins: the same codecs, tags and chroma sitings)
    codec, frames = _decoded(media(*parts), 2)
    for frame in frames:
        diff = _diff(_policy(frame, chroma_siting(codec)), _accurate(frame))
        assert diff.max() <= 1, f"{parts[-1]}: max {diff.max()} mean {diff.mean():.4f}"


@pytest.mark.parametrize("parts", [SHARED[0], SHARED[3]], ids=lambda p: p[-1])
def test_wrong_siting_is_detected(parts: tuple[str, ...], media) -> None:
    # the siting matters on real content: the other choice is far off (so the checks above are
    # not passing for a reason that has nothing to do with the siting)
    codec, (frame, *_) = _decoded(media(*parts), 1)
    wrong = "center" if chroma_siting(codec) == "left" else "left"
    assert _diff(_policy(frame, wrong), _accurate(frame)).max() > 10


@pytest.mark.parametrize("name", ["h264_420_untagged", "h264_420_bt709", "h264_420_full_range", "vp9_center"])
def test_nv12_to_rgb_matches(encoded: dict[str, bytes], name: str) -> None:
    codec, frames = _decoded(encoded[name])
    siting = chroma_siting(codec)
    for frame in frames:
        matrix, full = color_policy(frame.colorspace, frame.color_range, frame.format.name)
        rgb = nv12_to_rgb(_nv12(frame, "nv12"), matrix=matrix, full_range=full, siting=siting).numpy()
        np.testing.assert_array_equal(rgb, _policy(frame, siting))  # same samples, same arithmetic
        assert _diff(rgb, _accurate(frame)).max() <= 1


@pytest.mark.parametrize("name", ["h264_10bit", "hevc_10bit_bt2020"])
def test_p010_to_rgb_matches(encoded: dict[str, bytes], name: str) -> None:
    # NVDEC gives 10-bit video as P016 (the value in the high bits): bit_depth=16
    codec, frames = _decoded(encoded[name])
    for frame in frames:
        matrix, full = color_policy(frame.colorspace, frame.color_range, frame.format.name)
        rgb = nv12_to_rgb(_nv12(frame, "p010le"), matrix=matrix, full_range=full, bit_depth=16,
                          siting=chroma_siting(codec)).numpy()
        assert _diff(rgb, _accurate(frame)).max() <= 1


@pytest.mark.parametrize("case", [("ffv1", "yuv420p", 321, 241), ("libvpx-vp9", "yuv420p", 321, 241),
                                  ("ffv1", "yuv420p10le", 323, 239), ("ffv1", "yuv422p", 321, 240)],
                         ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}x{c[3]}")
def test_odd_sizes_follow_the_policy(case: tuple[str, str, int, int]) -> None:
    codec_name, pix_fmt, width, height = case
    codec, frames = _decoded(_encode(codec_name, pix_fmt, width, height))
    converter = RgbConverter(codec, "accurate")
    for frame in frames:
        policy = _policy(frame, chroma_siting(codec))
        # the CPU backend converts odd sizes with the policy itself: exactly equal
        np.testing.assert_array_equal(converter.to_array(frame), policy)
        np.testing.assert_array_equal(converter.to_array(frame, "CHW"), policy.transpose(2, 0, 1))
        # documented departure: swscale stretches the chroma over the odd width
        diff = _diff(policy, _accurate(frame))
        assert 1 < diff.max() <= 12


def test_odd_size_through_read_video(tmp_path: Any) -> None:
    import gpuvio

    path = tmp_path / "odd.mkv"
    path.write_bytes(_encode("libvpx-vp9", "yuv420p", 321, 241, frames=3))
    video, _, _ = gpuvio.read_video(str(path), pts_unit="sec", color="accurate")
    default, _, _ = gpuvio.read_video(str(path), pts_unit="sec")
    codec, frames = _decoded(path.read_bytes(), 3)
    assert video.shape == default.shape == (3, 241, 321, 3)
    for got, tv, frame in zip(video, default, frames):
        np.testing.assert_array_equal(got.numpy(), _policy(frame, chroma_siting(codec)))
        np.testing.assert_array_equal(tv.numpy(), frame.to_rgb().to_ndarray())


def test_signalled_chroma_location_is_a_known_gap() -> None:
    # x264 chromaloc=2 (top-left): swscale follows the signal; the codec default ("left") does
    # not, and yuv_to_rgb(siting="topleft") does
    codec, (frame, *_) = _decoded(_encode("libx264", "yuv420p", 320, 240,
                                          options={"x264-params": "chromaloc=2"}), 1)
    reference = _accurate(frame)
    assert _diff(_policy(frame, "topleft"), reference).max() <= 1
    assert _diff(_policy(frame, chroma_siting(codec)), reference).max() > 1


def test_chroma_siting_table() -> None:
    assert {chroma_siting(c) for c in ("h264", "hevc", "mpeg2video", "mpeg4")} == {"left"}
    assert {chroma_siting(c) for c in ("vp8", "vp9", "av1", "libdav1d", "mjpeg", "mpeg1video", None)} == {"center"}


def test_yuv_to_rgb_validates_siting() -> None:
    y = torch.zeros(4, 4, dtype=torch.uint8)
    c = torch.zeros(2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="siting"):
        yuv_to_rgb(y, c, c, siting="bottom")  # type: ignore[arg-type]


def test_default_siting_is_unchanged_arithmetic() -> None:
    # GPU kernels replicate the default ("left") path op for op; it must stay what it was
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 256, (6, 8), generator=g, dtype=torch.uint8)
    u = torch.randint(0, 256, (3, 4), generator=g, dtype=torch.uint8)
    v = torch.randint(0, 256, (3, 4), generator=g, dtype=torch.uint8)
    assert torch.equal(yuv_to_rgb(y, u, v), yuv_to_rgb(y, u, v, siting="left"))
    assert not torch.equal(yuv_to_rgb(y, u, v, siting="left"), yuv_to_rgb(y, u, v, siting="center"))
