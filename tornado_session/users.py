"""A user's sessions: the device each is on, listing them, revoking one.

Framework-free, like the lifecycle: `tornado_session.mixin` calls it with the
current request's user, session and secret, and a command line or a job calls
it with a store.  The store's user index (``user_key``) does the finding, so
everything here costs in proportion to one user's sessions.

A session is named outside the store by a *handle*: an HMAC of its store key
under the application's secret.  The store key is already a hash of the
session id, and the HMAC adds that a handle means nothing without the secret;
a handle is never an id and cannot be made into a cookie.  Revoking looks the
handle up among the sessions of the user who asks, so a handle of another
user's session revokes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from .stores.base import Store, UserId, UserRecord

#: How many characters of a ``User-Agent`` a session keeps: enough to name a
#: browser and its system, too few to fingerprint a device by.
AGENT_LENGTH = 160

#: How many hex characters of the HMAC a handle keeps (128 bits).
_HANDLE_LENGTH = 32


def short_agent(agent: str | None) -> str:
    """The ``User-Agent`` as a session keeps it: at most `AGENT_LENGTH` printable characters."""
    if not agent:
        return ""
    return "".join(char for char in agent[:AGENT_LENGTH] if char.isprintable())


def coarse_address(address: str | None) -> str:
    """The client's network, not its address: a /24 for IPv4, a /48 for IPv6.

    Enough to tell "at home" from "abroad" on a devices page, not enough to
    find a household.  An IPv4 address mapped into IPv6 counts as IPv4; what
    is not an address (a Unix socket's peer) gives ``""``.
    """
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def session_handle(secret: bytes, key: str) -> str:
    """The handle of the session under store key ``key``: an HMAC under ``secret``."""
    digest = hmac.new(secret, b"tornado_session.handle:" + key.encode(), hashlib.sha256)
    return digest.hexdigest()[:_HANDLE_LENGTH]


@dataclass(frozen=True, slots=True)
class UserSession:
    """One of a user's sessions, as a devices page shows it."""

    #: Names the session in `revoke_user_session` (never its id; see the module).
    handle: str
    #: Whether it is the session of the request that asked.
    current: bool
    #: When it was created (a login), epoch seconds.
    created: float
    #: When it was last written or touched, epoch seconds (``touch_after`` precision).
    seen: float
    #: When it expires unless used again, epoch seconds.
    expires: float
    #: The browser's ``User-Agent``, truncated (`short_agent`).
    agent: str
    #: The client's network (`coarse_address`).
    address: str


def _user_session(record: UserRecord, secret: bytes, current_key: str | None) -> UserSession:
    owner = record.owner
    return UserSession(
        handle=session_handle(secret, record.key), current=record.key == current_key,
        created=owner.created, seen=owner.seen, expires=record.expires,
        agent=owner.agent, address=owner.address,
    )


async def list_user_sessions(
    store: Store, user: UserId, *, secret: bytes, current_key: str | None = None
) -> list[UserSession]:
    """``user``'s live sessions, oldest first; the one under ``current_key`` is marked current."""
    records = await store.user_sessions(user)
    return [_user_session(record, secret, current_key) for record in records]


async def find_user_session(
    store: Store, user: UserId, handle: str, *, secret: bytes
) -> str | None:
    """The store key of ``user``'s session with this handle, or ``None``.

    Only ``user``'s sessions are looked at: a handle of someone else's
    session, a made-up one or one of a session that ended finds nothing.
    """
    if not isinstance(handle, str) or len(handle) != _HANDLE_LENGTH:
        return None
    for record in await store.user_sessions(user):
        if hmac.compare_digest(session_handle(secret, record.key), handle):
            return record.key
    return None


async def revoke_user_session(store: Store, user: UserId, handle: str, *, secret: bytes) -> bool:
    """Destroy ``user``'s session with this handle; whether one was destroyed.

    The revoked session is dead on its next request: its record is gone, so
    its cookie finds nothing and gets a fresh, empty session.
    """
    key = await find_user_session(store, user, handle, secret=secret)
    return key is not None and bool(await store.destroy(key))
