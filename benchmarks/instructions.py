"""Instructions per request, counted by valgrind: a measure that does not move with the machine.

``python -m benchmarks.instructions KIND SCENARIO N`` sends ``N`` requests of one
scenario through the in-process handler path of `benchmarks.inprocess`, after a
warm-up of 50.  Run under callgrind twice, with ``N`` and with 0, the difference
divided by ``N`` is the instructions one request executes::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m benchmarks.instructions memory read 150

KIND is ``bare``, ``memory`` (MemoryStore), ``cookie`` (signed cookie),
``encrypted`` (encrypted cookie) or ``memory-enc`` (MemoryStore in an EncryptedStore);
SCENARIO is ``read``, ``changed``, ``regenerate`` or ``unused``.  Counts repeat
to within a few hundred instructions whatever else the machine does, where µs
moved by a factor of two between days on the project's shared machine; they
are not time (a cache miss costs more than an instruction), so they compare
versions of the code, not libraries.  One caveat: valgrind runs about fifty
times slower, so what the code caches for a second (the cookie's date, the
signer's timestamp field) is computed anew on nearly every request here.
"""

from __future__ import annotations

import asyncio
import sys

import tornado.web

from tornado_session.stores import MemoryStore

from .data import ENCRYPTION_KEY
from .inprocess import Bare, fetch
from .servers import tornado_session_app


def _app(kind: str) -> tornado.web.Application:
    """The tornado-session application of ``kind``."""
    if kind == "encrypted":
        return tornado_session_app(None, encryption_keys={1: ENCRYPTION_KEY})
    if kind == "memory-enc":
        from tornado_session.stores import EncryptedStore

        store = EncryptedStore(MemoryStore(), keys={1: ENCRYPTION_KEY}, readable=("user_id",))
        return tornado_session_app(store)
    return tornado_session_app(MemoryStore() if kind == "memory" else None)


async def requests(kind: str, scenario: str, count: int) -> None:
    """Send ``count`` requests of ``scenario`` (after 50 that warm up)."""
    cookie: str | None = None
    if kind == "bare":
        app = tornado.web.Application([(r"/bare", Bare)])
        path = "/bare"
    else:
        app = _app(kind)
        cookie = (await fetch(app, "/seed", None)).cookie
        path = f"/{scenario}"
        if scenario == "unused":
            cookie = None
    for _ in range(50 + count):
        answer = await fetch(app, path, cookie)
        if scenario == "regenerate":  # the old id is dead: carry on with the new one
            cookie = answer.cookie


if __name__ == "__main__":
    asyncio.run(requests(sys.argv[1], sys.argv[2], int(sys.argv[3])))
