"""Default pixels are torchvision 0.8's on every video entry point: ``frame.to_rgb().to_ndarray()``.

torchvision 0.8 decoded with PyAV and converted each frame with ``to_rgb()`` (swscale's default
conversion), which is also what plain PyAV and torchcodec's CPU decoder give. Each entry point's
frames are compared with that conversion of PyAV's own full decode, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import VIDEO_DEVICES, assert_pixels

av = pytest.importorskip("av")

import gpuvio
from gpuvio.data import VideoClipDataset


def _to_rgb_frames(path: Path, *, by_pts: bool = True) -> tuple[list[float], torch.Tensor]:
    """Sorted seconds and ``Tensor[T, H, W, 3]`` of PyAV's full decode, converted by ``to_rgb()``.

    ``by_pts``: frames sorted by their timestamps, as torchvision 0.8's read_video sorted them;
    else in the decoder's order, as its VideoReader gave them. (They differ only for packed DivX
    B-frames, whose AVI timestamps come out of order while the frames do not.)
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream) if f.pts is not None]
        seconds = sorted(float(f.pts * stream.time_base) for f in frames)
    if by_pts:
        frames.sort(key=lambda f: f.pts)
    return seconds, torch.stack([torch.from_numpy(f.to_rgb().to_ndarray()) for f in frames])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Textured pans with sharp shapes, where the two colour policies differ most."""
    from gpuvio._samples import make_sample_video

    root = tmp_path_factory.mktemp("default_pixels")
    return {
        "h264_720p": make_sample_video(root / "pan.mp4", width=1280, height=720, seconds=0.5, gop=6, audio=False),
        "hevc": make_sample_video(root / "hevc.mp4", width=320, height=176, seconds=0.6, codec="libx265",
                                  audio=False),
        "mpeg4": make_sample_video(root / "mpeg4.avi", width=320, height=240, seconds=0.6, codec="mpeg4",
                                   audio=False),
        "odd": make_sample_video(root / "odd.mkv", width=175, height=99, seconds=0.4, codec="libvpx-vp9",
                                 audio=False),
    }


DIVX = ["RATRACE_wave_f_nm_np1_fr_goo_37.avi", "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi",
        "TrumanShow_wave_f_nm_np1_fr_med_26.avi"]


def _paths(clips: dict[str, Path], key: str, media) -> Path:
    return clips[key] if key in clips else media("torchvision", "videos", key)


@pytest.mark.parametrize("device", VIDEO_DEVICES)
@pytest.mark.parametrize("key", ["h264_720p", "hevc", "mpeg4", "odd", *DIVX])
def test_every_entry_point_gives_to_rgb_pixels(clips, key, device, media):
    # (on a GPU within the GPU tolerance of those pixels, see conftest.assert_pixels)
    path = _paths(clips, key, media)
    seconds, expected = _to_rgb_frames(path)
    video, _, _ = gpuvio.read_video(str(path), pts_unit="sec", device=device)
    assert_pixels(video, expected, device, msg="read_video")
    tchw, _, _ = gpuvio.read_video(str(path), pts_unit="sec", output_format="TCHW", device=device)
    assert_pixels(tchw, expected.permute(0, 3, 1, 2), device, msg="read_video TCHW")
    assert_pixels(gpuvio.decode_videos([str(path)], device=device)[0], expected, device, msg="decode_videos")

    seconds, expected = _to_rgb_frames(path, by_pts=False)
    reader = gpuvio.VideoReader(str(path), device=device)
    decoded = list(reader)
    frames = [f["data"] for f in decoded]
    assert [f["pts"] for f in decoded] == seconds  # in order, whatever the container's labels
    assert_pixels(torch.stack(frames), expected.permute(0, 3, 1, 2), device, msg="VideoReader")
    picks = [len(expected) - 1, 0, len(expected) // 2, 0]
    assert_pixels(reader.get_frames_at(picks), expected[picks].permute(0, 3, 1, 2), device, msg="get_frames_at")
    assert_pixels(reader.get_frames_played_at([seconds[p] for p in picks]), expected[picks].permute(0, 3, 1, 2),
                  device, msg="get_frames_played_at")


def test_clip_dataset_gives_to_rgb_pixels(clips):
    path = clips["h264_720p"]
    _, expected = _to_rgb_frames(path)
    dataset = VideoClipDataset([str(path)], clip_len=4, step=3, output_format="THWC")
    for i in range(len(dataset)):
        clip, _, _ = dataset[i]
        positions = dataset.clip_positions(0, i)
        assert torch.equal(clip, expected[positions])


def test_accurate_is_the_other_policy(clips):
    path = clips["h264_720p"]
    _, expected = _to_rgb_frames(path)
    accurate, _, _ = gpuvio.read_video(str(path), color="accurate")
    diff = (accurate.int() - expected.int()).abs()
    assert accurate.shape == expected.shape and 0 < float(diff.float().mean()) < 5
    with pytest.raises(ValueError, match="color must be one of 'torchvision', 'accurate'; got 'fast'"):
        gpuvio.read_video(str(path), color="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="color must be one of"):
        gpuvio.VideoReader(str(path), color="exact")  # type: ignore[arg-type]
    assert np.array_equal(gpuvio.VideoReader(str(path), color="accurate").get_frames_at([2])[0].numpy(),
                          accurate[2].permute(2, 0, 1).numpy())
