"""pocketvl: streaming inference for Mini-InternVL2 domain-adaptation checkpoints."""

__version__ = "0.1.0"
