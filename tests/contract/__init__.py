"""Contract tests: schemas, Triton configs and docs tables checked against their source."""
