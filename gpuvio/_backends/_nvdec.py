"""The NVDEC video backend: NVIDIA's hardware decoders (PyNvVideoCodec) into CUDA tensors.

Same results as the CPU backend, on the GPU:

* PyAV demuxes on the host, so timestamps, frame selection (``read_video``'s inclusive ranges and
  edge frame, ``VideoReader``'s precise seek, ``get_frames_at``) and metadata are the CPU
  backend's own; NVDEC decodes; the colour policy of :mod:`gpuvio._color` converts NV12/P016 to
  RGB on the GPU (a fused CUDA kernel when its on-device self-check passes, torch ops otherwise).
* A file NVDEC cannot decode exactly like FFmpeg (MPEG-4 Part 2, 4:4:4/4:2:2, H.264 10-bit,
  AV1 on GPUs without AV1 NVDEC, sizes outside the decoder's limits, interlaced video, decoder
  errors) is decoded by the CPU backend and uploaded, with one ``RuntimeWarning`` and a record:
  ``fallback_reason``/``backend_name`` on the ``VideoReader`` source, ``info["backend"]`` and
  ``info["fallback_reason"]`` from ``read_video``.
* Decoders are pooled per device and reused across files of the same codec and size; each is
  used by one thread at a time; several run concurrently in :meth:`NvdecBackend.read_videos`.
* Audio is always decoded on the CPU (as the CPU backend does), and ``write_video`` encodes on
  the CPU: the data-centre GPUs this targets (A100, H100, H200) have no NVENC.

Nothing here is imported until the dispatcher first hands this backend work; PyNvVideoCodec and
CuPy load on first use.
"""

from __future__ import annotations

import atexit
import bisect
import math
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
import torch

from gpuvio.cpu_fallback import CpuBackend, PyAVVideoSource
from gpuvio.cpu_fallback import _video as _cpu_video
from gpuvio.cpu_fallback._frames import open_container

from .._dispatch import Backend
from .._errors import BackendUnavailableError, InvalidArgumentError
from .._forksafe import ForkSafeLock
from ._cuda import load_pynvvideocodec
from ._nvdec_pipeline import (
    NvdecUnsupported,
    SessionPool,
    StreamPlan,
    StreamScope,
    SurfaceConverter,
    SurfaceFrames,
    check_caps,
    decode_pts,
    decoder_caps,
    engine_count,
    plan_stream,
    read_range,
    rewind,
    seek_frames,
)

__all__ = ["NvdecBackend", "NvdecVideoSource"]

SessionFactory = Callable[[StreamPlan, torch.device], Any]


class _NoVideo(NvdecUnsupported):
    """No video stream (or no openable file): the CPU backend's own result is the right one."""


def _name(source: Any) -> str:
    return source if isinstance(source, str) else "<in-memory video>"


def _warn_fallback(source: Any, reason: str) -> None:
    warnings.warn(f"{_name(source)}: NVDEC cannot decode this video ({reason}); decoded on the CPU "
                  "and uploaded", RuntimeWarning, stacklevel=4)


class NvdecBackend(Backend):
    """Video decoding on NVIDIA's NVDEC engines, with per-file fallback to the CPU backend."""

    name = "nvdec"
    device_type = "cuda"
    operations = frozenset({"read_video", "read_video_timestamps", "open_video", "write_video"})

    def __init__(self, *, session_factory: SessionFactory | None = None) -> None:
        # ``session_factory`` replaces NVDEC sessions: the test-suite passes the software stand-in
        self._session_factory = session_factory
        self._pool = SessionPool()
        # destroy pooled decoders while CUDA is still up, not during interpreter teardown
        atexit.register(self._pool.clear)
        self._cpu = CpuBackend()
        self._encode_note_shown = False
        self._lock = ForkSafeLock()

    # ----------------------------------------------------------------------------- sessions
    @staticmethod
    def _device(device: torch.device) -> torch.device:
        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        return device

    def acquire(self, plan: StreamPlan, device: torch.device) -> Any:
        """A decoder session for ``plan`` on ``device`` (raises :class:`NvdecUnsupported`)."""
        if self._session_factory is not None:
            return self._session_factory(plan, device)
        if device.type != "cuda":
            raise InvalidArgumentError(f"the nvdec backend decodes to CUDA devices; got {device}")
        nvc = load_pynvvideocodec()
        try:
            caps = decoder_caps(nvc, device.index, plan)
        except Exception as exc:  # the driver's decoder library itself is unusable: not a per-file matter
            raise BackendUnavailableError(f"NVDEC cannot be queried on {device} (PyNvVideoCodec's "
                                          f"GetDecoderCaps failed): {str(exc).splitlines()[0]}") from exc
        check_caps(caps, plan)
        try:
            return self._pool.acquire(nvc, device, plan)
        except NvdecUnsupported:
            raise
        except Exception as exc:
            raise NvdecUnsupported(f"creating the NVDEC decoder failed: {exc}") from exc

    def release(self, session: Any, *, healthy: bool = True) -> None:
        if self._session_factory is not None:
            session.close()
        else:
            self._pool.release(session, healthy=healthy)

    def engines(self, device: torch.device) -> int:
        """Number of NVDEC engines on ``device`` (1 for the software stand-in)."""
        if self._session_factory is not None:
            return 1
        return engine_count(load_pynvvideocodec(), self._device(device).index)

    def pool_stats(self) -> dict[str, int]:
        """How many NVDEC sessions were created and how many times one was reused."""
        return {"created": self._pool.created, "reused": self._pool.reused}

    # ----------------------------------------------------------------------------- read_video
    def _gpu_frames(self, source: Any, start_pts: Any, end_pts: Any, pts_unit: str, device: torch.device,
                    consumer: Any, *, audio: bool, color: str) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        """Video frames decoded by NVDEC (and audio by the CPU code); NvdecUnsupported otherwise."""
        import av

        try:
            container = open_container(source)
        except av.FFmpegError as exc:
            raise _NoVideo(f"the file cannot be opened: {exc}") from exc
        with container:
            if not container.streams.video:
                raise _NoVideo("the file has no video stream")
            vstream = container.streams.video[0]
            plan = plan_stream(vstream)
            start, end = start_pts, end_pts
            if pts_unit == "sec":
                start = _cpu_video.to_stream_units(start_pts, vstream, ceil=False)
                end = _cpu_video.to_stream_units(end_pts, vstream, ceil=True)
            for attempt in range(2):
                session = self.acquire(plan, device)
                try:
                    with StreamScope(session, consumer) as scope:
                        converter = SurfaceConverter(plan, session.device, color=color)
                        video = read_range(container, vstream, session, plan, scope, start, end,
                                           converter=converter)
                except NvdecUnsupported:
                    self.release(session, healthy=False)
                    if session.reused and attempt == 0:
                        continue  # a pooled decoder may not take this file's stream: try a new one
                    raise
                except BaseException:
                    self.release(session, healthy=False)
                    raise
                self.release(session)
                break
            info: dict[str, Any] = {}
            if vstream.average_rate is not None:
                info["video_fps"] = float(vstream.average_rate)
            aframes = _read_audio(container, start_pts, end_pts, pts_unit, info) if audio else None
        return video, aframes, info

    def _read(self, source: Any, start_pts: Any, end_pts: Any, pts_unit: str, device: torch.device,
              consumer: Any = None, *, audio: bool = True, color: str = "torchvision"
              ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        device = self._device(device)
        try:
            video, aframes, info = self._gpu_frames(source, start_pts, end_pts, pts_unit, device, consumer,
                                                    audio=audio, color=color)
        except NvdecUnsupported as exc:
            reason = str(exc)
            if not isinstance(exc, _NoVideo):
                _warn_fallback(source, reason)
            video, aframes, info = self._cpu.read_video(source, start_pts=start_pts, end_pts=end_pts,
                                                        pts_unit=pts_unit, device=device, color=color)
            info["backend"] = "cpu"
            info["fallback_reason"] = reason
            return video, aframes, info
        info["backend"] = "nvdec"
        info["fallback_reason"] = None
        return video, aframes, info

    def read_video(self, source: Any, *, start_pts: Any, end_pts: Any, pts_unit: str,
                   device: torch.device, output_format: str = "THWC", color: str = "torchvision"
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        video, aframes, info = self._read(source, start_pts, end_pts, pts_unit, device, color=color)
        assert aframes is not None
        if output_format == "TCHW":
            video = video.permute(0, 3, 1, 2)
        return video, aframes, info

    def read_videos(self, sources: Sequence[Any], *, start_pts: Any, end_pts: Any, pts_unit: str,
                    device: torch.device, max_workers: int | None = None, color: str = "torchvision"
                    ) -> list[torch.Tensor]:
        """Video frames of several files, decoded concurrently (``Tensor[T, H, W, 3]`` each, in order).

        By default two worker threads per NVDEC engine keep every engine busy (one decode session
        never spreads over more than one engine) while the host demuxes.
        """
        device = self._device(device)
        if not sources:
            return []
        workers = max_workers or min(len(sources), 2 * self.engines(device))
        consumer = torch.cuda.current_stream(device) if device.type == "cuda" else None

        def one(source: Any) -> torch.Tensor:
            return self._read(source, start_pts, end_pts, pts_unit, device, consumer, audio=False, color=color)[0]

        if workers <= 1:
            return [one(s) for s in sources]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuvio-nvdec") as pool:
            return list(pool.map(one, sources))

    def read_video_timestamps(self, source: Any, *, pts_unit: str) -> tuple[list[Any], float | None]:
        # demuxing only: the CPU backend's packet scan is exactly that
        return _cpu_video.read_video_timestamps(source, pts_unit)

    def write_video(self, path: str, video: torch.Tensor, fps: Fraction, **options: Any) -> None:
        # A100/H100/H200 have no NVENC, so encoding happens on the CPU (FFmpeg) after a download.
        # NVENC for the GPUs that have it (L4, A10, RTX...) is not written yet: it could not be
        # tested on the GPUs this project can borrow.
        if not self._encode_note_shown:
            self._encode_note_shown = True
            warnings.warn("write_video with device='cuda' encodes on the CPU with FFmpeg: gpuvio does not use "
                          "NVENC yet (A100/H100/H200 have none)", UserWarning, stacklevel=3)
        self._cpu.write_video(path, video.cpu(), fps, **options)

    def open_video(self, source: Any, *, stream: tuple[str, int], num_threads: int,
                   device: torch.device, color: str = "torchvision") -> NvdecVideoSource:
        return NvdecVideoSource(source, stream=stream, num_threads=num_threads,
                                device=self._device(device), backend=self, color=color)


def _read_audio(container: Any, start_pts: Any, end_pts: Any, pts_unit: str, info: dict[str, Any]) -> torch.Tensor:
    """The audio part of the CPU backend's ``read_video``, on an open container."""
    audio = None
    if container.streams.audio:
        astream = container.streams.audio[0]
        start, end = start_pts, end_pts
        if pts_unit == "sec":
            start = _cpu_video.to_stream_units(start_pts, astream, ceil=False)
            end = _cpu_video.to_stream_units(end_pts, astream, ceil=True)
        audio = _cpu_video.read_audio_stream(container, astream, start, end)
        info["audio_fps"] = astream.rate
    if audio is None:
        return _cpu_video.empty_audio()
    return torch.from_numpy(np.ascontiguousarray(audio))


class NvdecVideoSource(PyAVVideoSource):
    """``VideoReader``'s engine on NVDEC: the CPU source's index and metadata, GPU frames.

    Video frames are contiguous ``Tensor[C, H, W]`` uint8 on the CUDA device. Positioning (``seek``, rewinding, the back-off when a seek lands after
    its target) and random access follow the CPU reader step by step, on decoder surfaces.
    Audio streams, and video streams NVDEC cannot decode, are served by the CPU code (frames
    uploaded): then :attr:`backend_name` is ``"cpu"`` and, for video, :attr:`fallback_reason`
    says why.
    """

    def __init__(self, source: Any, *, stream: tuple[str, int], num_threads: int, device: torch.device,
                 backend: NvdecBackend, color: str = "torchvision") -> None:
        self._backend = backend
        self._gpu_device = device
        self._plan: StreamPlan | None = None
        self._session: Any = None
        self._gframes: SurfaceFrames | None = None
        self._ready: deque[tuple[torch.Tensor, float]] = deque()
        self._position: tuple[str, float, bool] = ("seek", 0.0, True)
        self.fallback_reason: str | None = None
        super().__init__(source, stream=stream, num_threads=num_threads, device=device, color=color)  # type: ignore[arg-type]

    @property  # type: ignore[override]
    def backend_name(self) -> str:
        return "nvdec" if self._gpu_on() else "cpu"

    def _gpu_on(self) -> bool:
        return self._plan is not None and self.kind == "video"

    # ------------------------------------------------------------------ GPU state
    def _close_gpu(self, *, healthy: bool = True) -> None:
        if self._gframes is not None:
            self._gframes.close()
            self._gframes = None
        if self._session is not None:
            self._backend.release(self._session, healthy=healthy)
            self._session = None
        self._plan = None
        self._ready.clear()

    def _fall_back(self, reason: str) -> None:
        """Continue on the CPU code from where the GPU left off."""
        self._close_gpu(healthy=False)
        self.fallback_reason = reason
        _warn_fallback(self._source, reason)
        kind, time_s, keyframes_only = self._position
        if kind == "seek":
            super().seek(time_s, keyframes_only=keyframes_only)
            return
        index = self.frame_index()  # resume at the frame after the last one returned
        pos = bisect.bisect_right(index.seconds, time_s)
        super().seek(index.seconds[pos] if pos < len(index) else index.end_seconds, keyframes_only=False)

    def _scope(self) -> StreamScope:
        return StreamScope(self._session)

    # ------------------------------------------------------------------ streams and positioning
    def set_stream(self, kind: str, index: int) -> None:
        self._close_gpu()
        super().set_stream(kind, index)  # validates, configures and rewinds with the CPU code
        if kind != "video":
            return
        try:
            plan = plan_stream(self._stream)
            self._session = self._backend.acquire(plan, self._gpu_device)
            self._plan = plan
            self._converter_gpu = SurfaceConverter(plan, self._session.device, color=self._color)
            self._position = ("seek", 0.0, True)
            self._restart()
        except NvdecUnsupported as exc:
            self._close_gpu(healthy=False)
            self.fallback_reason = str(exc)
            _warn_fallback(self._source, str(exc))
            super()._restart()
            return
        self.fallback_reason = None

    def _restart(self) -> None:
        if not getattr(self, "_plan", None) or self.kind != "video":
            super()._restart()
            return
        self._ready.clear()
        self._skip_before = None
        if self._gframes is not None:
            self._gframes.close()
        with self._scope():
            frames = rewind(self._container, self._stream, self._session)
            if frames is None:
                # not seekable: reopen the file, as the CPU reader does
                self._session.reset()
                self._owned.close(self._container)
                self._container = self._open()
                self._configure(self._container.streams.get(**{self.kind: self._stream_number})[0])
                frames = SurfaceFrames(self._container, self._stream, self._session)
        self._gframes = frames

    def seek(self, time_s: float, *, keyframes_only: bool = False) -> None:
        if not self._gpu_on():
            super().seek(time_s, keyframes_only=keyframes_only)
            return
        self._position = ("seek", float(time_s), keyframes_only)
        try:
            self._gpu_seek(time_s, keyframes_only)
        except NvdecUnsupported as exc:
            self._fall_back(str(exc))

    def _gpu_seek(self, time_s: float, keyframes_only: bool) -> None:
        # PyAVVideoSource.seek, on surfaces
        import av

        self._ready.clear()
        if time_s <= 0 or math.isnan(time_s):
            self._restart()
            return
        target = int(math.floor(Fraction(time_s) / self._time_base))
        if self._gframes is not None:
            self._gframes.close()
            self._gframes = None
        with self._scope():
            if keyframes_only:
                self._session.reset()
                try:  # rounded to the nearest tick, like the CPU reader (torchvision's rule)
                    self._container.seek(round(Fraction(time_s) / self._time_base), stream=self._stream,
                                         backward=True, any_frame=False)
                except av.FFmpegError:
                    self._restart()
                    return
                self._gframes = SurfaceFrames(self._container, self._stream, self._session)
                self._skip_before = None
                return
            frames = seek_frames(self._container, self._stream, self._session, target)
        if frames is None:
            self._restart()
        else:
            self._gframes = frames
        self._skip_before = time_s

    # ------------------------------------------------------------------ reading
    def next(self) -> tuple[torch.Tensor, float]:
        if not self._gpu_on():
            return super().next()
        try:
            if not self._ready:
                self._fill()
        except NvdecUnsupported as exc:
            self._fall_back(str(exc))
            return super().next()
        frame, seconds = self._ready.popleft()
        self._position = ("after", seconds, False)
        return frame, seconds

    def _fill(self) -> None:
        """Convert the next frames the decoder has ready (at least one); StopIteration at the end."""
        assert self._gframes is not None and self._plan is not None
        plan = self._plan
        with self._scope() as scope:
            try:
                while not self._ready or self._gframes.has_pending():
                    frame = next(self._gframes)
                    seconds = _cpu_seconds(frame.pts, self._time_base)
                    if self._skip_before is not None and seconds < self._skip_before:
                        continue
                    self._skip_before = None
                    out = scope.alloc((3, plan.height, plan.width))  # contiguous CHW, as on the CPU
                    self._converter_gpu.put(frame.surface, out.permute(1, 2, 0))
                    self._ready.append((out, seconds))
            except StopIteration:
                if not self._ready:
                    raise
            finally:
                self._converter_gpu.flush()

    def get_frames_at(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        if not self._gpu_on():
            return super().get_frames_at(indices)
        index = self.frame_index()
        positions = self.frame_positions(indices)
        if not positions:
            return super().get_frames_at(indices)
        wanted = sorted(set(index.pts[p] for p in positions))
        try:
            frames = self._decode_wanted(wanted, index.keyframes)
        except NvdecUnsupported as exc:
            _warn_fallback(self._source, str(exc))
            return super().get_frames_at(indices)
        slot_of = {pts: k for k, pts in enumerate(wanted)}
        order = [slot_of[index.pts[p]] for p in positions]
        if order != list(range(len(wanted))):
            frames = frames[torch.tensor(order, dtype=torch.long).to(frames.device)]
        return frames, [index.seconds[p] for p in positions]

    def _decode_wanted(self, wanted: list[int], keyframes: list[int]) -> torch.Tensor:
        """``Tensor[len(wanted), 3, H, W]``: the frames with these pts, on a second container and
        decoder session (the sequential position is left untouched, as on the CPU)."""
        assert self._plan is not None
        plan = self._plan
        session = self._backend.acquire(plan, self._gpu_device)
        containers: list[Any] = []

        def reopen() -> tuple[Any, Any]:
            containers[-1].close()
            containers.append(open_container(self._source))
            return containers[-1], containers[-1].streams[self._stream.index]

        try:
            containers.append(open_container(self._source))  # inside: a failure must release the session
            with StreamScope(session) as scope:
                out = scope.alloc((len(wanted), 3, plan.height, plan.width))
                converter = SurfaceConverter(plan, session.device, color=self._color)
                decode_pts(containers[0], containers[0].streams[self._stream.index], session, wanted,
                           keyframes, [o.permute(1, 2, 0) for o in out], converter=converter, reopen=reopen)
        except BaseException:
            self._backend.release(session, healthy=False)
            raise
        finally:
            for container in containers:
                container.close()
        self._backend.release(session)
        return out

    def close(self) -> None:
        self._close_gpu()
        super().close()


def _cpu_seconds(pts: int, time_base: Fraction) -> float:
    # the CPU reader's one conversion for every timestamp it reports or compares
    return float(pts * time_base)
