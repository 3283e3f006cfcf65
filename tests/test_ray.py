"""gpuvio.ray on a real local Ray cluster: read bytes -> decode on actors -> batches, vs direct decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import gpuvio
from gpuvio.ray import DecodeImages, DecodeVideoClips

# Ray Data's own deprecation notices, about its internal settings
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(gpuvio.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs; the actors import gpuvio from this checkout."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from gpuvio._samples import make_sample_image, make_sample_video

    root = tmp_path_factory.mktemp("ray_media")
    images = root / "images"
    images.mkdir()
    for i, (w, h) in enumerate([(40, 30), (40, 30), (50, 20), (40, 30), (40, 30)]):
        make_sample_image(images / f"{i}.{'png' if i % 2 else 'jpg'}", width=w, height=h, seed=i)
    return {
        "images": images,
        "a": make_sample_video(root / "a.mp4", width=96, height=64, seconds=1.0, fps=30, gop=10, audio=False),
        "b": make_sample_video(root / "b.mp4", width=96, height=64, seconds=0.8, fps=25, gop=8, seed=1),
    }


def test_images_read_decode_batch(cluster, media):
    ds = ray.data.read_binary_files(str(media["images"]), include_paths=True)
    ds = ds.map_batches(DecodeImages, fn_constructor_kwargs={"mode": "RGB"},
                        compute=ray.data.ActorPoolStrategy(size=1), num_gpus=0, batch_size=2)
    rows = ds.take_all()
    assert len(rows) == 5
    for row in rows:
        assert "bytes" not in row  # the encoded column is dropped once decoded
        expected = gpuvio.read_image(row["path"], gpuvio.ImageReadMode.RGB)
        assert row["image"].dtype == np.uint8
        np.testing.assert_array_equal(row["image"], expected.numpy())


def test_images_numpy_batches_and_layout(cluster, media):
    files = sorted(str(p) for p in media["images"].iterdir())
    ds = ray.data.read_binary_files(files, include_paths=True).map_batches(
        DecodeImages, fn_constructor_kwargs={"layout": "HWC", "mode": "GRAY"},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=5)
    for batch in ds.iter_batches(batch_size=5, batch_format="numpy"):
        by_path = dict(zip(batch["path"], batch["image"]))
        for path in files:
            expected = gpuvio.read_image(path, "GRAY").permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(by_path[path], expected)


def test_video_clips_by_path_and_bytes(cluster, media):
    rows = [{"path": str(media["a"]), "start": 0.2, "end": 0.5},
            {"path": str(media["b"]), "start": 0.0, "end": 0.3},
            {"path": str(media["a"]), "start": 0.7, "end": 0.9}]
    by_path = ray.data.from_items(rows).map_batches(
        DecodeVideoClips, fn_constructor_kwargs={"column": "path", "drop_input": False},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=3)
    with_bytes = ray.data.from_items(
        [{**r, "bytes": Path(r["path"]).read_bytes()} for r in rows]).map_batches(
        DecodeVideoClips, fn_constructor_kwargs={"output_format": "THWC"},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=2)
    got_path = {(r["path"], r["start"]): r["clip"] for r in by_path.take_all()}
    got_bytes = {(r["path"], r["start"]): r["clip"] for r in with_bytes.take_all()}
    assert len(got_path) == len(got_bytes) == 3
    for r in rows:
        expected, _, _ = gpuvio.read_video(r["path"], r["start"], r["end"], pts_unit="sec")
        assert expected.shape[0] > 0
        np.testing.assert_array_equal(got_bytes[(r["path"], r["start"])], expected.numpy())
        np.testing.assert_array_equal(got_path[(r["path"], r["start"])], expected.permute(0, 3, 1, 2).numpy())


def test_decoders_in_process_report_cpu_fallback(media):
    # no cluster needed: the callables are plain classes (here every decoder falls back to the CPU)
    files = sorted(media["images"].iterdir())
    batch = {"bytes": np.array([f.read_bytes() for f in files], dtype=object), "path": np.array(files)}
    decoder = DecodeImages(output="torch", drop_input=False)
    out = decoder(batch)
    assert "bytes" in out and isinstance(out["image"], list) and len(out["image"]) == 5
    assert all(isinstance(t, torch.Tensor) for t in out["image"])
    expected_device = "cuda:0" if any(b.usable and b.device_type == "cuda" and "decode_image" in b.operations
                                      for b in gpuvio.backends()) else "cpu"
    assert decoder.decoded_on == expected_device
    with pytest.raises(ValueError, match="no column 'pixels'"):
        DecodeImages(column="pixels")(batch)
    with pytest.raises(ValueError, match="output"):
        DecodeImages(output="pandas")
    clips = DecodeVideoClips(column="path", output="torch")(
        {"path": np.array([str(media["a"])] * 2), "start": np.array([0.0, 0.0]), "end": np.array([0.1, 0.1])})
    assert isinstance(clips["clip"], torch.Tensor) and clips["clip"].shape == (2, 4, 3, 64, 96)


def test_a_reader_passed_to_a_ray_task_resumes_where_it_was(cluster, media):
    reader = gpuvio.VideoReader(str(media["b"]))
    reader.seek(0.5)
    next(reader)

    @cluster.remote
    def next_frames(r: gpuvio.VideoReader) -> list[tuple[float, torch.Tensor]]:
        return [(f["pts"], f["data"]) for f, _ in zip(r, range(3))]

    remote = cluster.get(next_frames.remote(reader))
    local = [(f["pts"], f["data"]) for f, _ in zip(reader, range(3))]
    assert [p for p, _ in remote] == [p for p, _ in local]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(remote, local))
