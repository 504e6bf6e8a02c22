"""``python -m tornado_session``: look at a session store and act on it, for operators.

::

    python -m tornado_session --redis-url redis://localhost:6379/0 count
    python -m tornado_session --mongodb-uri mongodb://localhost/app list --user 42
    python -m tornado_session --redis-url ... revoke --user 42 [--session HANDLE]
    python -m tornado_session --redis-url ... clear [--yes]

``--json`` prints one JSON document for scripts.  A walk of the whole store
(``count``, ``clear`` on Redis) shows its progress on standard error when that
is a terminal (``--progress`` / ``--no-progress`` to choose).  A URL that
cannot be a store's exits with status 2 and a server that does not answer with
status 1, each naming the option at fault.  The store is built the way the
application builds it: give the same ``--namespace`` (and ``--collection``)
and ``--user-key``, and ``--cookie-secret`` (default: the ``COOKIE_SECRET``
environment variable) for the handles the application shows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import orjson

from .errors import SessionError, SessionOptionError, StoreUnavailableError
from .stores.base import Store, UserId
from .users import UserSession, find_user_session, list_user_sessions

#: Exit statuses: a bad command line or URL (as argparse), a server that does not answer.
USAGE_ERROR = 2
UNAVAILABLE = 1


class CommandError(Exception):
    """A failure to report in one line and exit with ``status``."""

    def __init__(self, message: str, status: int = UNAVAILABLE) -> None:
        super().__init__(message)
        self.status = status


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    top = argparse.ArgumentParser(
        prog="python -m tornado_session",
        description="Count, list, revoke and clear the sessions of a tornado-session store.",
    )
    where = top.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis-url", metavar="URL", help="a RedisStore: redis://host:6379/0")
    where.add_argument("--mongodb-uri", metavar="URI",
                       help="a MongoStore: mongodb://host/database (database default: "
                            "tornado_session)")
    top.add_argument("--namespace", help="the store's namespace (default: the store's own)")
    top.add_argument("--collection", default="sessions", help="MongoDB collection (sessions)")
    top.add_argument("--user-key", default="user_id",
                     help="the session key that holds the user id (user_id)")
    top.add_argument("--cookie-secret", default=os.environ.get("COOKIE_SECRET", ""),
                     help="the application's cookie_secret, so that handles match the ones it "
                          "shows (default: $COOKIE_SECRET)")
    top.add_argument("--json", action="store_true", help="print JSON for scripts")
    top.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show progress of long walks (default: when stderr is a terminal)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("count", help="how many live sessions the store holds")
    listing = commands.add_parser("list", help="a user's sessions with their devices")
    listing.add_argument("--user", required=True, type=user_id, metavar="ID",
                         help="the user: 42 is the number, '\"42\"' the string, alice a string")
    revoke = commands.add_parser("revoke", help="end a user's sessions, or one of them")
    revoke.add_argument("--user", required=True, type=user_id, metavar="ID")
    revoke.add_argument("--session", metavar="HANDLE", help="only this session (from list)")
    clear = commands.add_parser("clear", help="delete every session of the store")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return top


def user_id(text: str) -> UserId:
    """A user id from the command line: an integer, a JSON string, or the text itself."""
    if not text:
        raise argparse.ArgumentTypeError("a user id cannot be empty")
    if text.lstrip("-").isdigit():
        return int(text)
    if text.startswith('"'):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise argparse.ArgumentTypeError(f"{text} is not a JSON string") from None
        if not isinstance(value, str):
            raise argparse.ArgumentTypeError(f"{text} is not a JSON string")
        return value
    return text


def build_store(args: argparse.Namespace) -> Store:
    """The store the options name, or `CommandError` (status 2) for a URL that is not one."""
    namespace: dict[str, Any] = {} if args.namespace is None else {"namespace": args.namespace}
    try:
        if args.redis_url is not None:
            from .stores.redis import RedisStore

            return RedisStore.from_url(args.redis_url, user_key=args.user_key, **namespace)
        return _mongo_store(args, namespace)
    except ImportError as exc:
        raise CommandError(str(exc), USAGE_ERROR) from exc
    except SessionOptionError as exc:
        option = "--redis-url" if args.redis_url is not None else "--mongodb-uri"
        raise CommandError(f"{option} is not usable: {exc}", USAGE_ERROR) from exc


def _mongo_store(args: argparse.Namespace, namespace: dict[str, Any]) -> Store:
    from pymongo.errors import PyMongoError
    from pymongo.uri_parser import parse_uri

    from .stores.mongo import MongoStore

    try:
        parse_uri(args.mongodb_uri)
    except (PyMongoError, ValueError) as exc:
        raise SessionOptionError(str(exc)) from exc
    return MongoStore.from_uri(
        args.mongodb_uri, collection=args.collection, user_key=args.user_key, **namespace
    )


def where(args: argparse.Namespace) -> str:
    """The server the options name, for error messages (host and port: never a password)."""
    url = args.redis_url if args.redis_url is not None else args.mongodb_uri
    option = "--redis-url" if args.redis_url is not None else "--mongodb-uri"
    try:
        host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        host = ""
    return f"{host or 'the server'} ({option})"


class Progress:
    """A one-line progress count on a terminal: ``scanned 12,500 keys``."""

    def __init__(self, stream: TextIO, verb: str, enabled: bool) -> None:
        self.stream = stream
        self.verb = verb
        self.enabled = enabled
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int) -> None:
        """Show ``done`` (at most ten times a second)."""
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        self._shown = True
        self.stream.write(f"\r{self.verb} {done:,} keys")
        self.stream.flush()

    def end(self) -> None:
        """Finish the line, if one was shown."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


async def run(
    args: argparse.Namespace, out: TextIO, err: TextIO, ask: Callable[[str], str]
) -> int:
    """Carry out the command in ``args``; its exit status."""
    store = build_store(args)
    progress_on = err.isatty() if args.progress is None else args.progress
    try:
        return await _command(args, store, out, err, ask, progress_on)
    except StoreUnavailableError as exc:
        raise CommandError(f"cannot reach {store.backend} at {where(args)}: {exc}") from exc
    finally:
        await store.close()


async def _command(
    args: argparse.Namespace, store: Store, out: TextIO, err: TextIO,
    ask: Callable[[str], str], progress_on: bool,
) -> int:
    secret = args.cookie_secret.encode()
    if args.command == "count":
        progress = Progress(err, "scanned", progress_on)
        count = await store.count(progress=progress)
        progress.end()
        emit(out, args, {"count": count}, f"{count}")
        return 0
    if args.command == "list":
        sessions = await list_user_sessions(store, args.user, secret=secret)
        emit(out, args, {"user": args.user, "sessions": [as_json(s) for s in sessions]},
             table(sessions) if sessions else f"no live sessions of user {args.user!r}")
        return 0
    if args.command == "revoke":
        if args.session is None:
            ended = await store.destroy_all(**{args.user_key: args.user})
            emit(out, args, {"user": args.user, "revoked": ended},
                 f"revoked {ended} session{'s' * (ended != 1)} of user {args.user!r}")
            return 0
        key = await find_user_session(store, args.user, args.session, secret=secret)
        ended = int(key is not None and await store.destroy(key))
        emit(out, args, {"user": args.user, "revoked": ended},
             f"revoked session {args.session} of user {args.user!r}" if ended else
             f"user {args.user!r} has no live session {args.session!r}")
        return 0 if ended else 1
    assert args.command == "clear"
    if not args.yes:
        count = await store.count()
        answer = ask(f"Delete all {count:,} sessions of {store.backend} at {where(args)}? "
                     "Type 'yes' to confirm: ")
        if answer.strip().lower() not in ("y", "yes"):
            err.write("clear: nothing deleted\n")
            return 1
    progress = Progress(err, "deleted", progress_on)
    await store.clear(progress=progress)
    progress.end()
    emit(out, args, {"cleared": True}, "cleared")
    return 0


def as_json(session: UserSession) -> dict[str, Any]:
    """A listed session as JSON: the fields of `UserSession`, times as epoch seconds."""
    return {"handle": session.handle, "created": session.created, "seen": session.seen,
            "expires": session.expires, "agent": session.agent, "address": session.address}


def table(sessions: Sequence[UserSession]) -> str:
    """Listed sessions as a text table, one a line."""
    def when(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")

    rows = [("HANDLE", "CREATED (UTC)", "LAST SEEN", "EXPIRES", "ADDRESS", "DEVICE")]
    rows += [(s.handle, when(s.created), when(s.seen), when(s.expires), s.address or "-",
              s.agent or "-") for s in sessions]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
        + "  " + row[5]
        for row in rows
    )


def emit(out: TextIO, args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    """Print ``document`` as JSON with ``--json``, else ``text``."""
    out.write((orjson.dumps(document).decode() if args.json else text) + "\n")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line and exit with its status."""
    args = parser().parse_args(argv)
    try:
        status = asyncio.run(run(args, sys.stdout, sys.stderr, _ask))
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        status = exc.status
    except SessionError as exc:
        sys.stderr.write(f"error: {exc}\n")
        status = UNAVAILABLE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        status = 130
    sys.exit(status)


def _ask(prompt: str) -> str:
    """Ask on standard error, read a line from standard input (end of input: no)."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()
