"""gpuvio._swscale_rgb against PyAV's own rgb24 conversion (swscale), pixel for pixel.

The reference is ``frame.to_ndarray(format="rgb24")`` of the very frame whose planes (line
padding stripped) are fed to the torch code. Generated clips and frames cover every path (SIMD
unscaled, general scaler with table or full-chroma output, fields of interlaced frames), so the
property holds without ../shared; the shared media, when present, add real footage.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch

from gpuvio._color import chroma_siting
from gpuvio._errors import InvalidArgumentError, UnsupportedFormatError
from gpuvio._samples import texture
from gpuvio._swscale_rgb import (coefficients, sws_matrix, swscale_nv12_to_rgb,
                                 swscale_yuv_to_rgb)
from tests.conftest import DEVICES, media_path

av = pytest.importorskip("av")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is fastest, and fair to a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _planes(frame) -> list[torch.Tensor]:
    """The frame's planes as [h, w] tensors (uint8, or int32 for >8-bit), padding dropped."""
    deep = frame.format.components[0].bits > 8
    out = []
    for plane in frame.planes:
        dtype = np.uint16 if deep else np.uint8
        rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
        data = rows[:, : plane.width]
        out.append(torch.from_numpy(data.astype(np.int32) if deep else data.copy()))
    return out


def _ours(frame, location: str, device: str = "cpu", planes=None) -> torch.Tensor:
    matrix, full = sws_matrix(frame.colorspace, frame.color_range, frame.format.name)
    y, u, v = (p.to(device) for p in (planes or _planes(frame)))
    return swscale_yuv_to_rgb(y, u, v, matrix=matrix, full_range=full,
                              bit_depth=frame.format.components[0].bits,
                              chroma_location=location, interlaced=frame.interlaced_frame).cpu()


def _reference(frame) -> torch.Tensor:
    return torch.from_numpy(frame.to_ndarray(format="rgb24"))


def _diff(ours: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    assert ours.shape == ref.shape and ours.dtype == torch.uint8
    return (ours.to(torch.int16) - ref.to(torch.int16)).abs().amax(dim=-1)


def _assert_exact(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    d = _diff(ours, ref)
    bad = torch.nonzero(d)
    assert bad.numel() == 0, (f"{what}: max {int(d.max())}, mean {float(d.float().mean()):.5f}, "
                              f"{bad.shape[0]} pixels differ, first (row, col) {bad[:5].tolist()}")


@functools.lru_cache(maxsize=64)
def _scene(width: int, height: int, index: int) -> np.ndarray:
    """A textured pan with sharp saturated bars (red, blue, yellow) and a white post."""
    tex = texture(height + 40, width + 80, seed=3)
    img = np.ascontiguousarray(tex[index * 3: index * 3 + height, index * 7: index * 7 + width])
    img[height // 3: height // 3 + 5, : width // 2] = (255, 0, 0)
    img[height // 2: height // 2 + 4, width // 3:] = (0, 0, 255)
    img[(2 * height) // 3:, : width // 4] = (255, 255, 0)
    img[:, width // 2: width // 2 + 2] = (255, 255, 255)
    return img


# --- synthetic frames: every tag and size, random (harsh) and textured (realistic) ---

def _frame(width: int, height: int, pix_fmt: str, seed: int, random: bool):
    bits = 12 if "12" in pix_fmt else 10 if "10" in pix_fmt else 8
    if random:
        frame = av.VideoFrame(width, height, pix_fmt)
        rng = np.random.default_rng(seed)
        for plane in frame.planes:
            dtype = np.uint16 if bits > 8 else np.uint8
            rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
            rows[:, : plane.width] = rng.integers(0, 1 << bits, (plane.height, plane.width))
        return frame
    rgb = av.VideoFrame.from_ndarray(_scene(width, height, seed % 5), format="rgb24")
    return rgb.reformat(format=pix_fmt)


# even/odd heights and widths, multiples of 16 or not, and the tiny sizes where swscale's
# filters shrink to one tap
SIZES = [(322, 240), (318, 100), (176, 100), (175, 99), (176, 99), (64, 31), (6, 4), (5, 3),
         (2, 2), (1, 1)]
FORMATS = ["yuv420p", "yuvj420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le",
           "yuv444p10le", "yuv420p12le"]
TAGS = [(1, 1), (2, 0), (4, 2), (5, 1), (6, 2), (7, 1), (9, 2), (0, 1)]


@pytest.mark.parametrize("pix_fmt", FORMATS)
def test_synthetic_frames_exact(pix_fmt: str) -> None:
    for i, (width, height) in enumerate(SIZES):
        for random in (True, False):
            frame = _frame(width, height, pix_fmt, seed=i, random=random)
            planes = _planes(frame)
            for colorspace, color_range in TAGS[i % 3:: 3] if random else TAGS[i % 2:: 4]:
                frame.colorspace, frame.color_range = colorspace, color_range
                _assert_exact(_ours(frame, "unspecified", planes=planes), _reference(frame),
                              f"{pix_fmt} {width}x{height} cs={colorspace} range={color_range}"
                              f" random={random}")


def test_to_rgb_is_to_ndarray_rgb24() -> None:
    frame = _frame(176, 100, "yuv420p", seed=1, random=False)
    assert np.array_equal(frame.to_rgb().to_ndarray(), frame.to_ndarray(format="rgb24"))


@pytest.mark.parametrize("colorspace", range(0, 16))
def test_matrix_rules_follow_pyav(colorspace: int) -> None:
    """sws_matrix refuses exactly what PyAV refuses, and picks the coefficients PyAV uses."""
    frame = _frame(64, 32, "yuv420p", seed=5, random=True)
    frame.colorspace, frame.color_range = colorspace, 1
    try:
        ref = _reference(frame)
    except OSError:
        with pytest.raises(UnsupportedFormatError):
            sws_matrix(colorspace, 1)
        return
    _assert_exact(_ours(frame, "unspecified"), ref, f"colorspace {colorspace}")


def test_matrix_names_and_range() -> None:
    assert sws_matrix("bt709", "tv") == ("bt709", False)
    assert sws_matrix("smpte170m", "pc") == ("bt601", True)
    assert sws_matrix(2, 0, "yuvj420p") == ("bt601", True)
    assert sws_matrix(9, 2) == ("bt2020", True)
    with pytest.raises(UnsupportedFormatError):
        sws_matrix("bt2020c", 1)


def test_coefficients_are_ffmpegs() -> None:
    """The BT.601 limited-range constants worked out by hand from ff_yuv2rgb_c_init_tables."""
    k = coefficients("bt601", False)
    assert (k.cy, k.oy, k.crv, k.cbu, k.cgu, k.cgv) == (76309, 16 << 16, 104597, 132201,
                                                         -25675, -53279)
    assert (k.y_coeff, k.v2r, k.u2g, k.v2g, k.u2b) == (9539, 13075, -3209, -6660, 16525)
    assert (k.simd_y_offset, k.full_y_offset, k.tab_base) == (128, 8192, 326)
    full = coefficients("bt709", True)
    assert (full.cy, full.oy, full.y_coeff, full.simd_y_offset, full.tab_base) == (
        65536, 0, 8192, 0, 384)
    assert full.crv == 117489 * 224 // 255


# --- encoded clips: what the decoders really hand over ---

def _encode(codec: str, width: int, height: int, pix_fmt: str, options: dict | None,
            colorspace: int | None, color_range: int | None, frames: int = 3) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options or {})
        if codec == "libx265":
            stream.options = {**stream.options, "x265-params": "log-level=error"}
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
        if color_range is not None:
            stream.codec_context.color_range = color_range
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_scene(width, height, i), format="rgb24")
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


# codec, size, pix_fmt, encoder options, colorspace/range tags, chroma location (None: the
# codec's, from gpuvio._color.chroma_siting), expected decoded (pix_fmt, interlaced)
CLIPS = {
    "h264-320x240-bt709": ("libx264", 320, 240, "yuv420p", None, 1, 1, None),
    "h264-318x240": ("libx264", 318, 240, "yuv420p", None, None, None, None),
    "h264-322x240-bt709-full": ("libx264", 322, 240, "yuv420p", None, 1, 2, None),
    "h264-176x100-yuvj420p": ("libx264", 176, 100, "yuvj420p", None, None, None, None),
    "h264-422-320x239": ("libx264", 320, 239, "yuv422p", None, None, None, None),
    "h264-444-322x240": ("libx264", 322, 240, "yuv444p", None, 6, 1, None),
    "h264-10bit": ("libx264", 320, 240, "yuv420p10le", None, 1, 1, None),
    "h264-10bit-topleft": ("libx264", 320, 240, "yuv420p10le",
                           {"x264-params": "chromaloc=2"}, None, None, "topleft"),
    "h264-10bit-interlaced": ("libx264", 320, 240, "yuv420p10le",
                              {"x264-params": "interlaced=1"}, None, None, None),
    "hevc-320x240": ("libx265", 320, 240, "yuv420p", None, None, None, None),
    "hevc-10bit-bt2020": ("libx265", 320, 240, "yuv420p10le", None, 9, 1, None),
    "mpeg4-176x100": ("mpeg4", 176, 100, "yuv420p", None, None, None, None),
    "mpeg4-175x99": ("mpeg4", 175, 99, "yuv420p", None, None, None, None),
    "vp9-175x99": ("libvpx-vp9", 175, 99, "yuv420p", None, None, None, None),
    "vp9-444-175x99": ("libvpx-vp9", 175, 99, "yuv444p", None, None, None, None),
    "mjpeg-175x99": ("mjpeg", 175, 99, "yuvj420p", None, None, None, None),
    "mjpeg-422-176x99": ("mjpeg", 176, 99, "yuvj422p", None, None, None, None),
    "ffv1-10bit-175x99": ("ffv1", 175, 99, "yuv420p10le", None, 7, 1, None),
    "mpeg2-interlaced": ("mpeg2video", 320, 240, "yuv420p", {"flags": "+ildct+ilme"}, None,
                         None, None),
}


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {}


def _decoded(clips: dict[str, bytes], name: str):
    codec, width, height, pix_fmt, options, colorspace, color_range, location = CLIPS[name]
    if name not in clips:
        try:
            clips[name] = _encode(codec, width, height, pix_fmt, options, colorspace, color_range)
        except (av.error.FFmpegError, ValueError) as exc:   # an encoder this build lacks
            pytest.skip(f"cannot encode {name}: {exc}")
    with av.open(io.BytesIO(clips[name])) as container:
        decoder = container.streams.video[0].codec_context.name
        frames = list(container.decode(video=0))
    assert frames and (frames[0].width, frames[0].height) == (width, height)
    return frames, location or chroma_siting(decoder)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_generated_clip_exact(clips: dict[str, bytes], name: str) -> None:
    frames, location = _decoded(clips, name)
    for i, frame in enumerate(frames):
        _assert_exact(_ours(frame, location), _reference(frame), f"{name} frame {i}")
    if name.endswith("interlaced"):
        assert frames[0].interlaced_frame


def test_siting_and_fields_matter(clips: dict[str, bytes]) -> None:
    """The general path depends on the chroma location and on the field split: a wrong one
    is visibly off, so the exact matches above are not an accident of flat content."""
    frames, location = _decoded(clips, "h264-10bit")
    assert location == "left"
    assert int(_diff(_ours(frames[0], "center"), _reference(frames[0])).max()) > 8
    frame = _decoded(clips, "mpeg2-interlaced")[0][0]
    planes = _planes(frame)
    matrix, full = sws_matrix(frame.colorspace, frame.color_range)
    progressive = swscale_yuv_to_rgb(*planes, matrix=matrix, full_range=full)
    assert int(_diff(progressive, _reference(frame)).max()) > 8


def test_interlaced_field_past_the_plane_bound(clips: dict[str, bytes]) -> None:
    """Height 270 interlaced: the bottom field (135 rows) needs 68 chroma rows, one more than
    the plane has; swscale reads decoder padding there, we repeat the last row. Only the last
    bottom-field rows may differ."""
    clips.setdefault("mpeg2-270", _encode("mpeg2video", 320, 270, "yuv420p",
                                          {"flags": "+ildct+ilme"}, None, None))
    with av.open(io.BytesIO(clips["mpeg2-270"])) as container:
        frames = list(container.decode(video=0))
    for frame in frames:
        assert frame.interlaced_frame
        d = _diff(_ours(frame, "left"), _reference(frame))
        rows = torch.nonzero(d.amax(dim=1)).flatten().tolist()
        assert set(rows) <= {265, 267, 269}, rows


def test_nv12_and_p010_entry_points(clips: dict[str, bytes]) -> None:
    frames, location = _decoded(clips, "h264-318x240")
    frame = frames[-1]
    y, u, v = _planes(frame)
    ref = _reference(frame)
    matrix, full = sws_matrix(frame.colorspace, frame.color_range)
    for uv in (torch.stack([u, v], dim=-1), torch.stack([u, v], dim=-1).reshape(u.shape[0], -1)):
        _assert_exact(swscale_nv12_to_rgb(y, uv, matrix=matrix, full_range=full,
                                          chroma_location=location), ref, "nv12")
    for name, bits in (("h264-10bit", 10), ("h264-10bit-interlaced", 10)):
        frame = _decoded(clips, name)[0][1]
        y, u, v = _planes(frame)
        ref = _reference(frame)
        matrix, full = sws_matrix(frame.colorspace, frame.color_range)
        p010 = [(p << (16 - bits)) for p in (y, u, v)]
        for dtype in (torch.int32, torch.int16):   # int16: the raw 16-bit words
            uv = torch.stack(p010[1:], dim=-1).to(torch.int32)
            if dtype is torch.int16:
                uv = (uv - ((uv >> 15) << 16)).to(torch.int16)
            luma = p010[0] if dtype is torch.int32 else (p010[0] - ((p010[0] >> 15) << 16)).to(
                torch.int16)
            _assert_exact(swscale_nv12_to_rgb(luma, uv, bit_depth=bits, matrix=matrix,
                                              full_range=full, chroma_location="left",
                                              interlaced=frame.interlaced_frame), ref,
                          f"p010 {name} {dtype}")


def test_batch_dimensions() -> None:
    frames = [_frame(175, 99, "yuv420p", seed=s, random=False) for s in range(2)]
    planes = [_planes(f) for f in frames]
    batch = [torch.stack([p[i] for p in planes]) for i in range(3)]
    out = swscale_yuv_to_rgb(*batch)
    for frame, got in zip(frames, out):
        _assert_exact(got, _reference(frame), "batch")


def test_bad_arguments() -> None:
    y, u = torch.zeros(4, 6, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8)
    with pytest.raises(InvalidArgumentError):
        swscale_yuv_to_rgb(y, u, u, bit_depth=9)
    with pytest.raises(InvalidArgumentError):
        swscale_yuv_to_rgb(y, u, u, chroma_location="middle")
    with pytest.raises(InvalidArgumentError):
        swscale_yuv_to_rgb(y, torch.zeros(4, 3, dtype=torch.uint8), u)
    with pytest.raises(InvalidArgumentError):
        swscale_yuv_to_rgb(y, torch.zeros(2, 6, dtype=torch.uint8),
                           torch.zeros(2, 6, dtype=torch.uint8))   # 4:4:0 is not handled
    with pytest.raises(InvalidArgumentError):
        swscale_yuv_to_rgb(y.float(), u, u)
    with pytest.raises(InvalidArgumentError):
        coefficients("ycgco")


# --- the shared media (skipped when ../shared/media is absent) and the device check ---

SHARED = ["torchcodec/av1_video.mkv", "torchcodec/h265_video.mp4", "torchcodec/nasa_13013.mp4",
          "torchcodec/test_non_zero_start.mp4", "torchcodec/testsrc2.mp4",
          "torchcodec/testsrc2_mpeg4.avi", "torchcodec/testsrc2_vp9.webm",
          "torchvision/videos/R6llTwEh07w.mp4",
          "torchvision/videos/RATRACE_wave_f_nm_np1_fr_goo_37.avi",
          "torchvision/videos/TrumanShow_wave_f_nm_np1_fr_med_26.avi",
          "torchvision/videos/hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi",
          "torchvision/videos/v_SoccerJuggling_g23_c01.avi"]


@pytest.mark.parametrize("name", SHARED)
def test_shared_media_exact(name: str) -> None:
    path = media_path(*name.split("/"))
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        location = chroma_siting(stream.codec_context.name)
        for i, frame in enumerate(container.decode(stream)):
            _assert_exact(_ours(frame, location), _reference(frame), f"{name} frame {i}")
            if i >= (1 if frame.width * frame.height > 400_000 else 3):
                break


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(clips: dict[str, bytes], device: str) -> None:
    """The same integer ops on the GPU: every path, against PyAV."""
    for name in ("h264-318x240", "h264-422-320x239", "mpeg4-175x99", "h264-444-322x240",
                 "h264-10bit-interlaced", "mpeg2-interlaced"):
        frames, location = _decoded(clips, name)
        _assert_exact(_ours(frames[-1], location, device=device), _reference(frames[-1]),
                      f"{name} on {device}")
