"""The workloads and their contenders: gpuvio and every installed peer doing the same work.

Each :class:`Contender` is a zero-argument callable that does one unit of work (decode the whole
clip, decode one image...) and returns its output, so the runner can time it and check that the
peers agree with gpuvio. Peers are found at run time; one that is missing or fails to start is
recorded with the reason instead of silently left out.

The types are in ``_workload.py``, the video workloads (and the re-implemented torchvision 0.8
``read_video`` algorithm) in ``_video_peers.py``, the image ones in ``_image_peers.py``, the
decode-time resize ones (issue 13) in ``_transform_peers.py``; this module gathers them.

Performance targets (:class:`Target`) are attached to the workloads they are measured on and
checked by ``_report``: gpuvio's speed-up over a named peer, gpuvio's fraction of a ceiling (the
decode-only row), pixel identity with a peer, or pixels within a mean |diff| of a peer's.
"""

from __future__ import annotations

from ._image_peers import image_workloads
from ._media import MediaFile
from ._transform_peers import image_transform_workloads, video_transform_workloads
from ._video_peers import torchvision08_read_video, video_workloads
from ._workload import Contender, Target, Workload

__all__ = ["Contender", "Target", "Workload", "build_workloads", "torchvision08_read_video"]


def build_workloads(media: list[MediaFile], *, device: str, quick: bool,
                    only: list[str] | None = None) -> list[Workload]:
    """Every workload for the media on ``device`` ("cpu" or "cuda[:N]"), peers included.

    On a CUDA device the CPU-only peers (PyAV, Pillow) are still measured once, so the GPU
    numbers have a CPU baseline in the same record.
    """
    workloads: list[Workload] = []
    for m in media:
        if m.kind == "video":
            workloads += video_workloads(m, device, quick, cpu_peers=True)
            if m.target != "720p":  # decode-time resize (issue 13): the 1080p clip and --media videos
                workloads += video_transform_workloads(m, device, quick, cpu_peers=True)
        else:
            workloads += image_workloads(m, device, quick, cpu_peers=True)
            workloads += image_transform_workloads(m, device, quick, cpu_peers=True)  # JPEGs only
    # several --media files can give the same workload name: tell them apart by the file
    counts: dict[str, int] = {}
    for w in workloads:
        counts[w.name] = counts.get(w.name, 0) + 1
    for w in workloads:
        if counts[w.name] > 1:
            w.name = f"{w.name} [{w.media.path.name}]"
    if only:
        workloads = [w for w in workloads if any(o.lower() in w.name.lower() for o in only)]
    return workloads
