"""Decode-time transforms in the training-data layer: VideoClipDataset, ImageDataset, the encoded
items and their decoding, DeviceLoader, and gpuvio.ray's decoders.

The reference is ``gpuvio.transforms.apply`` on the untransformed result; on the CPU the
transformed result must equal it bit for bit. Random crops are checked by their shape, by a
search for the one window that all frames of a clip share, and by reproducibility.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGE_DEVICES, VIDEO_DEVICES
from torch.utils.data import DataLoader

import gpuvio
from gpuvio.data import (
    DeviceLoader,
    EncodedClip,
    EncodedImage,
    ImageDataset,
    VideoClipDataset,
    collate,
    decode_items,
)
from gpuvio.transforms import CenterCrop, RandomCrop, Resize, apply

FIXED = [Resize(40), CenterCrop((32, 48))]  # deterministic: results compared for equality
RANDOM = [Resize(40), RandomCrop((24, 40))]  # 64x96 -> 40x60 -> a 24x40 window
LOADER_TIMEOUT = 120  # seconds a DataLoader waits for a worker's batch before failing


# --------------------------------------------------------------------------- media and helpers


@pytest.fixture(scope="module")
def clips(tiny_clips: dict[str, Path]) -> dict[str, Path]:
    return tiny_clips  # conftest's, shared with the other training-data tests


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpuvio._samples import make_sample_image

    root = tmp_path_factory.mktemp("transform_images")
    (root / "dog").mkdir()
    (root / "cat").mkdir()
    make_sample_image(root / "dog" / "b.png", width=40, height=30, seed=1)
    make_sample_image(root / "dog" / "c.jpg", width=40, height=30, seed=2)
    make_sample_image(root / "cat" / "a.jpg", width=50, height=20, seed=3)
    make_sample_image(root / "cat" / "z.webp", width=40, height=30, seed=4)
    return root


def dataset_of(clips: dict[str, Path], **kwargs) -> VideoClipDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the short clip is skipped, with a warning
        return VideoClipDataset([clips["a"], clips["b"], clips["short"]], **kwargs)


def windows(full: torch.Tensor, crop: torch.Tensor) -> list[tuple[int, int]]:
    """Every ``(top, left)`` at which ``crop`` (``[..., C, h, w]``) is a window of ``full``
    (``[..., C, H, W]``): for a clip, one window for all of its frames at once."""
    h, w = crop.shape[-2:]
    height, width = full.shape[-2:]
    return [(top, left) for top in range(height - h + 1) for left in range(width - w + 1)
            if torch.equal(full[..., top:top + h, left:left + w], crop)]


def assert_matches(got: torch.Tensor, want: torch.Tensor, device: str, *, fused: bool) -> None:
    """``got`` (on ``device``) against the reference ``want`` computed on the same device: equal
    on the CPU; on a GPU equal where the transforms ran as torch's ops after decoding, else
    (``fused``: NVDEC's kernel) within the documented mean absolute difference of 0.5."""
    assert got.device.type == torch.device(device).type
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape)
    if device == "cpu" or not fused:
        assert torch.equal(got.cpu(), want.cpu())
        return
    mean = float((got.cpu().int() - want.cpu().int()).abs().float().mean())
    assert mean <= 0.5, f"mean absolute difference {mean:.3f} from the reference on {device}"


# --------------------------------------------------------------------------- VideoClipDataset


@pytest.mark.parametrize("fmt", ["TCHW", "THWC"])
@pytest.mark.parametrize("frame_rate", [None, 12.5])
def test_clips_equal_the_reference(clips, fmt, frame_rate):
    plain = dataset_of(clips, clip_len=4, step=5, frame_rate=frame_rate, output_format=fmt)
    ds = dataset_of(clips, clip_len=4, step=5, frame_rate=frame_rate, output_format=fmt, transforms=FIXED)
    layout = "CHW" if fmt == "TCHW" else "HWC"
    assert len(ds) == len(plain) > 2
    for idx in (0, 1, len(ds) - 1):
        clip, video_idx, clip_idx = ds[idx]
        assert (video_idx, clip_idx) == ds.clip_location(idx)
        assert clip.shape == ((4, 3, 32, 48) if fmt == "TCHW" else (4, 32, 48, 3))
        assert torch.equal(clip, apply(plain[idx][0], FIXED, layout=layout))


@pytest.mark.parametrize("device", VIDEO_DEVICES)
def test_clips_on_each_device(clips, device):
    plain = dataset_of(clips, clip_len=4, step=9, device=device)
    ds = dataset_of(clips, clip_len=4, step=9, device=device, transforms=FIXED)
    for idx in (0, len(ds) - 1):
        assert_matches(ds[idx][0], apply(plain[idx][0], FIXED), device, fused=True)


def test_random_crop_one_window_per_clip(clips):
    plain = dataset_of(clips, clip_len=4, step=3)
    ds = dataset_of(clips, clip_len=4, step=3, transforms=RANDOM)
    torch.manual_seed(0)
    found = set()
    for idx in range(0, len(ds), 2):
        clip = ds[idx][0]
        assert clip.shape == (4, 3, 24, 40)
        resized = apply(plain[idx][0], RANDOM[:1])
        hits = windows(resized, clip)  # one window for all four frames at once
        assert hits, f"clip {idx} is no single window of its resized frames"
        found.update(hits)
    assert len(found) > 1, "every clip got the same window"


def test_random_crop_is_reproducible_and_the_same_decoded_or_encoded(clips):
    decoded = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM)
    encoded = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM, decode=False)
    by_path = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM, decode=False, encoded_as="path")
    picks = [0, 3, len(decoded) - 1, 3]
    results = []
    for ds, decode in ((decoded, False), (decoded, False), (encoded, True), (by_path, True)):
        torch.manual_seed(1234)
        items = [ds[i][0] for i in picks]
        results.append([item.decode() if decode else item for item in items])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    # the same item read twice gets two draws
    assert not torch.equal(results[0][1], results[0][3])


def test_an_encoded_clip_keeps_its_window(clips):
    encoded = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM, decode=False)
    item, _, _ = encoded[2]
    seeded = item.transforms[1]
    assert isinstance(seeded, RandomCrop) and seeded.seed is not None and seeded.size == (24, 40)
    first = item.decode()
    assert torch.equal(item.decode(), first)  # decoded again: the same window
    copy = pickle.loads(pickle.dumps(item))
    assert copy.transforms[1].seed == seeded.seed and torch.equal(copy.decode(), first)
    assert torch.equal(decode_items([item, copy])[1], first)
    # that window is the seeded crop's first draw: apply() with the same recipe gives it
    plain = EncodedClip(item.data, item.start_pts, item.end_pts, item.offsets, item.positions)
    assert torch.equal(first, apply(plain.decode(), [Resize(40), RandomCrop((24, 40), seed=seeded.seed)]))
    assert "transforms=[Resize(size=40), RandomCrop(size=(24, 40), seed=" in repr(item)


def test_encoded_clip_random_access_fallback_is_transformed(clips):
    # a pts range that yields fewer frames than the positions span: decoded with get_frames_at
    full = gpuvio.read_video(clips["a"], pts_unit="sec", output_format="TCHW")[0]
    pts = gpuvio.read_video_timestamps(str(clips["a"]))[0]
    for transforms in (FIXED, [Resize(40), RandomCrop((24, 40), seed=5)]):
        clip = EncodedClip(str(clips["a"]), start_pts=pts[2], end_pts=pts[3], offsets=(0, 2), positions=(2, 4),
                           output_format="THWC", transforms=transforms)
        want = apply(full[[2, 4]], transforms).permute(0, 2, 3, 1)
        assert torch.equal(clip.decode(), want)
        assert torch.equal(clip.decode(), want)


def test_a_seeded_crop_of_the_dataset_is_its_own_stream(clips):
    make = lambda: dataset_of(clips, clip_len=4, step=6, transforms=[Resize(40), RandomCrop((24, 40), seed=9)])
    one, two = make(), make()
    torch.manual_seed(0)
    a = [one[i][0] for i in range(3)]
    torch.manual_seed(1)  # the global RNG plays no part
    b = [two[i][0] for i in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a pickled dataset (a spawn worker's copy) continues from the crop's generator state
    copy = pickle.loads(pickle.dumps(one))
    assert torch.equal(copy[0][0], one[0][0])


def test_transforms_with_transform_and_pickling(clips):
    ds = dataset_of(clips, clip_len=4, step=9, transforms=FIXED, transform=lambda c: c.float() / 255)
    clip = ds[0][0]
    assert clip.dtype == torch.float32 and clip.shape == (4, 3, 32, 48)
    plain = dataset_of(clips, clip_len=4, step=9, transforms=RANDOM)
    copy = pickle.loads(pickle.dumps(plain))
    assert copy.transforms[0] == Resize(40) and copy.transforms[1].size == (24, 40) and len(copy.transforms) == 2
    assert "transforms=[Resize(size=40), RandomCrop(size=(24, 40))]" in repr(copy)


def test_bad_transforms_are_named(clips):
    paths = [clips["a"]]
    with pytest.raises(TypeError, match="not a supported transform"):
        VideoClipDataset(paths, 4, transforms=[lambda c: c])
    with pytest.raises(TypeError, match="transforms must be a sequence"):
        VideoClipDataset(paths, 4, transforms="resize")
    with pytest.raises(ValueError, match="Resize size must be positive"):
        VideoClipDataset(paths, 4, transforms=[Resize(0)])
    with pytest.raises(TypeError, match="not a supported transform"):
        EncodedClip(str(clips["a"]), 0, 1, (0,), (0,), transforms=[object()])
    with pytest.raises(ValueError, match="transforms="):  # the error for transform= points at transforms=
        VideoClipDataset(paths, 4, decode=False, transform=lambda c: c)
    too_big = VideoClipDataset(paths, 4, transforms=[CenterCrop(80)])
    with pytest.raises(ValueError, match="CenterCrop size 80x80"):
        too_big[0]


# --------------------------------------------------------------------------- DataLoader and DeviceLoader


def test_spawn_workers_decode_with_transforms(clips):
    # spawn workers get pickled datasets; each seeds its RNG from the DataLoader's base seed, so
    # the decoding workers and the byte-reading ones (DeviceLoader decoding) draw the same windows
    decoded = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM)
    encoded = dataset_of(clips, clip_len=4, step=6, transforms=RANDOM, decode=False)
    plain = dataset_of(clips, clip_len=4, step=6)

    def loader(ds: VideoClipDataset) -> DataLoader:
        return DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context="spawn", collate_fn=collate,
                          timeout=LOADER_TIMEOUT)

    torch.manual_seed(2024)
    got = list(loader(decoded))
    torch.manual_seed(2024)
    via_device = list(DeviceLoader(loader(encoded), device="cpu"))
    assert len(got) == len(via_device) == -(-len(decoded) // 3)
    found = set()
    for (batch, video_idx, clip_idx), (other, _, _) in zip(got, via_device):
        assert batch.shape == (len(video_idx), 4, 3, 24, 40) and torch.equal(batch, other)
        for clip, v, c in zip(batch, video_idx.tolist(), clip_idx.tolist()):
            idx = (plain._cumulative[v - 1] if v else 0) + c
            hits = windows(apply(plain[idx][0], RANDOM[:1]), clip)
            assert hits
            found.update(hits)
    assert len(found) > 1


def _loaded_both_ways(clips, device, seed):
    """The batches of DeviceLoader over encoded clips on ``device``, and of a plain DataLoader over
    the decoding dataset, each from the same RNG state."""
    encoded = dataset_of(clips, clip_len=4, step=5, transforms=RANDOM, decode=False)
    decoded = dataset_of(clips, clip_len=4, step=5, transforms=RANDOM)
    torch.manual_seed(seed)
    got = list(DeviceLoader(DataLoader(encoded, batch_size=4, collate_fn=collate), device=device))
    torch.manual_seed(seed)
    return got, list(DataLoader(decoded, batch_size=4, collate_fn=collate))


def test_device_loader_decodes_the_items_transforms(clips, image_tree):
    got, want = _loaded_both_ways(clips, "cpu", 3)
    assert len(got) == len(want)
    for (batch, _, _), (expected, _, _) in zip(got, want):
        assert batch.shape[1:] == (4, 3, 24, 40) and torch.equal(batch, expected)
    # images of several sizes stack once cropped; a transform= callable runs after transforms=
    images = ImageDataset(image_tree, decode=False, transforms=[Resize(20), CenterCrop(16)])
    loader = DeviceLoader(DataLoader(images, batch_size=4, collate_fn=collate), device="cpu",
                          transform=lambda im: im.float())
    (batch, labels), = list(loader)
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    plain = ImageDataset(image_tree)
    for i in range(4):
        assert torch.equal(batch[i], apply(plain[i][0], [Resize(20), CenterCrop(16)]).float())


@pytest.mark.cuda("nvdec")
def test_device_loader_cuda_clips_with_transforms_match_cpu(clips):
    got, want = _loaded_both_ways(clips, "cuda", 8)
    for (batch, _, _), (expected, _, _) in zip(got, want):
        assert batch.device.type == "cuda" and batch.shape == expected.shape
        mean = float((batch.cpu().int() - expected.int()).abs().float().mean())
        assert mean <= 0.5, mean  # the same windows; CPU and GPU within 0.5 of each other


# --------------------------------------------------------------------------- ImageDataset


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_images_equal_the_reference(image_tree, device):
    plain = ImageDataset(image_tree, device=device)
    ds = ImageDataset(image_tree, device=device, transforms=[Resize(24), CenterCrop((16, 20))])
    for idx in range(len(ds)):
        image, label = ds[idx]
        assert label == plain.labels[idx] and image.shape == (3, 16, 20)
        assert_matches(image, apply(plain[idx][0], [Resize(24), CenterCrop((16, 20))]), device, fused=False)
    gray = ImageDataset(image_tree, mode="GRAY", transforms=[Resize((10, 12))])
    assert gray[1][0].shape == (1, 10, 12)


def test_image_random_crop_one_window_per_image(image_tree):
    plain = ImageDataset(image_tree)
    ds = ImageDataset(image_tree, transforms=[RandomCrop((12, 18))])
    encoded = ImageDataset(image_tree, transforms=[RandomCrop((12, 18))], decode=False)
    torch.manual_seed(0)
    found = set()
    for _ in range(3):
        for idx in range(len(ds)):
            image = ds[idx][0]
            assert image.shape == (3, 12, 18)
            hits = windows(plain[idx][0], image)
            assert hits
            found.update(hits)
    assert len(found) > 1
    torch.manual_seed(77)
    first = [ds[i][0] for i in range(len(ds))]
    torch.manual_seed(77)
    items = [encoded[i][0] for i in range(len(ds))]
    again = decode_items(items)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.equal(item.decode(), a) for item, a in zip(items, first))  # the same window again
    copies = pickle.loads(pickle.dumps(items))
    assert all(torch.equal(a, b) for a, b in zip(decode_items(copies), first))


def test_decode_items_mixes_transforms_modes_and_clips(image_tree, clips):
    files = ImageDataset(image_tree).files
    data = [gpuvio.read_file(f) for f in files]
    seeded = [Resize(20), RandomCrop(14, seed=4)]
    items = [EncodedImage(data[0], transforms=[Resize(20), CenterCrop(16)]),
             EncodedImage(data[1], mode=gpuvio.ImageReadMode.GRAY, transforms=seeded),
             EncodedImage(data[2]),
             EncodedImage(data[3], transforms=[Resize(20), CenterCrop(16)]),
             dataset_of(clips, clip_len=4, step=6, transforms=FIXED, decode=False)[1][0]]
    out = decode_items(items)
    assert torch.equal(out[0], apply(gpuvio.read_image(files[0], "RGB"), [Resize(20), CenterCrop(16)]))
    assert torch.equal(out[1], apply(gpuvio.read_image(files[1], "GRAY"), [Resize(20), RandomCrop(14, seed=4)]))
    assert torch.equal(out[2], gpuvio.read_image(files[2], "RGB"))
    assert torch.equal(out[3], apply(gpuvio.read_image(files[3], "RGB"), [Resize(20), CenterCrop(16)]))
    assert out[4].shape == (4, 3, 32, 48)
    # a seeded crop pickles as its seed, not as its generator's state
    small = EncodedImage(data[0][:16].clone(), transforms=seeded)
    assert len(pickle.dumps(small)) < 1500
    with pytest.raises(ValueError, match="item 1 of 2: RandomCrop size 60x60"):
        decode_items([items[2], EncodedImage(data[0], transforms=[RandomCrop(60)])])


def test_image_dataset_checks_and_pickles_transforms(image_tree):
    with pytest.raises(TypeError, match="not a supported transform"):
        ImageDataset(image_tree, transforms=[str.upper])
    with pytest.raises(ValueError, match="transforms="):
        ImageDataset(image_tree, decode=False, transform=lambda im: im)
    ds = ImageDataset(image_tree, transforms=[RandomCrop(8, seed=1)])
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[2][0], ds[2][0])
    assert "transforms=[RandomCrop(size=(8, 8), seed=1)]" in repr(ds)
    with pytest.raises(ValueError, match="CenterCrop size 25x25"):
        ImageDataset(image_tree, transforms=[CenterCrop(25)])[0]  # a.jpg is 50x20


# --------------------------------------------------------------------------- gpuvio.ray


def test_ray_decoders_in_process(image_tree, clips):
    from gpuvio.ray import DecodeImages, DecodeVideoClips

    files = ImageDataset(image_tree).files
    batch = {"bytes": np.array([Path(f).read_bytes() for f in files], dtype=object), "path": np.array(files)}
    fixed = [Resize(24), CenterCrop((16, 20))]
    out = DecodeImages(device="cpu", transforms=fixed, layout="HWC")(batch)
    assert out["image"].shape == (4, 16, 20, 3)  # every size stacks once cropped
    for path, image in zip(files, out["image"]):
        np.testing.assert_array_equal(image, apply(gpuvio.read_image(path, "RGB"), fixed).permute(1, 2, 0).numpy())
    # random windows: one per image, reproducible from the actor's RNG
    decoder = DecodeImages(device="cpu", output="torch", transforms=[RandomCrop((12, 18))])
    torch.manual_seed(6)
    first = decoder(batch)["image"]
    torch.manual_seed(6)
    assert torch.equal(decoder(batch)["image"], first) and first.shape == (4, 3, 12, 18)
    for path, image in zip(files, first):
        assert windows(gpuvio.read_image(path, "RGB"), image)
    # clips: read_video's transforms, one window per clip
    rows = {"path": np.array([str(clips["a"]), str(clips["b"])]), "start": np.array([0.2, 0.0]),
            "end": np.array([0.4, 0.3])}
    got = DecodeVideoClips(column="path", device="cpu", output="torch", transforms=FIXED)(rows)["clip"]
    for i, path in enumerate(rows["path"]):
        video = gpuvio.read_video(path, rows["start"][i], rows["end"][i], pts_unit="sec", output_format="TCHW")[0]
        assert torch.equal(got[i], apply(video, FIXED))
    clip_decoder = DecodeVideoClips(column="path", device="cpu", output="torch", transforms=RANDOM)
    for clip, path, start, end in zip(clip_decoder(rows)["clip"], rows["path"], rows["start"], rows["end"]):
        video = gpuvio.read_video(path, start, end, pts_unit="sec", output_format="TCHW")[0]
        assert clip.shape[1:] == (3, 24, 40) and windows(apply(video, RANDOM[:1]), clip)
    # the decoders pickle (Ray ships them to actors) and check their transforms when made
    assert pickle.loads(pickle.dumps(clip_decoder)).transforms[0] == Resize(40)
    with pytest.raises(TypeError, match="not a supported transform"):
        DecodeImages(transforms=[len])
    with pytest.raises(ValueError, match="RandomCrop size 100x100"):
        DecodeImages(device="cpu", transforms=[RandomCrop(100)])(batch)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, as tests/test_ray.py starts it (skipped without Ray)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    repo = Path(gpuvio.__file__).resolve().parents[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_actors_decode_with_transforms(cluster, image_tree, clips):
    from gpuvio.ray import DecodeImages, DecodeVideoClips

    ray = cluster
    fixed = [Resize(24), CenterCrop((16, 20))]
    images = ray.data.read_binary_files(str(image_tree), include_paths=True).map_batches(
        DecodeImages, fn_constructor_kwargs={"transforms": fixed},
        compute=ray.data.ActorPoolStrategy(size=1), num_gpus=0, batch_size=2)
    rows = images.take_all()
    assert len(rows) == 4
    for row in rows:
        want = apply(gpuvio.read_image(row["path"], "RGB"), fixed)
        np.testing.assert_array_equal(row["image"], want.numpy())
    spans = [{"path": str(clips["a"]), "start": 0.2, "end": 0.5}, {"path": str(clips["b"]), "start": 0.0, "end": 0.3}]
    decoded = ray.data.from_items(spans).map_batches(
        DecodeVideoClips, fn_constructor_kwargs={"column": "path", "drop_input": False, "transforms": RANDOM},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=2)
    for row in decoded.take_all():
        video = gpuvio.read_video(row["path"], row["start"], row["end"], pts_unit="sec", output_format="TCHW")[0]
        clip = torch.tensor(row["clip"])
        assert clip.shape[1:] == (3, 24, 40) and windows(apply(video, RANDOM[:1]), clip)
