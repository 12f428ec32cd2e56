"""Fixtures for the tabs' handler tests."""

import pytest

from pipeline.data.store import Store


@pytest.fixture
def store(tmp_path):
    """A workspace holding the shipped constitutions."""
    s = Store(tmp_path / "ws")
    s.seed()
    return s
