"""What every benchmarked session holds, shared by the servers and the runner."""

from __future__ import annotations

from typing import Any

#: The session data every library is seeded with: about 200 bytes of JSON, a
#: typical logged-in visitor (id, name, roles, a small cart, a CSRF token).
SEED: dict[str, Any] = {
    "cart": [{"qty": 2, "sku": "A-1001"}, {"qty": 1, "sku": "B-2002"}],
    "csrf": "k3J9xQ2mP7vT4wZ1",
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "roles": ["reader", "writer"],
    "theme": "dark",
    "user_id": 42,
    "views": 0,
}

#: What ``/read`` answers for a seeded session (the functional check looks for it).
READ_ANSWER = SEED["name"]

COOKIE_SECRET = "benchmark-secret-" + "s" * 48

#: The Fernet key of aiohttp-session's EncryptedCookieStorage (32 bytes, url-safe base64).
FERNET_KEY = b"3q2-7wEAAAAhIUJENEVGR0hJSktMTU5PUFFSU1RVVlc="

#: The key of tornado-session's encrypted cookie and EncryptedStore (32 bytes and more).
ENCRYPTION_KEY = "benchmark-encryption-key-" + "e" * 40
