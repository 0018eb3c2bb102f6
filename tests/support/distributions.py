"""Installed distributions made up on the spot, for the connector registry tests."""

from __future__ import annotations

from pathlib import Path


def make_distribution(root: Path, name: str, version: str, connectors: dict[str, str]) -> None:
    """A minimal installed distribution (dist-info) registering ``connectors``."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in connectors.items())
    (info / "entry_points.txt").write_text(f"[erpsync.connectors]\n{lines}\n")
