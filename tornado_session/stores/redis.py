"""RedisStore: sessions in Redis, one hash per session, expired by Redis itself.

Each session is a Redis hash under the store's ``namespace`` plus the key the
lifecycle gives (a hash of the session id, never the id).  Each top-level
session key is one field holding the orjson bytes of its value, and a field
made of the one byte 0xFF (never valid UTF-8, so never a session key) marks
the record, so an empty session still exists.  The key carries its own TTL:
Redis expires it, on its own clock, without any sweeping on our side.

Every operation is one round trip:

* `RedisStore.get` is one ``HGETALL``;
* a new or regenerated session is written by one ``EVALSHA`` of a small Lua
  script that replaces the hash and sets its TTL (``DEL``, ``HSET``,
  ``PEXPIRE``), atomically;
* an update of a loaded session sends only the changed keys: the same script
  checks that the hash still exists (a concurrent logout wins: nothing is
  written and `RedisStore.set` returns ``False``), then writes the changed
  fields (``HSET``), deletes the removed ones (``HDEL``) and renews the TTL,
  atomically.  Two requests of one user that change different keys both keep
  their writes;
* `RedisStore.touch`, and an update that changes no key, are one ``PEXPIRE``;
* `RedisStore.destroy` is one ``DEL``.

`RedisStore.count`, `RedisStore.clear` and `RedisStore.destroy_all` walk the
namespace with ``SCAN`` (never ``KEYS``, which blocks the server) and touch only
the hashes under it; nothing here ever calls ``FLUSHDB``.

The ``redis`` package is imported when a store is built, not when this module
is, so ``import tornado_session`` works without it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import serializers
from ..errors import SessionError, SessionOptionError, StoreUnavailableError
from .base import Clock, Store

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

_INSTALL_HINT = 'RedisStore needs the redis package: pip install "tornado-session[redis]"'

#: The field present in every session hash.  Not valid UTF-8, so no session
#: key (a ``str``) can collide with it; its value is the layout version.
MARKER = b"\xff"
_LAYOUT = b"1"

#: Replace (``mode == "new"``) or update (``"update"``) one session hash, and
#: set its TTL.  KEYS[1]: the hash.  ARGV: TTL in ms, mode, how many fields to
#: set, those field/value pairs, then the fields to delete.  An update of a
#: hash that does not exist (destroyed or expired) writes nothing and returns 0.
#: ``unpack`` is chunked: Lua's stack takes a few thousand values at most.
_WRITE_SCRIPT = """
local key = KEYS[1]
if ARGV[2] == 'update' then
  if redis.call('EXISTS', key) == 0 then return 0 end
else
  redis.call('DEL', key)
end
local last = 3 + 2 * tonumber(ARGV[3])
local i = 4
while i <= last do
  local j = math.min(i + 999, last)
  redis.call('HSET', key, unpack(ARGV, i, j))
  i = j + 1
end
i = last + 1
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('HDEL', key, unpack(ARGV, i, j))
  i = j + 1
end
redis.call('PEXPIRE', key, ARGV[1])
return 1
"""

_WRITE_SHA = hashlib.sha1(_WRITE_SCRIPT.encode("utf-8")).hexdigest()


def _redis_modules() -> tuple[Any, Any]:
    """Import ``redis.asyncio`` and ``redis.exceptions``, or say which extra to install."""
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return redis.asyncio, redis.exceptions


def _ttl_ms(max_age: float) -> int:
    """``max_age`` seconds as a Redis TTL in milliseconds (at least 1)."""
    return max(1, math.ceil(max_age * 1000))


def _escape_glob(text: str) -> str:
    """Escape the characters ``SCAN ... MATCH`` treats as a pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisStore(Store):
    """Keeps sessions in Redis (6.0 or later) through ``redis.asyncio``.

    ``client`` is a ``redis.asyncio.Redis`` that you made and keep: `close`
    leaves it open.  `from_url` builds one that the store owns and closes.  It
    must be built with ``decode_responses=False`` (the default).

    ``namespace`` is put before every key, so several applications (or a
    session store and a cache) share one database without touching each
    other's keys: `clear`, `count` and `destroy_all` only see the hashes under
    it.  It must not be empty.

    The store reports the connection's real state: a command that fails with a
    connection error or a time-out emits ``disconnect`` and raises
    `StoreUnavailableError`; the first command sent after it that succeeds
    emits ``connect`` (an answer to one sent before the loss does not: see
    `Store._call`).  Each change is logged once.  While disconnected, a
    background task sends ``PING`` (after 0.05 s, then backing off to every
    ``probe_interval`` seconds), so the return of the server is noticed even
    when no request comes in, and the requests the lifecycle holds during an
    outage are released at once.  That task runs only while the store is
    disconnected, and `close` cancels it.

    ``timeout`` bounds each call, in seconds: a call that takes longer counts
    as an outage, like a refused connection.  With ``None`` (the default here)
    only the client's own ``socket_timeout`` applies.  The client's ``retry``
    policy runs before the store sees a failure: keep it short (`from_url`
    uses one immediate retry) so that an outage is noticed well within the
    lifecycle's ``reconnect_timeout``.
    """

    backend = "Redis"

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "tornado_session:",
        timeout: float | None = None,
        probe_interval: float = 1.0,
        clock: Clock = time.time,
    ) -> None:
        aioredis, exceptions = _redis_modules()
        if not isinstance(client, aioredis.Redis):
            raise SessionOptionError(
                f"RedisStore(client={type(client).__name__}): expected a redis.asyncio.Redis "
                "(a blocking redis.Redis would stall the IOLoop); "
                "or use RedisStore.from_url(url)"
            )
        if client.get_connection_kwargs().get("decode_responses"):
            raise SessionOptionError(
                "RedisStore(client=...): the client has decode_responses=True; "
                "session data is bytes, build the client with decode_responses=False"
            )
        if not isinstance(namespace, str) or not namespace:
            raise SessionOptionError(
                f"RedisStore(namespace={namespace!r}): expected a non-empty str "
                "(clear() and count() work on every key under it)"
            )
        # ``timeout``: seconds a command may take before it counts as an outage
        # (``None``: only the client's own ``socket_timeout`` applies).
        super().__init__(clock=clock, probe_interval=probe_interval, timeout=timeout)
        #: The ``redis.asyncio.Redis`` client the store sends its commands through.
        self.client = client
        self.namespace = namespace
        self._owns_client = False
        # The driver's exceptions, for `_driver_error` (redis is imported with the store).
        self._unavailable: tuple[type[Exception], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
        )
        self._redis_error: type[Exception] = exceptions.RedisError
        self._no_script: type[Exception] = exceptions.NoScriptError
        self._pattern = _escape_glob(namespace) + "*"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "tornado_session:",
        timeout: float | None = 5.0,
        probe_interval: float = 1.0,
        clock: Clock = time.time,
        **client_options: Any,
    ) -> RedisStore:
        """Build a store with a client of its own, from a ``redis://`` URL.

        ``client_options`` go to ``redis.asyncio.Redis.from_url``
        (``max_connections`` defaults to 10,000 here, Redis's own limit of
        clients, instead of redis-py's 100, past which commands fail).  Unless
        given, ``retry`` is one immediate retry (enough to replace a pooled
        connection the server closed), so a server that is down is reported
        at once instead of after redis-py's default back-off of seconds; and
        ``socket_timeout`` is ``None``, because the store bounds each call
        with ``timeout`` itself, which is cheaper than redis-py's per-command
        time-out (a task per command).  The store closes this client in
        `close`.
        """
        aioredis, _ = _redis_modules()
        # The store bounds each call with ``timeout``; a socket_timeout in the
        # client as well would cost a task per command (redis-py wraps each
        # send in asyncio.wait_for), about 15 us.
        client_options.setdefault("socket_timeout", None)
        if "retry" not in client_options:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client_options["retry"] = Retry(NoBackoff(), 1)
        if not isinstance(url, str):
            raise SessionOptionError(
                f"RedisStore.from_url(url=...): expected a str such as 'redis://host:6379/0', "
                f"got {type(url).__name__}"
            )
        # redis-py's pool holds 100 connections by default and raises at the
        # 101st concurrent command, which the store would take for an outage
        # (every request 503 under a burst).  Redis itself takes 10,000 clients.
        # (A BlockingConnectionPool waits instead, but costs ~20 us a command.)
        client_options.setdefault("max_connections", 10_000)
        try:
            client = aioredis.Redis.from_url(url, **client_options)
        except (ValueError, TypeError) as exc:  # not echoing the URL: it may hold a password
            raise SessionOptionError(f"RedisStore.from_url(url=...): {exc}") from exc
        # No connection is made before the first command: a bad option below
        # leaves no socket open.
        store = cls(
            client, namespace=namespace, timeout=timeout, probe_interval=probe_interval,
            clock=clock,
        )
        store._owns_client = True
        return store

    # -- the protocol -----------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the session under ``key`` (one ``HGETALL``), or ``None``.

        Redis never returns a key whose TTL ran out, so an expired session
        reads as missing.  A record that does not decode (written by something
        else) reads as missing too, with a warning, so it becomes a fresh
        session rather than an error page.
        """
        fields: dict[bytes, bytes] = await self._call(self.client.hgetall, self.namespace + key)
        if not fields:
            return None
        try:
            return {
                name.decode("utf-8"): serializers.loads(raw)
                for name, raw in fields.items()
                if name != MARKER
            }
        except (UnicodeDecodeError, serializers.DecodeError):
            logger.warning(
                "a session record under namespace %r does not decode as JSON; "
                "it is treated as missing",
                self.namespace,
            )
            return None

    async def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write ``data`` with a TTL of ``max_age``; see `Store.set`.

        With ``previous`` only the keys that differ from it are written, and
        only if the record still exists (one atomic script); when none differ
        only the TTL is renewed (one ``PEXPIRE``).
        """
        name = self.namespace + key
        ttl = _ttl_ms(max_age)
        if previous is None:
            pairs = self._encode(data, data.keys())
            return bool(await self._write(name, ttl, "new", [MARKER, _LAYOUT, *pairs], []))
        try:
            to_set, to_unset = serializers.changed_keys(previous, data)
        except TypeError:  # a value that is not JSON replaced a stored one
            serializers.dumps(data)  # raises SessionSerializationError naming the key
            raise
        if not to_set and not to_unset:
            return bool(await self._call(self.client.pexpire, name, ttl))
        pairs = self._encode(data, to_set.keys())
        return bool(await self._write(name, ttl, "update", pairs, to_unset))

    async def touch(self, key: str, max_age: float) -> bool:
        """Renew the TTL of a live record (one ``PEXPIRE``); ``False`` when there is none."""
        return bool(await self._call(self.client.pexpire, self.namespace + key, _ttl_ms(max_age)))

    async def destroy(self, key: str) -> bool:
        """Delete the record under ``key`` (one ``DEL``); whether a live one was there."""
        return bool(await self._call(self.client.delete, self.namespace + key))

    async def destroy_all(self, **match: Any) -> int:
        """Destroy every session whose data has these top-level values.

        Walks the namespace with ``SCAN``; per batch of keys, one pipelined
        round trip reads the matched fields (``HMGET``) and one ``UNLINK``
        deletes the sessions that match.  Returns how many were deleted.
        """
        fields = [MARKER, *(name.encode("utf-8") for name in match)]
        destroyed = 0
        async for batch in self._scan():
            values = await self._call(self._read_fields, batch, fields)
            doomed = [
                name for name, raw in zip(batch, values, strict=True)
                if raw[0] is not None and self._matches(match, raw[1:])
            ]
            if doomed:
                destroyed += await self._call(self.client.unlink, *doomed)
        return destroyed

    async def count(self) -> int:
        """Return how many sessions the namespace holds (``SCAN``, never ``KEYS``)."""
        seen: set[bytes] = set()
        async for batch in self._scan():
            seen.update(batch)
        return len(seen)

    async def clear(self) -> None:
        """Delete every session under the namespace (``SCAN`` and ``UNLINK``).

        Other keys in the database are left alone.
        """
        async for batch in self._scan():
            await self._call(self.client.unlink, *batch)

    async def ping(self) -> None:
        """Send ``PING``; `StoreUnavailableError` when Redis does not answer."""
        await self._translated(self.client.ping)

    async def close(self) -> None:
        """Stop the reconnect probe and close the client if the store made it.

        A client passed to the constructor stays open: it is yours.  Calls
        after `close` raise `StoreUnavailableError`.
        """
        await self._stop_probe()
        if self._owns_client:
            self._owns_client = False
            await self.client.aclose()

    # -- internals --------------------------------------------------------------

    def _driver_error(self, exc: Exception) -> SessionError | None:
        """redis-py's connection errors and time-outs are outages; other errors refusals."""
        if isinstance(exc, self._unavailable):
            return StoreUnavailableError(f"Redis cannot be reached: {exc}")
        if isinstance(exc, self._redis_error):
            return SessionError(f"Redis refused a RedisStore command: {exc}")
        return super()._driver_error(exc)

    async def _write(
        self, name: str, ttl: int, mode: str, pairs: list[bytes], unset: list[str]
    ) -> int:
        """Run the write script: one ``EVALSHA`` (plus ``SCRIPT LOAD`` when Redis lacks it).

        The script's SHA is known in advance, so a process whose server already
        has the script (another process loaded it) never sends it.
        """
        args = (ttl, mode, len(pairs) // 2, *pairs, *unset)
        try:
            return int(await self._call(self.client.evalsha, _WRITE_SHA, 1, name, *args))
        except SessionError as exc:
            if not isinstance(exc.__cause__, self._no_script):
                raise
        # First use on this server, or it restarted and forgot the script.
        await self._call(self.client.script_load, _WRITE_SCRIPT)
        return int(await self._call(self.client.evalsha, _WRITE_SHA, 1, name, *args))

    @staticmethod
    def _encode(data: Mapping[str, Any], names: Iterable[str]) -> list[bytes]:
        """Field/value pairs for ``HSET``: UTF-8 names, canonical JSON values."""
        pairs: list[bytes] = []
        try:
            for name in names:
                pairs.append(name.encode("utf-8"))
                pairs.append(serializers.value_bytes(data[name]))
        except (TypeError, AttributeError, UnicodeEncodeError):
            serializers.dumps(data)  # raises SessionSerializationError naming the key
            raise
        return pairs

    async def _read_fields(
        self, names: list[bytes], fields: list[bytes]
    ) -> list[list[bytes | None]]:
        """``HMGET`` the same fields of many hashes in one pipelined round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(name, fields)
            result: list[list[bytes | None]] = await pipe.execute()
        return result

    @staticmethod
    def _matches(match: Mapping[str, Any], raw: list[bytes | None]) -> bool:
        """Whether the fields read for `destroy_all` hold the values asked for."""
        data: dict[str, Any] = {}
        try:
            for name, value in zip(match, raw, strict=True):
                if value is None:
                    return False
                data[name] = serializers.loads(value)
        except serializers.DecodeError:
            return False
        return Store.matches(data, match)

    async def _scan(self) -> AsyncIterator[list[bytes]]:
        """Yield the session hashes under the namespace, a ``SCAN`` page at a time."""
        cursor = 0
        while True:
            cursor, keys = await self._call(
                self.client.scan, cursor, self._pattern, 500, "hash"
            )
            if keys:
                yield keys
            if cursor == 0:
                return
