"""read_video, read_video_timestamps and write_video on the CPU backend, against torchvision 0.8.

The reference is torchvision 0.8's PyAV algorithm, re-implemented below with PyAV (torchvision
itself no longer ships it): seek a little before the start, a dict of decoded frames by pts,
the inclusive range, the frame before ``start_pts`` when none starts exactly there, decoding up
to five frames past the end unless a DivX build string says the B-frames are not packed, and
'sec' converted with floor/ceil. Its frames are converted as torchvision 0.8 converted them
(``frame.to_rgb().to_ndarray()``), gpuvio's default: gpuvio must return exactly those pixels.
Audio follows torchvision's ``_align_audio_frames``, with the later fix that converts 'sec'
bounds to audio units before aligning; samples are float32 in [-1, 1] whatever the decoder's
sample format (torchvision passed int16 through).
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import VIDEO_DEVICES, assert_pixels, torchvision_info, write_resolution_switch

av = pytest.importorskip("av")

import gpuvio

# ----------------------------------------------------------------------------- the reference


def tv08_read_from_stream(container: Any, start_offset: Any, end_offset: Any, pts_unit: str,
                          stream: Any, stream_name: dict[str, int]) -> list[Any]:
    """torchvision 0.8's ``_read_from_stream`` (PyAV backend), step for step, except its seek.

    gpuvio's ranges equal a full decode filtered by torchvision's rules: ``container`` must be
    freshly opened, and it is decoded from its very first packet. (torchvision seeks a little
    before the start, and that seek can land late — MPEG-TS, MPEG-PS — or skip the AAC priming
    packet that a full decode uses; gpuvio checks its seeks instead, see tests/test_ranges.py.)
    """
    if pts_unit == "sec":
        start_offset = int(math.floor(start_offset * (1 / stream.time_base)))
        if end_offset != float("inf"):
            end_offset = int(math.ceil(end_offset * (1 / stream.time_base)))
    frames = {}
    should_buffer = True
    max_buffer_size = 5
    if stream.type == "video":
        # packed B-frames (DivX) can deliver pts out of order: buffer a few extra frames
        extradata = stream.codec_context.extradata
        if extradata and b"DivX" in extradata:
            pos = extradata.find(b"DivX")
            d = extradata[pos:]
            o = re.search(rb"DivX(\d+)Build(\d+)(\w)", d)
            if o is None:
                o = re.search(rb"DivX(\d+)b(\d+)(\w)", d)
            if o is not None:
                should_buffer = o.group(3) == b"p"
    buffer_count = 0
    try:
        for frame in container.decode(**stream_name):
            frames[frame.pts] = frame
            if frame.pts >= end_offset:
                if should_buffer and buffer_count < max_buffer_size:
                    buffer_count += 1
                    continue
                break
    except av.FFmpegError:
        pass
    result = [frames[i] for i in sorted(frames) if start_offset <= frames[i].pts <= end_offset]
    if len(frames) > 0 and start_offset > 0 and start_offset not in frames:
        preceding_frames = [i for i in frames if i < start_offset]
        if len(preceding_frames) > 0:
            first_frame_pts = max(preceding_frames)
            result.insert(0, frames[first_frame_pts])
    return result


def tv_align_audio_frames(aframes: np.ndarray, audio_frames: list[Any], ref_start: Any, ref_end: Any) -> np.ndarray:
    """torchvision's ``_align_audio_frames``."""
    start, end = audio_frames[0].pts, audio_frames[-1].pts
    total_aframes = aframes.shape[1]
    step_per_aframe = (end - start + 1) / total_aframes
    s_idx = 0
    e_idx = total_aframes
    if start < ref_start:
        s_idx = int((ref_start - start) / step_per_aframe)
    if end > ref_end:
        e_idx = int((ref_end - end) / step_per_aframe)
    return aframes[:, s_idx:e_idx]


def tv_rgb(frame: Any) -> np.ndarray:
    """torchvision 0.8's conversion, gpuvio's default: ``frame.to_rgb().to_ndarray()``, ``[H, W, 3]``."""
    return frame.to_rgb().to_ndarray()


def accurate_rgb(frame: Any) -> np.ndarray:
    """The ``color="accurate"`` policy on the CPU: swscale's accurate bilinear path, full-range RGB."""
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    return frame.reformat(format="rgb24", interpolation=flags, src_color_range=frame.color_range or None,
                          dst_color_range="JPEG").to_ndarray()


def audio_float(frame: Any) -> np.ndarray:
    """``[channels, samples] float32`` of an audio frame, integers scaled to [-1, 1]."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return array.astype(np.float32) / 2147483648.0
    assert array.dtype == np.float32, array.dtype
    return array


def reference_read_video(path: Path, start_pts: Any = 0, end_pts: Any = None,
                         pts_unit: str = "pts") -> tuple[list[Any], np.ndarray | None, dict[str, Any]]:
    """torchvision 0.8's read_video on a full decode, returning the selected video frames themselves."""
    if end_pts is None:
        end_pts = float("inf")
    info: dict[str, Any] = {}
    video_frames: list[Any] = []
    audio = None
    with av.open(str(path), metadata_errors="ignore") as container:
        if container.streams.video:
            video_frames = tv08_read_from_stream(container, start_pts, end_pts, pts_unit,
                                                 container.streams.video[0], {"video": 0})
            if container.streams.video[0].average_rate is not None:
                info["video_fps"] = float(container.streams.video[0].average_rate)
    with av.open(str(path), metadata_errors="ignore") as container:  # afresh: decoded from the start
        if container.streams.audio:
            astream = container.streams.audio[0]
            audio_frames = tv08_read_from_stream(container, start_pts, end_pts, pts_unit, astream, {"audio": 0})
            info["audio_fps"] = astream.rate
            if audio_frames:
                aframes = np.concatenate([audio_float(f) for f in audio_frames], 1)
                start, end = start_pts, end_pts
                if pts_unit == "sec":
                    start = int(math.floor(start_pts * (1 / astream.time_base)))
                    if end_pts != float("inf"):
                        end = int(math.ceil(end_pts * (1 / astream.time_base)))
                audio = tv_align_audio_frames(aframes, audio_frames, start, end)
    return video_frames, audio, info


def decoded_pts(path: Path) -> tuple[list[int], Fraction]:
    """Every decoded frame's pts, sorted (the slow path of read_video_timestamps)."""
    pts, time_base = _decoded_pts(str(path))
    return list(pts), time_base


@functools.lru_cache(maxsize=None)
def _decoded_pts(path: str) -> tuple[tuple[int, ...], Fraction]:
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        return tuple(sorted(f.pts for f in container.decode(stream) if f.pts is not None)), stream.time_base


def check_against_reference(path: Path, start: Any, end: Any, unit: str, *, every: int = 1,
                            device: str = "cpu") -> int:
    """read_video equals the reference: frame count, pixels (every ``every``-th frame), audio, info.

    On a GPU the frames must be on it and within the GPU tolerance of the reference.
    """
    expected, audio, info = reference_read_video(path, start, end, unit)
    video, aframes, got_info = gpuvio.read_video(str(path), start, end, unit, device=device)
    assert torchvision_info(got_info, device) == info
    assert video.dtype == torch.uint8 and video.is_contiguous()
    assert video.device.type == torch.device(device).type
    if not expected:
        assert video.shape == (0, 1, 1, 3)
    else:
        assert video.shape == (len(expected), expected[0].height, expected[0].width, 3)
        for i in range(0, len(expected), every):
            assert_pixels(video[i], tv_rgb(expected[i]), device, msg=f"frame {i}")
        if every > 1:
            assert_pixels(video[-1], tv_rgb(expected[-1]), device, msg="last frame")
    assert aframes.dtype == torch.float32 and aframes.dim() == 2
    if audio is None:
        assert aframes.shape == (1, 0)
    else:
        np.testing.assert_array_equal(aframes.cpu().numpy(), audio)
    return len(expected)


# ----------------------------------------------------------------------------- shared media

TORCHVISION = ["R6llTwEh07w.mp4", "SOX5yA1l24A.mp4", "WUzgd7C1pWA.mp4", "RATRACE_wave_f_nm_np1_fr_goo_37.avi",
               "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi", "TrumanShow_wave_f_nm_np1_fr_med_26.avi",
               "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi", "v_SoccerJuggling_g23_c01.avi",
               "v_SoccerJuggling_g24_c01.avi"]
TORCHCODEC = ["nasa_13013.mp4", "testsrc2.mp4", "h265_video.mp4", "av1_video.mkv", "testsrc2_vp9.webm",
              "testsrc2_mpeg4.avi", "test_non_zero_start.mp4", "discard_first_keyframe.mp4", "sine_stereo_mp2.mpg"]
SHARED = [("torchvision", "videos", name) for name in TORCHVISION] + [("torchcodec", name) for name in TORCHCODEC]
LARGE = {"testsrc2.mp4", "testsrc2_vp9.webm", "testsrc2_mpeg4.avi"}  # 720p: compare a sample of frames


def _id(parts: tuple[str, ...]) -> str:
    return parts[-1].split("_wave")[0][:24]


@pytest.mark.parametrize("device", VIDEO_DEVICES)
@pytest.mark.parametrize("parts", SHARED, ids=_id)
def test_read_video_whole_file(parts: tuple[str, ...], device: str, media) -> None:
    path = media(*parts)
    count = check_against_reference(path, 0, None, "pts", every=11 if parts[-1] in LARGE else 7, device=device)
    assert count == len(set(decoded_pts(path)[0]))


@pytest.mark.filterwarnings("ignore:decoding stopped early:RuntimeWarning")  # sine_stereo_mp2.mpg
@pytest.mark.parametrize("device", VIDEO_DEVICES)
@pytest.mark.parametrize("parts", SHARED, ids=_id)
def test_read_video_ranges(parts: tuple[str, ...], device: str, media) -> None:
    path = media(*parts)
    pts, time_base = decoded_pts(path)
    k = len(pts) // 3
    first = float(pts[0] * time_base)
    cases: list[tuple[Any, Any, str]] = [
        # a range in seconds that starts between two frames (the frame before is included)
        (float(pts[k] * time_base) + 0.001, float(pts[k + 3] * time_base) + 0.001, "sec"),
        # exact frame pts, inclusive at both ends
        (pts[k + 1], pts[k + 4], "pts"),
        # Fractions in seconds
        (Fraction(pts[k]) * time_base, Fraction(pts[k + 2]) * time_base, "sec"),
        # from the start to a time inside the clip
        (0, first + 0.25, "sec"),
    ]
    counts = [check_against_reference(path, start, end, unit, device=device) for start, end, unit in cases]
    # the comparisons are not vacuous (sine_stereo_mp2.mpg: after a seek into the MPEG-PS the
    # decoder reports invalid data and torchvision stops there, with nothing; so does gpuvio)
    assert sum(counts) >= 3 or parts[-1] == "sine_stereo_mp2.mpg", counts


@pytest.mark.parametrize("parts", [("torchcodec", "nasa_13013.mp4"), ("torchvision", "videos", TORCHVISION[6]),
                                   ("torchcodec", "test_non_zero_start.mp4"),
                                   ("torchcodec", "discard_first_keyframe.mp4"), ("torchcodec", "sine_stereo_mp2.mpg")],
                         ids=_id)
@pytest.mark.filterwarnings("ignore:decoding stopped early:RuntimeWarning")
@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_read_video_edge_ranges(parts: tuple[str, ...], device: str, media) -> None:
    path = media(*parts)
    pts, time_base = decoded_pts(path)
    last = float(pts[-1] * time_base)
    gap = pts[1] - pts[0]
    cases: list[tuple[Any, Any, str]] = [
        (pts[3] + gap // 2, pts[6] - gap // 2, "pts"),  # both ends between frames
        (last + 1.0, None, "sec"),  # after the end: torchvision returns the last frame
        (last - 0.05, last + 10, "sec"),
        (pts[5], pts[5], "pts"),  # one frame
        (0.0, 0.0, "sec"),
        (float(pts[4] * time_base), float(pts[4] * time_base) + 1e-9, "sec"),
    ]
    for start, end, unit in cases:
        check_against_reference(path, start, end, unit, device=device)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_read_video_generated_clip_with_audio(generated: dict[str, Path], device: str) -> None:
    path = generated["h264"]
    for start, end, unit in [(0, None, "pts"), (0.3, 0.9, "sec"), (Fraction(1, 3), Fraction(2, 3), "sec"),
                             (1.95, 5.0, "sec")]:
        check_against_reference(path, start, end, unit, device=device)
    _, aframes, info = gpuvio.read_video(str(path), pts_unit="sec", device=device)
    info = torchvision_info(info, device)
    assert set(info) == {"video_fps", "audio_fps"} and info["audio_fps"] == 44100
    assert aframes.shape[0] == 2 and 0.9 < aframes.shape[1] / 88200 < 1.1  # 2 s of stereo
    assert float(aframes.abs().max()) <= 1.0


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_info_without_audio(generated: dict[str, Path], device: str) -> None:
    video, aframes, info = gpuvio.read_video(str(generated["h264_noaudio"]), pts_unit="sec", device=device)
    info = torchvision_info(info, device)
    assert set(info) == {"video_fps"} and info["video_fps"] == 30.0
    assert aframes.shape == (1, 0) and aframes.dtype == torch.float32
    assert video.shape[1:] == (96, 160, 3)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_output_format_tchw(generated: dict[str, Path], device: str) -> None:
    thwc, _, _ = gpuvio.read_video(str(generated["h264"]), 0.5, 1.0, pts_unit="sec", device=device)
    tchw, _, _ = gpuvio.read_video(str(generated["h264"]), 0.5, 1.0, pts_unit="sec", output_format="TCHW",
                                   device=device)
    assert tchw.shape == (thwc.shape[0], 3, 240, 320) and tchw.device == thwc.device
    assert torch.equal(tchw, thwc.permute(0, 3, 1, 2))  # the same decode, laid out differently
    with pytest.raises(ValueError, match="output_format"):
        gpuvio.read_video(str(generated["h264"]), output_format="HWC", device=device)


def test_planar_layout_is_written_directly(generated: dict[str, Path]) -> None:
    # TCHW frames are written planar (contiguous, no interleaving to undo), equal to THWC permuted
    path = str(generated["h264"])
    thwc, audio, info = gpuvio.read_video(path, 0.5, 1.0, "sec")
    tchw, audio2, info2 = gpuvio.read_video(path, 0.5, 1.0, "sec", output_format="TCHW")
    assert tchw.is_contiguous() and torch.equal(tchw, thwc.permute(0, 3, 1, 2))
    assert torch.equal(audio, audio2) and info == info2
    empty, _, _ = gpuvio.read_video(path, 100.0, 200.0, "sec", output_format="TCHW")
    assert empty.shape == (1, 3, 240, 320)  # past the end: the last frame, as torchvision does
    from gpuvio._media import empty_video

    assert empty_video("CHW").shape == (0, 3, 1, 1)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_bytes_and_tensor_sources(generated: dict[str, Path], device: str) -> None:
    path = generated["h264"]
    expected = gpuvio.read_video(str(path), 0.2, 0.6, pts_unit="sec", device=device)
    data = path.read_bytes()
    for source in (data, torch.frombuffer(bytearray(data), dtype=torch.uint8), path):
        video, audio, info = gpuvio.read_video(source, 0.2, 0.6, pts_unit="sec", device=device)
        assert torch.equal(video, expected[0]) and torch.equal(audio, expected[1])
        assert torchvision_info(info, device) == torchvision_info(expected[2], device)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_unreadable_file_gives_empty_tensors_and_a_warning(tmp_path: Path, device: str) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(os.urandom(4096))
    with pytest.warns(RuntimeWarning, match="Failed to open container"):
        video, audio, info = gpuvio.read_video(str(bad), device=device)
    assert video.shape == (0, 1, 1, 3) and video.dtype == torch.uint8
    assert audio.shape == (1, 0) and audio.dtype == torch.float32
    assert torchvision_info(info, device) == {}
    with pytest.warns(RuntimeWarning):
        assert gpuvio.read_video_timestamps(str(bad)) == ([], None)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_truncated_file_keeps_what_decodes(generated: dict[str, Path], tmp_path: Path, device: str) -> None:
    data = generated["h264_noaudio"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video, _, _ = gpuvio.read_video(str(cut), pts_unit="sec", device=device)
    full, _, _ = gpuvio.read_video(str(generated["h264_noaudio"]), pts_unit="sec")
    # a moov-at-end mp4 cut short cannot be opened at all; either way, never a crash or garbage
    assert video.shape[0] == 0 or (video.shape[0] <= full.shape[0] and video.shape[1:] == full.shape[1:])


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_bad_arguments(generated: dict[str, Path], tmp_path: Path, device: str) -> None:
    path = str(generated["h264"])
    with pytest.raises(FileNotFoundError):
        gpuvio.read_video(str(tmp_path / "missing.mp4"), device=device)
    with pytest.raises(FileNotFoundError):
        gpuvio.read_video_timestamps(str(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match="end_pts should be larger than start_pts"):
        gpuvio.read_video(path, 10, 5, device=device)
    with pytest.raises(ValueError, match="pts_unit"):
        gpuvio.read_video(path, pts_unit="frames", device=device)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pts_unit"):
        gpuvio.read_video_timestamps(path, pts_unit="ms")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gpuvio.read_video(path, start_pts="1", device=device)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_resolution_change_is_scaled_to_the_first_size(tmp_path: Path, device: str) -> None:
    # two H.264 sequences of different sizes in one MPEG-TS stream (the SPS changes mid-stream)
    path = write_resolution_switch(tmp_path / "switch.ts", frames=5, pts_gap=5,
                                   shade=lambda index, i: 30 * (i + 1) + 50 * index)
    expected, _, _ = reference_read_video(path, 0, None, "sec")
    sizes = [(f.width, f.height) for f in expected]
    assert sizes[0] == (160, 96) and (128, 80) in sizes
    # the second sequence's first pts repeat the first one's last: one frame per pts, the later wins
    video, _, _ = gpuvio.read_video(str(path), pts_unit="sec", device=device)
    assert video.shape == (len(expected), 96, 160, 3)
    for got, frame in zip(video, expected):
        scaled = frame.reformat(width=160, height=96, format="rgb24").to_ndarray()  # to_rgb, scaled
        assert_pixels(got, scaled, device)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
@pytest.mark.parametrize("fmt, codec", [("h264", "libx264"), ("hevc", "libx265"), ("m4v", "mpeg4")])
def test_raw_elementary_streams(tmp_path: Path, fmt: str, codec: str, device: str) -> None:
    # no container: no timestamps and no seeking. torchvision returned nothing (its seek
    # failed); gpuvio decodes from the start and numbers the frames at the stream's rate, the
    # same way in read_video, read_video_timestamps and VideoReader
    path = tmp_path / f"raw.{fmt}"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 10
    # (FFmpeg's MPEG-4 parser derives timestamps from the VOP headers: those frames have them)
    assert all(f.pts is None for f in decoded) == (fmt != "m4v")
    video, _, info = gpuvio.read_video(str(path), pts_unit="sec", device=device)
    assert video.shape == (10, 48, 64, 3) and torchvision_info(info, device) == {"video_fps": 25.0}
    for got, frame in zip(video, decoded):
        assert_pixels(got, tv_rgb(frame), device)
    part, _, _ = gpuvio.read_video(str(path), 0.1, 0.2, pts_unit="sec", device=device)
    assert torch.equal(part, video[2:6])  # frames at 0.08 (before 0.1), 0.12, 0.16, 0.20
    pts, fps = gpuvio.read_video_timestamps(str(path), pts_unit="sec")
    assert pts == [Fraction(i, 25) for i in range(10)] and fps == 25.0
    reader = gpuvio.VideoReader(str(path), device=device)
    assert [f["pts"] for f in reader] == [i / 25 for i in range(10)]
    assert next(reader.seek(0.15))["pts"] == 0.16
    batch = reader.get_frames_at([9, 0])
    for got, i in zip(batch, [9, 0]):
        assert_pixels(got, tv_rgb(decoded[i]).transpose(2, 0, 1), device)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_decode_videos_equals_the_reference(generated: dict[str, Path], media, device: str) -> None:
    # several files at once, each like read_video: H.264 with audio, MPEG-4 Part 2, HEVC, packed DivX
    paths = [generated["h264"], generated["mpeg4"], media("torchcodec", "h265_video.mp4"),
             media("torchvision", "videos", "TrumanShow_wave_f_nm_np1_fr_med_26.avi")]
    for start, end, unit in [(0, None, "pts"), (0.2, 0.6, "sec")]:
        out = gpuvio.decode_videos([str(p) for p in paths], device=device, start_pts=start, end_pts=end,
                                   pts_unit=unit)
        assert isinstance(out, list) and len(out) == len(paths)
        for got, path in zip(out, paths):
            expected, _, _ = reference_read_video(path, start, end, unit)
            assert expected, path
            want = np.stack([tv_rgb(f) for f in expected])
            assert_pixels(got, want, device, msg=f"{path.name} {start}-{end} {unit}")
    assert gpuvio.decode_videos([], device=device) == []


# ----------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("parts", SHARED, ids=_id)
def test_timestamps_packets_equal_decoding(parts: tuple[str, ...], media) -> None:
    from gpuvio._media import stream_index

    path = media(*parts)
    expected, time_base = decoded_pts(path)
    with av.open(str(path), metadata_errors="ignore") as container:
        packet_pts, keyframes = stream_index(container, container.streams.video[0])
    assert packet_pts == expected
    assert keyframes and keyframes == sorted(keyframes) and keyframes[0] <= expected[0] + 2
    pts, fps = gpuvio.read_video_timestamps(str(path))
    assert pts == expected
    with av.open(str(path), metadata_errors="ignore") as container:
        assert fps == float(container.streams.video[0].average_rate)
    seconds, fps_sec = gpuvio.read_video_timestamps(str(path), pts_unit="sec")
    assert fps_sec == fps
    assert all(isinstance(s, Fraction) for s in seconds)
    assert seconds == [p * time_base for p in expected]


def test_timestamps_match_ffprobe_ground_truth(media) -> None:
    import json

    # (the stand-in's ground truth is written from a PyAV decode, in ffprobe's format)
    path = media("torchcodec", "test_non_zero_start.mp4")
    truth = json.loads(Path(f"{path}.stream0.all_frames_info.json").read_text())
    seconds, _ = gpuvio.read_video_timestamps(str(path), pts_unit="sec")
    assert [round(float(s), 6) for s in seconds] == [float(f["pts_time"]) for f in truth]
    assert float(seconds[0]) > 8


def test_timestamps_of_edit_list_file(media) -> None:
    # discard_first_keyframe.mp4: the edit list drops the first frames; their packets are
    # flagged for discard and must not be listed
    path = media("torchcodec", "discard_first_keyframe.mp4")
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        assert any(p.is_discard for p in packets)
    pts, _ = gpuvio.read_video_timestamps(str(path))
    assert pts == decoded_pts(path)[0] and len(pts) < len(packets)


def test_timestamps_from_bytes(generated: dict[str, Path]) -> None:
    path = generated["h264"]
    assert gpuvio.read_video_timestamps(path.read_bytes()) == gpuvio.read_video_timestamps(str(path))
    pts, fps = gpuvio.read_video_timestamps(str(path))
    assert len(pts) == 60 and fps == 30.0


# ----------------------------------------------------------------------------- write_video


def _frames(count: int = 12, height: int = 96, width: int = 128) -> torch.Tensor:
    from gpuvio._samples import texture

    scene = torch.from_numpy(texture(height + 2 * count, width + 4 * count, seed=1))
    return torch.stack([scene[i * 2:i * 2 + height, i * 4:i * 4 + width] for i in range(count)])


def _stream_info(path: Path) -> tuple[str, Fraction, int, list[str]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.average_rate, stream.frames, [s.type for s in container.streams]


def test_write_video_round_trip_h264(tmp_path: Path) -> None:
    frames = _frames()
    path = tmp_path / "out.mp4"
    gpuvio.write_video(str(path), frames, fps=25, options={"crf": "10"})
    codec, rate, _, _ = _stream_info(path)
    assert codec == "h264" and rate == 25
    video, audio, info = gpuvio.read_video(str(path), pts_unit="sec")
    assert video.shape == frames.shape and info == {"video_fps": 25.0} and audio.shape == (1, 0)
    assert (video.float() - frames.float()).abs().mean() < 3.0  # lossy yuv420p, near-lossless crf


def test_write_video_ntsc_rate_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    gpuvio.write_video(path, _frames(8).numpy(), fps=29.97)
    _, rate, _, _ = _stream_info(path)
    assert rate == Fraction(30000, 1001)  # torchvision rounded it to 30
    _, fps = gpuvio.read_video_timestamps(str(path))
    assert abs(fps - 29.97) < 1e-3


def test_write_video_libx264rgb_is_lossless(tmp_path: Path) -> None:
    frames = _frames(6, 64, 80)
    path = tmp_path / "rgb.mkv"
    gpuvio.write_video(str(path), frames, fps=10, video_codec="libx264rgb", options={"qp": "0"})
    video, _, _ = gpuvio.read_video(str(path), pts_unit="sec")
    assert torch.equal(video, frames)


def test_write_video_mpeg4_avi(tmp_path: Path) -> None:
    frames = _frames(10)
    path = tmp_path / "out.avi"
    gpuvio.write_video(str(path), frames, fps=15, video_codec="mpeg4", options={"qscale": "2"})
    codec, rate, _, _ = _stream_info(path)
    assert codec == "mpeg4" and rate == 15
    video, _, _ = gpuvio.read_video(str(path), pts_unit="sec")
    assert video.shape == frames.shape
    assert (video.float() - frames.float()).abs().mean() < 6.0


@pytest.mark.parametrize("codec, suffix, options", [("aac", ".mp4", {"b": "320k"}), ("mp2", ".mkv", None),
                                                    ("libopus", ".mkv", None)])
def test_write_video_with_audio(tmp_path: Path, codec: str, suffix: str, options: dict[str, str] | None) -> None:
    rate = 48000
    t = torch.arange(rate, dtype=torch.float64) / rate
    audio = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.25 * torch.sin(2 * math.pi * 660 * t)]).float()
    path = tmp_path / f"av{suffix}"
    # (FFmpeg's AAC encoder at its default bitrate distorts pure tones: give it room)
    gpuvio.write_video(str(path), _frames(25), fps=25, audio_array=audio, audio_fps=rate, audio_codec=codec,
                       audio_options=options)
    _, _, _, types = _stream_info(path)
    assert types == ["video", "audio"]
    _, aframes, info = gpuvio.read_video(str(path), pts_unit="sec")
    assert info["audio_fps"] == rate and aframes.shape[0] == 2
    # the tone survives the round trip (an int16 encoder is fed scaled samples, not zeros)
    n = min(aframes.shape[1], audio.shape[1]) - 4096
    got = aframes[:, 2048:n].double()
    assert 0.35 < float(got[0].abs().max()) < 0.65 and 0.15 < float(got[1].abs().max()) < 0.35
    spectrum = torch.fft.rfft(got[0]).abs()
    peak_hz = int(spectrum.argmax()) * rate / got.shape[1]
    assert abs(peak_hz - 440) < 5


def test_write_video_mono_audio(tmp_path: Path) -> None:
    audio = torch.zeros(1, 8000)
    path = tmp_path / "mono.mp4"
    gpuvio.write_video(str(path), _frames(5), fps=5, audio_array=audio, audio_fps=8000, audio_codec="aac")
    _, aframes, info = gpuvio.read_video(str(path), pts_unit="sec")
    assert aframes.shape[0] == 1 and info["audio_fps"] == 8000


@pytest.mark.parametrize("bad, error, match", [
    (_frames(3).float(), TypeError, "uint8"),
    (_frames(3, 65, 80), ValueError, "even"),
    (_frames(3)[..., :2], ValueError, r"\[T, H, W, 3\]"),
    (_frames(3)[0], ValueError, r"\[T, H, W, 3\]"),
    (_frames(3)[:0], ValueError, "no frames"),
    ([[1, 2, 3]], TypeError, "Tensor"),
])
def test_write_video_bad_input_raises_and_leaves_no_file(tmp_path: Path, bad: Any, error: type, match: str) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(error, match=match):
        gpuvio.write_video(str(path), bad, fps=10)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error", [
    ({"fps": 0}, ValueError), ({"fps": float("nan")}, ValueError), ({"fps": "30"}, TypeError),
    ({"fps": 10, "audio_array": torch.zeros(3, 100), "audio_fps": 8000}, ValueError),
    ({"fps": 10, "audio_array": torch.zeros(2, 100)}, ValueError),
    ({"fps": 10, "video_codec": "no-such-codec"}, ValueError),
    ({"fps": 10, "options": {"crf": "not-a-number"}}, ValueError),
])
def test_failing_write_keeps_the_existing_file(tmp_path: Path, kwargs: dict[str, Any], error: type) -> None:
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(error):
        gpuvio.write_video(str(path), _frames(3), **kwargs)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_write_video_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        gpuvio.write_video(str(tmp_path / "nope" / "x.mp4"), _frames(2), fps=5)
