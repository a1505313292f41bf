"""Untrusted images: caps, format checks, digests and claim-check path rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError
from pocketvl.images import ImageLoader
from pocketvl.settings import LimitSettings
from tests.conftest import b64, encode

PNG = encode(Image.new("RGB", (64, 48), (1, 2, 3)))


def loader(tmp_path: Path, **limits: object) -> ImageLoader:
    return ImageLoader(LimitSettings(file_roots=[tmp_path / "root"], **limits))


def reason(load: ImageLoader, image: InlineImage | ImageReference) -> str:
    with pytest.raises(ImageError) as info:
        load.load(image)
    return info.value.reason


def test_inline_image_loads_with_digest(tmp_path: Path) -> None:
    image = loader(tmp_path).load(InlineImage(media_type="image/png", data_b64=b64(PNG)))
    assert (image.data, image.media_type) == (PNG, "image/png")
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()


def test_bad_inline_images(tmp_path: Path) -> None:
    # Format, pixel and frame checks belong to pocketvl.media (tests/unit/test_media.py).
    load = loader(tmp_path, max_inline_image_bytes=2048)
    assert (
        reason(load, InlineImage(media_type="image/png", data_b64="!!not base64!!")) == "bad_base64"
    )
    assert (
        reason(load, InlineImage(media_type="image/png", data_b64="A" * 4000)) == "image_too_large"
    )


def ref(path: Path, data: bytes, **overrides: object) -> ImageReference:
    fields: dict[str, object] = {
        "uri": path.as_uri(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "image/png",
        "size_bytes": len(data),
    }
    return ImageReference(**(fields | overrides))


def test_file_references_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.png").write_bytes(PNG)
    load = loader(tmp_path)
    assert load.load(ref(root / "a.png", PNG)).sha256 == hashlib.sha256(PNG).hexdigest()
    assert reason(load, ref(root / "a.png", PNG, sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, ref(root / "a.png", PNG, size_bytes=len(PNG) + 1)) == "digest_mismatch"
    assert reason(load, ref(root / "missing.png", PNG)) == "image_unreachable"


def test_references_cannot_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    load = loader(tmp_path)
    escape = ref(root, PNG, uri=f"file://{root}/../secret.png")
    assert reason(load, escape) == "uri_forbidden"
    assert reason(load, ref(root / "link.png", PNG)) == "uri_forbidden"
    assert reason(load, ref(root, PNG, uri="https://example.com/a.png")) == "uri_forbidden"
    assert reason(load, ref(root, PNG, uri="file://otherhost/etc/passwd")) == "uri_forbidden"


def test_too_many_images(tmp_path: Path) -> None:
    image = InlineImage(media_type="image/png", data_b64=b64(PNG))
    with pytest.raises(ImageError) as info:
        loader(tmp_path, max_images=2).load_all([image] * 3)
    assert info.value.reason == "too_many_images"
