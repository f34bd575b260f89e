"""Shared pytest configuration: the real-Postfix harness fixtures (see tests/harness)."""

from tests.harness.fixtures import *  # noqa: F403
