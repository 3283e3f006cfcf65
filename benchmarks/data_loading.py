"""Clips per second for one epoch: gpuvio.data.VideoClipDataset + DataLoader vs a naive dataset.

    python benchmarks/data_loading.py [--videos 6] [--seconds 3] [--size 320x240] [--workers 2]
                                      [--clip-len 16] [--step 16] [--device cpu|cuda] [--json out.json]

Both datasets serve the same clips (the clip list of the VideoClipDataset), through the same
DataLoader settings:

- ``VideoClipDataset``: the frame index is built once (timestamps from packets, in parallel, cached
  on disk); an item decodes only the frames between its clip's first and last pts.
- naive: what a first attempt usually looks like: each item calls ``gpuvio.read_video`` on the
  whole file and slices the clip out of it.
- range: each item calls ``gpuvio.read_video`` on the clip's pts range, as torchvision's
  ``VideoClips`` does (a careful per-item dataset, sharing VideoClipDataset's index).

With ``--device cuda`` a third row runs ``decode=False`` + ``DeviceLoader`` (the workers read bytes,
the main process decodes on the GPU). The first batch of every row is checked against the others.
Timings on a shared or busy machine are indicative only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gpuvio
from gpuvio._bench._timing import timer
from gpuvio.data import DeviceLoader, VideoClipDataset, collate


class NaiveClipDataset(Dataset):
    """Per item: decode the whole video with read_video, then take the clip's frames."""

    def __init__(self, reference: VideoClipDataset) -> None:
        self.paths = reference.video_paths
        self.locations = [reference.clip_location(i) for i in range(len(reference))]
        self.positions = [reference.clip_positions(v, c) for v, c in self.locations]

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, idx: int):
        video_idx, clip_idx = self.locations[idx]
        video, _, _ = gpuvio.read_video(self.paths[video_idx], pts_unit="sec", output_format="TCHW")
        return video[self.positions[idx]], video_idx, clip_idx


class RangeClipDataset(Dataset):
    """Per item: ``read_video`` of the clip's own pts range, as torchvision's ``VideoClips`` does
    (the index is VideoClipDataset's: only the decoding per item differs)."""

    def __init__(self, reference: VideoClipDataset) -> None:
        self.paths = reference.video_paths
        self.locations = [reference.clip_location(i) for i in range(len(reference))]
        self.pts = [reference.clip_pts(i) for i in range(len(reference))]

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, idx: int):
        video_idx, clip_idx = self.locations[idx]
        pts = self.pts[idx]
        video, _, _ = gpuvio.read_video(self.paths[video_idx], int(pts[0]), int(pts[-1]), pts_unit="pts",
                                        output_format="TCHW")
        return video, video_idx, clip_idx


def make_videos(folder: Path, count: int, seconds: float, width: int, height: int) -> list[Path]:
    from gpuvio._samples import make_sample_video

    paths = []
    for i in range(count):
        path = folder / f"video{i}_{width}x{height}_{seconds}s.mp4"
        if not path.exists():
            make_sample_video(path, width=width, height=height, seconds=seconds, fps=30, gop=30, seed=i)
        paths.append(path)
    return paths


def epoch(loader, *, sync_cuda: bool = False) -> tuple[float, int, torch.Tensor]:
    """(seconds, clips, first batch on the CPU) of one pass over ``loader``; with ``sync_cuda``
    the time includes the GPU work still queued at the end (gpuvio's benchmark timer)."""
    clips = 0
    first = None
    with timer("cuda" if sync_cuda else None) as elapsed:
        for batch in loader:
            if first is None:
                first = batch[0].cpu()
            clips += len(batch[1])
    return elapsed[0], clips, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the generated clips")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add a DeviceLoader row")
    parser.add_argument("--media-dir", type=Path, default=None, help="keep generated videos here (reused)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="gpuvio-dl-bench-") as tmp:
        media = args.media_dir or Path(tmp) / "media"
        media.mkdir(parents=True, exist_ok=True)
        paths = make_videos(media, args.videos, args.seconds, width, height)
        cache = Path(tmp) / "index-cache"
        options = {"clip_len": args.clip_len, "step": args.step}

        with timer() as built:
            VideoClipDataset(paths, cache_dir=cache, **options)
        with timer() as cached:
            ds = VideoClipDataset(paths, cache_dir=cache, **options)
        cold, warm = built[0], cached[0]
        print(f"{len(paths)} videos {width}x{height}, {args.seconds} s each -> {len(ds)} clips of "
              f"{args.clip_len} frames; index: {cold * 1000:.0f} ms built, {warm * 1000:.0f} ms from cache")

        loader_options = {"batch_size": args.batch_size, "num_workers": args.workers, "collate_fn": collate}
        rows = []
        runs = [("VideoClipDataset", lambda: DataLoader(ds, **loader_options), False),
                ("naive read_video", lambda: DataLoader(NaiveClipDataset(ds), **loader_options), False),
                ("read_video of the clip's range", lambda: DataLoader(RangeClipDataset(ds), **loader_options),
                 False)]
        if args.device.startswith("cuda"):
            encoded = VideoClipDataset(paths, cache_dir=cache, decode=False, **options)
            runs.append(("decode=False + DeviceLoader",
                         lambda: DeviceLoader(DataLoader(encoded, **loader_options), device=args.device), True))
        firsts = []
        for name, make, sync in runs:
            seconds, count, first = epoch(make(), sync_cuda=sync)
            firsts.append(first)
            rows.append({"name": name, "seconds": seconds, "clips": count, "clips_per_s": count / seconds})
        base = rows[0]["clips_per_s"]
        print(f"{'dataset':<30} {'clips':>6} {'seconds':>8} {'clips/s':>8} {'vs VideoClipDataset':>20}")
        for row in rows:
            print(f"{row['name']:<30} {row['clips']:>6} {row['seconds']:>8.2f} {row['clips_per_s']:>8.1f} "
                  f"{row['clips_per_s'] / base:>19.2f}x")
        same = torch.equal(firsts[0], firsts[1]) and torch.equal(firsts[0], firsts[2])
        print(f"first batch identical (VideoClipDataset vs naive vs range): {same}")
        if len(firsts) > 3:
            diff = (firsts[3].int() - firsts[0].int()).abs()
            print(f"GPU first batch vs CPU: max abs diff {int(diff.max())}, mean {float(diff.float().mean()):.3f}")
        print("(indicative only when the machine is shared or busy)")
        if args.json:
            args.json.write_text(json.dumps({"videos": len(paths), "size": [width, height],
                                             "seconds_per_video": args.seconds, "clip_len": args.clip_len,
                                             "step": args.step, "workers": args.workers,
                                             "index_ms": {"built": cold * 1000, "cached": warm * 1000},
                                             "rows": rows, "torch": torch.__version__,
                                             "gpuvio": gpuvio.__version__}, indent=2))
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
