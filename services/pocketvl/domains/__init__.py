"""Domain adapters: how each task is asked of its DA checkpoint."""
