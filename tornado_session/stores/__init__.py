"""Session stores.

`MemoryStore` needs nothing beyond the core; `MongoStore` and `RedisStore` are
imported on first use, so ``import tornado_session`` never imports a database
driver, and a missing driver fails with the name of the extra to install.
`EncryptedStore` wraps any of them to keep the data encrypted at rest (it
needs the ``[crypto]`` extra when it is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Ready, Store, Written
from .memory import MemoryStore

if TYPE_CHECKING:  # the optional stores, as their modules land
    from .encrypted import EncryptedStore
    from .mongo import MongoStore
    from .redis import RedisStore

__all__ = [
    "EncryptedStore", "MemoryStore", "MongoStore", "Ready", "RedisStore", "Store", "Written",
]

_LAZY = {"EncryptedStore": ".encrypted", "MongoStore": ".mongo", "RedisStore": ".redis"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
