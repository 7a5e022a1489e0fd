"""Interlink's composition root: config, app factory, CLI, health, upstream catalog and the demo server."""

from __future__ import annotations

__version__ = "0.1.0"
