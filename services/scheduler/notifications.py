"""A dedicated PostgreSQL connection that LISTENs for queue notifications."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from psycopg import sql

from backcast.telemetry import EVENT

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class NotificationListener:
    """Calls a handler with the payload of each notification on its channel.

    NOTIFY is only a hint: it is lost while this connection is down, so every
    consumer keeps its own slower safety net (the dispatcher's poll, the
    heartbeat's cancel check).
    """

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._handlers: dict[str, Callable[[str], None]] = {}
        self._on_connected: list[Callable[[], None]] = []
        self.connected = asyncio.Event()

    def subscribe(self, channel: str, handler: Callable[[str], None]) -> None:
        self._handlers[channel] = handler

    def on_connected(self, callback: Callable[[], None]) -> None:
        """Run `callback` after every (re)connect, to catch up on what was missed."""
        self._on_connected.append(callback)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after connection failures."""
        while True:
            try:
                await self._listen()
            except psycopg.OperationalError as exc:
                logger.warning(
                    "notification connection lost",
                    extra={EVENT: "listen_failed", "error": type(exc).__name__},
                )
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
                logger.error(
                    "notification listener failed",
                    exc_info=exc,
                    extra={EVENT: "listen_failed"},
                )
            self.connected.clear()
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        )
        async with connection:
            for channel in self._handlers:
                statement = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                await connection.execute(statement)
            self.connected.set()
            logger.info(
                "listening for notifications",
                extra={EVENT: "listen_started", "channels": sorted(self._handlers)},
            )
            for callback in self._on_connected:
                callback()

            async for notify in connection.notifies():
                handler = self._handlers.get(notify.channel)
                if handler is not None:
                    handler(notify.payload)
