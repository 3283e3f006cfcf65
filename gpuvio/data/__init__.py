"""Training data loading with gpuvio: clip and image datasets, clip samplers, GPU-side decoding.

Two ways to feed a training loop from a ``torch.utils.data.DataLoader``:

1. **Decode in the workers (CPU).** ``VideoClipDataset(paths, 16)`` / ``ImageDataset(root)``
   decode in ``__getitem__`` with the CPU backend, which never loads CUDA, so any worker count
   and start method (``fork``, ``spawn``, ``forkserver``) works.
2. **Decode on the GPU, fork-safe.** With ``decode=False`` the workers only read the encoded bytes;
   wrap the loader in :class:`DeviceLoader`, which decodes each batch in the main process on the
   GPU, on its own CUDA stream, one batch ahead, and yields CUDA tensors. ``device="auto"`` picks
   ``cuda:{LOCAL_RANK}`` under torchrun; ``DistributedSampler`` works unchanged on these datasets.

Both ways decode with the same function (:func:`decode_items`) and give the same tensors (within
the parity of the CPU and GPU backends). Batch with ``collate_fn=gpuvio.data.collate``.

Both datasets take decode-time ``transforms=`` (:mod:`gpuvio.transforms`: ``Resize``,
``CenterCrop``, ``RandomCrop``), with one random window per clip or image drawn in
``__getitem__``; with ``decode=False`` the encoded item carries them (and its window's seed), so
the DeviceLoader's decoding gives the same result as decoding in the workers.

Example::

    from torch.utils.data import DataLoader
    from gpuvio.data import VideoClipDataset, DeviceLoader, RandomClipSampler, collate
    from gpuvio.transforms import RandomCrop, Resize

    ds = VideoClipDataset(paths, clip_len=16, step=4, frame_rate=15, decode=False, cache_dir=".clip-index",
                          transforms=[Resize(128), RandomCrop(112)])
    loader = DataLoader(ds, batch_size=8, sampler=RandomClipSampler(ds, 5), num_workers=4,
                        collate_fn=collate)
    for clips, video_idx, clip_idx in DeviceLoader(loader, device="auto"):
        ...  # clips: Tensor[8, 16, 3, 112, 112] uint8 on the GPU
"""

from __future__ import annotations

from ._clips import VideoClipDataset
from ._device_loader import DeviceLoader, resolve_device
from ._encoded import EncodedBatch, EncodedClip, EncodedImage, collate, decode_items
from ._images import IMAGE_EXTENSIONS, ImageDataset
from ._samplers import RandomClipSampler, UniformClipSampler

__all__ = [
    "IMAGE_EXTENSIONS",
    "DeviceLoader",
    "EncodedBatch",
    "EncodedClip",
    "EncodedImage",
    "ImageDataset",
    "RandomClipSampler",
    "UniformClipSampler",
    "VideoClipDataset",
    "collate",
    "decode_items",
    "resolve_device",
]
