"""The worker: consumer loop, per-message pipeline, offset bookkeeping."""
