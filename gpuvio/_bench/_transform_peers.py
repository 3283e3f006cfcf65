"""The decode-time transform workloads (issue 13): resizing while decoding against decoding, then resizing.

* ``read_video`` of a whole clip to 224x224: ``gpuvio.read_video(path, pts_unit="sec",
  transforms=[Resize((224, 224))])`` against gpuvio's ``read_video`` followed by torchvision's
  ``v2.functional.resize(frames_TCHW, [224, 224], antialias=True)``, and torchcodec's CPU decoder
  (FFmpeg threads auto) with its ``Resize`` decoder transform; gpuvio's and torchcodec's
  full-size reads are rows of their own, for reference (what the resize saves or costs).
* ``decode_image`` of a JPEG to a 224 shorter side: ``gpuvio.decode_image(data,
  transforms=[Resize(224)])`` against gpuvio's and torchvision's ``decode_jpeg`` each followed by
  torchvision's resize.

The "then resize" rows are torchvision's own resize: without torchvision they are skipped, not
replaced by gpuvio's reference (:func:`gpuvio.transforms.apply`). Their pixels are the ones gpuvio
promises to stay within a mean |diff| of 0.5 of, which is checked as a target beside the speed-ups.
"""

from __future__ import annotations

from typing import Any

import torch

from ._media import MediaFile
from ._timing import synced
from ._workload import Contender, Target, Workload, add_peer, first_line, gpuvio_label, import_peer, nchw, nhwc

__all__ = ["GI_THEN_TV", "GV_THEN_TV", "TC_RESIZE", "TV_THEN_TV", "image_transform_workloads",
           "video_transform_workloads"]

# the sizes issue 13 measures: video frames to exactly 224x224, images to a 224 shorter side
VIDEO_SIZE = (224, 224)
IMAGE_SIZE = 224

# contender names (and the name prefixes the targets find them by)
GV_THEN_TV = "gpuvio read_video, then torchvision v2 resize"
TC_RESIZE = "torchcodec CPU, FFmpeg threads auto, Resize transform"
GI_THEN_TV = "gpuvio decode_image, then torchvision v2 resize"
TV_THEN_TV = "torchvision.io.decode_jpeg, then v2 resize"


def _tc_resize(size: tuple[int, int]) -> tuple[Any, str]:
    """The Resize object handed to torchcodec: torchvision's ``v2.Resize`` (as its docs show), else
    torchcodec's own ``torchcodec.transforms.Resize`` (the same decoder transform)."""
    v2, _ = import_peer("torchvision.transforms.v2")
    if v2 is not None:
        return v2.Resize(size), f"transforms=[torchvision.transforms.v2.Resize({size})]"
    from torchcodec.transforms import Resize

    return Resize(size), f"transforms=[torchcodec.transforms.Resize({size})] (torchvision absent)"


def video_transform_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    """``read_video`` of the whole clip resized to 224x224, with its peers (see the module docstring)."""
    import av

    import gpuvio
    from gpuvio.transforms import Resize

    path = str(media.path)
    n = len(gpuvio.read_video_timestamps(path, pts_unit="pts")[0])
    if not n:
        return []
    with av.open(path) as probe:
        vs = probe.streams.video[0]
        codec, size = vs.codec_context.name, f"{vs.codec_context.width}x{vs.codec_context.height}"
    tvf, tvf_reason = import_peer("torchvision.transforms.v2.functional")
    tc, tc_reason = import_peer("torchcodec.decoders")
    cuda = device.startswith("cuda")
    transforms = [Resize(VIDEO_SIZE)]
    shown = f"transforms=[Resize({VIDEO_SIZE})]"

    def tc_read(dev: str, resize: bool) -> torch.Tensor:
        kwargs: dict[str, Any] = {"transforms": [tc_resize]} if resize else {}
        decoder = tc.VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=0, device=dev, **kwargs)
        return decoder.get_frames_in_range(0, n).data

    def then_resize(dev: str) -> torch.Tensor:
        frames = gpuvio.read_video(path, pts_unit="sec", device=dev)[0]
        return tvf.resize(frames.permute(0, 3, 1, 2), list(VIDEO_SIZE), antialias=True)

    cs: list[Contender] = [Contender(
        f"{gpuvio_label('read_video', device)}, {shown}", "gpuvio", device,
        synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device, transforms=transforms)[0], device),
        is_gpuvio=True, view=nhwc, note="resized while decoding")]
    skip: list[dict[str, str]] = []
    if cuda:
        cs.append(Contender(f"gpuvio (cpu backend, cpu), {shown}", "gpuvio", "cpu",
                            lambda: gpuvio.read_video(path, pts_unit="sec", transforms=transforms)[0], view=nhwc))
    add_peer(cs, skip, GV_THEN_TV, tvf_reason, lambda: Contender(
        f"{GV_THEN_TV} (antialias=True)", "gpuvio + torchvision", device, synced(lambda: then_resize(device), device),
        view=nchw, note="read_video, then torchvision.transforms.v2.functional.resize(frames_TCHW, "
                        f"{list(VIDEO_SIZE)}, antialias=True): the reference pixels"))
    cs.append(Contender("gpuvio read_video, no resize (full-size frames, for reference)", "gpuvio", device,
                        synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device)[0], device),
                        note="decodes the same clip without the transform; its frames are not compared"))
    tc_resize: Any = None
    tc_note = ""
    if tc is not None:
        try:
            tc_resize, tc_note = _tc_resize(VIDEO_SIZE)
        except Exception as exc:  # noqa: BLE001
            tc_reason = f"no Resize transform for torchcodec: {first_line(exc)}"
    if cpu_peers:
        add_peer(cs, skip, TC_RESIZE, tc_reason, lambda: Contender(
            f"{TC_RESIZE} (get_frames_in_range)", "torchcodec", "cpu", lambda: tc_read("cpu", True), view=nhwc,
            note=f"VideoDecoder(num_ffmpeg_threads=0, {tc_note}); decoder created in each run"))
        add_peer(cs, skip, "torchcodec CPU, FFmpeg threads auto, no resize", tc_reason, lambda: Contender(
            "torchcodec CPU, FFmpeg threads auto, no resize (get_frames_in_range)", "torchcodec", "cpu",
            lambda: tc_read("cpu", False), note="full-size frames, for reference; not compared"))
    if cuda:
        add_peer(cs, skip, "torchcodec CUDA, Resize transform", tc_reason, lambda: Contender(
            "torchcodec CUDA, Resize transform (get_frames_in_range)", "torchcodec", device,
            synced(lambda: tc_read(device, True), device), view=nhwc, note=tc_note))
    targets: list[Target] = []
    if media.role == "target_video" and media.target == "1080p" and not cuda:
        targets = [
            Target(13, f"read_video with Resize({VIDEO_SIZE}) >= 1.5x read_video then torchvision's resize",
                   GV_THEN_TV, 1.5),
            Target(13, f"read_video with Resize({VIDEO_SIZE}) >= 1.0x torchcodec CPU (FFmpeg threads auto) "
                       "with its Resize transform", TC_RESIZE, 1.0),
            Target(13, "read_video with Resize: pixels within mean |diff| 0.5 of torchvision's resize",
                   GV_THEN_TV, 0.5, kind="close"),
        ]
    # named so that --only "read_video h264" (issue 12's selection) leaves it out and --only Resize picks it
    label = f"read_video -> Resize {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {codec} {size} ({n} frames)"
    return [Workload(label, media, "frames/s", n, cs, skip, targets=targets)]


def image_transform_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    """``decode_image`` of a JPEG resized to a 224 shorter side, with its peers (module docstring)."""
    import gpuvio
    from gpuvio.transforms import Resize

    if media.role != "jpeg":
        return []
    data = torch.frombuffer(bytearray(media.path.read_bytes()), dtype=torch.uint8)
    tv, tv_reason = import_peer("torchvision.io")
    tvf, tvf_reason = import_peer("torchvision.transforms.v2.functional")
    cuda = device.startswith("cuda")
    transforms = [Resize(IMAGE_SIZE)]
    shown = f"transforms=[Resize({IMAGE_SIZE})]"
    image = gpuvio.decode_image(data)
    size = f"{image.shape[2]}x{image.shape[1]}"

    def resize(t: torch.Tensor) -> torch.Tensor:
        return tvf.resize(t, [IMAGE_SIZE], antialias=True)

    def view(t: torch.Tensor) -> torch.Tensor:
        return t.cpu()

    cs: list[Contender] = [Contender(
        f"{gpuvio_label('decode_image', device)}, {shown}", "gpuvio", device,
        synced(lambda: gpuvio.decode_image(data, device=device, transforms=transforms), device),
        is_gpuvio=True, view=view)]
    skip: list[dict[str, str]] = []
    if cuda:
        cs.append(Contender(f"gpuvio (cpu backend, cpu), {shown}", "gpuvio", "cpu",
                            lambda: gpuvio.decode_image(data, transforms=transforms), view=view))
    add_peer(cs, skip, GI_THEN_TV, tvf_reason, lambda: Contender(
        f"{GI_THEN_TV} (antialias=True)", "gpuvio + torchvision", device,
        synced(lambda: resize(gpuvio.decode_image(data, device=device)), device), view=view,
        note=f"decode_image, then torchvision.transforms.v2.functional.resize(image, [{IMAGE_SIZE}], "
             "antialias=True): the reference pixels"))
    add_peer(cs, skip, TV_THEN_TV, tv_reason or tvf_reason, lambda: Contender(
        f"{TV_THEN_TV} ({'cuda' if cuda else 'cpu'})", "torchvision", device,
        synced(lambda: resize(tv.decode_jpeg(data, device=device)), device), view=view))
    targets: list[Target] = []
    if media.params.get("width") == 1920 and not cuda:
        targets = [
            Target(13, f"decode_image JPEG 1080p with Resize({IMAGE_SIZE}) >= 1.3x gpuvio decode_image then "
                       "torchvision's resize", GI_THEN_TV, 1.3),
            Target(13, f"decode_image JPEG 1080p with Resize({IMAGE_SIZE}) >= 1.3x torchvision.io.decode_jpeg "
                       "then torchvision's resize", TV_THEN_TV, 1.3),
            Target(13, "decode_image with Resize: pixels within mean |diff| 0.5 of torchvision's resize",
                   GI_THEN_TV, 0.5, kind="close"),
        ]
    return [Workload(f"decode_image -> Resize {IMAGE_SIZE}, JPEG {size}", media, "images/s", 1, cs, skip,
                     short=True, targets=targets)]
