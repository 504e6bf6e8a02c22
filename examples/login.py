"""A login app to copy: sign-up, login, a profile page, flash messages and logout.

Run it from the repository root::

    python -m examples.login                      # memory store, port 8888
    python -m examples.login --mongodb_uri=mongodb://localhost:27017/myapp

Without ``--mongodb_uri`` (or the ``MONGODB_URI`` environment variable) users
and sessions are kept in memory and lost when the process ends; one log line
says so.  With it, both live in the URI's database (``tornado_session_example``
when the URI names none): users in ``users``, sessions in ``sessions``.

What it shows:

- passwords hashed with ``hashlib.scrypt`` at OWASP's cost (`SCRYPT_COST`) and a
  salt per user, compared in constant time, and hashed in a small thread pool
  so the IOLoop never blocks;
- one hash for every login attempt, unknown username or not, so timing does
  not tell which usernames exist;
- failed logins bounded per username and per address (`LoginThrottle`), answered
  with 429 and ``Retry-After``;
- ``await self.regenerate_session()`` after login (session fixation defence);
- ``await self.destroy_session()`` on logout, and ``store.destroy_all(user_id=...)``
  for "log out everywhere" (the session keeps ``user_id`` for that, and the store
  is built with ``user_key="user_id"``, so that costs one user's sessions);
- a "Your devices" page (``/devices``): ``await self.list_sessions()`` with each
  session's browser, network and last use, the current one marked, and
  ``await self.revoke_session(handle)`` / ``revoke_other_sessions()`` behind
  xsrf-protected forms;
- flash messages (the mixin's ``flash()``), shown once, at most `FLASH_MAX`; a
  visitor who is not logged in gets no session at all, not even for a message
  (their messages wait in a signed cookie of their own);
- ``xsrf_cookies=True``: every form posts ``_xsrf``; cookies ``Secure`` over https;
- ``Cache-Control: no-store`` on every page;
- templates with Tornado's autoescaping, so a username is shown, never run.

docs/security.md ("The login example") lists the threats and their tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import tornado.httpserver
import tornado.ioloop
import tornado.log
import tornado.netutil
import tornado.options
import tornado.template
import tornado.web

from tornado_session import SessionMixin, SessionOptions, StoreUnavailableError
from tornado_session.stores import MemoryStore, Store

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

log = logging.getLogger("examples.login")

#: This example's command-line flags (its own parser, so that importing it
#: next to another example does not define ``--port`` twice).
options = tornado.options.OptionParser()
tornado.log.define_logging_options(options)
options.define("port", default=8888, type=int, help="port to listen on (0: any free port)")
options.define("address", default="127.0.0.1", help="address to listen on")
options.define(
    "mongodb_uri", default="",
    help="MongoDB URI for users and sessions (default: $MONGODB_URI; unset: in memory)",
)
options.define(
    "cookie_secret", default="",
    help="secret that signs the session cookie (default: $COOKIE_SECRET, else random)",
)
options.define(
    "xheaders", default=False, type=bool,
    help="trust X-Forwarded-For/-Proto from a reverse proxy (sets Secure cookies behind https)",
)

#: The database used when the MongoDB URI names none.
DEFAULT_DATABASE = "tornado_session_example"

USERNAME_MAX = 64
PASSWORD_MIN = 8
#: scrypt's cost grows with the input; a limit keeps one request from being expensive.
PASSWORD_MAX = 1024
#: Flash messages that wait for the next page; older ones are dropped, so a
#: session that never shows a page (a script posting again and again) cannot
#: grow for ever (`BaseHandler.flash_max`).
FLASH_MAX = 10


# -- passwords -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScryptCost:
    """scrypt's work factors: ``n`` (CPU and memory), ``r`` (block size), ``p`` (lanes).

    One hash takes ``128 * n * r`` bytes of memory and time in proportion.
    """

    #: CPU and memory cost, a power of 2 above 1.
    n: int
    #: Block size (8 is what every guidance assumes).
    r: int
    #: Parallelism: lanes computed one after the other here.
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError(f"ScryptCost n={self.n!r}: a power of 2 above 1 is needed")
        if self.r < 1 or self.p < 1:
            raise ValueError(f"ScryptCost r={self.r!r}, p={self.p!r}: both must be 1 or more")

    @property
    def maxmem(self) -> int:
        """The memory OpenSSL must be allowed for this cost (its default stops at 32 MiB)."""
        return 128 * self.r * (self.n + self.p + 2)


#: OWASP's Password Storage Cheat Sheet for scrypt: N=2**17, r=8, p=1, i.e.
#: 128 MiB per hash (about 0.1 s on a fast core, 1 s on a slow one).
OWASP_SCRYPT_COST = ScryptCost(n=2**17, r=8, p=1)

#: The cost of new hashes, read at each hash (tests lower it: they sign up a
#: lot). Existing records keep theirs (``scrypt$n$r$p$salt$hash``) and still
#: verify after a change.
SCRYPT_COST = OWASP_SCRYPT_COST

#: The most memory one verification may take: a record asking for more (a
#: tampered users collection) fails to verify instead of taking the machine.
SCRYPT_MAXMEM_LIMIT = 1024 * 1024 * 1024

#: Hashes computed at once. Each holds ``128 * n * r`` bytes (128 MiB at
#: OWASP's cost) until it ends, so a burst of logins queues here instead of
#: taking a thread, and its memory, per request.
HASH_THREADS = 2


def hash_password(
    password: str, *, salt: bytes | None = None, cost: ScryptCost | None = None
) -> str:
    """Return a self-describing scrypt hash of ``password`` with a fresh salt.

    The record carries its parameters (``scrypt$n$r$p$salt$hash``), so the cost
    can be raised later without breaking the passwords already stored.
    ``cost`` defaults to `SCRYPT_COST`.
    """
    cost = SCRYPT_COST if cost is None else cost
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=cost.n, r=cost.r, p=cost.p,
        maxmem=cost.maxmem, dklen=32,
    )
    return "$".join(["scrypt", str(cost.n), str(cost.r), str(cost.p), _b64(salt), _b64(digest)])


def check_password(password: str, record: str) -> bool:
    """Whether ``password`` matches ``record`` (from `hash_password`), in constant time.

    The record's own cost is used, whatever `SCRYPT_COST` is now.
    """
    try:
        scheme, n, r, p, salt, digest = record.split("$")
        if scheme != "scrypt":
            return False
        cost = ScryptCost(n=int(n), r=int(r), p=int(p))
        expected = _unb64(digest)
        candidate = hashlib.scrypt(
            password.encode("utf-8"), salt=_unb64(salt), n=cost.n, r=cost.r, p=cost.p,
            maxmem=min(cost.maxmem, SCRYPT_MAXMEM_LIMIT), dklen=len(expected),
        )
    except (ValueError, binascii.Error):  # OpenSSL says ValueError for a cost over maxmem
        return False
    return hmac.compare_digest(candidate, expected)


def verify_login(password: str, record: str | None) -> bool:
    """Check ``password`` against an account's ``record``; ``None``: no such account.

    An unknown username is checked against a throw-away record of the current
    cost all the same, so a wrong username takes as long as a wrong password
    and the timing does not tell which usernames exist.
    """
    if record is None:
        check_password(password, _dummy_record(SCRYPT_COST))
        return False
    return check_password(password, record)


@functools.cache
def _dummy_record(cost: ScryptCost) -> str:
    """A record no password matches: a random salt and digest, nothing to compute."""
    return "$".join(["scrypt", str(cost.n), str(cost.r), str(cost.p),
                     _b64(secrets.token_bytes(16)), _b64(secrets.token_bytes(32))])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.cache
def _hashing_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="scrypt")


async def _in_thread(function: Any, *args: Any) -> Any:
    """Run scrypt in one of `HASH_THREADS` threads: the IOLoop keeps serving meanwhile."""
    return await tornado.ioloop.IOLoop.current().run_in_executor(
        _hashing_pool(), function, *args
    )


# -- users --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """A user account: ``id`` (a string), ``username`` and the password's hash."""

    id: str
    username: str
    password_hash: str


class Users(Protocol):
    """Where the accounts live: `MemoryUsers` or `MongoUsers`."""

    async def add(self, username: str, password_hash: str) -> User | None:
        """Create an account; ``None`` when the username is taken."""

    async def find(self, username: str) -> User | None:
        """Return the account named ``username``, or ``None``."""

    async def close(self) -> None:
        """Release what the accounts' backend holds (a database client)."""


class MemoryUsers:
    """Accounts in a dict: for trying the app, gone when the process ends."""

    def __init__(self) -> None:
        self._by_name: dict[str, User] = {}

    async def add(self, username: str, password_hash: str) -> User | None:
        """Create an account; ``None`` when the username is taken."""
        if username in self._by_name:
            return None
        user = User(str(len(self._by_name) + 1), username, password_hash)
        self._by_name[username] = user
        return user

    async def find(self, username: str) -> User | None:
        """Return the account named ``username``, or ``None``."""
        return self._by_name.get(username)

    async def close(self) -> None:
        """Nothing to release."""


class MongoUsers:
    """Accounts in a MongoDB collection with a unique index on ``username``."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def create_indexes(self) -> None:
        """Make usernames unique in the database, so two sign-ups cannot race."""
        await self._call(self.collection.create_index, "username", unique=True)

    async def add(self, username: str, password_hash: str) -> User | None:
        """Create an account; ``None`` when the username is taken."""
        from pymongo.errors import DuplicateKeyError

        try:
            result = await self._call(
                self.collection.insert_one, {"username": username, "password": password_hash}
            )
        except DuplicateKeyError:
            return None
        return User(str(result.inserted_id), username, password_hash)

    async def find(self, username: str) -> User | None:
        """Return the account named ``username``, or ``None``."""
        document = await self._call(self.collection.find_one, {"username": username})
        if document is None:
            return None
        return User(str(document["_id"]), document["username"], document["password"])

    async def close(self) -> None:
        """Close the database client (the session store shares it)."""
        await self.collection.database.client.close()

    @staticmethod
    async def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the driver; an unreachable server becomes a 503, like a session store's."""
        from pymongo.errors import ConnectionFailure

        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:
            raise StoreUnavailableError(f"the users collection is unreachable: {exc}") from exc


# -- throttling ---------------------------------------------------------------------


class _Failures:
    """Failure times per key in a sliding window, for at most ``max_keys`` keys."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        #: key -> its last ``limit`` failure times; the key failed last at the end.
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has fewer than ``limit`` failures in the window."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def add(self, key: str, now: float) -> None:
        """Count a failure of ``key``; past ``max_keys``, forget the key idle longest."""
        times = self._times.pop(key, None)
        if times is None:
            times = deque(maxlen=self.limit)
        times.append(now)
        self._times[key] = times
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)

    def take_back(self, key: str, at: float) -> None:
        """Uncount the failure of ``key`` counted at ``at`` (if it is still held)."""
        times = self._times.get(key)
        if times is not None:
            with contextlib.suppress(ValueError):
                times.remove(at)

    def forget(self, key: str) -> None:
        self._times.pop(key, None)


class LoginThrottle:
    """A bound on failed logins per username and per client address, in memory.

    At ``per_username`` failures of one username, or ``per_address`` from one
    client address (an IPv6 client: its /64), within ``window`` seconds, the
    next attempts are refused without checking the password until the oldest
    failure leaves the window (`retry_after`). An attempt counts as failed
    from the moment it is let through (`attempt`), before its hash runs, so
    guesses sent all at once cannot pass the bound together; a successful one
    is taken back (`succeeded`), which also clears its username's failures.
    Unknown usernames count like known ones, so the refusal does not tell
    which exist; refused attempts do not count, so the wait is never extended
    by trying. Each table keeps at most ``max_keys`` keys, dropping the one
    idle longest.

    One process's memory: behind several processes each keeps its own count
    (a shared store, Redis say, would make the bound global).
    """

    def __init__(
        self, *, per_username: int = 5, per_address: int = 20, window: float = 15 * 60,
        max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._usernames = _Failures(per_username, window, max_keys)
        self._addresses = _Failures(per_address, window, max_keys)

    def retry_after(self, username: str | None, address: str) -> float:
        """Seconds until ``username`` (``None``: not a valid one) may try from ``address``.

        0 means now.
        """
        now = self.clock()
        wait = self._addresses.wait(_address_key(address), now)
        if username is not None:
            wait = max(wait, self._usernames.wait(username, now))
        return wait

    def attempt(self, username: str | None, address: str) -> float:
        """Count a login attempt as failed until `succeeded` takes it back; its time.

        ``username`` ``None``: not a valid one, counted for the address only.
        Call it in the same IOLoop turn as `retry_after`, before any ``await``.
        """
        now = self.clock()
        self._addresses.add(_address_key(address), now)
        if username is not None:
            self._usernames.add(username, now)
        return now

    def succeeded(self, username: str, address: str, at: float) -> None:
        """The attempt made ``at`` succeeded: uncounted, and the username's failures forgotten."""
        self.take_back(None, address, at)
        self._usernames.forget(username)

    def take_back(self, username: str | None, address: str, at: float) -> None:
        """Uncount the attempt made ``at`` (it could not be checked: the users' store failed)."""
        self._addresses.take_back(_address_key(address), at)
        if username is not None:
            self._usernames.take_back(username, at)

    def size(self) -> int:
        """How many usernames and addresses are held (each table is bounded)."""
        return len(self._usernames) + len(self._addresses)


def _address_key(address: str) -> str:
    """The client as counted: an IPv4 address, or an IPv6 one's /64 (one subscriber's)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# -- input ---------------------------------------------------------------------------


def check_username(username: str) -> str | None:
    """What is wrong with ``username`` (already stripped), or ``None``."""
    if not username:
        return "Enter a username."
    if len(username) > USERNAME_MAX:
        return f"A username has at most {USERNAME_MAX} characters."
    if not username.isprintable():
        return "A username cannot contain control characters."
    return None


def check_password_input(password: str, *, new: bool) -> str | None:
    """What is wrong with ``password``, or ``None``; a new one must be long enough."""
    if not password:
        return "Enter a password."
    if len(password) > PASSWORD_MAX:
        return f"A password has at most {PASSWORD_MAX} characters."
    if new and len(password) < PASSWORD_MIN:
        return f"Choose a password of at least {PASSWORD_MIN} characters."
    return None


# -- handlers -------------------------------------------------------------------------


class BaseHandler(SessionMixin, tornado.web.RequestHandler):
    """What every page shares: the users, flash messages and page rendering."""

    flash_max = FLASH_MAX

    def set_default_headers(self) -> None:
        """``Cache-Control: no-store`` on every answer (error pages included).

        Each page either shows a user's data or carries an ``_xsrf`` token tied
        to one browser: neither a shared cache nor the browser's history should
        keep it (the back button after logout must not show the profile).
        """
        self.set_header("Cache-Control", "no-store")

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Mark every cookie this app sets ``Secure`` when the request came over https.

        This covers Tornado's ``_xsrf`` cookie, which ``xsrf_cookie_kwargs``
        could only mark for every request; behind a proxy, ``--xheaders`` makes
        ``X-Forwarded-Proto: https`` count. The session cookie does this itself
        (``secure=None``).
        """
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, *args, **kwargs)

    @property
    def users(self) -> Users:
        """The application's accounts (the ``users`` setting)."""
        users: Users = self.settings["users"]
        return users

    @property
    def throttle(self) -> LoginThrottle:
        """The application's bound on failed logins (the ``login_throttle`` setting)."""
        throttle: LoginThrottle = self.settings["login_throttle"]
        return throttle

    def get_current_user(self) -> str | None:
        """The logged-in username (Tornado's ``current_user``), from the session."""
        username: str | None = self.session.get("username")
        return username

    def page(self, template: str, *, status: int = 200, **values: Any) -> None:
        """Render ``template`` with the flash messages, which are then gone.

        A visitor's messages (who has no session, and gets none for a message)
        come from a signed cookie the mixin keeps for them: only texts this
        app flashed can be shown, never a value a client made up.
        """
        self.set_status(status)
        self.render(template, messages=self.get_flashed_messages(with_categories=True),
                    **values)

    def credentials(self) -> tuple[str, str]:
        """The posted username (stripped, NFC) and password (as typed)."""
        username = unicodedata.normalize("NFC", self.get_body_argument("username", ""))
        password = self.get_body_argument("password", "", strip=False)
        return username, password

    async def log_in(self, user: User) -> None:
        """Put the user in the session, under a new session id."""
        self.session["user_id"] = user.id
        self.session["username"] = user.username
        self.session["login_at"] = int(time.time())
        # The id the browser had before logging in (perhaps planted by an
        # attacker) must be worth nothing now: same data, new id.
        await self.regenerate_session()


class IndexHandler(BaseHandler):
    def get(self) -> None:
        self.redirect("/profile" if self.current_user else "/login")


class SignupHandler(BaseHandler):
    def get(self) -> None:
        if self.current_user:
            self.redirect("/profile")
            return
        self.page("signup.html", error=None, username="")

    async def post(self) -> None:
        username, password = self.credentials()
        problem = check_username(username) or check_password_input(password, new=True)
        if problem:
            self.page("signup.html", status=400, error=problem, username=username)
            return
        user = await self.users.add(username, await _in_thread(hash_password, password))
        if user is None:
            self.page("signup.html", status=409, error="That username is taken.",
                      username=username)
            return
        await self.log_in(user)
        self.flash(f"Welcome, {user.username}! Your account is ready.")
        self.redirect("/profile")


class LoginHandler(BaseHandler):
    def get(self) -> None:
        if self.current_user:
            self.redirect("/profile")
            return
        self.page("login.html", error=None, username="")

    async def post(self) -> None:
        try:
            username, password = self.credentials()
        except tornado.web.HTTPError:  # a field that is not UTF-8
            username, password, problem = "", "", "Send the form as UTF-8."
        else:
            problem = check_username(username) or check_password_input(password, new=False)
        # Failures are counted per username only for a valid one (64 characters
        # at most, so the table's memory stays bounded), always per address.
        account = username if check_username(username) is None else None
        address = self.request.remote_ip or ""
        wait = self.throttle.retry_after(account, address)
        if wait > 0:
            # No hash: a refused attempt costs no CPU and learns nothing.
            self.set_header("Retry-After", str(math.ceil(wait)))
            minutes = math.ceil(wait / 60)
            self.page("login.html", status=429, username=username, error=(
                f"Too many failed logins. Try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}."
            ))
            return
        # Counted before the first await, so concurrent guesses see each other.
        attempted_at = self.throttle.attempt(account, address)
        try:
            user = None if problem else await self.users.find(username)
            # Exactly one hash on every path (unknown username, wrong password,
            # input refused before any look-up): the time of the answer does
            # not tell which usernames exist.
            matches = await _in_thread(
                verify_login, password[:PASSWORD_MAX], user.password_hash if user else None
            )
        except BaseException:  # a 503 (the users' store is down) is not a failed login
            self.throttle.take_back(account, address, attempted_at)
            raise
        if problem or user is None or not matches:
            if problem:
                self.page("login.html", status=400, error=problem, username=username)
            else:
                self.page("login.html", status=403, error="Wrong username or password.",
                          username=username)
            return
        self.throttle.succeeded(username, address, attempted_at)
        await self.log_in(user)
        self.flash(f"Welcome back, {user.username}.")
        self.redirect("/profile")


class ProfileHandler(BaseHandler):
    def get(self) -> None:
        if not self.current_user:
            self.flash("Log in to see your profile.")  # a visitor: kept in a cookie, no session
            self.redirect("/login")
            return
        login_at = time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                 time.gmtime(self.session.get("login_at", 0)))
        self.page("profile.html", username=self.current_user, login_at=login_at)


class LogoutHandler(BaseHandler):
    async def post(self) -> None:
        logged_in = self.current_user is not None
        await self.destroy_session()
        if logged_in:
            # After the destroy the visitor has no session: the message waits
            # in the flash cookie, and no session is stored for it.
            self.flash("You are logged out.")
        self.redirect("/login")


class DevicesHandler(BaseHandler):
    """"Your devices": where this user is logged in, and a way to end any of it."""

    async def get(self) -> None:
        if not self.current_user:
            self.flash("Log in to see your devices.")  # a visitor: kept in a cookie
            self.redirect("/login")
            return
        if self.user_index() is None:
            self.page("devices.html", devices=None)
            return
        devices = [
            {"handle": s.handle, "current": s.current, "device": describe_agent(s.agent),
             "address": s.address or "unknown network", "seen": _utc(s.seen),
             "created": _utc(s.created)}
            for s in await self.list_sessions()
        ]
        self.page("devices.html", devices=devices)

    def user_index(self) -> str | None:
        """The session store's ``user_key`` (``None``: it keeps no user index)."""
        store = SessionMixin.configure_application(self.application).store
        return None if store is None else store.user_key


class RevokeDeviceHandler(BaseHandler):
    """End one of this user's sessions, named by the handle the devices page showed."""

    async def post(self) -> None:
        if not self.current_user:
            self.redirect("/login")
            return
        if await self.revoke_session(self.get_body_argument("handle", "")):
            if "username" not in self.session:  # this very session: this browser is out
                self.redirect("/login")
                return
            self.flash("That device is logged out.")
        else:
            self.flash("That session had already ended.", "error")
        self.redirect("/devices")


class RevokeOtherDevicesHandler(BaseHandler):
    """"Log out everywhere else": every session of this user but this one."""

    async def post(self) -> None:
        if not self.current_user:
            self.redirect("/login")
            return
        count = await self.revoke_other_sessions()
        self.flash(f"Logged out of {count} other session{'s' if count != 1 else ''}.")
        self.redirect("/devices")


def describe_agent(agent: str) -> str:
    """A browser and system in a few words, from a ``User-Agent`` (``"Firefox on Linux"``)."""
    browsers = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"), ("Safari/", "Safari"))
    systems = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"),
               ("Windows", "Windows"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"),
               ("Linux", "Linux"))
    browser = next((name for token, name in browsers if token in agent), "")
    system = next((name for token, name in systems if token in agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or agent[:40] or "unknown device"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


class LogoutEverywhereHandler(BaseHandler):
    async def post(self) -> None:
        user_id = self.session.get("user_id")
        if user_id is None:
            self.redirect("/login")
            return
        store = SessionMixin.configure_application(self.application).store
        assert store is not None  # make_app refuses an application without a store
        count = await store.destroy_all(user_id=user_id)
        await self.destroy_session()
        self.flash(f"Logged out of {count} session{'s' if count != 1 else ''}.")
        self.redirect("/login")


# -- templates ---------------------------------------------------------------------------

TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{% block title %}tornado-session{% end %}</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
           padding: 0 1rem; }
    label { display: block; margin: .75rem 0; }
    input[type=text], input[type=password] { display: block; width: 100%; padding: .4rem;
                                             box-sizing: border-box; }
    .flash { padding: .5rem .75rem; background: #eef6ee; border-left: 4px solid #4a4; }
    .error { padding: .5rem .75rem; background: #fbeeee; border-left: 4px solid #c44; }
    form.inline { display: inline; }
  </style>
</head>
<body>
  {% for category, text in messages %}
    <p class="flash {{ category }}" role="status">{{ text }}</p>
  {% end %}
  {% block body %}{% end %}
</body>
</html>
""",
    "login.html": """{% extends "base.html" %}
{% block title %}Log in{% end %}
{% block body %}
  <h1>Log in</h1>
  {% if error %}<p class="error" role="alert">{{ error }}</p>{% end %}
  <form method="post" action="/login">
    {% raw xsrf_form_html() %}
    <label>Username <input type="text" name="username" value="{{ username }}"
      maxlength="64" autocomplete="username" required autofocus></label>
    <label>Password <input type="password" name="password"
      autocomplete="current-password" required></label>
    <button type="submit">Log in</button>
  </form>
  <p>No account? <a href="/signup">Sign up</a>.</p>
{% end %}
""",
    "signup.html": """{% extends "base.html" %}
{% block title %}Sign up{% end %}
{% block body %}
  <h1>Sign up</h1>
  {% if error %}<p class="error" role="alert">{{ error }}</p>{% end %}
  <form method="post" action="/signup">
    {% raw xsrf_form_html() %}
    <label>Username <input type="text" name="username" value="{{ username }}"
      maxlength="64" autocomplete="username" required autofocus></label>
    <label>Password (at least 8 characters) <input type="password" name="password"
      autocomplete="new-password" minlength="8" required></label>
    <button type="submit">Create account</button>
  </form>
  <p>Have an account? <a href="/login">Log in</a>.</p>
{% end %}
""",
    "profile.html": """{% extends "base.html" %}
{% block title %}Profile{% end %}
{% block body %}
  <h1>Profile</h1>
  <p>You are logged in as <strong id="username">{{ username }}</strong>
     since {{ login_at }}.</p>
  <p><a href="/devices" id="devices">Your devices</a></p>
  <form class="inline" method="post" action="/logout">
    {% raw xsrf_form_html() %}<button type="submit" id="logout">Log out</button>
  </form>
  <form class="inline" method="post" action="/logout-everywhere">
    {% raw xsrf_form_html() %}<button type="submit" id="logout-everywhere">Log out
    everywhere</button>
  </form>
{% end %}
""",
    "devices.html": """{% extends "base.html" %}
{% block title %}Your devices{% end %}
{% block body %}
  <h1>Your devices</h1>
  {% if devices is None %}
    <p>This application's session store keeps no user index (build it with
       <code>user_key="user_id"</code>), so it cannot list your sessions.</p>
  {% else %}
  <p>Where you are logged in. Log out any session you do not recognise.</p>
  <ul id="sessions">
  {% for d in devices %}
    <li class="session{% if d['current'] %} current{% end %}">
      <strong>{{ d["device"] }}</strong>{% if d["current"] %} (this device){% end %}<br>
      {{ d["address"] }}, last active {{ d["seen"] }}, logged in {{ d["created"] }}
      <form class="inline" method="post" action="/devices/revoke">
        {% raw xsrf_form_html() %}<input type="hidden" name="handle" value="{{ d['handle'] }}">
        <button type="submit" class="revoke">Log out</button>
      </form>
    </li>
  {% end %}
  </ul>
  <form method="post" action="/devices/revoke-others">
    {% raw xsrf_form_html() %}<button type="submit" id="revoke-others">Log out everywhere
    else</button>
  </form>
  {% end %}
  <p><a href="/profile">Back to your profile</a></p>
{% end %}
""",
}


# -- the application ------------------------------------------------------------------------


def make_app(**settings: Any) -> tornado.web.Application:
    """Build the application; every setting has a default that runs in memory.

    ``users`` is where accounts live (`MemoryUsers` by default, `MongoUsers`);
    ``login_throttle`` bounds failed logins (a `LoginThrottle` by default);
    ``session`` must have a store with ``destroy_all`` (for "log out
    everywhere"); ``cookie_secret`` defaults to a random one.
    """
    settings.setdefault("cookie_secret", secrets.token_urlsafe(32))
    settings.setdefault("session", SessionOptions(store=MemoryStore(user_key="user_id")))
    settings.setdefault("users", MemoryUsers())
    settings.setdefault("login_throttle", LoginThrottle())
    settings.setdefault("xsrf_cookies", True)
    settings.setdefault("xsrf_cookie_kwargs", {"samesite": "Lax"})
    settings.setdefault("template_loader", tornado.template.DictLoader(TEMPLATES))
    app = tornado.web.Application(
        [
            (r"/", IndexHandler),
            (r"/signup", SignupHandler),
            (r"/login", LoginHandler),
            (r"/profile", ProfileHandler),
            (r"/logout", LogoutHandler),
            (r"/logout-everywhere", LogoutEverywhereHandler),
            (r"/devices", DevicesHandler),
            (r"/devices/revoke", RevokeDeviceHandler),
            (r"/devices/revoke-others", RevokeOtherDevicesHandler),
        ],
        **settings,
    )
    session_options = SessionMixin.configure_application(app)
    if session_options.store is None:
        raise ValueError(
            "the login example needs a session store (store=None keeps sessions in the "
            "cookie, which cannot be destroyed everywhere)"
        )
    return app


async def open_backends(mongodb_uri: str) -> tuple[Store, Users]:
    """The session store and the users: in MongoDB when a URI is given, else in memory.

    With MongoDB, users and sessions share one client (one connection pool) and
    one database: the URI's, else `DEFAULT_DATABASE`.
    """
    if not mongodb_uri:
        log.info("no --mongodb_uri or MONGODB_URI: users and sessions are kept in memory "
                 "(lost when the app stops)")
        return MemoryStore(user_key="user_id"), MemoryUsers()
    from pymongo import AsyncMongoClient

    from tornado_session.stores import MongoStore

    # The listener lets the store see the server go and come back without a
    # request having to fail first (it then answers 503 instead of hanging).
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, event_listeners=[MongoStore.listener()]
    )
    database = client.get_default_database(DEFAULT_DATABASE)
    users = MongoUsers(database["users"])
    try:
        await users.create_indexes()
    except BaseException:
        await client.close()
        raise
    store: Store = MongoStore(database["sessions"], user_key="user_id")
    # Never log the URI: it may carry a password.
    log.info("users and sessions in MongoDB, database %r", database.name)
    return store, users


def cookie_secret(flag: str, environ: dict[str, str]) -> str:
    """The flag, else ``COOKIE_SECRET``, else a random secret (and a warning)."""
    secret = flag or environ.get("COOKIE_SECRET", "")
    if secret:
        return secret
    log.warning("no --cookie_secret or COOKIE_SECRET: using a random one, so sessions end "
                "when the app restarts and other processes cannot read them")
    return secrets.token_urlsafe(32)


async def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> None:
    """Parse the flags, open the store and serve until interrupted."""
    options.parse_command_line(list(argv) if argv is not None else None)
    environ = dict(os.environ) if environ is None else environ
    store, users = await open_backends(options.mongodb_uri or environ.get("MONGODB_URI", ""))
    app = make_app(
        cookie_secret=cookie_secret(options.cookie_secret, environ),
        session=SessionOptions(store=store),
        users=users,
    )
    sockets = tornado.netutil.bind_sockets(options.port, options.address)
    server = tornado.httpserver.HTTPServer(app, xheaders=options.xheaders)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    log.info("login example on http://%s:%d/", options.address, port)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()
        await store.close()
        await users.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
