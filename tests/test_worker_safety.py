"""Fork, spawn, forkserver, pickling: no hung worker, and workers decode what the parent would.

Every scenario runs in a fresh interpreter under a time limit (tests/worker_cases.py), with
faulthandler armed in each forked child: a hang fails its test with a traceback instead of
stalling the suite.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import gpuvio
from gpuvio import _forksafe
from worker_cases import frames as _take

CASES = Path(__file__).with_name("worker_cases.py")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpuvio._samples import make_sample_image, make_sample_video

    root = tmp_path_factory.mktemp("worker_media")
    make_sample_video(root / "clip.mp4", width=192, height=112, seconds=2.0, gop=10)
    make_sample_image(root / "image.jpg", width=320, height=240)
    return root


def run_case(media: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(CASES), args[0], str(media), *args[1:]],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(Path(gpuvio.__file__).parents[1]), **(env or {})})
    assert proc.returncode == 0, f"case {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cyclic_garbage_readers_collected_in_a_forked_child(media):
    assert run_case(media, "garbage_at_fork") == {"collected": True}


def test_inherited_reader_works_in_a_forked_child_and_drops_at_once(media):
    result = run_case(media, "inherited_reader")
    for state, checks in result.items():
        assert all(checks.values()), (state, checks)


def test_child_reopening_a_vanished_source_names_it(media):
    result = run_case(media, "vanished_source")
    assert result["child"].startswith("MediaFileNotFoundError"), result
    assert result["path"] in result["child"]


def test_fork_repeated_after_a_long_mixed_workload(media):
    result = run_case(media, "long_workload_then_fork", timeout=400)
    assert result == {"rounds": 20, "hangs": 0}


def test_device_loader_iteration_inherited_by_a_child(media):
    result = run_case(media, "device_loader_in_child")
    assert "start a new one here" in result["inherited"]
    assert result["fresh"] == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0, 1.0]]
    assert result["parent_rest"] == [[1.0, 1.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("kind", ["init", "per_item", "images"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_dataloader_workers_match_the_parent(media, method, kind):
    assert run_case(media, "dataloader", method, kind, timeout=300) == {"items": 4, "equal": True}


# ------------------------------------------------------------------------------ pickling
def _assert_same(a, b):
    assert [p for p, _ in a] == [p for p, _ in b]
    for (_, x), (_, y) in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("source_kind", ["path", "bytes", "tensor"])
@pytest.mark.parametrize("position", ["fresh", "after_next", "after_seek", "after_keyframe_seek", "exhausted"])
def test_reader_pickles_at_its_position(media, source_kind, position):
    clip = media / "clip.mp4"
    source = {"path": str(clip), "bytes": clip.read_bytes(), "tensor": gpuvio.read_file(clip)}[source_kind]
    reader = gpuvio.VideoReader(source)
    if position == "after_next":
        _take(reader, 4)
    elif position == "after_seek":
        reader.seek(1.05)
    elif position == "after_keyframe_seek":
        reader.seek(1.05, keyframes_only=True)
    elif position == "exhausted":
        _take(reader, 10_000)
    copy = pickle.loads(pickle.dumps(reader))
    assert repr(copy) == repr(reader)
    # random access first: it must not move the position the copy resumes at
    assert torch.equal(copy.get_frames_at([3, 1]), reader.get_frames_at([3, 1]))
    _assert_same(_take(copy, 6), _take(reader, 6))


def test_a_reader_opened_by_a_relative_path_unpickles_elsewhere(media, tmp_path, monkeypatch):
    monkeypatch.chdir(media)
    data = pickle.dumps(gpuvio.VideoReader("clip.mp4"))
    monkeypatch.chdir(tmp_path)
    assert next(pickle.loads(data))["pts"] == 0.0


def test_audio_reader_pickles_at_its_position(media):
    reader = gpuvio.VideoReader(str(media / "clip.mp4"), "audio")
    _take(reader, 3)
    copy = pickle.loads(pickle.dumps(reader))
    _assert_same(_take(copy, 5), _take(reader, 5))


def test_unpickling_a_reader_whose_file_is_gone_names_it(media, tmp_path):
    clip = tmp_path / "gone.mp4"
    clip.write_bytes((media / "clip.mp4").read_bytes())
    data = pickle.dumps(gpuvio.VideoReader(str(clip)))
    clip.unlink()
    with pytest.raises(gpuvio.MediaFileNotFoundError, match="gone.mp4"):
        pickle.loads(data)


def test_file_objects_are_refused_with_what_to_pass_instead(media):
    with open(media / "clip.mp4", "rb") as f, pytest.raises(TypeError, match=r"path, or the bytes"):
        gpuvio.VideoReader(f)


def test_data_classes_pickle(media):
    from gpuvio.data import VideoClipDataset
    from gpuvio.data._encoded import EncodedBatch, EncodedClip, EncodedImage

    clip = str(media / "clip.mp4")
    dataset = VideoClipDataset([clip], clip_len=4, step=8)
    image = EncodedImage(data=gpuvio.read_file(media / "image.jpg"))
    values = [gpuvio.backends()[0], gpuvio.ImageReadMode.RGB, dataset.encoded_clip(1), image,
              EncodedBatch([image]), Fraction(1, 3)]
    for value in values:
        copy = pickle.loads(pickle.dumps(value))
        assert repr(copy) == repr(value)
    ds_copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(ds_copy[1][0], dataset[1][0])
    encoded = pickle.loads(pickle.dumps(dataset.encoded_clip(2)))
    assert isinstance(encoded, EncodedClip) and torch.equal(encoded.decode(), dataset[2][0])


# ------------------------------------------------------------------------------ bookkeeping
def test_readers_release_what_they_hold(media):
    clip = str(media / "clip.mp4")
    gc.collect()
    before = _forksafe.held_count()
    for i in range(5):
        reader = gpuvio.VideoReader(clip)
        reader.seek(0.5)
        next(reader)
        reader.get_frames_at([1, 30])
        reader.seek(0)  # reopens the container
        next(reader)
        if i % 2:
            reader.close()
        elif i == 2:
            reader.cycle = reader  # collected by gc, closed by its finalizer
        del reader
    gc.collect()
    assert _forksafe.held_count() == before


def test_a_lock_held_at_fork_is_free_in_the_child():
    lock = _forksafe.ForkSafeLock()
    with lock:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if lock._current().acquire(timeout=5) else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
