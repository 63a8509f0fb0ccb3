"""The Lua scripts of the shared hub (:mod:`signaling.server.hub_redis`): each runs in Redis
as one atomic step. Keys and channels start with the prefix the hub passes (``telemed:``);
event formats: ``j<seq>\\n<peer JSON>`` (joined), ``l<seq>\\n<peer id>\\n<reason>`` (left).

- ``join`` (members, seq, ended, rooms of the process; peer id, peer JSON, room channel,
  consultation id, kind, principal id, instance): nil when the consultation has ended, else
  ``{seq, HGETALL members}``. A member of the same kind, principal and (non-empty)
  instance under another peer id, the same client come back, leaves first (``replaced``).
- ``leave`` (members, seq, rooms of the process; peer id, channel, reason, consultation id,
  ``1`` when the process has no member left there): the event's number, or 0 when the peer
  was not there.
- ``end`` (members, seq, ended; seconds): the room is gone, and closed to joins that long.
- ``open`` (total, the process's share; field, limit): 1 and counted, or 0 at the limit.
- ``close`` (total, the process's share; field): uncounted when the process counted it.
- ``beat`` (alive key; milliseconds): 0 when the key had expired (taken for dead).
- ``reap`` (no keys; prefix, reason): every process whose alive key expired is forgotten:
  its peers leave their rooms (events published), its counts are taken off; returns their
  ids.
"""

_JOIN = """
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
if ARGV[7] ~= '' then
  for _, entry in ipairs(redis.call('HGETALL', KEYS[1])) do
    if string.sub(entry, 1, 1) == '{' then
      local other = cjson.decode(entry)
      if other.instance == ARGV[7] and other.kind == ARGV[5]
          and tostring(other.principal_id) == ARGV[6] and other.peer_id ~= ARGV[1] then
        redis.call('HDEL', KEYS[1], other.peer_id)
        local gone = redis.call('INCR', KEYS[2])
        redis.call('PUBLISH', ARGV[3], 'l' .. gone .. '\\n' .. other.peer_id .. '\\nreplaced')
      end
    end
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[3], 'j' .. seq .. '\\n' .. ARGV[2])
return {seq, redis.call('HGETALL', KEYS[1])}
"""
_LEAVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], 'l' .. seq .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[3])
if ARGV[5] == '1' then redis.call('SREM', KEYS[3], ARGV[4]) end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return seq
"""
_END = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
return 1
"""
_OPEN = """
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""
_CLOSE = """
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', KEYS[2], ARGV[1])
else redis.call('HINCRBY', KEYS[2], ARGV[1], -1) end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""
_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
_REAP = """
local p = ARGV[1]
local reaped = {}
for _, pid in ipairs(redis.call('SMEMBERS', p .. 'procs')) do
  if redis.call('EXISTS', p .. 'alive:' .. pid) == 0 then
    local mark = 'p-' .. pid .. '-'
    for _, cid in ipairs(redis.call('SMEMBERS', p .. 'rooms:' .. pid)) do
      local members = p .. 'members:' .. cid
      for _, peer in ipairs(redis.call('HKEYS', members)) do
        if string.sub(peer, 1, #mark) == mark then
          redis.call('HDEL', members, peer)
          local seq = redis.call('INCR', p .. 'seq:' .. cid)
          local event = 'l' .. seq .. '\\n' .. peer .. '\\n' .. ARGV[2]
          redis.call('PUBLISH', p .. 'room:' .. cid, event)
        end
      end
      if redis.call('HLEN', members) == 0 then redis.call('DEL', p .. 'seq:' .. cid) end
    end
    for _, kind in ipairs({'addr', 'acct'}) do
      local mine = redis.call('HGETALL', p .. kind .. ':' .. pid)
      for i = 1, #mine, 2 do
        if redis.call('HINCRBY', p .. kind, mine[i], -tonumber(mine[i + 1])) <= 0 then
          redis.call('HDEL', p .. kind, mine[i])
        end
      end
      redis.call('DEL', p .. kind .. ':' .. pid)
    end
    redis.call('DEL', p .. 'rooms:' .. pid)
    redis.call('SREM', p .. 'procs', pid)
    table.insert(reaped, pid)
  end
end
return reaped
"""
SCRIPTS = {
    "join": _JOIN,
    "leave": _LEAVE,
    "end": _END,
    "open": _OPEN,
    "close": _CLOSE,
    "beat": _BEAT,
    "reap": _REAP,
}
