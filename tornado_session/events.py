"""A tiny event emitter: `on`, `off`, `emit`.

Session options (``session:missed``, ``session:invalid``, ``session:expired``,
``session:store``) and stores (``connect``, ``disconnect``) report what
happened through it.  Each
listener is called with one dict, which has at least a ``key`` entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: A listener takes the event's payload dict; what it returns is ignored.
Listener = Callable[[dict[str, Any]], object]


class EventEmitter:
    """Calls listeners registered by event name.

    A listener that raises is logged and does not stop the others, nor the
    request that emitted the event: an event is a report, never a veto.
    """

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> Listener:
        """Call ``listener(payload)`` every time ``event`` is emitted.

        Returns the listener, so it can be used as a decorator.
        """
        self._listeners.setdefault(event, []).append(listener)
        return listener

    def off(self, event: str, listener: Listener) -> None:
        """Stop calling ``listener`` for ``event``; unknown listeners are ignored."""
        listeners = self._listeners.get(event)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:  # (so that `listened` is one dict lookup)
                del self._listeners[event]

    def listened(self, event: str) -> bool:
        """Whether ``event`` has a listener.

        An emitter whose payload costs something to gather (a timing, say)
        asks first, so that nobody pays for an event nobody listens to.
        """
        return event in self._listeners

    def listeners(self, event: str) -> list[Listener]:
        """Return a copy of the listeners registered for ``event``."""
        return list(self._listeners.get(event, ()))

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        """Call every listener of ``event`` with ``payload``, in registration order."""
        listeners = self._listeners.get(event)
        if not listeners:
            return
        for listener in tuple(listeners):
            try:
                listener(payload)
            except Exception:
                logger.exception("listener of %r raised; the others still run", event)
