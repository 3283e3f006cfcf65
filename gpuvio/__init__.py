"""gpuvio: torchvision.io's API, decoding on NVIDIA GPUs when asked, with a CPU twin.

``import gpuvio as io`` runs code written for ``torchvision.io``. Every decoding function also
takes ``device=`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``) and ``backend=``; see
:func:`backends` for what can run here. Importing gpuvio loads no CUDA library.
"""

from __future__ import annotations

from . import _layout

_layout.install()

from ._dispatch import BackendInfo, backends  # noqa: E402
from ._errors import (
    BackendUnavailableError,
    DecodeError,
    GpuvioError,
    InvalidArgumentError,
    InvalidInputTypeError,
    InvalidSourceError,
    MediaFileNotFoundError,
    ResourceLimitError,
    UnsupportedFormatError,
)
from ._image import (
    decode_avif,
    decode_gif,
    decode_heic,
    decode_image,
    decode_jpeg,
    decode_png,
    decode_webp,
    encode_jpeg,
    encode_png,
    read_image,
    write_jpeg,
    write_png,
)
from ._multi import decode_videos
from ._fallback import Fallback
from ._source import read_file, write_file
from ._types import ImageReadMode
from ._video import read_video, read_video_timestamps, write_video
from ._video_reader import VideoReader
from . import transforms  # noqa: E402  (decode-time Resize / CenterCrop / RandomCrop)

__version__ = "0.1.0"

__all__ = [
    "BackendInfo",
    "BackendUnavailableError",
    "DecodeError",
    "Fallback",
    "GpuvioError",
    "ImageReadMode",
    "InvalidArgumentError",
    "InvalidInputTypeError",
    "InvalidSourceError",
    "MediaFileNotFoundError",
    "ResourceLimitError",
    "UnsupportedFormatError",
    "VideoReader",
    "backends",
    "decode_avif",
    "decode_gif",
    "decode_heic",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "decode_videos",
    "decode_webp",
    "encode_jpeg",
    "encode_png",
    "read_file",
    "read_image",
    "read_video",
    "read_video_timestamps",
    "transforms",
    "write_file",
    "write_jpeg",
    "write_png",
    "write_video",
]
