"""Fingerprints: one file each, registered with a decorator (``harness.fingerprint`` is their base)."""
