"""A local S3 server (moto, in memory) as the broker's durable storage.

tansu with ``--storage-engine memory://`` loses every topic, record and committed offset
when it restarts; with ``s3://tansu/`` on an S3 server it keeps them across a broker crash.
moto keeps its objects in memory, so they outlive broker restarts, not its own.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pocketvl.errors import StackError

BUCKET = "tansu"
STORAGE_URL = f"s3://{BUCKET}/"
INSTALL_HINT = "pip install 'pocketvl[devstack]' (moto[server] ships moto_server)"
_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
_REGION = "us-east-1"


def moto_binary() -> Path:
    """``moto_server`` beside this interpreter (a virtual environment), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.is_file() else shutil.which("moto_server")
    if found is None:
        raise StackError(f"moto_server not found: {INSTALL_HINT}")
    return Path(found)


def moto_argv(port: int) -> list[str]:
    return [str(moto_binary()), "-H", "127.0.0.1", "-p", str(port)]


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def broker_environment(port: int) -> dict[str, str]:
    """What tansu's S3 storage (the Rust object_store crate) reads to reach the server."""
    return {
        "AWS_ACCESS_KEY_ID": _CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": _CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": _REGION,
        "AWS_REGION": _REGION,
        "AWS_ENDPOINT": endpoint(port),
        "AWS_ALLOW_HTTP": "true",
    }


def ensure_bucket(port: int) -> bool:
    """True once the server answers and holds the broker's bucket (created if missing: the
    broker needs it before it starts, and a restarted moto starts empty)."""
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint(port),
        region_name=_REGION,
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
        **_CREDENTIALS,
    )
    try:
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if BUCKET not in names:
            client.create_bucket(Bucket=BUCKET)
        return True
    finally:
        client.close()
