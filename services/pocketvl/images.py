"""Fetch and check request images: inline base64 or ``file://`` claim-check references.

Untrusted input: byte caps, a pixel cap against decompression bombs, a format check against
the declared media type, sha256 verification of references, and file:// only under the
configured roots (no path traversal, no symlink escapes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image

from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError
from pocketvl.settings import LimitSettings

_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class LoadedImage:
    data: bytes
    sha256: str
    width: int
    height: int


class ImageLoader:
    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.roots = [root.resolve() for root in limits.file_roots]

    def load_all(self, images: list[InlineImage | ImageReference]) -> list[LoadedImage]:
        if len(images) > self.limits.max_images:
            raise ImageError(
                "too_many_images", f"{len(images)} images; at most {self.limits.max_images}"
            )
        return [self.load(image) for image in images]

    def load(self, image: InlineImage | ImageReference) -> LoadedImage:
        if isinstance(image, InlineImage):
            data = self._inline_bytes(image)
        else:
            data = self._referenced_bytes(image)
        return self._checked(data, image.media_type)

    def _inline_bytes(self, image: InlineImage) -> bytes:
        cap = self.limits.max_inline_image_bytes
        if len(image.data_b64) > cap * 4 // 3 + 4:
            raise ImageError("image_too_large", f"inline image over {cap} bytes: use a reference")
        try:
            return base64.b64decode(image.data_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageError("bad_base64", f"data_b64 is not valid base64: {exc}") from exc

    def _referenced_bytes(self, ref: ImageReference) -> bytes:
        if ref.size_bytes > self.limits.max_image_bytes:
            raise ImageError("image_too_large", f"{ref.size_bytes} bytes is over the image cap")
        path = self._allowed_path(ref.uri)
        try:
            with path.open("rb") as handle:
                data = handle.read(self.limits.max_image_bytes + 1)
        except OSError as exc:
            raise ImageError("image_unreachable", f"cannot read {ref.uri}: {exc.strerror}") from exc
        if len(data) > self.limits.max_image_bytes:
            raise ImageError("image_too_large", f"{ref.uri} is over the image cap")
        if len(data) != ref.size_bytes or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ImageError("digest_mismatch", f"{ref.uri} does not match its size or sha256")
        return data

    def _allowed_path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ImageError("uri_forbidden", f"scheme {parsed.scheme!r} is not allowed")
        path = Path(unquote(parsed.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise ImageError("uri_forbidden", "file:// reference outside the configured roots")
        return path

    def _checked(self, data: bytes, media_type: str) -> LoadedImage:
        """Check format and size from the header, then decode fully to catch corrupt data."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
                    if img.format != _FORMATS[media_type]:
                        raise ImageError(
                            "media_type_mismatch",
                            f"declared {media_type} but the data is {img.format}",
                        )
                    if width * height > self.limits.max_image_pixels:
                        raise ImageError(
                            "too_many_pixels",
                            f"{width}x{height} is over the cap of "
                            f"{self.limits.max_image_pixels} pixels",
                        )
                    img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError("too_many_pixels", str(exc)) from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageError("image_undecodable", f"not a readable image: {exc}") from exc
        return LoadedImage(data, hashlib.sha256(data).hexdigest(), width, height)
