"""Turn decoded inputs into what the DA checkpoint was trained on, by the task's layout:

- ``drivelm_stitch``: the six cameras stitched into one labelled 2688x896 picture;
- ``video_frames``: the clip's frames, one tile each, introduced as ``Frame1: <image>`` lines;
- ``as_decoded``: the image(s) as decoded.

Images go to Triton as their decoded RGB pixels (``contracts.triton``): the model tiles
exactly what was decoded here, and nothing is encoded only to be decoded again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageFont

from pocketvl.contracts import triton as tc
from pocketvl.contracts.common import DecodeParams
from pocketvl.contracts.messages import AnyRequest
from pocketvl.domains.registry import REGISTRY
from pocketvl.domains.spec import Layout, ParseContext
from pocketvl.media import DecodedMedia, DecodeOptions, decode_media
from pocketvl.media.options import LoadedImage
from pocketvl.settings import LimitSettings
from pocketvl.vision.stitch import (
    VIDEO_FRAME_MAX_TILES,
    load_label_font,
    stitch_drivelm_views,
    video_frame_prefix,
)


@dataclass(frozen=True)
class Composed:
    images: list[tc.RgbImage]  # decoded RGB pixels, in prompt order
    question: str  # the user text; carries <image> placeholders when the layout needs them
    max_tiles: int | None  # a cap the composition imposes (None: the route's)
    context: ParseContext

    @property
    def payload_bytes(self) -> int:
        """What the images add to the Triton request."""
        return tc.packed_bytes(self.images)


@cache
def _label_font() -> ImageFont.FreeTypeFont:
    return load_label_font()


def _rgb(image: Image.Image) -> tc.RgbImage:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def layout_max_tiles(layout: Layout) -> int | None:
    """A cap the layout imposes on tiles per image (video frames: one each); None: none."""
    return VIDEO_FRAME_MAX_TILES if layout == "video_frames" else None


def compose(
    request: AnyRequest, media: list[DecodedMedia], question: str, layout: Layout
) -> Composed:
    sizes = tuple(m.original_size for m in media)
    if layout == "drivelm_stitch":
        names = [image.name or "" for image in request.images]
        views = {name: m.frames[0] for name, m in zip(names, media, strict=True)}
        stitched = stitch_drivelm_views(views, _label_font())
        cameras = {name: m.original_size for name, m in zip(names, media, strict=True)}
        context = ParseContext(image_sizes=sizes, camera_sizes=cameras)
        return Composed([_rgb(stitched)], question, None, context)
    if layout == "video_frames":
        frames = [frame for m in media for frame in m.frames]
        prompt = video_frame_prefix(len(frames)) + question
        return Composed(
            [_rgb(f) for f in frames], prompt, layout_max_tiles(layout), ParseContext(sizes)
        )
    return Composed([_rgb(m.frames[0]) for m in media], question, None, ParseContext(sizes))


def decode_options(
    limits: LimitSettings, params: DecodeParams, reserve: Callable[[int], None] | None = None
) -> DecodeOptions:
    """The service's caps plus what the request asked for (bands, DICOM frame, ...), and
    the memory budget each frame is reserved from before it is decoded."""
    return DecodeOptions(
        max_pixels=limits.max_image_pixels,
        max_frames=limits.max_frames,
        bands=params.bands,
        stretch_percentiles=params.stretch_percentiles,
        dicom_frame=params.dicom_frame,
        dicom_window=params.dicom_window,
        video_frames=params.video_frames,
        reserve=reserve,
    )


def prepare_inputs(
    request: AnyRequest,
    images: list[LoadedImage],
    limits: LimitSettings,
    reserve: Callable[[int], None] | None = None,
) -> Composed:
    """Fetched bytes to what the model is sent: decode every input, then compose."""
    options = decode_options(limits, request.decode, reserve)
    media = [decode_media(image.data, image.media_type, options) for image in images]
    spec = REGISTRY.for_task(request.task)
    return compose(request, media, spec.prompt(request.task), spec.layout)
