"""RedisStore: sessions in Redis, one JSON string per session, expired by Redis itself.

Each session is a Redis string under the store's ``namespace`` plus the key the
lifecycle gives (a hash of the session id, never the id), holding the session's
canonical JSON (`serializers.dumps`: the bytes the lifecycle compares for change
detection).  The key carries its own TTL: Redis expires it, on its own clock,
without any sweeping on our side.

Every operation is one round trip:

* `RedisStore.get` is one ``GET``, and answers a `serializers.Loaded` whose
  ``raw`` is the stored bytes, so the lifecycle takes them as its baseline
  without serialising the data again;
* a new or regenerated session is one ``SET ... PX``;
* an update of a loaded session is one ``EVALSHA`` of the update script, which
  runs atomically in Redis.  It reads the record; when it is gone (a
  concurrent logout, or it expired) it writes nothing and `RedisStore.set`
  returns ``False``: logout wins.  When it still holds the bytes the request
  loaded (the common case), the script replaces them with the new bytes
  (``SET ... PX``): a compare-and-set.  When another request wrote it since,
  the script applies this request's changes (the top-level keys it changed or
  removed, which the store sends along) to the record as it is now, key by
  key, splicing the JSON text without decoding any value, and writes that.
  So two requests that change different keys both keep their writes, and no
  reader ever sees a record without a write that was acknowledged.  A key that
  both changed is a conflict, settled in the script by ``on_conflict``;
  increments and appends are applied to the value there now;
* `RedisStore.touch`, and an update that changes nothing, are one ``PEXPIRE``;
* `RedisStore.destroy` is one ``DEL``.

Why this layout (measured on the project's 2-core machine against Debian's
redis-server 7.0 pinned to one core; docs/stores-redis.md has the figures):
a load is a ``GET`` (0.5 us inside Redis) where it was the ``HGETALL`` of a
nine-field hash (2.1 us), and the client parses one bulk string and decodes
one JSON document instead of nine and eight, then serialises nothing (2.3 us
against 7.0).  A new session is a plain ``SET`` where it was a script seven
times as costly inside Redis, and the client sends the bytes it has instead
of encoding each key (4.8 us against 20).  An update still needs a script,
which costs Redis some 7 to 10 us whatever it does: Redis 7.0 has no
conditional ``SET`` on a value, and every script-free way loses a guarantee
or costs more.  ``SET ... XX GET`` followed by a repair lets a reader see,
between the two, a record without another request's completed write;
``WATCH``/``MULTI`` takes three round trips; a list of deltas appended with
``RPUSHX`` needs a ``PEXPIRE`` beside it, and redis-py's pipeline of the two
cost the client more than the script costs the server.  A Redis Function
(``FCALL``) of the same body costs what ``EVALSHA`` does, and needs Redis 7.

The merge is done in the script, not by the store after a "changed since"
answer, because concurrent writes of one session are what the benchmark's
``/changed`` does (eight connections, one cookie): merging in the store took
three round trips per write there; the script's splice takes one, for some
25 us more of Lua.  The store still merges a record the script cannot split
(JSON another program wrote, not as orjson writes it): the script answers it
as it is, and the store applies the changes and compares-and-sets again.

A key under the namespace that is not a string (such as the hash of a session
written by the earlier layout of this store) or whose value is not a JSON
object reads as a missing session, with a warning; an update of it writes
nothing and returns ``False``.  Redis's ``WRONGTYPE`` answer never reaches the
application.  Those records are left to expire by their TTL; `clear` deletes
them.

`RedisStore.count`, `RedisStore.clear` and `RedisStore.destroy_all` walk the
namespace with ``SCAN`` (never ``KEYS``, which blocks the server); nothing here
ever calls ``FLUSHDB``.

On Redis Cluster (a ``redis.asyncio.RedisCluster`` client, or `from_url`
with ``cluster=True``) every per-session command names one key, so it goes to
the master of that key's slot and none crosses slots.  The bulk operations
walk every master: ``SCAN`` is sent to each one in turn, and ``destroy_all``
reads a page with one ``MGET`` per slot (redis-py's ``mget_nonatomic``) and
deletes with one ``UNLINK`` per slot.  docs/scaling.md has the failover
figures.

The user index (a `user_key`) has two layouts on a cluster, chosen by the
namespace.  With a hash tag in it (``"app:{sessions}:"``) every key of the
store is in one slot, so the index moves in the same scripts as on one
server: the cluster gives failover, but one master holds every session.
Without one (the "spread" layout) each session and its owner's hash are in
the session's slot (``<ns>{<key>}``, ``<ns>{<key>}~meta``) and each user's set
in the user's (``<ns>~user:{<user>}``), so sessions spread over every master;
as no script may span two slots, the store keeps the index by a documented
order instead: a user's set is extended before any of its sessions, and an
owner is written after the new user's set is joined.  That costs an indexed
session one more call per write, two more per touch and one more per login
or change of user; anonymous sessions, and stores without a
`user_key`, pay nothing.  A crash
between two steps leaves a member too many, which listing drops, never a
live session missing from its user's set.  "The user index" below has the
details.

The ``redis`` package is imported when a store is built, not when this module
is, so ``import tornado_session`` works without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import serializers
from .._checks import check_seconds
from ..errors import SessionError, SessionOptionError, StoreUnavailableError
from .base import Clock, Owner, Progress, Store, UserId, UserRecord, Written

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_INSTALL_HINT = 'RedisStore needs the redis package: pip install "tornado-async-session[redis]"'

#: Update one session string.  KEYS[1]: the key.  ARGV: the TTL in ms, the
#: bytes the request loaded, the bytes to write, the conflict policy (``l``
#: last write wins, ``f`` first write wins, ``x`` fail, ``c`` compare only),
#: then the request's changes: pairs of a top-level key (as JSON) and what
#: to do with it, in key order: its new value (JSON), ``""`` (removed),
#: ``+N`` (an increment by N) or ``<L|[...]`` (append the JSON array's items,
#: keep the last L).  Returns 0 when there is no record (destroyed or
#: expired: nothing is written) and 1 when it wrote the bytes to write,
#: because the record is still the bytes loaded: the common case, which
#: returns before the merge's functions are even defined.
#:
#: The user index rides along.  With three keys (one server, or a cluster
#: with a hash-tagged namespace) KEYS[2] is the session's meta hash and
#: KEYS[3] the users' prefix: the write moves the meta and the member too.
#: With two keys (the spread layout) the user's set is on another slot: the
#: store extended it first, and the policy letter is followed by the user
#: it extended it for; when the meta names another owner (or none, or one
#: where the store guessed none) the script writes nothing and answers
#: ``{2, owner}``, so that the store extends that owner's set and asks again.
#:
#: Otherwise another request wrote since the load: the script applies the
#: changes key by key to the record as it is now.  A key whose value is not
#: the one in the loaded bytes any more is in conflict, and the policy says
#: which value it gets (``x``: nothing is written at all).  An increment or
#: an append is applied to the value there now.  Then it answers an array:
#: whether it wrote (1/0), how many keys were in conflict, those keys, and
#: pairs of a key and the value an increment or append left.  What the script
#: cannot do it leaves to the store, answering the record as it is: a record
#: that is not JSON as orjson writes it (something else wrote it), an
#: increment of anything but a short integer (Lua counts in doubles), an
#: append to anything but a list; and with ``c`` any record but the loaded one.
#:
#: The split reads orjson's canonical JSON (no whitespace) with `string.find`,
#: copying each value as it is; every loop moves forward or stops.  The merged
#: record keeps the keys in orjson's order (by their bytes; a key holding an
#: escaped character may land out of order, which costs the next request a
#: rewrite, never data).
_UPDATE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if KEYS[2] and not KEYS[3] then
  local owner = redis.call('HGET', KEYS[2], 'user') or ''
  if owner ~= string.sub(ARGV[4], 2) then return {2, owner} end
end
local function follow()
  if KEYS[2] and redis.call('PEXPIRE', KEYS[2], ARGV[1]) == 1 then
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    redis.call('HSET', KEYS[2], 'seen', now / 1000)
    if KEYS[3] then
      local zset = KEYS[3] .. redis.call('HGET', KEYS[2], 'user')
      redis.call('ZADD', zset, now + ARGV[1], KEYS[1])
      local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
      redis.call('PEXPIRE', zset, math.max(1, last[2] - now))
    end
  end
end

if current == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[1])
  follow()
  return 1
end
local policy = string.sub(ARGV[4], 1, 1)
if policy == 'c' then return current end

local find, sub, byte = string.find, string.sub, string.byte

local function string_end(s, i)
  while true do
    local j = find(s, '["\\\\]', i + 1)
    if not j then return nil end
    if byte(s, j) == 34 then return j + 1 end
    i = j + 1
  end
end

local function value_end(s, i)
  local c = byte(s, i)
  if c == 34 then return string_end(s, i) end
  if c ~= 123 and c ~= 91 then return (find(s, '[],}]', i)) end
  local depth = 0
  while true do
    local j = find(s, '[][{}"]', i)
    if not j then return nil end
    c = byte(s, j)
    if c == 34 then
      i = string_end(s, j)
      if not i then return nil end
    else
      if c == 123 or c == 91 then depth = depth + 1 else depth = depth - 1 end
      i = j + 1
      if depth == 0 then return i end
    end
  end
end

local function split(s)
  local keys, values = {}, {}
  if s == '{}' then return keys, values end
  if byte(s, 1) ~= 123 then return nil end
  local i = 2
  while true do
    if byte(s, i) ~= 34 then return nil end
    local k = string_end(s, i)
    if not k or byte(s, k) ~= 58 then return nil end
    local v = value_end(s, k + 1)
    if not v or v == k + 1 then return nil end
    keys[#keys + 1] = sub(s, i, k - 1)
    values[#values + 1] = sub(s, k + 1, v - 1)
    local c = byte(s, v)
    if c == 125 then
      if v == #s then return keys, values end
      return nil
    end
    if c ~= 44 then return nil end
    i = v + 1
  end
end

local function items(s)
  local out = {}
  if s == '[]' then return out end
  if not s or byte(s, 1) ~= 91 then return nil end
  local i = 2
  while true do
    local v = value_end(s, i)
    if not v or v == i then return nil end
    out[#out + 1] = sub(s, i, v - 1)
    local c = byte(s, v)
    if c == 93 then
      if v == #s then return out end
      return nil
    end
    if c ~= 44 then return nil end
    i = v + 1
  end
end

local function increment(value, by)
  if not value then return by end
  if #value > 15 or #by > 15 or not find(value, '^%-?%d+$') then return nil end
  return string.format('%.0f', tonumber(value) + tonumber(by))
end

local function append(value, change)
  local bar = find(change, '|', 2, true)
  local limit = tonumber(sub(change, 2, bar - 1))
  local old = {}
  if value then
    old = items(value)
    if not old then return nil end
  end
  local new = items(sub(change, bar + 1))
  for _, item in ipairs(new) do old[#old + 1] = item end
  local first = math.max(1, #old - limit + 1)
  return '[' .. table.concat(old, ',', first) .. ']'
end

local function before(a, b)
  for i = 2, math.min(#a, #b) - 1 do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local keys, values = split(current)
local loaded_keys, loaded_values = split(ARGV[2])
if not keys or not loaded_keys then return current end
local now, loaded = {}, {}
for j, key in ipairs(keys) do now[key] = values[j] end
for j, key in ipairs(loaded_keys) do loaded[key] = loaded_values[j] end

local changes, conflicts, results = {}, {}, {}
for i = 5, #ARGV, 2 do
  local key, change = ARGV[i], ARGV[i + 1]
  local c = byte(change, 1)
  if c == 43 then
    local new = increment(now[key], sub(change, 2))
    if not new then return current end
    changes[key] = new
    results[#results + 1] = key
    results[#results + 1] = new
  elseif c == 60 then
    local new = append(now[key], change)
    if not new then return current end
    changes[key] = new
    results[#results + 1] = key
    results[#results + 1] = new
  elseif now[key] == loaded[key] or policy == 'l' then
    if now[key] ~= loaded[key] then conflicts[#conflicts + 1] = key end
    changes[key] = change
  else
    conflicts[#conflicts + 1] = key
  end
end
if policy == 'x' and #conflicts > 0 then
  local answer = {0, #conflicts}
  for _, key in ipairs(conflicts) do answer[#answer + 1] = key end
  return answer
end

local added, n, out = {}, 1, {}
for i = 5, #ARGV, 2 do
  local key = ARGV[i]
  if not now[key] and changes[key] and changes[key] ~= '' then added[#added + 1] = key end
end
for j, key in ipairs(keys) do
  while added[n] and before(added[n], key) do
    out[#out + 1] = added[n] .. ':' .. changes[added[n]]
    n = n + 1
  end
  local value = changes[key] or values[j]
  if value ~= '' then out[#out + 1] = key .. ':' .. value end
end
for i = n, #added do out[#out + 1] = added[i] .. ':' .. changes[added[i]] end
redis.call('SET', KEYS[1], '{' .. table.concat(out, ',') .. '}', 'PX', ARGV[1])
follow()
if #conflicts == 0 and #results == 0 then return 1 end
local answer = {1, #conflicts}
for _, key in ipairs(conflicts) do answer[#answer + 1] = key end
for _, item in ipairs(results) do answer[#answer + 1] = item end
return answer
"""


#: The update script's letter for each ``on_conflict`` policy.
_POLICY = {"last_write_wins": b"l", "first_write_wins": b"f", "fail": b"x"}

# -- the user index -------------------------------------------------------------
#
# Beside a session ``<ns><key>`` of a user, a hash ``<ns><key>~meta`` holds its
# owner (``user`` as JSON, ``created``, ``seen``, ``agent``, ``address``) with
# the session's TTL, and the user's sorted set ``<ns>~user:<user as JSON>`` has
# the session's name as a member scored by its expiry (ms, Redis's clock), with
# the TTL of its last member.  Every write that extends an indexed session
# moves all three in the same script, so none outlives the session by more than
# a member's score.  Members whose session is gone (destroyed by one ``DEL``,
# or expired) are dropped by the scripts that read the set.  Times come from
# Redis's ``TIME``, the clock its TTLs run on.  Key names are made in the
# scripts, so all of a store's keys must be in one slot: one server, or a
# cluster whose namespace carries a hash tag (the "one-slot" layout).
#
# The "spread" layout (a cluster, a `user_key`, a namespace without a hash
# tag) puts each user's keys on that user's slot instead: a session is
# ``<ns>{<key>}`` and its meta ``<ns>{<key>}~meta`` (one slot: the key is the
# tag), the user's set ``<ns>~user:{<user as JSON>}`` (the user's slot).  No
# script may span two slots, so the set and the session move in an order
# that keeps the invariant "every live session with an owner is a member of
# its user's set, and the set lives at least as long as it" through a crash
# between any two steps:
#
# * owning: join the new user's set (`_JOIN_SCRIPT`: the member and the set
#   are given the TTL plus `_GRACE_MS`), then write the meta (`_CLAIM_SCRIPT`).
#   The previous owner's set keeps the member: removing it could undo the
#   join of a concurrent change back to that owner (A to B and B to A at
#   once), hiding a live session from that owner's "log out everywhere";
#   listing ignores it (the meta names someone else) and drops it later;
# * extending (an update, a touch): join the owner's set, then extend the
#   session; the session script names the owner it was extended for and
#   refuses when the meta names another (`_UPDATE_SCRIPT`,
#   `_SPREAD_TOUCH_SCRIPT`), so no session outruns its set;
# * listing: read each member's ``PTTL`` and meta, one command each, at once;
#   drop (`_PRUNE_SCRIPT`) only members whose session is gone or someone
#   else's, and whose score has passed: a member whose session does not exist
#   yet, or is not yet the user's, may be a login between its steps, whose
#   score is fresh;
# * revoking: for each member, `_REVOKE_SCRIPT` on the session's slot deletes
#   the session and its meta if the meta names the user and the session
#   exists; then only those members leave the set (never the whole set: a
#   login racing the revocation keeps its membership).
#
# A crash between steps leaves a member too many (listing drops it), never a
# live session missing from its user's set.  The grace covers the time
# between the join and the session's write; a write that comes later than that
# joins again (`RedisStore._rejoin_if_late`).

#: Lua shared by the index scripts: the time in ms, and a user's set expiring with its last member.
_INDEX_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function expire_set(zset, now)
  local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', zset, math.max(1, last[2] - now)) end
end
"""

#: Give a session its owner.  KEYS: the session, its meta hash.  ARGV: the
#: namespace, the TTL in ms, then the owner: user as JSON ('' for none),
#: created, agent, address.  Leaves the old user's set, joins the new one's.
_OWN_SCRIPT = _INDEX_LIB + """
local now = now_ms()
local old = redis.call('HGET', KEYS[2], 'user')
if old and old ~= ARGV[3] then redis.call('ZREM', ARGV[1] .. '~user:' .. old, KEYS[1]) end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2])
  return 1
end
redis.call('HSET', KEYS[2], 'user', ARGV[3], 'created', ARGV[4], 'seen', now / 1000,
           'agent', ARGV[5], 'address', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local zset = ARGV[1] .. '~user:' .. ARGV[3]
redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
redis.call('ZADD', zset, now + ARGV[2], KEYS[1])
expire_set(zset, now)
return 1
"""

#: Extend a session (and, if it has an owner, its meta and its member).
#: KEYS: the session, its meta hash.  ARGV: the namespace, the TTL in ms.
_TOUCH_SCRIPT = _INDEX_LIB + """
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 0 then return 0 end
if redis.call('PEXPIRE', KEYS[2], ARGV[2]) == 1 then
  local now = now_ms()
  redis.call('HSET', KEYS[2], 'seen', now / 1000)
  local zset = ARGV[1] .. '~user:' .. redis.call('HGET', KEYS[2], 'user')
  redis.call('ZADD', zset, now + ARGV[2], KEYS[1])
  expire_set(zset, now)
end
return 1
"""

#: A user's live sessions.  KEYS: the user's set.  ARGV: the user as JSON.
#: Answers, per session: its name, its TTL in ms, created, seen, agent, address.
_LIST_SCRIPT = _INDEX_LIB + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local out = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local ttl = redis.call('PTTL', name)
  local meta = redis.call('HMGET', name .. '~meta', 'user', 'created', 'seen', 'agent', 'address')
  if ttl > 0 and meta[1] == ARGV[1] then
    out[#out + 1] = {name, ttl, meta[2], meta[3], meta[4], meta[5]}
  else
    redis.call('ZREM', KEYS[1], name)
  end
end
return out
"""

#: Destroy a user's sessions.  KEYS: the user's set.  ARGV: the user as JSON.
#: Answers how many live sessions were deleted.  A member whose meta names
#: the user but whose session does not exist (yet) is kept, meta and all: it
#: may be a login between its owner script and its first write, which would
#: otherwise become a live session that no "log out everywhere" finds.
#: Members of someone else, or of no one, leave the set.
_DESTROY_USER_SCRIPT = """
local destroyed = 0
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('HGET', name .. '~meta', 'user') ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], name)
  elseif redis.call('UNLINK', name) == 1 then
    redis.call('UNLINK', name .. '~meta')
    redis.call('ZREM', KEYS[1], name)
    destroyed = destroyed + 1
  end
end
return destroyed
"""

# -- the spread layout's scripts: each touches the keys of one slot ---------------

#: How much longer than its session a member and its set live in the spread
#: layout (ms): room for the session write that follows the join.
_GRACE_MS = 60_000

#: Join a user's set.  KEYS: the set.  ARGV: the session's name, how long the
#: member must live (ms: the TTL plus the grace).  Neither the member's score
#: nor the set's TTL ever gets shorter.
_JOIN_SCRIPT = _INDEX_LIB + """
local score = now_ms() + ARGV[2]
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not old or tonumber(old) < score then redis.call('ZADD', KEYS[1], score, ARGV[1]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

#: Write a session's owner.  KEYS: its meta hash.  ARGV: the TTL in ms, then
#: the owner: user as JSON ('' for none: the hash goes), created, agent,
#: address.
_CLAIM_SCRIPT = _INDEX_LIB + """
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'created', ARGV[3], 'seen', now_ms() / 1000,
           'agent', ARGV[4], 'address', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

#: Extend a session whose owner's set was extended first.  KEYS: the session,
#: its meta hash.  ARGV: the TTL in ms, the owner the set was extended for
#: ('' for none).  Answers 0 (no session), 1, or ``{2, owner}`` when the meta
#: names another owner: nothing is extended then.
_SPREAD_TOUCH_SCRIPT = _INDEX_LIB + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[2], 'user') or ''
if owner ~= ARGV[2] then return {2, owner} end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('PEXPIRE', KEYS[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'seen', now_ms() / 1000)
end
return 1
"""

#: Delete a session if it is the user's.  KEYS: the session, its meta hash.
#: ARGV: the user as JSON.  Answers 1 when it deleted both, else 0 and
#: touches nothing: another's session, one of no one, or an owner without a
#: session, which may be a login between its meta and its first write (deleting
#: the meta then would leave that session live and owned by no one).
_REVOKE_SCRIPT = """
if redis.call('HGET', KEYS[2], 'user') ~= ARGV[1] then return 0 end
if redis.call('UNLINK', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[2])
return 1
"""

#: Drop members whose score has passed.  KEYS: the set.  ARGV: the members
#: (the store found their sessions gone or someone else's).  Answers how many left.
_PRUNE_SCRIPT = _INDEX_LIB + """
local now = now_ms()
local removed = 0
for _, name in ipairs(ARGV) do
  local score = redis.call('ZSCORE', KEYS[1], name)
  if score and tonumber(score) < now then removed = removed + redis.call('ZREM', KEYS[1], name) end
end
return removed
"""


def _sha(script: str) -> str:
    """A script's SHA-1, as ``EVALSHA`` names it."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest()


#: Each script by its SHA-1: `RedisStore._script` sends ``EVALSHA``, loading it if need be.
_SCRIPTS = {
    _sha(script): script
    for script in (
        _UPDATE_SCRIPT, _OWN_SCRIPT, _TOUCH_SCRIPT, _LIST_SCRIPT, _DESTROY_USER_SCRIPT,
        _JOIN_SCRIPT, _CLAIM_SCRIPT, _SPREAD_TOUCH_SCRIPT, _REVOKE_SCRIPT, _PRUNE_SCRIPT,
    )
}
_UPDATE_SHA = _sha(_UPDATE_SCRIPT)
_OWN_SHA = _sha(_OWN_SCRIPT)
_TOUCH_SHA = _sha(_TOUCH_SCRIPT)
_LIST_SHA = _sha(_LIST_SCRIPT)
_DESTROY_USER_SHA = _sha(_DESTROY_USER_SCRIPT)
_JOIN_SHA = _sha(_JOIN_SCRIPT)
_CLAIM_SHA = _sha(_CLAIM_SCRIPT)
_SPREAD_TOUCH_SHA = _sha(_SPREAD_TOUCH_SCRIPT)
_REVOKE_SHA = _sha(_REVOKE_SCRIPT)
_PRUNE_SHA = _sha(_PRUNE_SCRIPT)


def _redis_modules() -> tuple[Any, Any]:
    """Import ``redis.asyncio`` and ``redis.exceptions``, or say which extra to install."""
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return redis.asyncio, redis.exceptions


#: Seconds between two tries of a command whose cluster master is being replaced.
_FAILOVER_RETRY = 0.1


class _MasterUnreachable(StoreUnavailableError):
    """One cluster master cannot be reached while another answers: a partial outage."""


def _hash_tag(name: str) -> str | None:
    """The hash tag Redis Cluster reads in ``name`` (``None``: the whole name picks the slot).

    Redis's rule: the text between the first ``{`` and the first ``}`` after
    it, when that text is not empty.
    """
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    return name[start + 1:end] if end > start + 1 else None


#: The owner's fields of a meta hash, as listing reads them.
_META_FIELDS = ("user", "created", "seen", "agent", "address")


def _user_json(owner: Owner | None) -> bytes:
    """The owner's user as JSON, as the index names it (``b""``: no user)."""
    if owner is None or owner.user is None:
        return b""
    return serializers.value_bytes(owner.user)


def _ttl_ms(max_age: float) -> int:
    """``max_age`` seconds as a Redis TTL in milliseconds (at least 1)."""
    return max(1, math.ceil(max_age * 1000))


def _escape_glob(text: str) -> str:
    """Escape the characters ``SCAN ... MATCH`` treats as a pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisStore(Store):
    """Keeps sessions in Redis (6.0 or later) through ``redis.asyncio``.

    ``client`` is a ``redis.asyncio.Redis`` (or a ``redis.asyncio.RedisCluster``)
    that you made and keep: `close` leaves it open.  `from_url` builds one
    that the store owns and closes.  It must be built with
    ``decode_responses=False`` (the default).

    ``namespace`` is put before every key, so several applications (or a
    session store and a cache) share one database without touching each
    other's keys: `clear`, `count` and `destroy_all` only see the keys under
    it (`clear` deletes all of them).  It must not be empty.

    ``user_key`` keeps a user index (`destroy_user`, `user_sessions`).  On a
    Redis Cluster its layout depends on the namespace: with a hash tag
    (``namespace="app:{sessions}:"``) the whole store is one slot and the
    index moves in one script, as on one server; without one each user's
    keys are placed by hash tags of their own (the session's, the user's),
    spreading over every master, and the index is kept by ordering the steps
    (the module's docstring says which, and what it costs).  A namespace whose
    first ``{`` is followed by ``}`` (an empty tag) is refused: Redis would
    hash each name whole, parting a session from its owner.

    The store reports the connection's real state: a command that fails with a
    connection error or a time-out emits ``disconnect`` and raises
    `StoreUnavailableError`; the first command sent after it that succeeds
    emits ``connect`` (an answer to one sent before the loss does not: see
    `Store.call_backend`).  Each change is logged once.  While disconnected, a
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

    ``replicas`` (0 by default) makes every write that changes a session or
    its owner wait until that many replicas have it (``WAIT``, pipelined with
    the write: no extra round trip, only the replicas' delay), for at most
    ``replica_timeout`` seconds; a write fewer replicas confirm is answered
    as not saved (503).  Redis replicates asynchronously, so without it a
    write acknowledged just before the primary dies can be missing on the
    replica that takes over (a login or a logout undone).  For one server or
    the primary a Sentinel hands out; refused on a Redis Cluster, whose
    client cannot send ``WAIT`` on the write's connection.
    """

    backend = "Redis"

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        namespace: str = "tornado_session:",
        timeout: float | None = None,
        probe_interval: float = 1.0,
        clock: Clock = time.time,
        user_key: str | None = None,
        replicas: int = 0,
        replica_timeout: float = 0.5,
    ) -> None:
        aioredis, exceptions = _redis_modules()
        if not isinstance(client, (aioredis.Redis, aioredis.RedisCluster)):
            raise SessionOptionError(
                f"RedisStore(client={type(client).__name__}): expected a redis.asyncio.Redis "
                "or redis.asyncio.RedisCluster (a blocking client would stall the IOLoop); "
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
        super().__init__(
            clock=clock, probe_interval=probe_interval, timeout=timeout, user_key=user_key
        )
        #: The ``redis.asyncio.Redis`` client the store sends its commands through.
        self.client = client
        self.namespace = namespace
        self._owns_client = False
        # The driver's exceptions, for `translate_error` (redis is imported with the store).
        self._unavailable: tuple[type[Exception], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
        )
        self._redis_error: type[Exception] = exceptions.RedisError
        self._no_script: type[Exception] = exceptions.NoScriptError
        self._pattern = _escape_glob(namespace) + "*"
        #: Whether the client is a Redis Cluster's: the bulk operations then walk every master.
        self.cluster = isinstance(client, aioredis.RedisCluster)
        # A partial outage of the cluster (`call_backend`): logged once, and
        # until when another master is known to answer (the loop's clock).
        self._masters_lost = False
        self._answers_until = 0.0
        #: Whether the user index is spread over the cluster's masters (a
        #: cluster, a `user_key`, a namespace without a hash tag): each
        #: session's keys on the session's slot, each user's set on the user's
        #: (module docstring, "The user index on Redis Cluster").
        self.spread = self.cluster and user_key is not None and _hash_tag(namespace) is None
        # A session's name is ``_prefix + key + _suffix``; in the spread layout
        # the key is the name's hash tag, which its meta hash shares.
        self._prefix = namespace + "{" if self.spread else namespace
        self._suffix = "}" if self.spread else ""
        if self.cluster:
            # Answers that mean "this slot has no reachable master right now":
            # a failover in progress, or the cluster refusing queries meanwhile.
            self._unavailable += (
                exceptions.ClusterError, exceptions.TryAgainError,
                exceptions.SlotNotCoveredError,
            )
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise SessionOptionError(
                f"RedisStore option replicas={replicas!r} is invalid; expected an int >= 0 "
                "(how many replicas must have each session write before it counts as saved)"
            )
        if replicas and self.cluster:
            raise SessionOptionError(
                f"RedisStore(replicas={replicas!r}) on a Redis Cluster: not offered. WAIT "
                "counts only the writes of its own connection, and redis-py's RedisCluster "
                "cannot send it on the connection of a write (docs/scaling.md)"
            )
        #: How many replicas must have each write before the store answers it
        #: (``WAIT``, on the write's own connection; 0: Redis's acknowledgement).
        self.replicas = replicas
        #: How long a write waits for ``replicas``, in seconds.
        self.replica_timeout = check_seconds("RedisStore option replica_timeout", replica_timeout)
        if self.spread and _hash_tag(self._name("key")) is None:
            raise SessionOptionError(
                f"RedisStore(namespace={namespace!r}, user_key={user_key!r}) on a Redis "
                "Cluster: the namespace's empty '{}' would make Redis hash each key whole, "
                "so a session and its owner would land on different slots; remove the '{}', "
                "or put a hash tag in it, such as 'app:{sessions}:'"
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "tornado_session:",
        timeout: float | None = 5.0,
        probe_interval: float = 1.0,
        clock: Clock = time.time,
        cluster: bool = False,
        user_key: str | None = None,
        replicas: int = 0,
        replica_timeout: float = 0.5,
        **client_options: Any,
    ) -> RedisStore:
        """Build a store with a client of its own, from a ``redis://`` URL.

        With ``cluster=True`` the client is a ``redis.asyncio.RedisCluster``
        and the URL names any one node of the cluster: the client learns the
        others, and which master serves which slot, from it.

        ``client_options`` go to ``redis.asyncio.Redis.from_url`` (or
        ``RedisCluster.from_url``; ``max_connections``, per node on a cluster,
        defaults to 10,000 here, Redis's own limit of clients, instead of
        redis-py's 100, past which commands fail).  Unless
        given, ``retry`` is one immediate retry (enough to replace a pooled
        connection the server closed), so a server that is down is reported
        at once instead of after redis-py's default back-off of seconds; and
        ``socket_timeout`` is ``None``, because the store bounds each call
        with ``timeout`` itself, which is cheaper than redis-py's per-command
        time-out (a task per command).  The store closes this client in
        `close`.
        """
        aioredis, exceptions = _redis_modules()
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
        if not isinstance(cluster, bool):
            raise SessionOptionError(
                f"RedisStore.from_url(cluster={cluster!r}): expected True (a Redis Cluster) "
                "or False (one server)"
            )
        # redis-py's pool holds 100 connections by default and raises at the
        # 101st concurrent command, which the store would take for an outage
        # (every request 503 under a burst).  Redis itself takes 10,000 clients.
        # (A BlockingConnectionPool waits instead, but costs ~20 us a command.)
        # A cluster client has the same limit for each node.
        client_options.setdefault("max_connections", 10_000)
        try:
            client_class = aioredis.RedisCluster if cluster else aioredis.Redis
            client = client_class.from_url(url, **client_options)
        except (ValueError, TypeError, exceptions.RedisClusterException) as exc:
            # not echoing the URL: it may hold a password
            raise SessionOptionError(f"RedisStore.from_url(url=...): {exc}") from exc
        # No connection is made before the first command: a bad option below
        # leaves no socket open.
        store = cls(
            client, namespace=namespace, timeout=timeout, probe_interval=probe_interval,
            clock=clock, user_key=user_key, replicas=replicas, replica_timeout=replica_timeout,
        )
        store._owns_client = True
        return store

    # -- the protocol -----------------------------------------------------------

    async def get(self, key: str) -> serializers.Loaded | None:
        """Return the session under ``key`` (one ``GET``), or ``None``.

        The answer is a `serializers.Loaded` carrying the stored bytes.  Redis
        never returns a key whose TTL ran out, so an expired session reads as
        missing.  A record that is not a session (not a string, such as a hash
        of the earlier layout, or not a JSON object) reads as missing too, with
        a warning, so it becomes a fresh session rather than an error page.
        """
        try:
            raw: bytes | None = await self.call_backend(self.client.get, self._name(key))
        except SessionError as exc:
            if not self._wrong_type(exc):
                raise
            self._not_a_session("is not a string")
            return None
        if raw is None:
            return None
        return self._decode(raw)

    async def set(
        self,
        key: str,
        data: Mapping[str, Any],
        max_age: float,
        *,
        previous: Mapping[str, Any] | None = None,
        ops: Mapping[str, serializers.Op] | None = None,
        on_conflict: str = "last_write_wins",
        owner: Owner | None = None,
    ) -> bool | Written:
        """Write ``data`` with a TTL of ``max_age``; see `Store.set`.

        A new session is one ``SET``.  With ``previous``: one ``PEXPIRE`` when
        nothing changed; otherwise one ``EVALSHA`` of the update script, which
        writes ``data`` whole if the record is still what the request loaded,
        and otherwise applies the request's changes to the record key by key,
        settling conflicts by ``on_conflict`` and applying ``ops`` to the
        values there now.
        With a `user_key`, an `Owner` costs one more script before the write
        (the index first: a crash between the two leaves an entry that
        listing drops, never a session that "log out everywhere" misses), and
        the update and ``PEXPIRE`` move an indexed session's entry in the same
        call.  In the spread layout a login or a change of user costs one
        more call (`_own`), and every write of an indexed session one more:
        its user's set first (`_extend_set_first`).
        """
        name = self._name(key)
        ttl = _ttl_ms(max_age)
        raw = serializers.raw_json(data)  # a value that is not JSON: raises naming its key
        joined = None
        if owner is not None and self.user_key is not None:
            joined = await self._own(name, ttl, owner)
        if previous is None:
            # A new session of no user is a plain SET even with an index: the
            # lifecycle writes new sessions under new keys, which have no owner.
            await self._write(self.client.set, name, raw, px=ttl)
            if joined is not None:
                await self._rejoin_if_late(_user_json(owner), name, ttl, joined)
            return True
        # Who owns the session, as far as this request knows (spread layout only).
        user = b""
        if self.spread:
            user = _user_json(owner) if owner is not None else self._guess_user(previous)
        loaded = serializers.raw_json(previous)
        if raw == loaded:
            if self.spread:
                return await self._touch_spread(name, ttl, user, joined)
            return await self.touch(key, max_age)
        to_set, to_unset = serializers.changed_keys(previous, data)
        changes = self._changes(to_set, to_unset, ops)
        answer = await self._update(
            name, ttl, loaded, raw, _POLICY[on_conflict], changes, user, joined
        )
        # The script answers what it cannot merge (JSON from another writer, an
        # increment past Lua's exact integers) with the record as it is: merge
        # here and compare-and-set against those bytes.  Each pass that finds
        # other bytes follows another write, so the loop ends when the record
        # holds still for one round trip.
        while isinstance(answer, bytes):
            current = self._decode(answer)
            if current is None:
                return False
            merged = serializers.merge_changes(
                current, previous, data, ops=ops, on_conflict=on_conflict
            )
            if merged.data is None:
                return Written.of(merged)
            written = Written.of(merged)
            answer = await self._update(
                name, ttl, answer, serializers.dumps(merged.data), b"c", changes, user
            )
            if answer == 1:
                return written
        if isinstance(answer, int):
            return answer == 1
        return self._written(answer)

    @staticmethod
    def _written(answer: list[Any]) -> bool | Written:
        """The update script's array answer: written, the conflicts, the ops' values."""
        count = int(answer[1])
        conflicts = tuple(serializers.loads(name) for name in answer[2:2 + count])
        rest = answer[2 + count:]
        values = {
            serializers.loads(rest[i]): serializers.loads(rest[i + 1])
            for i in range(0, len(rest), 2)
        }
        return Written(bool(answer[0]), conflicts, values)

    async def touch(self, key: str, max_age: float) -> bool:
        """Renew the TTL of a live record (one ``PEXPIRE``); ``False`` when there is none.

        With a `user_key` it is one script instead, which moves an indexed
        session's entry too.  In the spread layout an indexed session costs
        two calls more: the script answers its owner, whose set is extended
        before the session (`_extend_set_first`).
        """
        name = self._name(key)
        if self.user_key is None:
            return bool(await self._write(self.client.pexpire, name, _ttl_ms(max_age)))
        if self.spread:
            return await self._touch_spread(name, _ttl_ms(max_age), b"", None)
        answer = await self._script(
            _TOUCH_SHA, 2, name, name + "~meta", self.namespace, _ttl_ms(max_age)
        )
        return bool(answer)

    async def destroy(self, key: str) -> bool:
        """Delete the record under ``key`` (one ``DEL``); whether a live one was there.

        With a `user_key` the same ``DEL`` takes the owner's hash (on a
        cluster, in the session's slot in either layout); the user's set
        drops the member when it is next read.
        """
        name = self._name(key)
        if self.user_key is None:
            return bool(await self._write(self.client.delete, name))
        return bool(await self._write(self.client.delete, name, name + "~meta"))

    async def destroy_user(self, user: UserId) -> int:
        """Destroy ``user``'s sessions, walking only that user's set.

        One script; in the spread layout one call to read the set, then one
        script per member on the member's slot (all at once) and one
        ``ZREM`` of those it destroyed.
        """
        self._needs_user_key()
        user_json = serializers.value_bytes(user)
        if self.spread:
            return await self._revoke_spread(user_json)
        answer = await self._script(_DESTROY_USER_SHA, 1, self._user_set(user_json), user_json)
        return int(answer)

    async def user_sessions(self, user: UserId) -> list[UserRecord]:
        """The live sessions of ``user``, walking only that user's set.

        One script; in the spread layout one call to read the set, then two
        per member on the member's slot (all at once).
        """
        self._needs_user_key()
        user_json = serializers.value_bytes(user)
        if self.spread:
            rows = await self._list_spread(user_json)
        else:
            rows = await self._script(_LIST_SHA, 1, self._user_set(user_json), user_json)
        now = self.clock()
        found = []
        for name, ttl, created, seen, agent, address in rows:
            owner = Owner(user, float(created), float(seen), agent.decode(), address.decode())
            found.append(UserRecord(self._key_of(name), now + int(ttl) / 1000, owner))
        found.sort(key=lambda record: (record.owner.created, record.key))
        return found

    async def destroy_matching(self, match: Mapping[str, Any]) -> int:
        """Destroy every session whose data has these top-level values.

        Walks the namespace's strings with ``SCAN``; per page of keys, one
        ``MGET`` reads the sessions and one ``UNLINK`` deletes those that
        match (with their owners' hashes).  Returns how many were deleted.
        """
        destroyed = 0
        async for batch in self._scan("string"):
            values: list[bytes | None] = await self.call_backend(self._mget, batch)
            doomed = [
                name for name, raw in zip(batch, values, strict=True)
                if raw is not None and self._matches(raw, match)
            ]
            if doomed:
                destroyed += await self._write(self.client.unlink, *doomed)
                if self.user_key is not None:
                    await self._write(
                        self.client.unlink, *(name + b"~meta" for name in doomed)
                    )
        return destroyed

    async def count(self, *, progress: Progress | None = None) -> int:
        """Return how many sessions (strings) the namespace holds (``SCAN``, never ``KEYS``)."""
        seen: set[bytes] = set()
        async for batch in self._scan("string"):
            seen.update(batch)
            if progress is not None:
                progress(len(seen))
        return len(seen)

    async def clear(self, *, progress: Progress | None = None) -> None:
        """Delete every key under the namespace (``SCAN`` and ``UNLINK``).

        Records of the earlier layout go too, and the user index; keys
        outside the namespace are left alone.
        """
        deleted = 0
        async for batch in self._scan():
            deleted += await self.call_backend(self.client.unlink, *batch)
            if progress is not None:
                progress(deleted)

    async def call_backend(
        self, command: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """`Store.call_backend`; on a cluster, one master's loss is not the store's.

        On a single server this is `Store.call_backend`.  On a cluster:

        * The client first learns the slots.  redis-py 8.1's ``RedisCluster``
          decides where a command goes before it learns them: on a client that
          does not know them (new, or after it dropped its connections on a
          ``MOVED`` or a failover) a command for a key is sent to any node.
          That node answers ``MOVED``, and every fifth ``MOVED`` makes the
          client close all its connections, those other commands are using
          included, which then fail: twenty concurrent first commands on a new
          client failed up to sixteen at a time.  ``initialize`` (which the
          client serialises, and which does nothing once it knows the slots)
          routes every command to its master.
        * A command whose master cannot be reached while another master
          answers (`_on_its_master`) is a partial outage: the store stays
          connected, so requests whose sessions live on the other masters go
          on, and this command is tried again every 0.1 s until ``timeout``
          has passed since its first failure (a replica taking over), then
          raises `StoreUnavailableError` (503 with ``Retry-After``).  With no
          ``timeout`` it raises at once.  When no master answers, the store is
          disconnected, as a single server's loss makes it.
        """
        if not self.cluster:
            return await super().call_backend(command, *args, **kwargs)
        if self.client.get_default_node() is None:
            await super().call_backend(self.client.initialize)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            try:
                result: _T = await super().call_backend(
                    self._on_its_master, command, *args, **kwargs
                )
            except _MasterUnreachable as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                if not await self._some_master_answers():
                    self._connection_lost(cause)
                    raise StoreUnavailableError(f"Redis cannot be reached: {cause}") from cause
                self._master_lost(cause)
                now = loop.time()
                if deadline is None:
                    deadline = now + (self.timeout or 0.0)
                if now >= deadline:
                    raise StoreUnavailableError(
                        f"Redis Cluster: the master of this session's slot did not answer "
                        f"within {self.timeout} s (timeout), while others do: {cause}"
                    ) from cause
                await asyncio.sleep(min(_FAILOVER_RETRY, deadline - now))
                continue
            if deadline is not None and self._masters_lost:
                self._masters_lost = False
                logger.info("Redis Cluster: a command that waited for its master is served again")
            return result

    async def _on_its_master(
        self, command: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """Run ``command``; a failure to reach its master comes out as `_MasterUnreachable`.

        `_MasterUnreachable` is a `SessionError`, which `Store.call_backend`
        passes on as it is: `call_backend` then asks whether the other masters
        answer before it decides between a partial and a whole outage.  A
        command that outlasts ``timeout`` is still a whole outage (a master
        that stops answering without closing its connections).
        """
        try:
            return await command(*args, **kwargs)
        except self._unavailable as exc:
            raise _MasterUnreachable(f"{type(exc).__name__}: {exc}") from exc

    def _master_lost(self, exc: Exception) -> None:
        """Log the start of a partial outage once (until a command that waited is served)."""
        if self._masters_lost:
            return
        self._masters_lost = True
        logger.warning(
            "Redis Cluster: a master cannot be reached (%s: %s) while others answer: "
            "requests whose sessions are in its slots wait up to timeout=%s s for a "
            "replica to take over, then get 503; the others go on",
            type(exc).__name__, exc, self.timeout,
        )

    async def _some_master_answers(self) -> bool:
        """Whether any master of the cluster answers ``PING`` (a yes is remembered for 0.1 s).

        Asked again every 0.1 s for up to a second (or ``timeout``, if
        longer) before the answer is no: while a failover is under way,
        redis-py drops its connections on every ``CLUSTERDOWN`` or ``MOVED``,
        pings in flight included, so one round of pings that fails does not
        mean that every master is gone.
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._answers_until:
            return True
        client: Any = self.client

        async def answers(node: Any, within: float) -> bool:
            try:
                return bool(await asyncio.wait_for(client.ping(target_nodes=node), within))
            except Exception:  # any failure means "not this one"
                return False

        deadline = loop.time() + max(1.0, self.timeout or 0.0)
        while True:
            # Every ping runs to its end (or the deadline): a ping cancelled
            # while it connects would leave redis-py's new socket unclosed.
            within = deadline - loop.time()
            answered = await asyncio.gather(
                *(answers(node, within) for node in client.get_primaries())
            )
            if any(answered):
                self._answers_until = loop.time() + _FAILOVER_RETRY
                return True
            if loop.time() + _FAILOVER_RETRY >= deadline:
                return False
            await asyncio.sleep(_FAILOVER_RETRY)

    async def ping(self) -> None:
        """Send ``PING``; `StoreUnavailableError` when Redis does not answer.

        On a cluster the ``PING`` goes to every master: the store counts as
        back when all of them answer, which after a failover is the promoted
        replica.
        """
        if self.cluster:
            await self.ping_backend(self.client.ping, target_nodes=self.client.PRIMARIES)
        else:
            await self.ping_backend(self.client.ping)

    async def close(self) -> None:
        """Stop the reconnect probe and close the client if the store made it.

        A client passed to the constructor stays open: it is yours.  Calls
        after `close` raise `StoreUnavailableError`.
        """
        await super().close()
        if self._owns_client:
            self._owns_client = False
            await self.client.aclose()
            if self.cluster:
                # redis-py 8.1's RedisCluster.aclose() does nothing while the
                # client means to learn the slots again (after any connection
                # error), leaving every connection open: close its nodes'.
                nodes: Any = self.client.nodes_manager
                await nodes.aclose()
                await nodes.aclose("startup_nodes")

    # -- internals --------------------------------------------------------------

    def translate_error(self, exc: Exception) -> SessionError | None:
        """redis-py's connection errors and time-outs are outages; other errors refusals."""
        if isinstance(exc, self._unavailable):
            return StoreUnavailableError(f"Redis cannot be reached: {exc}")
        if isinstance(exc, self._redis_error):
            return SessionError(f"Redis refused a RedisStore command: {exc}")
        return super().translate_error(exc)

    @staticmethod
    def _wrong_type(exc: SessionError) -> bool:
        """Whether Redis refused a command because the key holds another type."""
        return str(exc.__cause__).startswith("WRONGTYPE")

    def _not_a_session(self, what: str) -> None:
        logger.warning(
            "a key under the RedisStore namespace %r %s, so it is not a session: it is "
            "treated as missing (a hash is a session of the store's earlier layout; "
            "it expires on its own, or RedisStore.clear() deletes it)",
            self.namespace, what,
        )

    def _decode(self, raw: bytes) -> serializers.Loaded | None:
        """The session in ``raw``, keeping the bytes; ``None`` (and a warning) if it is not one."""
        try:
            data = serializers.loads(raw)
        except serializers.DecodeError:
            data = None
        if type(data) is not dict:
            self._not_a_session("does not hold a JSON object")
            return None
        loaded = serializers.Loaded(data)
        loaded.raw = raw
        return loaded

    async def _update(
        self, name: str, ttl: int, loaded: bytes, raw: bytes, policy: bytes,
        changes: list[bytes], user: bytes = b"", joined: float | None = None,
    ) -> int | bytes | list[Any]:
        """Run the update script: one ``EVALSHA`` (an ``EVAL`` if Redis lacks it).

        With a `user_key` the script also gets the owner's hash and the users'
        prefix, to move an indexed session's entry; in the spread layout it
        gets the owner's hash, and the owner's set is extended first
        (``user``, ``joined``: `_extend_set_first`).  A key of another type
        answers as a missing record, with a warning.
        """
        try:
            if self.spread:
                answer: int | bytes | list[Any] = await self._extend_set_first(
                    name, ttl, user, joined, lambda owner: self._script(
                        _UPDATE_SHA, 2, name, name + "~meta", ttl, loaded, raw, policy + owner,
                        *changes,
                    ),
                )
            else:
                if self.user_key is None:
                    keys: tuple[Any, ...] = (1, name)
                else:
                    keys = (3, name, name + "~meta", self.namespace + "~user:")
                answer = await self._script(_UPDATE_SHA, *keys, ttl, loaded, raw, policy, *changes)
        except SessionError as exc:
            if not self._wrong_type(exc):
                raise
            self._not_a_session("is not a string")
            return 0
        return answer

    async def _write(self, command: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        """Send a client command that changes a session or its owner; answered once it is safe.

        ``command`` is a method of the client (``self.client.set``...).
        Without `replicas` the answer is Redis's.  With them, the same method
        of a pipeline and a ``WAIT`` go down one connection in one round trip
        (``WAIT`` counts only the writes of its own connection), and the
        answer comes once that many replicas have the write.  When fewer have
        it within `replica_timeout`, the write may be lost in a failover, so it
        is answered as not saved: `StoreUnavailableError`, a 503, with the
        store still connected.
        """
        if not self.replicas:
            return await self.call_backend(command, *args, **kwargs)
        answer: _T = await self.call_backend(self._write_and_wait, command.__name__, args, kwargs)
        return answer

    async def _write_and_wait(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The client's ``method`` then ``WAIT replicas``, pipelined on one connection."""
        client: Any = self.client
        async with client.pipeline(transaction=False) as pipe:
            getattr(pipe, method)(*args, **kwargs)
            pipe.execute_command("WAIT", self.replicas, _ttl_ms(self.replica_timeout))
            answer, copies = await pipe.execute(raise_on_error=False)
        for result in (answer, copies):
            if isinstance(result, Exception):
                raise result
        if copies < self.replicas:
            raise StoreUnavailableError(
                f"Redis: a session write reached {copies} replica(s) within "
                f"{self.replica_timeout} s, fewer than replicas={self.replicas}: "
                "not counted as saved"
            )
        return answer

    async def _script(self, sha: str, *args: Any) -> Any:
        """``EVALSHA`` one of the store's scripts, or ``EVAL`` it if Redis lacks it.

        The SHA is known in advance, so a process whose server already has
        the script (another process ran it) never sends it.  When Redis does
        not have it (first use, a restart, ``SCRIPT FLUSH``), ``EVAL`` sends
        it with this call's keys, which Redis runs and keeps for the next
        ``EVALSHA``.  It goes where the keys live: on a cluster, only to their
        master (``SCRIPT LOAD`` would go to every master, and fail while one
        of them is down).
        """
        try:
            return await self._write(self.client.evalsha, sha, *args)
        except SessionError as exc:
            if not isinstance(exc.__cause__, self._no_script):
                raise
        return await self._write(self.client.eval, _SCRIPTS[sha], *args)

    async def _own(self, name: str, ttl: int, owner: Owner | None) -> float | None:
        """Give the session ``name`` its owner (``None``: none), in the index.

        One script where the store's keys share a slot.  In the spread layout
        two steps, in the order that keeps every owned session in its user's
        set: join the new user's set, then write the meta (`_claim`).  The
        previous owner's set keeps its member (listing drops it later):
        removing it could undo a concurrent change back to that owner.
        Answers when the set was joined (``None``: no set was), for
        `_rejoin_if_late` after the session's write.
        """
        if owner is None or owner.user is None:
            fields: tuple[Any, ...] = (b"", 0, b"", b"")
        else:
            fields = (
                _user_json(owner), repr(owner.created),
                owner.agent.encode("utf-8", "replace"), owner.address.encode("utf-8", "replace"),
            )
        if not self.spread:
            await self._script(_OWN_SHA, 2, name, name + "~meta", self.namespace, ttl, *fields)
            return None
        user = fields[0]
        joined = await self._join(user, name, ttl) if user else None
        await self._claim(name, ttl, fields)
        return joined

    async def _claim(self, name: str, ttl: int, fields: tuple[Any, ...]) -> None:
        """Write the owner ``fields`` into the session's meta (spread layout).

        The second step of `_own`, after the new user's set was joined.
        """
        await self._script(_CLAIM_SHA, 1, name + "~meta", ttl, *fields)

    async def _join(self, user: bytes, name: str, ttl: int) -> float:
        """Make ``name`` a member of ``user``'s set for ``ttl`` ms and the grace; when it was sent.

        Neither the member's score nor the set's TTL is ever shortened, so a
        session extended after this call cannot outlive its set unless the
        extension reaches Redis more than `_GRACE_MS` later (`_rejoin_if_late`).
        The time is the event loop's monotonic clock: it measures how long the
        calls took, which no injected clock may fake.
        """
        sent = time.monotonic()
        await self._script(_JOIN_SHA, 1, self._user_set(user), name, ttl + _GRACE_MS)
        return sent

    async def _rejoin_if_late(self, user: bytes, name: str, ttl: int, joined: float) -> None:
        """Join ``user``'s set again when the session's write came more than the grace after it.

        The write's answer arrived after Redis ran it, and the join ran after
        ``joined``: if less than the grace lies between, the set outlives the
        session.  Otherwise (a stalled process or network) join again.
        """
        if time.monotonic() - joined > _GRACE_MS / 1000:
            await self._join(user, name, ttl)

    async def _extend_set_first(
        self, name: str, ttl: int, user: bytes, joined: float | None,
        write: Callable[[bytes], Awaitable[Any]],
    ) -> Any:
        """Extend a session of the spread layout: its owner's set first, then the session.

        ``user`` is the owner the caller expects (as JSON; ``b""``: none) and
        ``joined`` when its set was joined already (by `_own`).  ``write``
        runs the session's script for an owner; the script extends nothing
        and answers ``[2, owner]`` when the meta names another: that owner's
        set is joined, and ``write`` runs again.  So an anonymous session
        pays nothing more, an indexed one a join (and a wrong guess a call).
        """
        while True:
            if user and joined is None:
                joined = await self._join(user, name, ttl)
            answer = await write(user)
            if not (isinstance(answer, list) and answer[0] == 2):
                if joined is not None:
                    await self._rejoin_if_late(user, name, ttl, joined)
                return answer
            user, joined = answer[1], None

    async def _touch_spread(self, name: str, ttl: int, user: bytes, joined: float | None) -> bool:
        """`touch` in the spread layout: the owner's set first (`_extend_set_first`)."""
        answer = await self._extend_set_first(
            name, ttl, user, joined,
            lambda owner: self._script(_SPREAD_TOUCH_SHA, 2, name, name + "~meta", ttl, owner),
        )
        return bool(answer)

    async def _list_spread(self, user: bytes) -> list[tuple[bytes, ...]]:
        """`user_sessions` in the spread layout: the rows of the members alive and the user's.

        Each member's ``PTTL`` and meta are read on its own slot, all at
        once.  A member whose session is gone or someone else's leaves the
        set only once its score has passed (`_PRUNE_SCRIPT`): before, it may
        be a login between joining the set and writing the meta or the
        session.
        """
        zset = self._user_set(user)
        members: list[bytes] = await self.call_backend(self.client.zrange, zset, 0, -1)
        answers = await asyncio.gather(
            *(self.call_backend(self.client.pttl, name) for name in members),
            *(self.call_backend(self.client.hmget, name + b"~meta", _META_FIELDS)
              for name in members),
        )
        ttls, metas = answers[:len(members)], answers[len(members):]
        rows, strays = [], []
        for name, ttl, meta in zip(members, ttls, metas, strict=True):
            if ttl > 0 and meta[0] == user:
                rows.append((name, ttl, *meta[1:]))
            elif ttl == -2 or meta[0] != user:  # no such session, or not the user's
                strays.append(name)
        if strays:
            await self._script(_PRUNE_SHA, 1, zset, *strays)
        return rows

    async def _revoke_spread(self, user: bytes) -> int:
        """`destroy_user` in the spread layout; how many live sessions it deleted.

        Each member's session is deleted on its own slot if its meta names the
        user (`_REVOKE_SCRIPT`), all at once; then those members, and only
        those, leave the set.  A member whose meta names no one or someone
        else, or whose session does not exist, stays: it may be a login of
        this user between its steps, whose session must stay listed (listing
        drops it once it is gone and its score has passed).  The set itself is
        never deleted, for the same reason.
        """
        zset = self._user_set(user)
        members: list[bytes] = await self.call_backend(self.client.zrange, zset, 0, -1)
        answers = await asyncio.gather(
            *(self._script(_REVOKE_SHA, 2, name, name + b"~meta", user) for name in members)
        )
        handled = [name for name, answer in zip(members, answers, strict=True) if answer]
        if handled:
            await self.call_backend(self.client.zrem, zset, *handled)
        return len(handled)

    def _name(self, key: str) -> str:
        """The Redis name of the session under ``key`` (its meta hash adds ``~meta``)."""
        return self._prefix + key + self._suffix

    def _key_of(self, name: bytes) -> str:
        """The store key in a session's Redis name: `_name` undone."""
        text = name.decode()
        return text[len(self._prefix):len(text) - len(self._suffix)]

    def _user_set(self, user_json: bytes) -> bytes:
        """The name of a user's sorted set of sessions (spread layout: on the user's slot)."""
        if self.spread:
            return self.namespace.encode() + b"~user:{" + user_json + b"}"
        return self.namespace.encode() + b"~user:" + user_json

    def _guess_user(self, data: Mapping[str, Any]) -> bytes:
        """The user that ``data`` names under the `user_key`, as JSON (``b""``: none).

        The spread layout's guess at a session's owner, to extend that set
        before the session: the owner is the meta's, and a wrong guess costs
        one call (the script answers the owner), never the order.
        """
        user = data.get(self.user_key) if self.user_key is not None else None
        if isinstance(user, bool) or not isinstance(user, (str, int)):
            return b""
        return serializers.value_bytes(user)

    @staticmethod
    def _changes(
        to_set: Mapping[str, Any], to_unset: list[str], ops: Mapping[str, serializers.Op] | None
    ) -> list[bytes]:
        """The update script's changes: each key as JSON, then what to do with it.

        Its new value as JSON, ``b""`` when it was removed, ``+N`` for an
        increment and ``<L|[...]`` for an append.  In key order (orjson's), so
        that the script inserts new keys in place.
        """
        changes: list[bytes] = []
        for name in sorted([*to_set, *to_unset]):
            changes.append(serializers.value_bytes(name))
            op = ops.get(name) if ops else None
            if op is None:
                changes.append(serializers.value_bytes(to_set[name]) if name in to_set else b"")
            elif type(op) is serializers.Increment:
                changes.append(b"+%d" % op.by)
            else:
                assert type(op) is serializers.Append
                changes.append(b"<%d|" % op.limit + serializers.value_bytes(list(op.values)))
        return changes

    @staticmethod
    def _matches(raw: bytes, match: Mapping[str, Any]) -> bool:
        """Whether the session in ``raw`` has the values asked for (for `destroy_all`)."""
        try:
            data = serializers.loads(raw)
        except serializers.DecodeError:
            return False
        return type(data) is dict and Store.matches(data, match)

    async def _mget(self, names: list[bytes]) -> list[bytes | None]:
        """``MGET`` of ``names``: on a cluster one per slot, since one may not cross slots."""
        client: Any = self.client
        if self.cluster:
            values: list[bytes | None] = await client.mget_nonatomic(names)
        else:
            values = await client.mget(names)
        return values

    async def _scan(self, kind: str | None = None) -> AsyncIterator[list[bytes]]:
        """Yield the keys under the namespace (of type ``kind``), a ``SCAN`` page at a time.

        On a cluster, each master is walked in turn (``SCAN`` reads one node).
        """
        for target in await self._scan_targets():
            cursor: Any = 0
            while True:
                cursor, keys = await self.call_backend(
                    self.client.scan, cursor, self._pattern, 500, kind, **target
                )
                if isinstance(cursor, dict):  # a cluster answers {node: cursor}
                    (cursor,) = cursor.values()
                if keys:
                    yield keys
                if cursor == 0:
                    break

    async def _scan_targets(self) -> list[dict[str, Any]]:
        """Where ``SCAN`` is sent: the server, or each master of a cluster."""
        if not self.cluster:
            return [{}]
        client: Any = self.client
        await self.call_backend(client.initialize)  # learns the masters on first use
        return [{"target_nodes": node} for node in client.get_primaries()]
