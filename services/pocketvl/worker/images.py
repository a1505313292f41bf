"""A request's image bytes: inline base64 decoded here, claim-check references fetched from
the store for their URI scheme, every one checked against its caps and digest.

Which places a store may read (roots, hosts, buckets) is the store's own rule
(:mod:`pocketvl.adapters.claim_check`); a scheme without a store is ``uri_forbidden``.
Decoding, with its format and pixel checks, is :mod:`pocketvl.media`'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError
from pocketvl.media.options import LoadedImage
from pocketvl.settings import LimitSettings
from pocketvl.worker.ports import ImageStore

__all__ = ["ImageFetcher", "LoadedImage", "base64_problem"]


class ImageFetcher:
    def __init__(self, limits: LimitSettings, stores: Mapping[str, ImageStore]) -> None:
        self.limits = limits
        self.stores = dict(stores)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()

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
        text = image.data_b64
        # Standard base64 carries 3 bytes per 4 characters: refuse what cannot fit before
        # decoding, then check the decoded length exactly.
        if len(text) > 4 * -(-cap // 3):
            raise ImageError("image_too_large", f"inline image over {cap} bytes: use a reference")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("bad_base64", f"data_b64 {base64_problem(text)}") from None
        if len(data) > cap:
            raise ImageError(
                "image_too_large", f"inline image is {len(data)} bytes, over {cap}: use a reference"
            )
        return data

    def _referenced_bytes(self, ref: ImageReference) -> bytes:
        cap = self.limits.max_image_bytes
        if ref.size_bytes > cap:
            raise ImageError("image_too_large", f"{ref.size_bytes} bytes is over the image cap")
        scheme = ref.uri.partition(":")[0].lower()
        label = ref.uri.partition("?")[0]  # a query may hold tokens: keep it out of DLQ text
        store = self.stores.get(scheme)
        if store is None:
            raise ImageError("uri_forbidden", f"scheme {scheme[:16]!r} is not allowed")
        data = store.fetch(ref.uri, cap)
        if len(data) > cap:
            raise ImageError("image_too_large", f"{label} is over the image cap")
        if len(data) != ref.size_bytes or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ImageError("digest_mismatch", f"{label} does not match its size or sha256")
        return data


def base64_problem(text: str) -> str:
    """What is wrong with a base64 text, in words a producer can act on."""
    if "\n" in text or "\r" in text:
        return "has line breaks (MIME style): send it on one line"
    if "-" in text or "_" in text:
        return "uses the URL-safe alphabet (- and _): send standard base64 (+ and /)"
    if len(text) % 4:
        return "is not a multiple of 4 characters long: is its = padding missing?"
    return "is not standard base64 (A-Z, a-z, 0-9, + and /, padded with =)"
