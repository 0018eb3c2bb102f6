"""Helpers shared by every lane: services, settings, processes, waiting (see tests/README.md)."""
