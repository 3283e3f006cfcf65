"""gpuvio.data: clip index and clips, caching, samplers, image folders, DataLoader workers, DeviceLoader.

References are computed here: frame timestamps by decoding every frame with PyAV, clip windows
with torchvision's arithmetic written out in numpy, frames by a whole-file ``gpuvio.read_video``
(the CPU reference backend) indexed by those windows.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import gpuvio
from gpuvio.data import (
    DeviceLoader,
    EncodedBatch,
    EncodedClip,
    EncodedImage,
    ImageDataset,
    RandomClipSampler,
    UniformClipSampler,
    VideoClipDataset,
    collate,
    resolve_device,
)

# --------------------------------------------------------------------------- media and references


@pytest.fixture(scope="module")
def clips(tiny_clips: dict[str, Path]) -> dict[str, Path]:
    return tiny_clips  # conftest's, shared with the other training-data tests


def decoded_pts(path: Path) -> tuple[list[int], float]:
    """Every frame's pts by decoding the whole stream with PyAV (no packet shortcut)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(f.pts for f in container.decode(stream) if f.pts is not None)
        return pts, float(stream.average_rate)


def reference_windows(n: int, fps: float, frame_rate: float | None, clip_len: int, step: int) -> list[list[int]]:
    """torchvision VideoClips' clip windows (display indices), in numpy."""
    if frame_rate is None:
        kept = list(range(n))
    else:
        ratio = fps / frame_rate
        if float(ratio).is_integer():
            kept = list(range(0, n, int(ratio)))
        else:
            total = math.floor(n * frame_rate / fps)
            kept = np.floor(np.arange(total, dtype=np.float32) * np.float32(ratio)).astype(np.int64).tolist()
    return [kept[s:s + clip_len] for s in range(0, len(kept) - clip_len + 1, step)]


def full_decode(path: Path, fmt: str = "TCHW") -> torch.Tensor:
    video, _, _ = gpuvio.read_video(path, pts_unit="sec", output_format=fmt)
    return video


def dataset_of(clips: dict[str, Path], **kwargs) -> VideoClipDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the short clip is skipped, with a warning
        return VideoClipDataset([clips["a"], clips["b"], clips["short"]], **kwargs)


# --------------------------------------------------------------------------- clip index


@pytest.mark.parametrize("frame_rate", [None, 15, 10.0, 12.5, 40])
@pytest.mark.parametrize(("clip_len", "step"), [(4, 3), (5, 1)])
def test_clip_index_matches_reference(clips, frame_rate, clip_len, step):
    ds = dataset_of(clips, clip_len=clip_len, step=step, frame_rate=frame_rate, num_workers=2)
    total = 0
    for video_idx, name in enumerate(["a", "b", "short"]):
        pts, fps = decoded_pts(clips[name])
        assert ds.video_pts[video_idx].tolist() == pts
        assert ds.video_fps[video_idx] == pytest.approx(fps)
        windows = reference_windows(len(pts), fps, frame_rate, clip_len, step)
        assert ds.clips_per_video[video_idx] == len(windows)
        for clip_idx, window in enumerate(windows):
            assert ds.clip_location(total + clip_idx) == (video_idx, clip_idx)
            assert ds.clip_pts(total + clip_idx).tolist() == [pts[i] for i in window]
        total += len(windows)
    assert len(ds) == total


def test_short_video_is_skipped_with_a_warning(clips):
    with pytest.warns(UserWarning, match="too few frames"):
        ds = VideoClipDataset([clips["short"], clips["a"]], clip_len=8, step=4)
    assert ds.clips_per_video[0] == 0
    assert ds.clip_location(0) == (1, 0)


@pytest.mark.parametrize("fmt", ["TCHW", "THWC"])
@pytest.mark.parametrize("frame_rate", [None, 12.5])
def test_clips_equal_direct_decoding(clips, fmt, frame_rate):
    ds = dataset_of(clips, clip_len=4, step=5, frame_rate=frame_rate, output_format=fmt)
    full = [full_decode(clips[n], fmt) for n in ("a", "b")]
    for idx in range(len(ds)):
        clip, video_idx, clip_idx = ds[idx]
        expected = full[video_idx][ds.clip_positions(video_idx, clip_idx)]
        assert clip.shape == expected.shape
        assert torch.equal(clip, expected), (idx, video_idx, clip_idx)


def test_real_media_clips_equal_direct_decoding(media):
    # Kinetics H.264 + AAC, an HMDB51 DivX AVI with packed B-frames, a UCF101 XviD at 29.97 fps
    files = [media("torchvision", "videos", name) for name in
             ("SOX5yA1l24A.mp4", "RATRACE_wave_f_nm_np1_fr_goo_37.avi", "v_SoccerJuggling_g23_c01.avi")]
    ds = VideoClipDataset(files, clip_len=6, step=70, frame_rate=15)
    assert ds.clips_per_video == [len(reference_windows(len(decoded_pts(f)[0]), decoded_pts(f)[1], 15, 6, 70))
                                  for f in files]
    assert all(ds.clips_per_video)  # every file gives clips: the comparisons below are not vacuous
    for video_idx, path in enumerate(files):
        full = full_decode(path)
        first = sum(ds.clips_per_video[:video_idx])
        for clip_idx in range(ds.clips_per_video[video_idx]):
            clip, v, c = ds[first + clip_idx]
            assert (v, c) == (video_idx, clip_idx)
            assert torch.equal(clip, full[ds.clip_positions(video_idx, clip_idx)])


@pytest.mark.parametrize("name", ["test_non_zero_start.mp4", "discard_first_keyframe.mp4", "h265_video.mp4",
                                  "testsrc2_vp9.webm", "av1_video.mkv"])
def test_other_codecs_and_containers(name, media):
    # a first pts of 8.33 s, an edit list that drops the first frames, HEVC, VP9, AV1
    path = media("torchcodec", name)
    pts, fps = decoded_pts(path)
    ds = VideoClipDataset([path], clip_len=3, step=4, frame_rate=fps / 2)
    assert ds.video_pts[0].tolist() == pts
    full = full_decode(path)
    assert full.shape[0] == len(pts)
    for idx in range(min(len(ds), 6)):
        clip, _, clip_idx = ds[idx]
        assert torch.equal(clip, full[ds.clip_positions(0, clip_idx)])


def test_clip_decoding_falls_back_to_random_access(clips):
    # when the pts range yields a different frame count than the positions span (broken
    # timestamps), the clip comes from VideoReader.get_frames_at(positions)
    pts, _ = decoded_pts(clips["a"])
    full = full_decode(clips["a"])
    clip = EncodedClip(str(clips["a"]), start_pts=pts[2], end_pts=pts[3], offsets=(0, 1, 2, 3),
                       positions=(2, 3, 4, 5))
    assert torch.equal(clip.decode(), full[2:6])
    thwc = EncodedClip(str(clips["a"]), start_pts=pts[2], end_pts=pts[3], offsets=(0, 2), positions=(2, 4),
                       output_format="THWC")
    assert torch.equal(thwc.decode(), full[[2, 4]].permute(0, 2, 3, 1))


def test_encoded_clip_decodes_like_the_dataset(clips):
    decoded = dataset_of(clips, clip_len=4, step=7, frame_rate=12.5)
    encoded = dataset_of(clips, clip_len=4, step=7, frame_rate=12.5, decode=False)
    by_path = dataset_of(clips, clip_len=4, step=7, frame_rate=12.5, decode=False, encoded_as="path")
    for idx in (0, len(decoded) - 1):
        item, v, _ = encoded[idx]
        assert isinstance(item, EncodedClip) and isinstance(item.data, torch.Tensor)
        assert item.data.numel() == os.path.getsize(decoded.video_paths[v])
        path_item, _, _ = by_path[idx]
        assert path_item.data == decoded.video_paths[v]
        expected = decoded[idx][0]
        assert torch.equal(item.decode(), expected)
        assert torch.equal(path_item.decode(), expected)


def test_transform_is_applied(clips):
    ds = dataset_of(clips, clip_len=4, step=9, transform=lambda clip: clip[:, :1].float() / 255)
    clip, _, _ = ds[0]
    assert clip.dtype == torch.float32 and clip.shape == (4, 1, 64, 96)


def test_bad_arguments(clips):
    paths = [clips["a"]]
    with pytest.raises(ValueError, match="clip_len"):
        VideoClipDataset(paths, 0)
    with pytest.raises(ValueError, match="step"):
        VideoClipDataset(paths, 4, step=0)
    with pytest.raises(ValueError, match="frame_rate"):
        VideoClipDataset(paths, 4, frame_rate=-1)
    with pytest.raises(ValueError, match="output_format"):
        VideoClipDataset(paths, 4, output_format="CTHW")
    with pytest.raises(ValueError, match="DeviceLoader"):
        VideoClipDataset(paths, 4, decode=False, transform=lambda x: x)
    with pytest.raises(TypeError, match="list of video files"):
        VideoClipDataset(str(clips["a"]), 4)
    with pytest.raises(FileNotFoundError):
        VideoClipDataset([clips["a"].with_name("missing.mp4")], 4)
    ds = VideoClipDataset(paths, 4, step=4)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


# --------------------------------------------------------------------------- index cache


def test_index_cache_is_used_and_invalidated(clips, tmp_path):
    import shutil

    video = shutil.copy(clips["a"], tmp_path / "video.mp4")
    cache = tmp_path / "cache"
    first = VideoClipDataset([video], clip_len=4, cache_dir=cache)
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    entry = json.loads(entries[0].read_text())
    assert entry["pts"] == first.video_pts[0].tolist()
    assert entry["size"] == os.path.getsize(video)

    # a fresh entry is trusted: doctor it and the dataset must show the doctored pts
    entry["pts"] = entry["pts"][:10]
    entries[0].write_text(json.dumps(entry))
    cached = VideoClipDataset([video], clip_len=4, cache_dir=cache)
    assert cached.video_pts[0].tolist() == entry["pts"]

    # the file changes (new content, new size and mtime): the entry is recomputed
    from gpuvio._samples import make_sample_video

    make_sample_video(video, width=96, height=64, seconds=0.5, fps=30, audio=False, seed=3)
    changed = VideoClipDataset([video], clip_len=4, cache_dir=cache)
    assert changed.video_pts[0].tolist() == decoded_pts(video)[0]
    assert len(changed.video_pts[0]) == 15
    assert json.loads(entries[0].read_text())["pts"] == changed.video_pts[0].tolist()


def test_index_in_processes_equals_threads(clips, tmp_path):
    paths = [clips["a"], clips["b"]]
    threads = VideoClipDataset(paths, clip_len=4, num_workers=2, index_executor="thread")
    processes = VideoClipDataset(paths, clip_len=4, num_workers=2, index_executor="process")
    assert [p.tolist() for p in processes.video_pts] == [p.tolist() for p in threads.video_pts]
    assert processes.video_fps == threads.video_fps


# --------------------------------------------------------------------------- samplers


def test_uniform_clip_sampler(clips):
    ds = dataset_of(clips, clip_len=4, step=2)
    counts = ds.clips_per_video
    assert counts[2] == 0 and counts[0] > 3
    sampler = UniformClipSampler(ds, 3)
    picks = list(sampler)
    assert len(picks) == len(sampler) == 6  # the clip-less video is skipped
    starts = [0, counts[0]]
    for video, start in enumerate(starts):
        mine = picks[3 * video: 3 * video + 3]
        assert mine[0] == start and mine[-1] == start + counts[video] - 1  # first and last clip
        assert mine == sorted(mine)
    # more picks than clips: some repeat, all stay inside the video
    many = list(UniformClipSampler(ds, counts[1] + 4))
    second = many[len(many) // 2:]
    assert set(second) == set(range(counts[0], counts[0] + counts[1]))


def test_random_clip_sampler(clips):
    ds = dataset_of(clips, clip_len=4, step=2)
    counts = ds.clips_per_video
    sampler = RandomClipSampler(ds, 3, seed=7)
    picks = list(sampler)
    assert len(picks) == len(sampler) == 3 + min(counts[1], 3)
    assert len(set(picks)) == len(picks)
    per_video = [ds.clip_location(i)[0] for i in picks]
    assert per_video.count(0) == 3 and per_video.count(1) == min(counts[1], 3)
    assert list(sampler) == picks  # same seed and epoch: same draw
    draws = set()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        draws.add(tuple(sampler))
    assert len(draws) > 1
    with pytest.raises(ValueError, match="max_clips_per_video"):
        RandomClipSampler(ds, 0)
    with pytest.raises(TypeError, match="clips_per_video"):
        RandomClipSampler([1, 2, 3], 2)


def test_distributed_sampler_works_unchanged(clips):
    ds = dataset_of(clips, clip_len=4, step=3)
    ranks = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=1)) for r in range(2)]
    assert set(ranks[0]) | set(ranks[1]) == set(range(len(ds)))
    loader = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, num_replicas=2, rank=1), collate_fn=collate)
    seen = [int(i) for _, v, c in loader for i in c]
    assert len(seen) == len(ranks[1])


# --------------------------------------------------------------------------- DataLoader workers


class CudaProbe(Dataset):
    """Wraps a dataset; each item also says whether CUDA was touched in the process that made it."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, idx: int):
        item = self.inner[idx]
        return (*item, cuda_touched())


_CUDA_LIBRARIES = ("libcuda.so", "libnvcuvid", "libnvjpeg", "libnvimgcodec", "libnvidia-encode")


def _mapped_cuda_libraries() -> set[str]:
    with open("/proc/self/maps") as f:
        maps = f.read()
    return {lib for lib in _CUDA_LIBRARIES if lib in maps}


# Libraries the test process itself had mapped when it forked the workers (another test may have
# imported DALI or nvImageCodec in this process); a forked worker inherits those mappings.
_INHERITED: set[str] = set()


def cuda_touched() -> bool:
    """torch created a CUDA context, or a CUDA/NVIDIA codec library was mapped by this process."""
    return torch.cuda.is_initialized() or bool(_mapped_cuda_libraries() - _INHERITED)


def expected_batches(ds: VideoClipDataset, batch_size: int) -> list[torch.Tensor]:
    items = [ds[i][0] for i in range(len(ds))]
    return [torch.stack(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def test_fork_workers_decode_like_direct_decoding(clips):
    ds = dataset_of(clips, clip_len=4, step=4, frame_rate=12.5)
    expected = expected_batches(ds, 3)
    _INHERITED.clear()
    _INHERITED.update(_mapped_cuda_libraries())
    loader = DataLoader(CudaProbe(ds), batch_size=3, num_workers=2, multiprocessing_context="fork",
                        collate_fn=collate)
    got = list(loader)
    assert len(got) == len(expected)
    for (batch, video_idx, clip_idx, touched), want in zip(got, expected):
        assert torch.equal(batch, want)
        assert not touched.any(), "a DataLoader worker touched CUDA while decoding on the CPU"
    assert [int(i) for b in got for i in b[1]] == [ds.clip_location(i)[0] for i in range(len(ds))]
    assert not torch.cuda.is_initialized()


def test_device_loader_cpu_matches_worker_decoding_fork(clips):
    decoded = dataset_of(clips, clip_len=4, step=4, frame_rate=12.5)
    encoded = dataset_of(clips, clip_len=4, step=4, frame_rate=12.5, decode=False)
    expected = expected_batches(decoded, 3)
    _INHERITED.clear()
    _INHERITED.update(_mapped_cuda_libraries())
    raw = DataLoader(CudaProbe(encoded), batch_size=3, num_workers=2, multiprocessing_context="fork",
                     collate_fn=collate)
    batches = list(DeviceLoader(raw, device="cpu"))
    assert len(batches) == len(expected)
    for (clips_, video_idx, clip_idx, touched), want in zip(batches, expected):
        assert isinstance(clips_, torch.Tensor)
        assert torch.equal(clips_, want)
        assert not touched.any()


def test_device_loader_spawn_workers(clips):
    # the one spawn test (slow: each worker imports torch); workers read bytes, main decodes
    decoded = dataset_of(clips, clip_len=4, step=6)
    encoded = dataset_of(clips, clip_len=4, step=6, decode=False)
    raw = DataLoader(encoded, batch_size=4, num_workers=2, multiprocessing_context="spawn", collate_fn=collate,
                     pin_memory=False)
    got = list(DeviceLoader(raw, device="cpu"))
    want = expected_batches(decoded, 4)
    assert len(got) == len(want)
    for (batch, _, _), expected in zip(got, want):
        assert torch.equal(batch, expected)


def test_device_loader_without_workers_and_single_items(clips):
    encoded = dataset_of(clips, clip_len=4, step=8, decode=False)
    decoded = dataset_of(clips, clip_len=4, step=8)
    single = DeviceLoader(DataLoader(encoded, batch_size=None, num_workers=0), device="cpu")
    for idx, (clip, video_idx, clip_idx) in enumerate(single):
        assert torch.equal(clip, decoded[idx][0])
        assert (int(video_idx), int(clip_idx)) == decoded.clip_location(idx)
    assert idx == len(decoded) - 1
    # a transform given to the DeviceLoader runs on each decoded item, before stacking
    loader = DeviceLoader(DataLoader(encoded, batch_size=2, collate_fn=collate), device="cpu",
                          transform=lambda c: c[::2].float())
    first, _, _ = next(iter(loader))
    assert first.dtype == torch.float32 and first.shape == (2, 2, 3, 64, 96)
    assert torch.equal(first[0], decoded[0][0][::2].float())


@pytest.mark.filterwarnings("ignore:Failed to open container")
def test_device_loader_raises_decode_errors_and_stops_early(clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    data = clips["a"].read_bytes()
    broken.write_bytes(data)
    ds = VideoClipDataset([broken], clip_len=4, step=4, decode=False, encoded_as="path")
    broken.write_bytes(b"\x00" * 64)  # the file rots after indexing
    with pytest.raises((RuntimeError, ValueError)):
        list(DeviceLoader(DataLoader(ds, batch_size=2, collate_fn=collate), device="cpu"))
    # leaving a loop early stops the producer thread
    ok = dataset_of(clips, clip_len=4, step=2, decode=False)
    iterator = iter(DeviceLoader(DataLoader(ok, batch_size=2, collate_fn=collate), device="cpu"))
    next(iterator)
    iterator.close()
    iterator._thread.join(timeout=10)
    assert not iterator._thread.is_alive()
    with pytest.raises(StopIteration):
        next(iterator)


def test_a_loop_left_with_break_stops_the_producer(clips):
    # the common "for step, batch in enumerate(loader): if step == n: break" never calls close();
    # dropping the iterator must stop its thread (which holds the DataLoader and decoded batches)
    import gc
    import threading

    ok = dataset_of(clips, clip_len=4, step=2, decode=False)
    loader = DeviceLoader(DataLoader(ok, batch_size=1, collate_fn=collate), device="cpu", prefetch=1)
    for _ in range(3):
        for step, _batch in enumerate(loader):
            if step == 1:
                break
    gc.collect()
    deadline = time.monotonic() + 5
    while any(t.name == "gpuvio-device-loader" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "gpuvio-device-loader"]


def test_worker_refuses_cuda_decoding(clips):
    ds = VideoClipDataset([clips["a"]], clip_len=4, step=8, device="cuda")
    loader = DataLoader(ds, batch_size=1, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(ValueError, match="DeviceLoader"):
        next(iter(loader))


def test_resolve_device(monkeypatch):
    import gpuvio.data._device_loader as device_loader

    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        monkeypatch.setenv("LOCAL_RANK", "0")
        assert resolve_device("auto") == torch.device("cuda", 0)
        return
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ImportError, match="needs CUDA"):
        resolve_device("cuda")
    # where CUDA is usable, "auto" and bare "cuda" are this torchrun process's GPU
    monkeypatch.setattr(device_loader, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == torch.device("cuda", 3)
    assert resolve_device("cuda") == torch.device("cuda", 3)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


def test_importing_and_cpu_decoding_never_touch_cuda(clips, tmp_path):
    # a fresh interpreter: other tests in this session may use CUDA legitimately
    script = textwrap.dedent(f"""
        import torch, gpuvio, gpuvio.data
        from torch.utils.data import DataLoader
        ds = gpuvio.data.VideoClipDataset([{str(clips['a'])!r}], clip_len=4, step=8, device="auto")
        loader = gpuvio.data.DeviceLoader(DataLoader(ds, batch_size=2, collate_fn=gpuvio.data.collate), device="cpu")
        batches = list(loader)
        maps = open("/proc/self/maps").read()
        print(len(batches), torch.cuda.is_initialized(), any(l in maps for l in ("libcuda.so", "libnvcuvid", "libnvjpeg")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "False", "False"]


# --------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpuvio._samples import make_sample_image

    root = tmp_path_factory.mktemp("images")
    (root / "dog" / "more").mkdir(parents=True)
    (root / "cat").mkdir()
    make_sample_image(root / "dog" / "b.png", width=40, height=30, seed=1)
    make_sample_image(root / "dog" / "more" / "c.JPG", width=40, height=30, seed=2)
    make_sample_image(root / "cat" / "a.jpg", width=50, height=20, seed=3)
    make_sample_image(root / "cat" / "z.webp", width=40, height=30, seed=4)
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_labels_and_pixels(image_tree):
    ds = ImageDataset(image_tree)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    names = [os.path.relpath(f, image_tree) for f in ds.files]
    assert names == ["cat/a.jpg", "cat/z.webp", "dog/b.png", "dog/more/c.JPG"]
    assert ds.labels == [0, 0, 1, 1]
    for idx, path in enumerate(ds.files):
        image, label = ds[idx]
        assert label == ds.labels[idx]
        assert torch.equal(image, gpuvio.read_image(path, gpuvio.ImageReadMode.RGB))
    # Pillow is the reference for the PNG
    from PIL import Image

    png, _ = ds[2]
    assert torch.equal(png, torch.from_numpy(np.array(Image.open(ds.files[2]).convert("RGB"))).permute(2, 0, 1))


def test_image_file_list_modes_and_collate(image_tree):
    files = sorted(str(p) for p in image_tree.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    ds = ImageDataset(files, mode="GRAY", labels=[5, 6, 7])
    image, label = ds[0]
    assert image.shape[0] == 1 and label == 5
    assert ImageDataset(files)[1][1] == -1
    batch, labels = next(iter(DataLoader(ImageDataset(files), batch_size=3, collate_fn=collate)))
    assert isinstance(batch, list) and [tuple(b.shape[1:]) for b in batch] == [(20, 50), (30, 40), (30, 40)]
    assert labels.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(files, labels=[1])
    with pytest.raises(ValueError, match="mode"):
        ImageDataset(files, mode="CMYK")
    with pytest.raises(FileNotFoundError):
        ImageDataset(image_tree / "cat" / "notes.txt")


def test_image_device_loader_matches_worker_decoding(image_tree):
    resize = lambda im: torch.nn.functional.interpolate(im[None].float(), size=(16, 16), mode="nearest")[0]
    decoded = ImageDataset(image_tree, transform=resize)
    encoded = ImageDataset(image_tree, decode=False)
    item, label = encoded[0]
    assert isinstance(item, EncodedImage) and label == 0
    raw = DataLoader(encoded, batch_size=3, num_workers=2, multiprocessing_context="fork", collate_fn=collate)
    first = next(iter(raw))
    assert isinstance(first[0], EncodedBatch) and len(first[0]) == 3
    got = list(DeviceLoader(raw, device="cpu", transform=resize))
    want = list(DataLoader(decoded, batch_size=3, num_workers=2, multiprocessing_context="fork", collate_fn=collate))
    assert len(got) == len(want) == 2
    for (images, labels), (want_images, want_labels) in zip(got, want):
        assert images.shape == want_images.shape and torch.equal(images, want_images)
        assert torch.equal(labels, want_labels)


# --------------------------------------------------------------------------- GPU (skipped without one)


@pytest.mark.cuda("nvdec")
def test_device_loader_cuda_clips_match_cpu(clips):
    encoded = dataset_of(clips, clip_len=4, step=4, frame_rate=12.5, decode=False)
    decoded = dataset_of(clips, clip_len=4, step=4, frame_rate=12.5)
    raw = DataLoader(encoded, batch_size=3, num_workers=2, multiprocessing_context="fork", collate_fn=collate)
    loader = DeviceLoader(raw, device="cuda")
    for batch, want in zip(loader, expected_batches(decoded, 3)):
        clips_ = batch[0]
        assert clips_.device.type == "cuda" and batch[1].device.type == "cuda"
        diff = (clips_.cpu().int() - want.int()).abs()
        assert diff.max() <= 3 and diff.float().mean() < 0.5  # GPU colour conversion parity


@pytest.mark.cuda("nvimgcodec")
def test_device_loader_cuda_images_match_cpu(image_tree):
    images = ImageDataset(image_tree, decode=False)
    cpu = ImageDataset(image_tree)
    for (image, label), idx in zip(DeviceLoader(DataLoader(images, batch_size=None), device="cuda"), range(4)):
        assert image.device.type == "cuda"
        diff = (image.cpu().int() - cpu[idx][0].int()).abs()
        assert diff.float().mean() < 1.0  # nvJPEG's IDCT may differ from libjpeg-turbo's by a little
