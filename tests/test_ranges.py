"""read_video ranges equal a full decode filtered by torchvision 0.8's selection rules (issue #11).

Whatever the container does when seeked (MPEG-TS lands after the target or on nothing, MPEG-PS
mislabels the first frames, raw streams cannot seek, AVI without an index and B-frames seeked by
dts land late), a range must give exactly what a plain decode of the whole stream gives once
torchvision's rules pick from it: the frames in ``[start, end]``, plus the last frame before
``start`` when no frame has exactly ``start`` (and ``start > 0``).

The reference here is written independently of gpuvio: the whole stream decoded with plain PyAV
(``container.decode``), the rules applied in :func:`expected_pts`, the pixels converted with
gpuvio's own converter (``frame_to_rgb``), so that frames compare bit for bit. Generated clips
(160x96, realistic moving content, several GOPs except where one keyframe is the point) cover
each container property; the shared media, where present, are checked the same way.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

import gpuvio
from gpuvio._media import audio_to_float
from gpuvio.cpu_fallback._frames import frame_to_rgb
from gpuvio._samples import texture

from conftest import media_path

WIDTH, HEIGHT, FPS = 160, 96, 25
FRAMES = 60  # 2.4 s
TS_START = 35  # frames: MPEG-TS clips start at 1.4 s, as FFmpeg's own muxing gives them
TS_WRAP = 2**33  # MPEG-TS timestamps wrap here; a clip that crosses it reads with negative pts


# ------------------------------------------------------------------------------ generated clips
def _pictures(count: int) -> Iterator[np.ndarray]:
    """A camera panning over a textured scene, with a disc and a bar moving on their own."""
    scene = texture(HEIGHT * 2, WIDTH * 2, seed=3)
    yy, xx = np.ogrid[0:HEIGHT, 0:WIDTH]
    for i in range(count):
        t = i / FPS
        oy = int((0.5 + 0.5 * math.sin(0.9 * t)) * (scene.shape[0] - HEIGHT))
        ox = int((0.5 + 0.5 * math.sin(0.6 * t + 1.0)) * (scene.shape[1] - WIDTH))
        image = scene[oy:oy + HEIGHT, ox:ox + WIDTH].copy()
        cx, cy = (0.5 + 0.4 * math.sin(1.7 * t)) * WIDTH, (0.5 + 0.35 * math.cos(1.1 * t)) * HEIGHT
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= 100] = (230, 40, 40)
        bar = int((0.5 + 0.45 * math.sin(0.8 * t)) * (WIDTH - 1))
        image[:, max(bar - 2, 0):bar + 2] = 255
        yield image


def _encode_audio(container: Any, stream: Any, first_frame: int, count: int) -> None:
    rate = stream.rate
    total = count * rate // FPS
    t = np.arange(total) / rate
    samples = np.stack([0.4 * np.sin(2 * np.pi * (300 + 200 * t) * t),
                        0.3 * np.sin(2 * np.pi * 450 * t)]).astype(np.float32)
    size = stream.codec_context.frame_size or 1152
    offset = first_frame * rate // FPS
    fmt = stream.format.name
    for begin in range(0, total - size + 1, size):
        part = samples[:, begin:begin + size]
        if fmt == "s16":
            part = (part * 32767).astype(np.int16).T.reshape(1, -1)
        elif fmt != "fltp":
            raise AssertionError(f"unexpected audio sample format {fmt}")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = begin + offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def encode(path: Path, fmt: str, *, codec: str = "libx264", gop: int = 12, bframes: int = 2,
           first: int = 0, count: int = FRAMES, options: dict[str, str] | None = None,
           audio: str | None = None) -> Path:
    """Encode ``count`` frames (pts ``first``, ``first + 1``, ... at 25 fps) into ``path``."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        opts: dict[str, str] = {}
        if codec == "libx264":
            opts = {"preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"}
        elif codec == "libx265":
            opts = {"preset": "veryfast",
                    "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:log-level=error"}
        elif codec == "libvpx-vp9":
            opts = {"deadline": "realtime", "cpu-used": "8"}
        stream.options = opts
        astream = None
        if audio:
            astream = container.add_stream(audio, rate=44100, layout="stereo")
            if audio == "aac":
                # no perceptual noise substitution: its noise comes from the decoder's random
                # state, which depends on where decoding began, so no seek could match its bits
                astream.options = {"aac_pns": "0"}
        for i, image in enumerate(_pictures(count)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = first + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, first, count)
    return path


def strip_avi_index(path: Path) -> Path:
    """Turn the AVI's idx1 chunk into a JUNK chunk: the file then has no index to seek with."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"idx1")
    assert at > 0, "no idx1 chunk"
    data[at:at + 4] = b"JUNK"
    path.write_bytes(bytes(data))
    return path


MATROSKA_CUES = b"\x1c\x53\xbb\x6b"  # the EBML ID of a Cues element

# name -> how to make it (root -> path)
CLIPS: dict[str, Callable[[Path], Path]] = {
    # one keyframe, first pts 1.4 s: every seek lands on nothing (the case of issue #11)
    "ts_one_keyframe": lambda r: encode(r / "one_keyframe.ts", "mpegts", gop=1000, first=TS_START),
    "ts_gops": lambda r: encode(r / "gops.ts", "mpegts", first=TS_START, audio="aac"),
    # the clip crosses the 33-bit wrap: FFmpeg reads the frames before it with negative pts
    "ts_negative_pts": lambda r: encode(r / "wrap.ts", "mpegts", first=(TS_WRAP - 45_000) // 3600),
    "mpeg_ps": lambda r: encode(r / "program.mpg", "mpeg", codec="mpeg2video", audio="mp2"),
    # live mode writes no Cues (and no way to seek but scanning)
    "mkv_no_cues": lambda r: encode(r / "no_cues.mkv", "matroska", options={"live": "1"}),
    "webm_no_cues": lambda r: encode(r / "no_cues.webm", "webm", codec="libvpx-vp9", bframes=0,
                                     options={"live": "1"}),
    "avi_no_index": lambda r: strip_avi_index(encode(r / "no_index.avi", "avi", codec="mpeg4", bframes=0)),
    "raw_h264": lambda r: encode(r / "raw.h264", "h264"),
    "raw_hevc": lambda r: encode(r / "raw.hevc", "hevc", codec="libx265"),
    "fragmented_mp4": lambda r: encode(r / "fragmented.mp4", "mp4",
                                       options={"movflags": "frag_keyframe+empty_moov"}),
    # frames -20..-1 are cut by an edit list that starts inside a GOP (they are decoded, not shown)
    "mov_edit_list": lambda r: encode(r / "edit_list.mov", "mov", first=-20, options={"avoid_negative_ts": "disabled"}),
    "mp4_nonzero_start": lambda r: encode(r / "nonzero_start.mp4", "mp4", first=20),
    "mp4_audio": lambda r: encode(r / "audio.mp4", "mp4", audio="aac"),
}
SHARED = [("torchcodec", name) for name in ("discard_first_keyframe.mp4", "test_non_zero_start.mp4", "h265_video.mp4",
                                            "sine_stereo_mp2.mpg", "nasa_13013.mp4", "av1_video.mkv")] + [
    ("torchvision", "videos", name) for name in (
        "R6llTwEh07w.mp4", "SOX5yA1l24A.mp4", "WUzgd7C1pWA.mp4", "RATRACE_wave_f_nm_np1_fr_goo_37.avi",
        "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi", "TrumanShow_wave_f_nm_np1_fr_med_26.avi",
        "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi", "v_SoccerJuggling_g23_c01.avi")]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ranges")
    return {name: make(root) for name, make in CLIPS.items()}


# ------------------------------------------------------------------------------ the reference
@functools.lru_cache(maxsize=None)
def full_decode(path: str, kind: str = "video") -> tuple[dict[int, Any], Fraction, str]:
    """Every frame of the first ``kind`` stream, decoded from the start with plain PyAV, by pts.

    Video frames become RGB arrays (gpuvio's converter), audio frames float arrays. A raw
    stream's frames carry no pts: they are numbered one frame duration apart.
    """
    out: dict[int, Any] = {}
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        codec = stream.codec_context.name
        step = 1 / (stream.average_rate * stream.time_base) if kind == "video" and stream.average_rate else None
        for i, frame in enumerate(container.decode(stream)):
            pts = frame.pts
            if pts is None:
                assert step is not None
                pts = round(i * step)
            out[pts] = frame_to_rgb(frame, codec) if kind == "video" else audio_to_float(frame)
        return out, stream.time_base, container.format.name


def expected_pts(all_pts: list[int], start: Any, end: Any) -> list[int]:
    """torchvision's rules on a full decode: ``[start, end]``, plus the frame before ``start``."""
    kept = sorted(p for p in set(all_pts) if start <= p <= end)
    if start > 0 and start not in all_pts:
        before = [p for p in all_pts if p < start]
        if before:
            kept.insert(0, max(before))
    return kept


def stream_units(value: Any, time_base: Fraction, *, ceil: bool) -> Any:
    """Seconds -> stream units as torchvision converts them (floor for the start, ceil for the end)."""
    if value == float("inf"):
        return value
    scaled = value * (1 / time_base)
    return int(math.ceil(scaled)) if ceil else int(math.floor(scaled))


def ranges(all_pts: list[int], time_base: Fraction) -> list[tuple[Any, Any, str]]:
    """Ranges that probe every case: before the first frame, on a frame, between frames, inside a
    GOP, the end, past the end, start == end; in pts and in seconds. (Short clips repeat some.)"""
    n = len(all_pts)
    pts = lambda i: all_pts[min(i, n - 1)]  # noqa: E731
    gap = all_pts[1] - all_pts[0]
    mid = n // 2
    sec = lambda p: float(p * time_base)  # noqa: E731
    return [
        (pts(0) - 3 * gap, pts(3), "pts"),  # starts before the first frame
        (pts(5), pts(9), "pts"),  # exactly on frames
        ((pts(7) + pts(8)) // 2, pts(15), "pts"),  # between frames: the frame before is added
        (pts(mid + 5), pts(mid + 9), "pts"),  # in the middle of a GOP (or of the only one)
        (pts(mid), pts(mid), "pts"),  # start == end, on a frame
        ((pts(mid) + pts(mid + 1)) // 2, (pts(mid) + pts(mid + 1)) // 2, "pts"),  # start == end, between
        (all_pts[-3], all_pts[-1], "pts"),  # the end
        (all_pts[-2], float("inf"), "pts"),  # to the end
        (all_pts[-1] + 5 * gap, all_pts[-1] + 9 * gap, "pts"),  # past the end: the last frame
        (sec(pts(mid - 3)) + 0.001, sec(pts(mid + 2)) + 0.001, "sec"),  # seconds, between frames
        (Fraction(pts(mid + 7)) * time_base, Fraction(pts(mid + 11)) * time_base, "sec"),  # exact
        (sec(pts(0)) - 0.5, sec(pts(4)), "sec"),  # seconds, from before the first frame
    ]


def check_range(path: Path, start: Any, end: Any, unit: str) -> int:
    """gpuvio.read_video(path, start, end, unit) against the reference: count, pts, pixels."""
    frames, time_base, _ = full_decode(str(path))
    first, last = start, end
    if unit == "sec":
        first, last = stream_units(start, time_base, ceil=False), stream_units(end, time_base, ceil=True)
    want = expected_pts(list(frames), first, last)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no decoding error either
        video, _, _ = gpuvio.read_video(str(path), start, None if end == float("inf") else end, pts_unit=unit)
    where = f"{path.name} [{start}, {end}] {unit}"
    assert video.shape[0] == len(want), (where, video.shape[0], len(want))
    for i, p in enumerate(want):
        assert np.array_equal(video[i].numpy(), frames[p]), (where, "frame", i, "pts", p)
    return len(want)


def check_timestamps(path: Path) -> None:
    """read_video_timestamps lists the full decode's pts (so a range's pts are those it picks)."""
    frames, time_base, _ = full_decode(str(path))
    pts, _ = gpuvio.read_video_timestamps(str(path))
    assert pts == sorted(frames)
    seconds, _ = gpuvio.read_video_timestamps(str(path), pts_unit="sec")
    assert seconds == [Fraction(p) * time_base for p in sorted(frames)]


class FallbackLog(logging.Handler):
    """Collects gpuvio's DEBUG records of ranges decoded from the start instead of after a seek."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "decoding from the start" in message:
            self.messages.append(message)

    def of(self, kind: str) -> list[str]:
        """The records about ``kind`` ("video" or "audio") streams."""
        return [m for m in self.messages if f"{kind} stream" in m]


@pytest.fixture
def fallbacks() -> Iterator[FallbackLog]:
    logger = logging.getLogger("gpuvio")
    handler = FallbackLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# ------------------------------------------------------------------------------ the clips are what they claim
def _packets(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return [(p.pts, p.is_keyframe, p.is_discard) for p in container.demux(container.streams.video[0])
                if p.size]


def test_generated_clips_have_their_properties(clips: dict[str, Path]) -> None:
    packets = {name: _packets(path) for name, path in clips.items()}
    decoded = {name: full_decode(str(path)) for name, path in clips.items()}
    # one keyframe; the first frame at 1.4 s on the 90 kHz clock
    assert sum(k for _, k, _ in packets["ts_one_keyframe"]) == 1
    assert min(decoded["ts_one_keyframe"][0]) == 126_000
    assert min(decoded["ts_gops"][0]) == 126_000 and sum(k for _, k, _ in packets["ts_gops"]) >= 5
    assert min(decoded["ts_negative_pts"][0]) < 0 < max(decoded["ts_negative_pts"][0])
    assert decoded["mpeg_ps"][2] == "mpeg"
    for name in ("mkv_no_cues", "webm_no_cues"):
        assert MATROSKA_CUES not in clips[name].read_bytes()
        assert sum(k for _, k, _ in packets[name]) >= 5
    assert b"idx1" not in clips["avi_no_index"].read_bytes()
    for name in ("raw_h264", "raw_hevc"):
        assert decoded[name][2] in ("h264", "hevc") and all(p is None for p, _, _ in packets[name])
    assert b"moof" in clips["fragmented_mp4"].read_bytes()
    # the edit list cuts 20 frames; the 8 of them that the first shown ones depend on are still
    # demuxed, marked for discard: decoded, never shown
    assert b"elst" in clips["mov_edit_list"].read_bytes()
    assert sum(d for _, _, d in packets["mov_edit_list"]) == 8 and len(decoded["mov_edit_list"][0]) == FRAMES - 20
    assert min(decoded["mp4_nonzero_start"][0]) > 0
    for name, (frames, _, _) in decoded.items():
        assert len(frames) == sum(not d for _, _, d in packets[name]), name
        assert len(frames) >= FRAMES - 20, name


# ------------------------------------------------------------------------------ ranges
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_ranges_equal_a_full_decode(clips: dict[str, Path], name: str) -> None:
    path = clips[name]
    frames, time_base, _ = full_decode(str(path))
    check_timestamps(path)
    counts = [check_range(path, *case) for case in ranges(sorted(frames), time_base)]
    assert all(counts[1:]) and counts[0], counts  # not vacuous: every range has frames


@pytest.mark.parametrize("parts", SHARED, ids=lambda parts: parts[-1][:24])
def test_ranges_of_shared_media_equal_a_full_decode(parts: tuple[str, ...]) -> None:
    path = media_path(*parts)
    frames, time_base, _ = full_decode(str(path))
    counts = [check_range(path, *case) for case in ranges(sorted(frames), time_base)]
    assert all(counts), counts


def test_a_one_keyframe_ts_is_read_from_the_start_and_logged(clips: dict[str, Path], fallbacks: FallbackLog) -> None:
    """Issue #11: every range of this file used to give 0 frames (as in torchvision)."""
    path = clips["ts_one_keyframe"]
    pts = sorted(full_decode(str(path))[0])
    assert check_range(path, pts[30], pts[40], "pts") == 11
    assert check_range(path, 2.0, 2.5, "sec") > 0
    assert len(fallbacks.of("video")) == 2 and "mpegts" in fallbacks.messages[0]


@pytest.mark.parametrize("name", ["mp4_audio", "mkv_no_cues", "webm_no_cues", "fragmented_mp4"])
def test_a_seek_that_reaches_back_is_used_as_it_is(clips: dict[str, Path], name: str,
                                                   fallbacks: FallbackLog) -> None:
    """No decode from the start where the seek lands at or before the start."""
    path = clips[name]
    pts = sorted(full_decode(str(path))[0])
    check_range(path, pts[30], pts[40], "pts")
    check_range(path, pts[-3], pts[-1], "pts")
    assert fallbacks.messages == []


@pytest.mark.parametrize("name", ["raw_h264", "mpeg_ps"])
def test_streams_that_cannot_seek_or_be_trusted_after_one_are_read_from_the_start(
        clips: dict[str, Path], name: str, fallbacks: FallbackLog) -> None:
    path = clips[name]
    pts = sorted(full_decode(str(path))[0])
    check_range(path, pts[30], pts[40], "pts")
    assert len(fallbacks.of("video")) == 1


def test_a_range_that_starts_the_stream_needs_no_seek(clips: dict[str, Path], fallbacks: FallbackLog) -> None:
    for name in ("ts_one_keyframe", "mpeg_ps", "raw_h264", "mp4_nonzero_start"):
        check_range(clips[name], 0, 0.5, "sec")
    assert fallbacks.messages == []


def test_a_seek_that_lands_late_is_retried_further_back_before_decoding_from_the_start(
        clips: dict[str, Path], fallbacks: FallbackLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """MPEG-TS lands on the keyframe after the target: one step back finds the one before."""
    path = clips["ts_gops"]
    pts = sorted(full_decode(str(path))[0])
    seeks: list[int] = []
    real_seek = av.container.InputContainer.seek

    def seek(self: Any, offset: int, *args: Any, **kwargs: Any) -> None:
        seeks.append(offset)
        real_seek(self, offset, *args, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", seek)
    check_range(path, pts[-15], pts[-10], "pts")
    assert fallbacks.messages == []
    assert len(seeks) >= 3  # the video's seek, its retry, then the audio's


# ------------------------------------------------------------------------------ audio
def _expected_audio(path: Path, start: Any, end: Any, unit: str) -> np.ndarray | None:
    frames, time_base, _ = full_decode(str(path), "audio")
    if unit == "sec":
        start, end = stream_units(start, time_base, ceil=False), stream_units(end, time_base, ceil=True)
    order = expected_pts(list(frames), start, end)
    if not order:
        return None
    samples = np.concatenate([frames[p] for p in order], axis=1)
    # torchvision's _align_audio_frames, its arithmetic included
    first, last = order[0], order[-1]
    step = (last - first + 1) / samples.shape[1]
    s_idx, e_idx = 0, samples.shape[1]
    if first < start:
        s_idx = int((start - first) / step)
    if last > end:
        e_idx = int((end - last) / step)
    return samples[:, s_idx:e_idx]


def assert_same_audio(got: torch.Tensor, want: np.ndarray | None, where: Any) -> None:
    """The same samples, bit for bit (the first frame too: decoding starts a little earlier)."""
    if want is None:
        assert got.shape == (1, 0), where
        return
    assert got.shape == want.shape, where
    assert np.array_equal(got.numpy(), want), where


def check_audio_ranges(path: Path) -> None:
    frames, time_base, _ = full_decode(str(path), "audio")
    pts = sorted(frames)
    mid = len(pts) // 2
    cases = [(pts[mid], pts[mid + 10], "pts"), ((pts[mid] + pts[mid + 1]) // 2, pts[mid + 6], "pts"),
             (pts[-2], pts[-1] + 100_000, "pts"), (pts[-1] + 10_000, pts[-1] + 20_000, "pts"),
             (float(pts[3] * time_base) + 0.01, float(pts[20] * time_base), "sec"), (0, 0.3, "sec"),
             (1.0, 1.0, "sec"), (1.0, 1.5, "sec")]
    for start, end, unit in cases:
        want = _expected_audio(path, start, end, unit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, audio, _ = gpuvio.read_video(str(path), start, end, pts_unit=unit)
        assert_same_audio(audio, want, (path.name, start, end, unit))


@pytest.mark.parametrize("name", ["ts_gops", "mp4_audio", "mpeg_ps"])
def test_audio_ranges_equal_a_full_decode(clips: dict[str, Path], name: str) -> None:
    check_audio_ranges(clips[name])


@pytest.mark.parametrize("parts", [("torchcodec", "nasa_13013.mp4"), ("torchcodec", "sine_stereo_mp2.mpg"),
                                   ("torchvision", "videos", "R6llTwEh07w.mp4")], ids=lambda parts: parts[-1])
def test_audio_ranges_of_shared_media_equal_a_full_decode(parts: tuple[str, ...]) -> None:
    check_audio_ranges(media_path(*parts))


def test_audio_of_a_one_keyframe_ts_in_memory(clips: dict[str, Path], tmp_path: Path) -> None:
    """A one-keyframe TS with audio, read from bytes: the video falls back, the audio is right."""
    path = tmp_path / "one_keyframe_audio.ts"
    encode(path, "mpegts", gop=1000, first=TS_START, audio="aac")
    frames, _, _ = full_decode(str(path))
    pts = sorted(frames)
    video, audio, _ = gpuvio.read_video(memoryview(path.read_bytes()), pts[20], pts[30])
    assert video.shape[0] == 11
    for i, p in enumerate(pts[20:31]):
        assert np.array_equal(video[i].numpy(), frames[p])
    assert_same_audio(audio, _expected_audio(path, pts[20], pts[30], "pts"), path.name)


# ------------------------------------------------------------------------------ VideoClipDataset
def test_clip_dataset_reads_one_keyframe_ts_clips_with_read_video(clips: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each clip is the frames the index names, read by one read_video range (no VideoReader)."""
    import gpuvio._video_reader
    from gpuvio.data import VideoClipDataset

    def no_reader(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decode_clip fell back to VideoReader: read_video gave the wrong frames")

    monkeypatch.setattr(gpuvio._video_reader, "VideoReader", no_reader)
    path = clips["ts_one_keyframe"]
    frames, _, _ = full_decode(str(path))
    pts = sorted(frames)
    dataset = VideoClipDataset([path], clip_len=8, step=13, output_format="THWC")
    assert len(dataset) == (len(pts) - 8) // 13 + 1
    for idx in range(len(dataset)):
        clip, _, clip_idx = dataset[idx]
        assert dataset.clip_pts(idx).tolist() == pts[clip_idx * 13:clip_idx * 13 + 8]
        for i, p in enumerate(dataset.clip_pts(idx).tolist()):
            assert np.array_equal(clip[i].numpy(), frames[p]), (idx, i)


# ------------------------------------------------------------------------------ the NVDEC pipeline
@pytest.fixture(scope="module")
def software() -> Any:
    """The NVDEC backend with FFmpeg's software decoder standing in for NVDEC (as in test_nvdec),
    registered as backend ``"nvdec-software"``."""
    import _software_nv12

    with _software_nv12.registered() as backend:
        yield backend


def _sw_read(path: Path, start: Any, end: Any, unit: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    return gpuvio.read_video(str(path), start, None if end == float("inf") else end, pts_unit=unit,
                             backend="nvdec-software")


@pytest.mark.parametrize("name", ["ts_one_keyframe", "ts_gops", "ts_negative_pts", "mpeg_ps", "mkv_no_cues",
                                  "webm_no_cues", "fragmented_mp4", "mov_edit_list", "mp4_nonzero_start"])
def test_nvdec_pipeline_ranges_equal_a_full_decode(software: Any, clips: dict[str, Path], name: str) -> None:
    """read_range (software NV12 surfaces) picks the frames the rules pick from a full decode;
    each is bit-identical to the same frame of the pipeline's own read of the whole stream."""
    path = clips[name]
    frames, time_base, _ = full_decode(str(path))
    pts = sorted(frames)
    whole, _, info = _sw_read(path, pts[0], float("inf"), "pts")
    assert info["backend"] == software.name and whole.shape[0] == len(pts), info
    cases = ranges(pts, time_base)
    # before the first frame, between frames, inside a GOP, start == end between frames, past
    # the end, seconds (the software stand-in converts slowly: not every case)
    for start, end, unit in (cases[i] for i in (0, 2, 3, 5, 8, 9)):
        video, _, info = _sw_read(path, start, end, unit)
        assert info["backend"] == software.name, info
        first, last = start, end
        if unit == "sec":
            first, last = stream_units(start, time_base, ceil=False), stream_units(end, time_base, ceil=True)
        want = [pts.index(p) for p in expected_pts(pts, first, last)]
        assert video.shape[0] == len(want), (name, start, end, unit)
        assert torch.equal(video, whole[want]), (name, start, end, unit)


def test_nvdec_pipeline_falls_back_for_a_raw_stream(software: Any, clips: dict[str, Path]) -> None:
    """A raw H.264 stream cannot seek and has no timestamps: the CPU backend reads it (it gave
    nothing before)."""
    path = clips["raw_h264"]
    frames, _, _ = full_decode(str(path))
    pts = sorted(frames)
    with pytest.warns(RuntimeWarning):
        video, _, info = _sw_read(path, pts[30], pts[40], "pts")
    assert info["backend"] == "cpu" and video.shape[0] == 11


def test_nvdec_read_range_logs_its_fall_back(software: Any, clips: dict[str, Path], fallbacks: FallbackLog) -> None:
    path = clips["ts_one_keyframe"]
    pts = sorted(full_decode(str(path))[0])
    video, _, _ = _sw_read(path, pts[30], pts[40], "pts")
    assert video.shape[0] == 11
    # the one seek-and-restart policy of the media layer, whichever backend decodes
    assert len(fallbacks.messages) == 1 and fallbacks.messages[0].startswith("read_video: the seek")


# The NVDEC backend once carried its own copies of the CPU reader's restart and random access, and
# they drifted: it restarted by seeking to the start, which loses what an edit list discards. Both
# now run the media layer's one implementation; these files are where a drift would show.
_EDIT_LISTS = [("generated", "mov_edit_list"), ("generated", "mp4_nonzero_start"),
               ("torchcodec", "discard_first_keyframe.mp4"), ("torchcodec", "test_non_zero_start.mp4")]


def _drift_path(clips: dict[str, Path], where: str, name: str) -> Path:
    return clips[name] if where == "generated" else media_path(where, name)


def _take_all(reader: Any, count: int = 10_000) -> list[tuple[torch.Tensor, float]]:
    out = []
    for _ in range(count):
        try:
            out.append(reader.next())
        except StopIteration:
            break
    return out


@pytest.mark.parametrize(("where", "name"), _EDIT_LISTS, ids=[n for _, n in _EDIT_LISTS])
def test_nvdec_restart_and_random_access_equal_the_cpu(software: Any, clips: dict[str, Path], where: str,
                                                      name: str) -> None:
    from gpuvio._dispatch import get_backend
    from gpuvio._media import MediaReader

    path = str(_drift_path(clips, where, name))
    cpu = torch.device("cpu")
    gpu = MediaReader(path, stream=("video", 0), decoder=software, device=cpu)
    ref = MediaReader(path, stream=("video", 0), decoder=get_backend("cpu"), device=cpu)
    try:
        assert gpu.backend_name == software.name
        for reader in (gpu, ref):
            _take_all(reader, 7)
            reader.seek(0.0)  # a restart after reading: the file is reopened, its edit list kept
        got, want = _take_all(gpu), _take_all(ref)
        assert [t for _, t in got] == [t for _, t in want] and len(want) == len(ref)
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(got, want))
        n = len(ref)
        indices = [0, 1, n // 2, n - 1, 0, 2]
        frames, times = gpu.get_frames_at(indices)
        ref_frames, ref_times = ref.get_frames_at(indices)
        assert times == ref_times and torch.equal(frames, ref_frames)
    finally:
        gpu.close()
        ref.close()
    whole, _, info = gpuvio.read_video(path, pts_unit="sec", backend=software.name)
    assert info["backend"] == software.name and torch.equal(whole, gpuvio.read_video(path, pts_unit="sec")[0])
