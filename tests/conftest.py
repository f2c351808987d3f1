"""Shared pytest configuration of the core tests."""

from __future__ import annotations

pytest_plugins = ["medi2i.testing.pytest_plugin"]
