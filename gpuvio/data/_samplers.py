"""Clip samplers: a few clips per video instead of every clip, as torch ``Sampler`` objects.

A video of many clips would otherwise dominate an epoch. These follow torchvision's
``RandomClipSampler`` / ``UniformClipSampler`` (``torchvision.datasets.samplers``) and work with
any dataset that has ``clips_per_video`` (:class:`~gpuvio.data.VideoClipDataset`). Random
sampling can be seeded; with ``seed`` set, call :meth:`RandomClipSampler.set_epoch` each epoch
to get a different (but reproducible) draw, as with ``DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from .._errors import InvalidArgumentError, InvalidInputTypeError

__all__ = ["RandomClipSampler", "UniformClipSampler"]


def _clips_per_video(dataset: Any) -> list[int]:
    counts = getattr(dataset, "clips_per_video", None)
    if counts is None:
        raise InvalidInputTypeError(
            f"a clip sampler needs a dataset with clips_per_video (e.g. VideoClipDataset); got {type(dataset).__name__}")
    return [int(c) for c in counts]


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1; got {value!r}")
    return value


class UniformClipSampler(Sampler[int]):
    """``num_clips_per_video`` evenly spaced clips of every video, video after video.

    Clip positions are ``floor(linspace(first, last, num_clips_per_video))``, so the first and
    last clips are always included and a video with fewer clips repeats some. Videos without a
    clip are skipped. Deterministic: the same indices every epoch.
    """

    def __init__(self, dataset: Any, num_clips_per_video: int) -> None:
        self.clips_per_video = _clips_per_video(dataset)
        self.num_clips_per_video = _count(num_clips_per_video, "num_clips_per_video")

    def __iter__(self) -> Iterator[int]:
        chosen = []
        start = 0
        for length in self.clips_per_video:
            if length:
                picks = torch.linspace(start, start + length - 1, steps=self.num_clips_per_video)
                chosen.append(picks.floor().to(torch.int64))
            start += length
        return iter(torch.cat(chosen).tolist() if chosen else [])

    def __len__(self) -> int:
        return sum(self.num_clips_per_video for length in self.clips_per_video if length)


class RandomClipSampler(Sampler[int]):
    """At most ``max_clips_per_video`` distinct random clips of each video, all shuffled together.

    Args:
        dataset: a dataset with ``clips_per_video``.
        max_clips_per_video: clips drawn per video (fewer when a video has fewer).
        seed: None (default) draws from torch's global generator, like torchvision; an int makes
            each epoch's draw reproducible (seeded with ``seed + epoch``).
    """

    def __init__(self, dataset: Any, max_clips_per_video: int, *, seed: int | None = None) -> None:
        self.clips_per_video = _clips_per_video(dataset)
        self.max_clips_per_video = _count(max_clips_per_video, "max_clips_per_video")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputTypeError(f"seed must be an int or None; got {seed!r}")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of this epoch (only matters with ``seed``)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = None
        if self.seed is not None:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
        chosen = []
        start = 0
        for length in self.clips_per_video:
            size = min(length, self.max_clips_per_video)
            chosen.append(torch.randperm(length, generator=generator)[:size] + start)
            start += length
        picks = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.int64)
        return iter(picks[torch.randperm(len(picks), generator=generator)].tolist())

    def __len__(self) -> int:
        return sum(min(length, self.max_clips_per_video) for length in self.clips_per_video)
