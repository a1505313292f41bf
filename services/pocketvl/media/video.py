"""Video clips with PyAV (FFmpeg ships in its wheel): frames sampled uniformly, in order.

The container is opened with the demuxer the declared type names, never FFmpeg's format
probing (which can reach playlist and concat demuxers that open other files), and only an
allowlist of common codecs is decoded. Frames are counted by demuxing packets, which decodes
nothing, before any frame is decoded: the cap does not trust the header's frame count, and the
decode pass re-checks both the count and each frame's size, since streams can change size.
Display-matrix rotation (phone clips) is not applied.
"""

from __future__ import annotations

import io

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream
from PIL import Image

from pocketvl.errors import ImageError
from pocketvl.media.options import (
    RGB_WORK_BYTES_PER_PIXEL,
    DecodedMedia,
    DecodeOptions,
    check_pixels,
    reserve_memory,
)

_DEMUXERS = {"video/mp4": "mov", "video/quicktime": "mov", "video/webm": "matroska"}
_CODECS = frozenset({"h264", "hevc", "mpeg4", "vp8", "vp9", "av1"})


def sample_indices(total: int, wanted: int) -> list[int]:
    """``wanted`` frame indices spread evenly over ``total`` (first and last included),
    rounded like ``numpy.linspace(...).round()``, de-duplicated and ascending."""
    if total < 1:
        return []
    return sorted({int(i) for i in np.linspace(0, total - 1, num=wanted).round()})


def decode_video(data: bytes, media_type: str, options: DecodeOptions) -> DecodedMedia:
    demuxer = _DEMUXERS[media_type]
    try:
        width, height, total = _survey(data, demuxer, options)
        indices = sample_indices(total, options.video_frames)
        frames = _decode_frames(data, demuxer, indices, options) if indices else []
    except ImageError:
        raise
    except Exception as exc:  # av.FFmpegError and friends from hostile streams
        raise ImageError(
            "video_undecodable", f"not a readable {media_type} ({type(exc).__name__}: {exc})"
        ) from exc
    if not frames:
        raise ImageError("video_undecodable", f"no frames decoded from {media_type}")
    notes = (f"{len(frames)} of {total} frames sampled uniformly",)
    return DecodedMedia(frames, (width, height), notes)


def _survey(data: bytes, demuxer: str, options: DecodeOptions) -> tuple[int, int, int]:
    """(width, height, frame count) from the headers and a packet count; decodes nothing."""
    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width < 1 or height < 1:
            raise ImageError("video_undecodable", "the video stream has no frame size")
        check_pixels(width, height, options)
        total = 0
        for packet in container.demux(stream):
            total += 1 if packet.size else 0  # empty packets only flush the decoder
            if total > options.max_frames:
                raise ImageError(
                    "too_many_frames", f"more than the cap of {options.max_frames} frames"
                )
    return width, height, total


def _decode_frames(
    data: bytes, demuxer: str, indices: list[int], options: DecodeOptions
) -> list[Image.Image]:
    wanted, images = set(indices), []
    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        for position, frame in enumerate(container.decode(_video_stream(container))):
            if position >= options.max_frames:  # the decoder made more than were demuxed
                raise ImageError("too_many_frames", f"over the cap of {options.max_frames}")
            check_pixels(frame.width, frame.height, options)
            if position in wanted:
                reserve_memory(options, frame.width * frame.height * RGB_WORK_BYTES_PER_PIXEL)
                images.append(Image.fromarray(frame.to_ndarray(format="rgb24")))
            if position >= indices[-1]:
                break
    return images


def _video_stream(container: InputContainer) -> VideoStream:
    if not container.streams.video:
        raise ImageError("video_undecodable", "the container has no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context.codec.canonical_name  # "av1" whether dav1d or not
    if codec not in _CODECS:
        raise ImageError(
            "unsupported_media_type", f"video codec {codec} is not one of {sorted(_CODECS)}"
        )
    return stream
