"""Types shared by every message: domains, image references, generation parameters."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = "1"
DOMAINS: Final = ("driving", "remote_sensing", "medical")
Domain = Literal["driving", "remote_sensing", "medical"]
ModelSize = Literal["1b", "2b", "4b"]
MediaType = Literal["image/jpeg", "image/png", "image/webp"]

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Strict(BaseModel):
    """Base for contract models: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InlineImage(Strict):
    """Image bytes carried in the message itself (base64), under the configured inline cap."""

    kind: Literal["inline"] = "inline"
    media_type: MediaType
    data_b64: str = Field(min_length=4, description="standard base64 of the encoded image file")
    name: str | None = Field(default=None, max_length=64, description="e.g. a camera name")


class ImageReference(Strict):
    """Claim check: the image lives elsewhere; the worker fetches it and checks its digest."""

    kind: Literal["ref"] = "ref"
    uri: str = Field(min_length=8, max_length=2048, description="file:// under a configured root")
    sha256: Sha256Hex
    media_type: MediaType
    size_bytes: int = Field(ge=1)
    name: str | None = Field(default=None, max_length=64, description="e.g. a camera name")


Image = Annotated[InlineImage | ImageReference, Field(discriminator="kind")]


class GenerationParams(Strict):
    """Decoding is greedy (as in the DA evaluations); these only bound the work."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=1024)
    max_tiles: int | None = Field(default=None, ge=1, le=40)
