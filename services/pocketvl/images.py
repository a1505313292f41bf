"""Fetch request media: inline base64 or ``file://`` claim-check references.

Untrusted input: byte caps, sha256 verification of references, and file:// only under the
configured roots (no path traversal, no symlink escapes). Decoding, with its format and pixel
checks, is ``pocketvl.media``'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError
from pocketvl.settings import LimitSettings


@dataclass(frozen=True)
class LoadedImage:
    data: bytes
    sha256: str
    media_type: str


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
        return LoadedImage(data, hashlib.sha256(data).hexdigest(), image.media_type)

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
