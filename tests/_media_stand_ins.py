"""Generated stand-ins for the shared media (``../shared/media``), made here with PyAV, Pillow and NumPy.

A clean clone has no ``../shared``: a test that asks for a shared file through the ``media``
fixture (tests/conftest.py) then gets the stand-in registered here under the same relative path,
written once per test session into a temporary folder. Each stand-in reproduces what its tests
use the real file for (codec, container, B-frames and their packing, audio, start time, edit
list, stream layout, pixel format, the damage done to a broken file), with content like real
footage: a textured pan, moving shapes and text-like strokes, never flat colour. Tests compare
with PyAV / Pillow decodes of whatever file they get, so nothing here is a pasted expectation.

Shared files without a faithful stand-in (torchcodec's reference frames, for one) are simply not
registered: their tests skip without the media.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STAND_INS", "make", "png_bytes", "scene"]

STAND_INS: dict[str, Callable[[Path], None]] = {}


def stand_in(*rels: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    """Register ``writer(path)`` as the stand-in of the shared files at ``rels`` (posix, under media/)."""

    def register(writer: Callable[[Path], None]) -> Callable[[Path], None]:
        for rel in rels:
            STAND_INS[rel] = writer
        return writer

    return register


def make(root: Path, rel: str) -> Path | None:
    """The stand-in of ``rel`` under ``root`` (written on first use), or None when there is none."""
    writer = STAND_INS.get(rel)
    if writer is None:
        return None
    path = root.joinpath(*rel.split("/"))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        writer(partial)
        partial.rename(path)
    return path


# ----------------------------------------------------------------------------- content


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    from gpuvio._samples import texture

    return texture(height, width, seed=seed)


def _strokes(height: int, width: int, seed: int) -> np.ndarray:
    """A mask of text-like strokes: short dark bars in lines, with word gaps (sharp edges)."""
    rng = np.random.default_rng(seed + 99)
    mask = np.zeros((height, width), dtype=bool)
    line = max(6, height // 12)
    for top in range(line // 2, height - line, 2 * line):
        x = int(rng.integers(2, 8))
        while x < width - 4:
            glyph = int(rng.integers(2, max(3, line // 2)))
            tall = int(rng.integers(line // 2, line))
            mask[top + line - tall: top + line, x: x + max(1, glyph // 2)] = True
            mask[top + line - 2: top + line, x: x + glyph] = True
            x += glyph + int(rng.integers(1, 4)) + (int(rng.integers(4, 9)) if rng.random() < 0.2 else 0)
    return mask


def scene(width: int, height: int, count: int, fps: float, *, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` RGB frames ``[H, W, 3] uint8``: a camera pan over a noise texture with colour
    gradients, three moving discs, a sweeping bar and a block of text-like strokes."""
    big = _texture(int(height * 1.4) + 4, int(width * 1.4) + 4, seed)
    strokes = _strokes(max(8, height // 3), max(8, width // 2), seed)
    yy, xx = np.ogrid[0:height, 0:width]
    for i in range(count):
        t = i / fps
        oy = int((0.5 + 0.5 * math.sin(0.9 * t + seed)) * (big.shape[0] - height))
        ox = int((0.5 + 0.5 * math.sin(0.6 * t + 1.0 + seed)) * (big.shape[1] - width))
        frame = big[oy: oy + height, ox: ox + width].copy()
        for k, colour in enumerate(((225, 45, 40), (40, 190, 70), (245, 215, 35))):
            cx = (0.5 + 0.4 * math.sin(1.7 * t + 2.1 * k + seed)) * width
            cy = (0.5 + 0.35 * math.cos(1.1 * t + 1.7 * k)) * height
            radius = (0.07 + 0.025 * k) * min(height, width)
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = colour
        bar = int((0.5 + 0.45 * math.sin(0.8 * t + seed)) * (width - 1))
        frame[:, max(bar - 2, 0): bar + 2] = 250
        sy = int((0.1 + 0.05 * math.sin(t)) * height)
        sx = int((0.3 + 0.2 * math.sin(0.5 * t)) * width)
        block = frame[sy: sy + strokes.shape[0], sx: sx + strokes.shape[1]]
        block[strokes[: block.shape[0], : block.shape[1]]] = (20, 20, 30)
        yield frame


def _picture(height: int, width: int, seed: int) -> np.ndarray:
    """One photo-like RGB still (a frame of :func:`scene`)."""
    return next(scene(width, height, 1, 30.0, seed=seed))


# ----------------------------------------------------------------------------- video writing


def _tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    """``[channels, samples] float32``: sine sweeps, a different one per channel."""
    t = np.arange(int(seconds * rate), dtype=np.float64) / rate
    sweep = 2 * math.pi * (330 * t + 150 * t * t / max(seconds, 1e-3))
    return np.stack([(0.4 - 0.1 * c) * np.sin(sweep * (1 + 0.5 * c)) for c in range(channels)]).astype(np.float32)


def _encode_audio(container: Any, stream: Any, seconds: float) -> None:
    import av

    rate = stream.codec_context.sample_rate
    layout = stream.codec_context.layout.name
    channels = len(stream.codec_context.layout.channels)
    samples = _tone(seconds, rate, channels)
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start: start + chunk]), format="fltp",
                                           layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                container.mux(packet)
    for converted in resampler.resample(None):
        for packet in stream.encode(converted):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


BT709 = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}  # tagged BT.709, limited
LIMITED = {"color_range": 1}  # only the range tagged (limited), the matrix unspecified (BT.601)


def _video_stream(container: Any, codec: str, width: int, height: int, fps: Fraction, *, pix_fmt: str = "yuv420p",
                  options: dict[str, str] | None = None, bit_rate: int | None = None,
                  tags: dict[str, int] | None = None) -> Any:
    """A video stream; ``tags``: colour properties written into the stream (BT709, LIMITED)."""
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.bit_rate = bit_rate or max(200_000, int(3_000_000 * width * height / (1280 * 720)))
    stream.options = dict(options or {})
    for name, value in (tags or {}).items():
        setattr(stream.codec_context, name, value)
    return stream


def _encode_video(container: Any, stream: Any, count: int, *, seed: int, pts_offset: int = 0) -> None:
    """``count`` frames of :func:`scene`, converted to YUV with the matrix and range the stream is tagged with."""
    import av
    from av.video.reformatter import ColorRange, Colorspace

    context = stream.codec_context
    matrix = Colorspace.ITU709 if context.colorspace == 1 else Colorspace.ITU601
    value_range = ColorRange.JPEG if context.color_range == 2 else ColorRange.MPEG
    fps = float(context.framerate or stream.average_rate or 25)
    for i, rgb in enumerate(scene(stream.width, stream.height, count, fps, seed=seed)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if stream.pix_fmt.startswith("yuv"):
            frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=matrix, dst_color_range=value_range)
        frame.pts = i + pts_offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_clip(path: Path, *, codec: str, size: tuple[int, int], fps: Fraction | int, frames: int,
               fmt: str | None = None, options: dict[str, str] | None = None, pix_fmt: str = "yuv420p",
               audio: tuple[str, int, str] | None = None, seed: int = 0, pts_offset: int = 0,
               tags: dict[str, int] | None = None) -> None:
    """One video stream (and optionally one audio stream: ``(codec, rate, layout)``) in ``fmt``."""
    import av

    fps = Fraction(fps)
    with av.open(str(path), "w", format=fmt or _format_of(path)) as container:
        video = _video_stream(container, codec, *size, fps, pix_fmt=pix_fmt, options=options, tags=tags)
        astream = None
        if audio is not None:
            astream = container.add_stream(audio[0], rate=audio[1], layout=audio[2])
            if audio[0] == "aac":
                # no perceptual noise substitution: its decoded noise depends on where decoding began
                astream.options = {"aac_pns": "0"}
        _encode_video(container, video, frames, seed=seed, pts_offset=pts_offset)
        if astream is not None:
            _encode_audio(container, astream, frames / float(fps))


def _format_of(path: Path) -> str:
    suffix = path.name.removesuffix(".partial").rsplit(".", 1)[-1]
    return {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "avi": "avi", "mpg": "mpeg", "ts": "mpegts",
            "mov": "mov"}[suffix]


X264_FAST = {"preset": "veryfast"}


# ----------------------------------------------------------------------------- torchvision videos


@stand_in("torchvision/videos/R6llTwEh07w.mp4")
def _kinetics_a(path: Path) -> None:
    # Kinetics: H.264 340x256 with B-frames, AAC mono
    write_clip(path, codec="libx264", size=(340, 256), fps=30, frames=60, options=X264_FAST,
               audio=("aac", 44100, "mono"), seed=1)


@stand_in("torchvision/videos/SOX5yA1l24A.mp4")
def _kinetics_b(path: Path) -> None:
    write_clip(path, codec="libx264", size=(340, 256), fps=Fraction(30000, 1001), frames=55, options=X264_FAST,
               audio=("aac", 48000, "mono"), seed=2)


@stand_in("torchvision/videos/WUzgd7C1pWA.mp4")
def _kinetics_c(path: Path) -> None:
    write_clip(path, codec="libx264", size=(340, 256), fps=Fraction(30000, 1001), frames=48,
               options={**X264_FAST, "bf": "2", "g": "24"}, audio=("aac", 48000, "mono"), seed=3)


VOP = b"\x00\x00\x01\xb6"
USER_DATA = b"\x00\x00\x01\xb2"


def _vop_type(data: bytes) -> int:
    """0 I, 1 P, 2 B, 3 S: the coding type of the first VOP in ``data``."""
    return data[data.index(VOP) + 4] >> 6


def _not_coded_vop(time: int, resolution: int) -> bytes:
    """An MPEG-4 "N-VOP": a P-VOP header with vop_coded = 0, as DivX writes after a packed pair."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    put(0b01, 2)  # P
    put(0, 1)  # modulo_time_base: within the second of the frame it stands behind
    put(1, 1)  # marker
    put(time % resolution, max(1, (resolution - 1).bit_length()))  # vop_time_increment
    put(1, 1)  # marker
    put(0, 1)  # vop_coded
    bits.append(0)  # stuffing: 0 then 1s to the byte boundary
    while len(bits) % 8:
        bits.append(1)
    return VOP + bytes(int("".join(map(str, bits[i: i + 8])), 2) for i in range(0, len(bits), 8))


def write_mpeg4_avi(path: Path, *, size: tuple[int, int], fps: Fraction | int, frames: int, seed: int,
                    packed: bool, user_data: bytes, codec_tag: str | None = None, stuffing_after_first: bool = False,
                    broken_title: bool = False, qscale: int = 4) -> None:
    """MPEG-4 Part 2 in AVI, from FFmpeg's encoder, re-muxed the way DivX 5 / XviD wrote them.

    ``packed``: DivX "packed B-frames" — each B-VOP travels in the chunk of the reference frame
    that follows it in decoding order, and a not-coded VOP fills its slot; the user data
    ``DivX503b2816p`` (``p``: packed) tells decoders. ``user_data`` replaces FFmpeg's own
    (``Lavc...``) in the VOL header, which also goes into the AVI's extradata as DivX put it.
    ``broken_title``: the stream title ends inside a UTF-8 sequence (HMDB51's files do).
    """
    import av

    width, height = size
    fps = Fraction(fps)
    encoder = av.CodecContext.create("mpeg4", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = 1 / fps
    encoder.framerate = fps
    # closed GOPs: DivX and XviD never pack a B-frame into a keyframe's chunk (one GOP's B-frames
    # do not reach back into the one before); after ~15 frames a keyframe, as a scene change makes
    encoder.options = {"bf": "1" if packed else "0", "g": "15", "qscale": str(qscale), "flags": "+cgop",
                       "sc_threshold": "1000000000"}
    packets: list[tuple[int, bytes]] = []
    for i, rgb in enumerate(scene(width, height, frames, float(fps), seed=seed)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        packets += [(p.pts, bytes(p)) for p in encoder.encode(frame)]
    packets += [(p.pts, bytes(p)) for p in encoder.encode(None)]

    first = packets[0][1]
    vop_at = first.index(VOP)
    headers = first[:vop_at]
    own = headers.find(USER_DATA)
    extradata = (headers[:own] if own >= 0 else headers) + USER_DATA + user_data
    packets[0] = (packets[0][0], extradata + first[vop_at:])

    chunks: list[bytes] = []
    i = 0
    while i < len(packets):
        pts, data = packets[i]
        if packed and i + 1 < len(packets) and _vop_type(packets[i + 1][1]) == 2:
            chunks += [data + packets[i + 1][1], _not_coded_vop(pts * fps.denominator, fps.numerator)]
            i += 2
        else:
            chunks.append(data)
            i += 1
        if stuffing_after_first and len(chunks) == 1:
            chunks.append(b"\x7f")  # a one-byte chunk of stuffing, as in HMDB51's files

    title = "E:\\ActionDB\\clips_30fps_divx\\cartwh\u00e9" if broken_title else None
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.extradata = extradata
        if codec_tag:
            stream.codec_context.codec_tag = codec_tag
        if title:
            stream.metadata["title"] = title
        for k, data in enumerate(chunks):
            packet = av.Packet(data)
            packet.stream = stream
            packet.time_base = 1 / fps
            packet.pts = packet.dts = k
            packet.is_keyframe = VOP in data and _vop_type(data) == 0
            container.mux(packet)
    if title:
        # cut the title inside its last character: 'é' is C3 A9 in UTF-8, keep a lone lead byte
        data = bytearray(path.read_bytes())
        at = data.index("cartwh\u00e9".encode())
        data[at + 6: at + 8] = b"\xd3?"
        path.write_bytes(bytes(data))


DIVX = b"DivX503b2816p"


@stand_in("torchvision/videos/RATRACE_wave_f_nm_np1_fr_goo_37.avi")
def _divx_ratrace(path: Path) -> None:
    write_mpeg4_avi(path, size=(560, 240), fps=30, frames=45, seed=4, packed=True, user_data=DIVX, codec_tag="DX50")


@stand_in("torchvision/videos/SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi")
def _divx_school(path: Path) -> None:
    write_mpeg4_avi(path, size=(320, 240), fps=30, frames=42, seed=5, packed=True, user_data=DIVX, codec_tag="DX50")


@stand_in("torchvision/videos/TrumanShow_wave_f_nm_np1_fr_med_26.avi")
def _divx_truman(path: Path) -> None:
    write_mpeg4_avi(path, size=(432, 240), fps=30, frames=38, seed=6, packed=True, user_data=DIVX, codec_tag="DX50")


@stand_in("torchvision/videos/hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi")
def _divx_hmdb51(path: Path) -> None:
    write_mpeg4_avi(path, size=(320, 240), fps=30, frames=48, seed=7, packed=True, user_data=DIVX, codec_tag="DX50",
                    stuffing_after_first=True, broken_title=True)


@stand_in("torchvision/videos/v_SoccerJuggling_g23_c01.avi")
def _xvid_a(path: Path) -> None:
    # UCF101: XviD at 29.97 fps, no B-frames (AVI time base 1001/30000)
    write_mpeg4_avi(path, size=(320, 240), fps=Fraction(30000, 1001), frames=60, seed=8, packed=False,
                    user_data=b"XviD0050", codec_tag="XVID")


@stand_in("torchvision/videos/v_SoccerJuggling_g24_c01.avi")
def _xvid_b(path: Path) -> None:
    write_mpeg4_avi(path, size=(320, 240), fps=Fraction(30000, 1001), frames=66, seed=9, packed=False,
                    user_data=b"XviD0050", codec_tag="XVID")


# ----------------------------------------------------------------------------- torchcodec videos


ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


@stand_in("torchcodec/nasa_13013.mp4")
def _multi_stream(path: Path) -> None:
    """Six streams like the NASA clip: H.264 320x180 @ 25, AAC 8 kHz stereo, mov_text subtitles,
    H.264 480x270 @ 29.97, AAC 16 kHz stereo, mov_text subtitles (in that order); BT.709-tagged."""
    import av

    seconds = 3.6  # AAC at 8 kHz: 28 audio frames, enough for ranges in the middle of the stream
    with av.open(str(path), "w", format="mp4") as container:
        v0 = _video_stream(container, "libx264", 320, 180, Fraction(25), options=X264_FAST, tags=BT709)
        a0 = container.add_stream("aac", rate=8000, layout="stereo")
        s0 = container.add_stream("mov_text")
        v1 = _video_stream(container, "libx264", 480, 270, Fraction(30000, 1001), options=X264_FAST, tags=BT709)
        a1 = container.add_stream("aac", rate=16000, layout="stereo")
        s1 = container.add_stream("mov_text")
        for audio in (a0, a1):
            audio.options = {"aac_pns": "0"}
        for sub in (s0, s1):
            sub.codec_context.subtitle_header = ASS_HEADER
            sub.codec_context.time_base = Fraction(1, 1000)
        _encode_video(container, v0, round(seconds * 25), seed=10)
        _encode_video(container, v1, round(seconds * 30000 / 1001), seed=10)
        _encode_audio(container, a0, seconds)
        _encode_audio(container, a1, seconds)
        for n, sub in enumerate((s0, s1)):
            for k in range(3):
                text = f"caption {k} of track {n}".encode()
                packet = av.Packet(struct.pack(">H", len(text)) + text)
                packet.stream = sub
                packet.time_base = Fraction(1, 1000)
                packet.pts = packet.dts = 700 * k + 100
                packet.duration = 500
                container.mux(packet)


@stand_in("torchcodec/testsrc2.mp4")
def _h264_no_b(path: Path) -> None:
    # testsrc2: H.264 constrained baseline (no B-frames) at 30 fps, 2 s
    write_clip(path, codec="libx264", size=(480, 272), fps=30, frames=60,
               options={**X264_FAST, "profile": "baseline"}, seed=11)


@stand_in("torchcodec/h265_video.mp4")
def _hevc(path: Path) -> None:
    # HEVC 128x128 at 10 fps, 10 frames with B-frames, limited range tagged
    write_clip(path, codec="libx265", size=(128, 128), fps=10, frames=10,
               options={"preset": "veryfast", "x265-params": "log-level=error:bframes=3:keyint=5"}, seed=12,
               tags=LIMITED)


@stand_in("torchcodec/av1_video.mkv")
def _av1(path: Path) -> None:
    # AV1 (decoded by libdav1d: centre chroma siting), BT.709 matrix and limited range tagged
    import os

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's banner and notes off: errors only
    write_clip(path, codec="libsvtav1", size=(320, 180), fps=25, frames=50, options={"preset": "11"}, seed=13,
               tags={"colorspace": 1, "color_range": 1})


@stand_in("torchcodec/testsrc2_vp9.webm")
def _vp9(path: Path) -> None:
    # VP9 (centre chroma siting), limited range tagged, 1 s at 30 fps
    write_clip(path, codec="libvpx-vp9", size=(480, 272), fps=30, frames=30,
               options={"deadline": "realtime", "cpu-used": "8", "g": "12"}, seed=14, tags=LIMITED)


@stand_in("torchcodec/testsrc2_mpeg4.avi")
def _mpeg4_simple(path: Path) -> None:
    write_clip(path, codec="mpeg4", size=(480, 272), fps=30, frames=30, options={"qscale": "4", "g": "12"}, seed=15)


@stand_in("torchcodec/test_non_zero_start.mp4")
def _non_zero_start(path: Path) -> None:
    # the first frame's pts is 250/30 s: MP4 writes an edit list with an empty edit first
    write_clip(path, codec="libx264", size=(200, 112), fps=30, frames=12, options=X264_FAST, seed=16,
               pts_offset=250)
    _frames_info(path, Path(str(path).removesuffix(".partial") + ".stream0.all_frames_info.json"))


def _frames_info(path: Path, out: Path, index: int = 0) -> None:
    """ffprobe's per-frame ``pts_time``/``duration_time`` of a stream, from a PyAV decode."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams[index]
        frames = [{"pts_time": f"{float(f.pts * stream.time_base):.6f}",
                   "duration_time": f"{float(f.duration * stream.time_base):.6f}"}
                  for f in container.decode(stream)]
    out.write_text(json.dumps(frames, indent=2))


@stand_in("torchcodec/discard_first_keyframe.mp4")
def _edit_list(path: Path) -> None:
    """H.264 with B-frames cut after its first keyframe by an edit list, as ``ffmpeg -ss`` stream copy
    writes it: the packets of the first five frames (the keyframe among them) are kept, flagged
    for discard, and the first frame shown depends on the discarded keyframe."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = _video_stream(container, "libx264", 64, 64, Fraction(25),
                               options={**X264_FAST, "g": "10", "bf": "2", "keyint_min": "10", "sc_threshold": "0"})
        _encode_video(container, stream, 35, seed=17)
    buffer.seek(0)
    with av.open(buffer) as source, av.open(str(path), "w", format="mp4") as target:
        src = source.streams.video[0]
        dst = target.add_stream_from_template(src)
        shift = int(5 / (25 * src.time_base))
        for packet in source.demux(src):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = dst
            target.mux(packet)


@stand_in("torchcodec/sine_stereo_mp2.mpg")
def _mpeg_ps(path: Path) -> None:
    # MPEG-PS: MPEG-1 video (I and P frames, GOP 12) and stereo MP2; the muxer's preload starts
    # the video at 0.54 s
    write_clip(path, codec="mpeg1video", size=(128, 128), fps=25, frames=60, options={"bf": "0", "g": "12"},
               audio=("mp2", 44100, "stereo"), seed=18)


# ----------------------------------------------------------------------------- PNG writing


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _filtered(block: np.ndarray, bpp: int) -> bytes:
    """Scanlines of ``block`` (``[H, W*bpp] uint8``), each with a PNG filter chosen in turn (0-4)."""
    out = []
    previous = np.zeros(block.shape[1], dtype=np.int16)
    for y, row in enumerate(block.astype(np.int16)):
        kind = y % 5
        left = np.concatenate([np.zeros(bpp, np.int16), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int16), previous[:-bpp]])
        if kind == 0:
            filtered = row
        elif kind == 1:
            filtered = row - left
        elif kind == 2:
            filtered = row - previous
        elif kind == 3:
            filtered = row - (left + previous) // 2
        else:
            p = left + previous - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - previous), np.abs(p - up_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, up_left))
            filtered = row - predictor
        out.append(bytes([kind]) + (filtered % 256).astype(np.uint8).tobytes())
        previous = row
    return b"".join(out)


def png_bytes(pixels: np.ndarray, *, interlaced: bool = False, extra_chunks: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A PNG of ``pixels`` (``[H, W, C]``, uint8 or uint16, C = 1-4), written here (Pillow cannot
    write Adam7 interlacing, nor 16-bit colour): all five row filters, optional ancillary chunks."""
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    stored = pixels.astype(">u2") if depth == 16 else pixels.astype(np.uint8)
    bpp = channels * depth // 8

    def rows(block: np.ndarray) -> bytes:
        return _filtered(block.view(np.uint8).reshape(block.shape[0], -1), bpp) if block.size else b""

    if interlaced:
        raw = b"".join(rows(stored[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7)
    else:
        raw = rows(stored)
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPES[channels], 0, 0, int(interlaced))
    compressed = zlib.compress(raw, 6)
    idats = [compressed[i: i + 8192] for i in range(0, len(compressed), 8192)]  # 8 KiB IDATs, as libpng
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + b"".join(_png_chunk(kind, body) for kind, body in extra_chunks)
            + b"".join(_png_chunk(b"IDAT", part) for part in idats) + _png_chunk(b"IEND", b""))


def _save(image: Any, path: Path, fmt: str, **options: Any) -> None:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())


# ----------------------------------------------------------------------------- images


def _logo(size: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A logo: an orange ring with a dot and a text-like strip on white, anti-aliased, and its
    coverage as an alpha mask (``[H, W, 3]`` and ``[H, W]`` uint8)."""
    from PIL import Image, ImageDraw

    scale = 4
    big = size * scale
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse([big * 0.18, big * 0.22, big * 0.78, big * 0.82], outline=255, width=int(big * 0.09))
    draw.ellipse([big * 0.62, big * 0.12, big * 0.74, big * 0.24], fill=255)
    draw.polygon([(big * 0.44, big * 0.05), (big * 0.56, big * 0.05), (big * 0.5, big * 0.5)], fill=255)
    strokes = _strokes(big // 8, big // 2, seed)
    strip = Image.fromarray((strokes * 255).astype(np.uint8))
    mask.paste(255, (big // 4, int(big * 0.86)), strip)
    alpha = np.array(mask.resize((size, size), Image.LANCZOS))
    orange = np.array([238, 76, 44], np.float32)
    shade = np.linspace(0.85, 1.0, size, dtype=np.float32)[:, None, None]
    colour = orange * shade
    cover = alpha[..., None].astype(np.float32) / 255
    rgb = (colour * cover + 255 * (1 - cover)).round().clip(0, 255).astype(np.uint8)
    return rgb, alpha


def _logo_image(mode: str):  # type: ignore[no-untyped-def]
    from PIL import Image

    rgb, alpha = _logo()
    if mode == "RGB":
        return Image.fromarray(rgb)
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "L":
        return Image.fromarray(rgb).convert("L")
    if mode == "LA":
        return Image.fromarray(np.dstack([np.array(Image.fromarray(rgb).convert("L")), alpha]), "LA")
    raise ValueError(mode)


@stand_in("torchvision/images/logos/rgb_pytorch.jpg")
def _logo_rgb_jpg(path: Path) -> None:
    _save(_logo_image("RGB"), path, "JPEG", quality=90)


@stand_in("torchvision/images/logos/gray_pytorch.jpg")
def _logo_gray_jpg(path: Path) -> None:
    _save(_logo_image("L"), path, "JPEG", quality=90)


@stand_in("torchvision/images/logos/cmyk_pytorch.jpg")
def _logo_cmyk_jpg(path: Path) -> None:
    # Adobe CMYK (APP14, transform 0): libjpeg stores the inks inverted, as Photoshop does
    _save(_logo_image("RGB").convert("CMYK"), path, "JPEG", quality=90)


@stand_in("torchvision/images/logos/rgb_pytorch.png")
def _logo_rgb_png(path: Path) -> None:
    _save(_logo_image("RGB"), path, "PNG")


@stand_in("torchvision/images/logos/rgbalpha_pytorch.png")
def _logo_rgba_png(path: Path) -> None:
    _save(_logo_image("RGBA"), path, "PNG")


@stand_in("torchvision/images/logos/gray_pytorch.png")
def _logo_gray_png(path: Path) -> None:
    _save(_logo_image("L"), path, "PNG")


@stand_in("torchvision/images/logos/grayalpha_pytorch.png")
def _logo_la_png(path: Path) -> None:
    _save(_logo_image("LA"), path, "PNG")


@stand_in("torchvision/images/logos/palette_pytorch.png")
def _logo_palette_png(path: Path) -> None:
    # a palette image whose background entry is transparent (a tRNS chunk)
    from PIL import Image

    rgb, alpha = _logo()
    palette = Image.fromarray(rgb).quantize(24, method=Image.Quantize.MEDIANCUT)
    indices = np.array(palette)
    transparent = int(np.bincount(indices[alpha < 8].ravel(), minlength=256).argmax())
    _save(palette, path, "PNG", transparency=transparent)


def _logo16(alpha: bool) -> np.ndarray:
    rgb, cover = _logo()
    noise = np.random.default_rng(3).integers(0, 256, rgb.shape, dtype=np.uint16)
    wide = rgb.astype(np.uint16) * 257 ^ noise  # low bytes that differ from the high ones
    if alpha:
        wide = np.dstack([wide, cover.astype(np.uint16) * 257])
    return wide


_XMP = (b"XML:com.adobe.xmp\0\0\0\0\0<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/>"
        b"</x:xmpmeta><?xpacket end='w'?>")


def _raw_exif_text() -> bytes:
    from PIL import Image

    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 1
    body = exif.tobytes()
    body = (body if body.startswith(b"Exif\0\0") else b"Exif\0\0" + body).hex()
    lines = "\n".join(body[i: i + 72] for i in range(0, len(body), 72))
    text = f"\nexif\n{len(body) // 2:8d}\n{lines}\n".encode()  # ImageMagick's layout, as GIMP writes it
    return b"Raw profile type exif\0\0" + zlib.compress(text)


@stand_in("torchvision/images/logos/rgb_pytorch16.png")
def _logo_rgb16(path: Path) -> None:
    # 16-bit RGB with the ancillary chunks GIMP writes (zTXt raw EXIF profile, iTXt XMP, pHYs)
    phys = struct.pack(">IIB", 2835, 2835, 1)
    path.write_bytes(png_bytes(_logo16(False), extra_chunks=[(b"zTXt", _raw_exif_text()), (b"iTXt", _XMP),
                                                             (b"pHYs", phys)]))


@stand_in("torchvision/images/logos/rgbalpha_pytorch16.png")
def _logo_rgba16(path: Path) -> None:
    phys = struct.pack(">IIB", 2835, 2835, 1)
    path.write_bytes(png_bytes(_logo16(True), extra_chunks=[(b"zTXt", _raw_exif_text()), (b"iTXt", _XMP),
                                                            (b"pHYs", phys)]))


def _with_segment(jpeg: bytes, marker: int, body: bytes, *, after: int = 0xE0) -> bytes:
    """``jpeg`` with one more marker segment, right after the first ``after`` segment (or SOI)."""
    at = 2
    if jpeg[2] == 0xFF and jpeg[3] == after:
        at = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:at] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + jpeg[at:]


@stand_in("torchvision/images/grace_hopper_517x606.jpg")
def _photo(path: Path) -> None:
    # a 517x606 photo (odd width, 4:2:0) with JFIF and an Adobe APP14 segment saying YCbCr
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_picture(606, 517, seed=20)).save(buffer, "JPEG", quality=88, dpi=(96, 96))
    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 1)
    path.write_bytes(_with_segment(buffer.getvalue(), 0xEE, adobe))


def _wizard() -> np.ndarray:
    """An RGBA drawing with hard and soft alpha edges, 177x235 (odd sizes for Adam7's passes)."""
    rgb = _picture(235, 177, seed=21)
    yy, xx = np.mgrid[0:235, 0:177]
    inside = ((xx - 88) / 80.0) ** 2 + ((yy - 120) / 110.0) ** 2
    alpha = np.clip((1.0 - inside) * 600, 0, 255).astype(np.uint8)
    alpha[(xx // 9 + yy // 9) % 7 == 0] = 0  # holes with hard edges
    return np.dstack([rgb, alpha])


@stand_in("torchvision/images/interlaced_png/wizard_low.png")
def _wizard_plain(path: Path) -> None:
    path.write_bytes(png_bytes(_wizard()))


@stand_in("torchvision/images/interlaced_png/wizard_low-interlaced.png")
def _wizard_interlaced(path: Path) -> None:
    path.write_bytes(png_bytes(_wizard(), interlaced=True))


def _scan_bounds(jpeg: bytes) -> tuple[int, int]:
    """Where the entropy-coded data of the first scan starts and ends (at the next marker)."""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", jpeg[sos + 2: sos + 4])[0]
    end = start
    while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
        end += 1
    return start, end


@stand_in("torchvision/images/damaged_jpeg/bad_huffman.jpg")
def _bad_huffman(path: Path) -> None:
    """A JPEG whose entropy-coded data holds a run of all-ones bits: no Huffman code is all ones, so
    libjpeg warns "bad Huffman code" and decodes the rest (the file still opens and decodes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_picture(384, 512, seed=22)).save(buffer, "JPEG", quality=85)
    data = bytearray(buffer.getvalue())
    start, end = _scan_bounds(bytes(data))
    at = start + (end - start) // 3
    while data[at - 1] == 0xFF:  # not in the middle of a stuffed 0xFF 0x00 pair
        at += 1
    data[at: at + 24] = b"\xff\x00" * 12
    path.write_bytes(bytes(data))


@stand_in("torchvision/images/damaged_jpeg/corrupt.jpg")
def _bad_marker(path: Path) -> None:
    """A 120x90 JPEG (JFIF + Adobe) whose scan is cut by the undefined marker 0xFFAE."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_picture(90, 120, seed=23)).save(buffer, "JPEG", quality=90)
    data = _with_segment(buffer.getvalue(), 0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 1))
    start, end = _scan_bounds(data)
    at = start + (end - start) // 2
    while data[at - 1] == 0xFF:
        at += 1
    path.write_bytes(data[:at] + b"\xff\xae\xc8\xe5" + data[at + 4:])


def _big_restart_jpeg() -> bytes:
    """A 2544x3300 page scan at 300 dpi with restart markers (DRI), as the corrupt34 files are."""
    from PIL import Image

    tile = _picture(300, 424, seed=24)
    page = np.tile(tile, (11, 6, 1))
    buffer = io.BytesIO()
    Image.fromarray(page).save(buffer, "JPEG", quality=75, dpi=(300, 300), restart_marker_rows=1)
    return buffer.getvalue()


_BIG: dict[str, bytes] = {}


def _truncated_big(path: Path, keep: Callable[[int, int], int]) -> None:
    if "jpeg" not in _BIG:
        _BIG["jpeg"] = _big_restart_jpeg()
    data = _BIG["jpeg"]
    start, _ = _scan_bounds(data)
    path.write_bytes(data[: keep(start, len(data))])


@stand_in("torchvision/images/damaged_jpeg/corrupt34_2.jpg")
def _truncated_at_scan(path: Path) -> None:
    _truncated_big(path, lambda start, size: start + 26)  # a few bytes into the scan


@stand_in("torchvision/images/damaged_jpeg/corrupt34_3.jpg")
def _truncated_mid_scan(path: Path) -> None:
    _truncated_big(path, lambda start, size: start + 4776)


@stand_in("torchvision/images/damaged_jpeg/corrupt34_4.jpg")
def _truncated_mid_scan_2(path: Path) -> None:
    _truncated_big(path, lambda start, size: start + 4363)


@stand_in("torchvision/images/damaged_png/sigsegv.png")
def _overlong_chunk(path: Path) -> None:
    """A 32x32 16-bit gray+alpha PNG with a repeated bKGD chunk whose length is wrong, then an
    IDAT whose length runs past the end of the file (a fuzzer's find that crashed decoders)."""
    pixels = np.random.default_rng(25).integers(0, 65536, (32, 32, 2), dtype=np.uint16)
    good = png_bytes(pixels, extra_chunks=[(b"gAMA", struct.pack(">I", 100000)), (b"bKGD", b"\xab\x84")])
    idat = good.index(b"IDAT") - 4
    broken = _png_chunk(b"bKGD", b"\xab\x84")[:-4] + b"\x0d\xab\x01\x29\x00\x20\x00"
    body = good[idat + 8: -12 - 4]
    overlong = struct.pack(">I", len(body) + 600) + b"IDAT" + body[: len(body) * 2 // 3]
    path.write_bytes(good[:idat] + broken + overlong)


@stand_in("torchvision/images/toosmall_png/heapbof.png")
def _too_small_png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\x00\x00\x00")  # a PNG signature cut short: 7 bytes in all


def _gradient(height: int, width: int) -> np.ndarray:
    """Smooth colour ramps with a little texture (where banding and chroma errors show)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramps = np.stack([xx / (width - 1), yy / (height - 1), 1 - (xx + yy) / (width + height - 2)], axis=-1)
    detail = _texture(height, width, 26).astype(np.float32) / 255
    return ((0.85 * ramps + 0.15 * detail) * 255).round().clip(0, 255).astype(np.uint8)


def _gradient_image(mode: str, height: int = 360, width: int = 640):  # type: ignore[no-untyped-def]
    from PIL import Image

    image = Image.fromarray(_gradient(height, width))
    if mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
        return Image.fromarray(np.dstack([np.array(image), alpha]), "RGBA")
    if mode == "LA":
        alpha = np.tile(np.linspace(255, 0, height).round().astype(np.uint8)[:, None], (1, width))
        return Image.fromarray(np.dstack([np.array(image.convert("L")), alpha]), "LA")
    return image.convert(mode)


@stand_in("torchcodec/cmyk.jpg")
def _cmyk(path: Path) -> None:
    _save(_gradient_image("CMYK"), path, "JPEG", quality=90)


@stand_in("torchcodec/gradient.jpg")
def _gradient_jpg(path: Path) -> None:
    _save(_gradient_image("RGB"), path, "JPEG", quality=90)


@stand_in("torchcodec/gradient.png")
def _gradient_png(path: Path) -> None:
    _save(_gradient_image("RGB"), path, "PNG")


@stand_in("torchcodec/grayscale.jpg")
def _gray_jpg(path: Path) -> None:
    _save(_gradient_image("L"), path, "JPEG", quality=90)


@stand_in("torchcodec/grayscale.png")
def _gray_png(path: Path) -> None:
    _save(_gradient_image("L"), path, "PNG")


@stand_in("torchcodec/grayscale_alpha.png")
def _gray_alpha_png(path: Path) -> None:
    _save(_gradient_image("LA"), path, "PNG")


@stand_in("torchcodec/rgba.png")
def _rgba_png(path: Path) -> None:
    _save(_gradient_image("RGBA"), path, "PNG")


@stand_in("torchcodec/gradient_16bit.png")
def _gradient16(path: Path) -> None:
    ramps = _gradient(48, 64).astype(np.uint16) * 257
    ramps ^= np.random.default_rng(27).integers(0, 256, ramps.shape, dtype=np.uint16)
    path.write_bytes(png_bytes(ramps))


@stand_in("torchcodec/grayscale_16bit.png")
def _gray16(path: Path) -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    values = (xx * 1023 + yy * 17).astype(np.uint16)[..., None]
    path.write_bytes(png_bytes(values))


@stand_in("torchcodec/gradient_interlaced.png")
def _gradient_interlaced(path: Path) -> None:
    chrm = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    path.write_bytes(png_bytes(_gradient(48, 64), interlaced=True, extra_chunks=[(b"cHRM", chrm)]))
