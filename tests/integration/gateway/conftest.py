"""Fixtures of the gateway tests: an in-process gateway on the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_support import Gateway, start_test_gateway, stop_test_gateway

from backcast.jobqueue.store import JobStore


@pytest.fixture
async def gateway(store: JobStore, database_url: str) -> AsyncIterator[Gateway]:
    running = await start_test_gateway(store, database_url)
    try:
        yield running
    finally:
        await stop_test_gateway(running)
