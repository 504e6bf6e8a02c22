"""What encryption itself costs: each cookie codec and the at-rest wrapper, in one process.

``python -m benchmarks.crypto_cost`` times, in thread CPU time (best of several
interleaved rounds, so other work on the machine has little effect), the step
that turns a session's payload into a cookie value and back:

* our signed cookie (`cookies.Signer` to write; Tornado's ``decode_signed_value``
  to read);
* our encrypted cookie (`crypto.EncryptedCookieCodec`, AES-256-GCM);
* aiohttp-session's ``EncryptedCookieStorage`` step, as its code does it:
  ``json.dumps`` then ``Fernet.encrypt`` to write, ``Fernet.decrypt`` then
  ``json.loads`` to read;

and `stores.EncryptedStore` sealing and opening the benchmark's session over a
`MemoryStore` (a first read decrypts every field; a read of a record it read
before compares it instead).  The payload is the benchmark's 200-byte session
(`benchmarks.data.SEED`).  Over HTTP a returning cookie is read from the
verified-cookie memory, with no decryption at all; these figures are what a
changed session (a write) and a cookie seen for the first time (a read) add.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import time
from collections.abc import Callable
from typing import Any

import tornado.web
from cryptography.fernet import Fernet

from tornado_session import serializers
from tornado_session.cookies import Signer
from tornado_session.crypto import EncryptedCookieCodec
from tornado_session.stores import EncryptedStore, MemoryStore

from .data import COOKIE_SECRET, ENCRYPTION_KEY, FERNET_KEY, SEED

ROUNDS = 9
N = 2000
NAME = "tornado.sess"


def _best(step: Callable[[], Any], best: float) -> float:
    gc.collect()
    started = time.thread_time()
    for _ in range(N):
        step()
    return min(best, (time.thread_time() - started) / N * 1e6)


def steps() -> dict[str, Callable[[], Any]]:
    """Each step to time, by name."""
    payload = {"e": time.time() + 86400, "m": 86400, "d": SEED}
    signer = Signer(COOKIE_SECRET)
    signed = signer.sign(NAME, serializers.dumps(payload)).decode()
    unsign = functools.partial(tornado.web.decode_signed_value, COOKIE_SECRET,
                               max_age_days=float("inf"), min_version=2)
    codec = EncryptedCookieCodec(NAME, {1: ENCRYPTION_KEY})
    encrypted = codec.dumps(payload)
    fernet = Fernet(FERNET_KEY)
    token = fernet.encrypt(json.dumps(SEED).encode()).decode()
    store = EncryptedStore(MemoryStore(), keys={1: ENCRYPTION_KEY}, readable=("user_id",))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.set("k", SEED, 3600))
    sealed = store.store.get("k").value  # type: ignore[attr-defined]

    def store_first_read() -> Any:
        return store._open_fields("k", sealed)

    def store_write() -> Any:
        return store._seal_all("k", SEED)

    def store_read_again() -> Any:
        return store.get("k").value  # type: ignore[attr-defined]

    return {
        "signed cookie: write": lambda: signer.sign(NAME, serializers.dumps(payload)),
        "signed cookie: read": lambda: serializers.loads(unsign(NAME, signed)),
        "encrypted cookie (AES-GCM): write": lambda: codec.dumps(payload),
        "encrypted cookie (AES-GCM): read": lambda: codec.loads(encrypted),
        "aiohttp-session Fernet: write": lambda: fernet.encrypt(json.dumps(SEED).encode()),
        "aiohttp-session Fernet: read": lambda: json.loads(fernet.decrypt(token.encode())),
        "EncryptedStore: seal a whole session": store_write,
        "EncryptedStore: first read (open every field)": store_first_read,
        "EncryptedStore: read of a record read before": store_read_again,
    }


def run() -> dict[str, float]:
    """Best µs of each step, over ``ROUNDS`` interleaved rounds of ``N``."""
    found = steps()
    best = dict.fromkeys(found, float("inf"))
    for _ in range(ROUNDS):
        for name, step in found.items():
            best[name] = _best(step, best[name])
    return {name: round(us, 2) for name, us in best.items()}


if __name__ == "__main__":
    for name, us in run().items():
        print(f"{name:48} {us:7.2f} µs")
