"""Untrusted images through the real claim-check stores: caps, digests, path, host, address
and bucket rules, served by local file, HTTPS, HTTP and S3-like servers (no local stack)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pocketvl.adapters.claim_check import S3Store, WebStore, image_stores
from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import ImageStoreSettings, LimitSettings
from pocketvl.worker.images import ImageFetcher
from tests.conftest import b64, encode
from tests.support.claim_check_servers import (
    EMPTY_BODY_SHA256,
    ClaimCheckServer,
    S3Handler,
    StaticHandler,
    self_signed_cert,
    serve,
    sigv4_signature,
)

PNG = encode(Image.new("RGB", (64, 48), (1, 2, 3)))
Loader = Callable[..., ImageFetcher]


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no credentials, profile or files from this machine, and no
    instance-metadata probe (which would wait for a timeout off EC2)."""
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Loader]:
    """Makes the worker's fetcher with the real stores; keyword options are limit or store
    settings. Every store made is closed at the end of the test."""
    made: list[ImageFetcher] = []

    def make(**options: object) -> ImageFetcher:
        limits = {k: v for k, v in options.items() if k in LimitSettings.model_fields}
        store = {k: v for k, v in options.items() if k not in limits}
        settings = ImageStoreSettings(**{"file_roots": [tmp_path / "root"], **store})
        made.append(ImageFetcher(LimitSettings(**limits), image_stores(settings)))
        return made[-1]

    yield make
    for fetcher in made:
        for store in fetcher.stores.values():
            if isinstance(store, WebStore | S3Store):
                store.close()


def failure(load: ImageFetcher, image: InlineImage | ImageReference) -> ImageError:
    with pytest.raises(ImageError) as info:
        load.load(image)
    return info.value


def reason(load: ImageFetcher, image: InlineImage | ImageReference) -> str:
    return failure(load, image).reason


def test_inline_image_loads_with_digest(loader: Loader) -> None:
    image = loader().load(InlineImage(media_type="image/png", data_b64=b64(PNG)))
    assert (image.data, image.media_type) == (PNG, "image/png")
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()


def test_bad_inline_images(loader: Loader) -> None:
    # Format, pixel and frame checks belong to pocketvl.media (tests/unit/test_media.py).
    load = loader(max_inline_image_bytes=2048)
    assert (
        reason(load, InlineImage(media_type="image/png", data_b64="!!not base64!!")) == "bad_base64"
    )
    assert (
        reason(load, InlineImage(media_type="image/png", data_b64="A" * 4000)) == "image_too_large"
    )


def ref(path: Path, data: bytes, **overrides: object) -> ImageReference:
    uri = str(overrides.pop("uri", path.as_uri()))
    return web_ref(uri, data, **overrides)


def web_ref(uri: str, data: bytes = PNG, **overrides: object) -> ImageReference:
    fields: dict[str, object] = {
        "uri": uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "image/png",
        "size_bytes": len(data),
    }
    return ImageReference(**(fields | overrides))


def test_file_references_under_the_root(tmp_path: Path, loader: Loader) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.png").write_bytes(PNG)
    load = loader()
    assert load.load(ref(root / "a.png", PNG)).sha256 == hashlib.sha256(PNG).hexdigest()
    assert reason(load, ref(root / "a.png", PNG, sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, ref(root / "a.png", PNG, size_bytes=len(PNG) + 1)) == "digest_mismatch"
    assert reason(load, ref(root / "missing.png", PNG)) == "image_unreachable"


def test_references_cannot_escape_the_root(tmp_path: Path, loader: Loader) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    load = loader()
    escape = ref(root, PNG, uri=f"file://{root}/../secret.png")
    assert reason(load, escape) == "uri_forbidden"
    assert reason(load, ref(root / "link.png", PNG)) == "uri_forbidden"
    assert reason(load, ref(root, PNG, uri="https://example.com/a.png")) == "uri_forbidden"
    assert reason(load, ref(root, PNG, uri="file://otherhost/etc/passwd")) == "uri_forbidden"


def test_too_many_images(loader: Loader) -> None:
    image = InlineImage(media_type="image/png", data_b64=b64(PNG))
    with pytest.raises(ImageError) as info:
        loader(max_images=2).load_all([image] * 3)
    assert info.value.reason == "too_many_images"


WEB_OBJECTS = {"/ok.png": PNG, "/a.png?v=1": PNG}


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClaimCheckServer, Path]]:
    """A self-signed HTTPS server whose certificate names ``localhost`` only (not
    127.0.0.1, where it listens), and its CA file."""
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serve(StaticHandler, WEB_OBJECTS, tls=tls) as server:
        yield server, cert


@pytest.fixture(scope="module")
def http_server() -> Iterator[ClaimCheckServer]:
    with serve(StaticHandler, WEB_OBJECTS) as server:
        yield server


def https_loader(
    loader: Loader, server: tuple[ClaimCheckServer, Path], **options: object
) -> ImageFetcher:
    port, ca_file = server[0].port, server[1]
    return loader(**{"https_hosts": [f"LocalHost:{port}"], "ca_file": ca_file, **options})


def test_https_reference_from_an_allowed_host(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    # The connection goes to the address checked (127.0.0.1) and TLS checks the name
    # (localhost): the certificate names only the latter.
    load = https_loader(loader, https_server)
    port = https_server[0].port
    base = f"https://localhost:{port}"
    assert load.load(web_ref(f"{base}/ok.png")).data == PNG
    assert https_server[0].received[-1]["host"] == f"localhost:{port}"
    assert load.load(web_ref(f"{base}/a.png?v=1")).data == PNG
    assert reason(load, web_ref(f"{base}/ok.png", sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, web_ref(f"{base}/missing.png")) == "image_unreachable"


def test_redirects_are_not_followed(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    # Followed, the redirect would serve a good image.
    load = https_loader(loader, https_server)
    error = failure(load, web_ref(f"https://localhost:{https_server[0].port}/redirect"))
    assert (error.reason, error.retryable) == ("image_unreachable", False)
    assert "HTTP 302 redirect, not followed" in str(error)


def test_overloaded_stores_are_retryable(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    load = https_loader(loader, https_server)
    for path, status in [("/busy", 503), ("/throttled", 429)]:
        with pytest.raises(ImageUnavailable) as info:
            load.load(web_ref(f"https://localhost:{https_server[0].port}{path}"))
        assert (info.value.reason, info.value.retryable) == ("image_unavailable", True)
        assert f"HTTP {status}" in str(info.value)


def test_https_needs_a_trusted_certificate(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    port = https_server[0].port
    load = loader(https_hosts=[f"localhost:{port}"])  # system CAs only
    error = failure(load, web_ref(f"https://localhost:{port}/ok.png"))
    assert (error.reason, error.retryable) == ("image_unreachable", False)
    # Trusted, but not for the name asked: the certificate is for localhost only.
    trusting = loader(https_hosts=[f"127.0.0.1:{port}"], ca_file=https_server[1])
    assert reason(trusting, web_ref(f"https://127.0.0.1:{port}/ok.png")) == "image_unreachable"


def test_https_refuses_unlisted_places(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    port = https_server[0].port
    load = https_loader(loader, https_server, http_hosts=["localhost"])
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


def test_body_over_the_cap_is_not_read(
    loader: Loader, https_server: tuple[ClaimCheckServer, Path]
) -> None:
    load = https_loader(loader, https_server, max_image_bytes=4096)
    base = f"https://localhost:{https_server[0].port}"
    assert reason(load, web_ref(f"{base}/huge", b"x" * 100)) == "image_too_large"
    started = time.monotonic()
    # A never-ending body: only a capped read returns at all.
    assert reason(load, web_ref(f"{base}/endless", b"x" * 100)) == "image_too_large"
    assert time.monotonic() - started < 5
    assert len(load.stores["https"].fetch(f"{base}/endless", 4096)) == 4097


def test_slow_stores_time_out_as_retryable(loader: Loader, http_server: ClaimCheckServer) -> None:
    load = loader(http_hosts=[f"127.0.0.1:{http_server.port}"], fetch_timeout_s=0.5)
    base = f"http://127.0.0.1:{http_server.port}"
    # /stall never answers (a read timeout); /dribble answers a byte every 0.1 s, each
    # within the read timeout, so only the whole-fetch deadline stops it.
    for path in ["/stall", "/dribble"]:
        started = time.monotonic()
        with pytest.raises(ImageUnavailable) as info:
            load.load(web_ref(f"{base}{path}", b"x" * 300))
        assert (info.value.reason, info.value.retryable) == ("image_unavailable", True), path
        assert time.monotonic() - started < 2, path


def test_proxies_from_the_environment_are_not_used(
    loader: Loader, http_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"]:
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    load = loader(http_hosts=[f"127.0.0.1:{http_server.port}"])
    assert load.load(web_ref(f"http://127.0.0.1:{http_server.port}/ok.png")).data == PNG


def fake_dns(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]
) -> dict[str, int]:
    """Names in ``answers`` resolve to its lists in turn (the last one repeats); others as
    usual. Returns how often each faked name was looked up."""
    real = socket.getaddrinfo
    lookups = dict.fromkeys(answers, 0)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        turn = answers[host][min(lookups[host], len(answers[host]) - 1)]
        lookups[host] += 1
        return [
            (
                socket.AF_INET6 if ":" in addr else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (addr, port),
            )
            for addr in turn
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_names_resolving_to_private_addresses_are_refused(
    loader: Loader, http_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = http_server.port
    fake_dns(
        monkeypatch,
        {
            "images.example": [["127.0.0.1"]],
            "mixed.example": [["93.184.216.34", "127.0.0.1"]],  # every address is checked
            "metadata.example": [["169.254.169.254"]],
            "localhost": [["10.0.0.5"]],  # localhost permits loopback only
        },
    )
    names = ["images.example", "mixed.example", "metadata.example", "localhost"]
    load = loader(http_hosts=[*(f"{name}:{port}" for name in names), f"127.0.0.1:{port}"])
    for name in names:
        error = failure(load, web_ref(f"http://{name}:{port}/ok.png"))
        assert (error.reason, error.retryable) == ("uri_forbidden", False), name
        assert "non-public address" in str(error), name
    # The same server, listed as the IP literal itself, is an explicit permission.
    assert load.load(web_ref(f"http://127.0.0.1:{port}/ok.png")).data == PNG


def test_connects_to_the_address_it_checked(
    loader: Loader,
    https_server: tuple[ClaimCheckServer, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A rebinding resolver: a later lookup would answer an address where nothing listens.
    # ::1 first: a refused connection moves on to the next checked address.
    lookups = fake_dns(monkeypatch, {"localhost": [["::1", "127.0.0.1"], ["192.0.2.1"]]})
    load = https_loader(loader, https_server, fetch_timeout_s=2)
    assert load.load(web_ref(f"https://localhost:{https_server[0].port}/ok.png")).data == PNG
    assert lookups["localhost"] == 1


S3_KEYS = {"AKIDTEST": "test-secret/key+1", "ASIATEMP": "temporary-secret"}
S3_TOKENS = {"ASIATEMP": "session-token/for+ASIATEMP"}
S3_OBJECTS = {"/pics/cam front/ü 1.png": PNG, "/pics/plain.png": PNG, "/other/plain.png": PNG}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[ClaimCheckServer]:
    with serve(S3Handler, S3_OBJECTS, secrets=S3_KEYS, tokens=S3_TOKENS) as server:
        yield server


def s3_loader(loader: Loader, server: ClaimCheckServer, **options: object) -> ImageFetcher:
    endpoint = f"http://127.0.0.1:{server.port}"
    return loader(
        **{"s3_buckets": ["pics"], "s3_endpoint": endpoint, "s3_region": "eu-west-1", **options}
    )


def env_keys(monkeypatch: pytest.MonkeyPatch, key_id: str, secret: str, token: str = "") -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)


def test_s3_reference_is_signed_and_verified(
    loader: Loader, s3_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_keys(monkeypatch, "AKIDTEST", S3_KEYS["AKIDTEST"])
    load = s3_loader(loader, s3_server)
    assert load.load(web_ref("s3://pics/plain.png")).data == PNG
    assert load.load(web_ref("s3://pics/cam front/ü 1.png")).data == PNG
    assert reason(load, web_ref("s3://pics/plain.png", sha256="0" * 64)) == "digest_mismatch"
    assert reason(load, web_ref("s3://pics/missing.png")) == "image_unreachable"


def test_s3_session_token_is_sent_and_signed(
    loader: Loader, s3_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_keys(monkeypatch, "ASIATEMP", S3_KEYS["ASIATEMP"], token=S3_TOKENS["ASIATEMP"])
    assert s3_loader(loader, s3_server).load(web_ref("s3://pics/plain.png")).data == PNG
    headers = s3_server.received[-1]
    assert headers["x-amz-security-token"] == S3_TOKENS["ASIATEMP"]
    assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1]
    # Temporary keys without their token are refused by the server.
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    without = s3_loader(loader, s3_server)
    assert reason(without, web_ref("s3://pics/plain.png")) == "image_unreachable"


def test_s3_credentials_from_a_shared_file_profile(
    loader: Loader, s3_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n"
        f"[images]\naws_access_key_id = AKIDTEST\naws_secret_access_key = {S3_KEYS['AKIDTEST']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "images")
    assert s3_loader(loader, s3_server).load(web_ref("s3://pics/plain.png")).data == PNG
    assert "Credential=AKIDTEST/" in s3_server.received[-1]["authorization"]
    monkeypatch.setenv("AWS_PROFILE", "missing")
    error = failure(s3_loader(loader, s3_server), web_ref("s3://pics/plain.png"))
    assert error.reason == "image_unreachable" and "missing" in str(error)


def test_s3_wrong_credentials_and_unlisted_buckets(
    loader: Loader, s3_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_keys(monkeypatch, "AKIDTEST", "not-the-secret")
    assert reason(s3_loader(loader, s3_server), web_ref("s3://pics/plain.png")) == (
        "image_unreachable"
    )
    env_keys(monkeypatch, "AKIDTEST", S3_KEYS["AKIDTEST"])
    load = s3_loader(loader, s3_server)
    assert reason(load, web_ref("s3://other/plain.png")) == "uri_forbidden"
    assert reason(load, web_ref("s3://pics/../other/plain.png")) == "uri_forbidden"
    assert reason(load, web_ref("s3://pics/")) == "uri_forbidden"


def test_s3_without_credentials_says_so(loader: Loader, s3_server: ClaimCheckServer) -> None:
    before = len(s3_server.received)
    error = failure(s3_loader(loader, s3_server), web_ref("s3://pics/plain.png"))
    assert (error.reason, error.retryable) == ("image_unreachable", False)
    assert "no S3 credentials" in str(error)
    assert len(s3_server.received) == before  # no unsigned request was sent


def test_s3_endpoint_name_resolving_to_a_private_address_is_refused(
    loader: Loader, s3_server: ClaimCheckServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_keys(monkeypatch, "AKIDTEST", S3_KEYS["AKIDTEST"])
    fake_dns(monkeypatch, {"minio.internal": [["127.0.0.1"]]})
    load = s3_loader(loader, s3_server, s3_endpoint=f"http://minio.internal:{s3_server.port}")
    assert reason(load, web_ref("s3://pics/plain.png")) == "uri_forbidden"


def test_the_servers_sigv4_check_matches_the_aws_get_object_example() -> None:
    # "Example: GET Object" of the S3 SigV4 specification (Authorization header signing):
    # the fake server's verifier must compute its published signature.
    signed = {
        "host": "examplebucket.s3.amazonaws.com",
        "range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_BODY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    scope = "20130524/us-east-1/s3/aws4_request"
    assert sigv4_signature(secret, "GET", "/test.txt", "", signed, scope) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_network_settings_refuse_loose_entries() -> None:
    for bad in [{"https_hosts": ["*.example.com"]}, {"http_hosts": ["http://mirror"]}]:
        with pytest.raises(ValueError, match="host entry"):
            ImageStoreSettings(**bad)
    with pytest.raises(ValueError, match="s3_endpoint"):
        ImageStoreSettings(s3_endpoint="https://user:pw@s3.example.com/prefix")
