"""Untrusted images: caps, format checks, digests and claim-check path rules."""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from pocketvl.adapters.claim_check import image_stores
from pocketvl.adapters.s3_signing import S3Credentials, sign_s3_get
from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import ImageStoreSettings, LimitSettings
from pocketvl.worker.images import ImageFetcher
from tests.conftest import b64, encode
from tests.unit.claim_check_servers import S3Handler, StaticHandler, self_signed_cert, serve

PNG = encode(Image.new("RGB", (64, 48), (1, 2, 3)))


def loader(tmp_path: Path, **options: object) -> ImageFetcher:
    """The worker's fetcher with the real stores; ``options`` are limit or store settings."""
    limits = {k: v for k, v in options.items() if k in LimitSettings.model_fields}
    store = {k: v for k, v in options.items() if k not in limits}
    stores = ImageStoreSettings(**{"file_roots": [tmp_path / "root"], **store})
    return ImageFetcher(LimitSettings(**limits), image_stores(stores))


def reason(load: ImageFetcher, image: InlineImage | ImageReference) -> str:
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


def web_ref(uri: str, data: bytes = PNG, **overrides: object) -> ImageReference:
    fields: dict[str, object] = {
        "uri": uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "image/png",
        "size_bytes": len(data),
    }
    return ImageReference(**(fields | overrides))


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a self-signed HTTPS server for ``localhost``."""
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serve(StaticHandler, {"/ok.png": PNG, "/a.png?v=1": PNG}, tls=tls) as port:
        yield port, cert


def https_loader(tmp_path: Path, server: tuple[int, Path], **limits: object) -> ImageFetcher:
    port, ca_file = server
    return loader(tmp_path, https_hosts=[f"LocalHost:{port}"], ca_file=ca_file, **limits)


def test_https_reference_from_an_allowed_host(
    tmp_path: Path, https_server: tuple[int, Path]
) -> None:
    load = https_loader(tmp_path, https_server)
    base = f"https://localhost:{https_server[0]}"
    assert load.load(web_ref(f"{base}/ok.png")).data == PNG
    assert load.load(web_ref(f"{base}/a.png?v=1")).data == PNG
    assert reason(load, web_ref(f"{base}/ok.png", sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, web_ref(f"{base}/missing.png")) == "image_unreachable"
    # Followed, the redirect would serve a good image: it must not be followed.
    assert reason(load, web_ref(f"{base}/redirect")) == "image_unreachable"
    # An overloaded store is transient: retried by the pipeline, then DLQ'd as retryable.
    with pytest.raises(ImageUnavailable) as info:
        load.load(web_ref(f"{base}/busy"))
    assert (info.value.reason, info.value.retryable) == ("image_unavailable", True)


def test_https_needs_a_trusted_certificate(tmp_path: Path, https_server: tuple[int, Path]) -> None:
    port = https_server[0]
    load = loader(tmp_path, https_hosts=[f"localhost:{port}"])  # system CAs only
    assert reason(load, web_ref(f"https://localhost:{port}/ok.png")) == "image_unreachable"


def test_https_refuses_unlisted_places(tmp_path: Path, https_server: tuple[int, Path]) -> None:
    port = https_server[0]
    load = https_loader(tmp_path, https_server, http_hosts=["localhost"])
    for uri in [
        "https://localhost/ok.png",  # listed with a port: the default port is another place
        f"https://127.0.0.1:{port}/ok.png",  # IP literal, not listed
        f"https://evil.example:{port}/ok.png",
        f"https://user:pw@localhost:{port}/ok.png",  # userinfo
        f"https://localhost@evil.example:{port}/ok.png",
        f"http://localhost:{port}/ok.png",  # http host listed without this port
        f"ftp://localhost:{port}/ok.png",
        f"https://localhost:{port}/ok .png",
    ]:
        assert reason(load, web_ref(uri)) == "uri_forbidden", uri


def test_https_body_over_the_cap_is_not_read(
    tmp_path: Path, https_server: tuple[int, Path]
) -> None:
    load = https_loader(tmp_path, https_server, max_image_bytes=4096)
    base = f"https://localhost:{https_server[0]}"
    assert reason(load, web_ref(f"{base}/huge", b"x" * 100)) == "image_too_large"
    started = time.monotonic()
    # A never-ending body: only a capped read returns at all.
    assert reason(load, web_ref(f"{base}/endless", b"x" * 100)) == "image_too_large"
    assert time.monotonic() - started < 5


S3_KEYS = {"AKIDTEST": "test-secret/key+1"}
S3_OBJECTS = {"/pics/cam front/ü 1.png": PNG, "/pics/plain.png": PNG, "/other/plain.png": PNG}


@pytest.fixture(scope="module")
def s3_port() -> Iterator[int]:
    with serve(S3Handler, S3_OBJECTS, secrets=S3_KEYS) as port:
        yield port


def s3_loader(
    tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch, secret: str, token: str = ""
) -> ImageFetcher:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    endpoint = f"http://127.0.0.1:{port}"
    return loader(tmp_path, s3_buckets=["pics"], s3_endpoint=endpoint, s3_region="eu-west-1")


def test_s3_reference_is_signed_and_verified(
    tmp_path: Path, s3_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = s3_loader(tmp_path, s3_port, monkeypatch, S3_KEYS["AKIDTEST"])
    assert load.load(web_ref("s3://pics/plain.png")).data == PNG
    assert load.load(web_ref("s3://pics/cam front/ü 1.png")).data == PNG
    assert reason(load, web_ref("s3://pics/plain.png", sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, web_ref("s3://pics/missing.png")) == "image_unreachable"
    with_token = s3_loader(tmp_path, s3_port, monkeypatch, S3_KEYS["AKIDTEST"], token="tok")
    assert with_token.load(web_ref("s3://pics/plain.png")).data == PNG


def test_s3_wrong_credentials_and_unlisted_buckets(
    tmp_path: Path, s3_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = s3_loader(tmp_path, s3_port, monkeypatch, "not-the-secret")
    assert reason(wrong, web_ref("s3://pics/plain.png")) == "image_unreachable"
    load = s3_loader(tmp_path, s3_port, monkeypatch, S3_KEYS["AKIDTEST"])
    assert reason(load, web_ref("s3://other/plain.png")) == "uri_forbidden"
    assert reason(load, web_ref("s3://pics/../other/plain.png")) == "uri_forbidden"
    assert reason(load, web_ref("s3://pics/")) == "uri_forbidden"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    no_keys = loader(tmp_path, s3_buckets=["pics"], s3_endpoint=f"http://127.0.0.1:{s3_port}")
    assert reason(no_keys, web_ref("s3://pics/plain.png")) == "image_unreachable"


def test_signer_matches_the_aws_get_object_example() -> None:
    # "Example: GET Object" in the S3 SigV4 docs (Authenticating Requests: Authorization Header).
    credentials = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    headers = sign_s3_get(
        credentials,
        "us-east-1",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        datetime(2013, 5, 24, tzinfo=UTC),
        {"Range": "bytes=0-9"},
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_network_settings_refuse_loose_entries() -> None:
    for bad in [{"https_hosts": ["*.example.com"]}, {"http_hosts": ["http://mirror"]}]:
        with pytest.raises(ValueError, match="host entry"):
            ImageStoreSettings(**bad)
    with pytest.raises(ValueError, match="s3_endpoint"):
        ImageStoreSettings(s3_endpoint="https://user:pw@s3.example.com/prefix")
