"""Faults on the real local stack: components killed and restarted under load, counting
what arrived. Each module owns its stack, since it kills parts of it."""
