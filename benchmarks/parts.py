"""Where the session layer's in-process time goes: each part switched off in turn.

``python -m benchmarks.parts`` runs the in-process harness of `benchmarks.inprocess`
(Tornado's routing and handler path, no sockets) for the MemoryStore and
signed-cookie read and changed requests: once as they are, and once with each
part of the session layer replaced by a stand-in that hands back, at no cost,
what the part gave for the same request.  The difference is what that part
costs inside a request, cold caches and all, which is more than it costs timed
alone in a loop.  What no listed part explains is the rest: the mixin's glue,
the session object, the coroutine that loads.

The rounds are interleaved (every variant once, then again), and the best
round of each is kept, as in `benchmarks.inprocess`.  A stand-in changes what
the request does only where the part is the work itself (no ``Vary`` header, no
store write, a fixed cookie value); every request still answers what it should.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import tornado.web

from tornado_session import SessionMixin
from tornado_session.config import SessionConfig
from tornado_session.cookies import CookieCodec, SetCookieLine
from tornado_session.lifecycle import SessionContext
from tornado_session.session import Session
from tornado_session.stores import MemoryStore, Ready

from .inprocess import ROUNDS, Bare, Target, fetch
from .servers import tornado_session_app

#: A stand-in: given what the part returned once, a context manager that patches it.
Patch = Callable[[dict[str, Any]], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name = value`` for the duration (a class attribute: every instance sees it)."""
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _recorder(owner: Any, name: str, seen: dict[str, Any]) -> Any:
    """A wrapper of ``owner.name`` that keeps the last value it returned in ``seen``."""
    original = owner.__dict__[name]

    def record(*args: Any, **kwargs: Any) -> Any:
        seen[name] = original(*args, **kwargs)
        return seen[name]

    return record


#: Each part: (what it is, the scenarios it applies to, where it lives, its name).
PARTS: list[tuple[str, tuple[str, ...], Any, str]] = [
    ("reading the Cookie header", ("read", "changed"), SessionMixin, "get_session_cookie"),
    ("verified-cookie lookup", ("read", "changed"), SessionConfig, "read_cookie"),
    ("store read (MemoryStore.get)", ("read", "changed"), MemoryStore, "get"),
    ("change detection (Session.dump)", ("read",), Session, "dump"),
    ("the decision (plan)", ("read",), SessionContext, "plan"),
    ("store write (MemoryStore.set)", ("changed",), MemoryStore, "set"),
    ("payload and signature (CookieCodec.dumps)", ("changed",), CookieCodec, "dumps"),
    ("Set-Cookie line (SetCookieLine.format)", ("changed",), SetCookieLine, "format"),
]


def _stand_in(owner: Any, name: str, seen: dict[str, Any]) -> Any:
    value = seen[name]
    if isinstance(value, Ready):  # a store's answer: a new Ready per call is the store's cost
        value = Ready(value.value)
    return lambda *args, **kwargs: value


async def measure(app: tornado.web.Application, scenario: str, cookie: str | None
                  ) -> dict[str, float]:
    """Best µs per request with everything on, with each part off, and with ``Vary`` off."""
    path = f"/{scenario}"
    seen: dict[str, Any] = {}
    parts = [(label, owner, name) for label, scenarios, owner, name in PARTS
             if scenario in scenarios and (owner is not MemoryStore or _uses_memory(app))]
    for _label, owner, name in parts:  # what each part returns for this request
        with replaced(owner, name, _recorder(owner, name, seen)):
            await fetch(app, path, cookie)
    variants: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "all parts on": contextlib.nullcontext,
        "Vary: Cookie (the mixin's _session_headers)": lambda: replaced(
            SessionMixin, "_session_headers", lambda self, context: None),
    }
    for label, owner, name in parts:
        variants[label] = (lambda owner=owner, name=name:
                           replaced(owner, name, _stand_in(owner, name, seen)))
    targets = {label: Target(app, path, cookie) for label in variants}
    bare = Target(tornado.web.Application([(r"/bare", Bare)]), "/bare", None)
    for _ in range(ROUNDS):
        await bare.round()
        for label, patch in variants.items():
            with patch():
                await targets[label].round()
    found = {label: target.best for label, target in targets.items()}
    found["bare"] = bare.best
    return found


def _uses_memory(app: tornado.web.Application) -> bool:
    return isinstance(app.settings["session"].store, MemoryStore)


async def measure_all() -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for kind, store in (("MemoryStore", MemoryStore()), ("signed cookie", None)):
        app = tornado_session_app(store)
        cookie = (await fetch(app, "/seed", None)).cookie
        for scenario in ("read", "changed"):
            results[f"{kind} {scenario}"] = await measure(app, scenario, cookie)
    return results


def report(results: dict[str, dict[str, float]]) -> str:
    lines = []
    for name, found in results.items():
        bare, total = found.pop("bare"), found.pop("all parts on")
        added = total - bare
        lines.append(f"{name}: {total:.1f} µs, bare {bare:.1f} µs, session layer +{added:.1f} µs")
        explained = 0.0
        for label, us in sorted(found.items(), key=lambda item: item[1]):
            part = total - us
            explained += part
            lines.append(f"  {part:6.1f} µs  {label}")
        lines.append(f"  {added - explained:6.1f} µs  the rest (glue, session object, load)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(asyncio.run(measure_all())))
