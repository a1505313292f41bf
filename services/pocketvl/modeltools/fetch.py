"""Download a catalog checkpoint with huggingface_hub (from the hub or a hub-compatible mirror).

Only the files serving needs are fetched (configs, tokenizer, safetensors weights); the
repositories' remote-code ``*.py`` files are skipped: pocketvl never executes them.
The result is checked with ``verify_checkpoint`` before it is reported as fetched.
"""

from __future__ import annotations

from pathlib import Path

from pocketvl.errors import PocketvlError
from pocketvl.modeltools.catalog import CatalogEntry

WANTED = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]


def fetch_checkpoint(
    entry: CatalogEntry, dest: Path, endpoint: str | None = None, revision: str | None = None
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target = dest / entry.name
    print(f"fetching {entry.hub_id} (about {entry.disk_gb} GB) into {target}")
    try:
        snapshot_download(
            entry.hub_id,
            revision=revision,
            local_dir=target,
            endpoint=endpoint,
            allow_patterns=WANTED,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        where = endpoint or "the Hugging Face hub (HF_ENDPOINT)"
        raise PocketvlError(
            f"could not download {entry.hub_id} from {where}: {exc}. Use --endpoint with a "
            "reachable mirror, or copy the checkpoint directory and run `pocketvl models verify`"
        ) from exc
    from pocketvl.modeltools.verify import verify_checkpoint

    for line in verify_checkpoint(target):
        print(f"  {line}")
    return target
