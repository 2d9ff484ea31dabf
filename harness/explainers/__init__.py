"""Plugins: one file each, registered with a decorator."""
