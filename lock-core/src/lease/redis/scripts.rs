//! The Lua scripts of the Redis store, each atomic on the server.
//!
//! A name's state is one JSON document in `lock:{name}`: `k` (0 for a reader/writer
//! name, `N` for a counted one), `h` (live holders: `o` owner, `f` fence, `m` mode, `e`
//! expiry), `w` (waiters: `o`, `t` ticket, `m`, `p` passes, `e`) and `t` (the next
//! ticket); expiries are milliseconds by the server's `TIME`. The key expires a second
//! after its last entry and is deleted once the name is idle. Fences come from the
//! counter `lock:{name}:fence`, which never expires. Mode letters: `x` exclusive, `s`
//! shared, `p` a permit. The turn rule is the PostgreSQL store's: a waiter passed over
//! twice is due, and nobody behind it is granted the name first.

/// Shared by every script: read, prune and save a state.
const PRELUDE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local raw = redis.call('GET', KEYS[1])
local legacy = raw and string.sub(raw, 1, 1) ~= '{'
local st = { k = 0, h = {}, w = {}, t = 1 }
if raw and not legacy then st = cjson.decode(raw) end
local live, queue, pruned = {}, {}, false
for _, x in ipairs(st.h) do
  if x.e > now then live[#live + 1] = x else pruned = true end
end
for _, x in ipairs(st.w) do
  if x.e > now then queue[#queue + 1] = x else pruned = true end
end
table.sort(queue, function(a, b) return a.t < b.t end)
local function save()
  if #live == 0 and #queue == 0 then
    redis.call('DEL', KEYS[1])
    return
  end
  local last = now
  for _, x in ipairs(live) do if x.e > last then last = x.e end end
  for _, x in ipairs(queue) do if x.e > last then last = x.e end end
  st.h, st.w = live, queue
  redis.call('SET', KEYS[1], cjson.encode(st), 'PX', last - now + 1000)
end
";

// KEYS: state, fence counter. ARGV: owner, ttl ms, mode, permits, queue (1/0), channel,
// name. Returns {status (1 acquired, 0 held, 2 mismatch), fence, holder, retry ms, kind}.
const ACQUIRE: &str = r"
local owner, ttl, mode, permits = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local want = 0
if mode == 'p' then want = permits end
if legacy then
  return {0, 0, raw, redis.call('PTTL', KEYS[1]), 0}
end
for _, x in ipairs(live) do
  if x.o == owner then
    x.e = now + ttl
    save()
    return {1, x.f, '', 0, st.k}
  end
end
local my_t, others = nil, 0
for _, x in ipairs(queue) do
  if x.o == owner then my_t = x.t else others = others + 1 end
end
if #live == 0 and others == 0 then
  st.k = want
elseif st.k ~= want then
  save()
  local h = ''
  if live[1] then h = live[1].o end
  return {2, 0, h, 0, st.k}
end
local fits
if mode == 'x' then
  fits = #live == 0
elseif mode == 's' then
  fits = true
  for _, x in ipairs(live) do if x.m == 'x' then fits = false end end
else
  fits = #live < permits
end
local due = nil
for _, x in ipairs(queue) do
  if x.o ~= owner and x.p >= 2 and (my_t == nil or x.t < my_t)
     and not (x.m == 's' and mode == 's') then
    due = x.o
    break
  end
end
if fits and due == nil then
  local fence = redis.call('INCR', KEYS[2])
  live[#live + 1] = { o = owner, f = fence, m = mode, e = now + ttl }
  local rest = {}
  for _, x in ipairs(queue) do
    if x.o ~= owner then
      x.p = x.p + 1
      rest[#rest + 1] = x
    end
  end
  queue = rest
  save()
  if pruned and #queue > 0 then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
  return {1, fence, '', 0, st.k}
end
if ARGV[5] == '1' then
  if my_t == nil then
    queue[#queue + 1] = { o = owner, t = st.t, m = mode, p = 0, e = now + ttl }
    st.t = st.t + 1
  else
    for _, x in ipairs(queue) do if x.o == owner then x.e = now + ttl end end
  end
end
save()
if pruned and #queue > 0 then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
if fits then
  return {0, 0, due, 0, st.k}
end
local holder, soonest = live[1], live[1].e
for _, x in ipairs(live) do
  if x.m == 'x' then holder = x end
  if x.e < soonest then soonest = x.e end
end
return {0, 0, holder.o, soonest - now, st.k}
";

// KEYS: state. ARGV: owner, fence, ttl ms. Returns 1 if renewed.
const REFRESH: &str = r"
local owner, fence, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if legacy then return 0 end
for _, x in ipairs(live) do
  if x.o == owner and x.f == fence then
    x.e = now + ttl
    save()
    return 1
  end
end
return 0
";

// KEYS: state. ARGV: owner, fence, channel, name. Returns 1 if it was held.
const RELEASE: &str = r"
local owner, fence = ARGV[1], tonumber(ARGV[2])
if legacy then return 0 end
local held, rest = 0, {}
for _, x in ipairs(live) do
  if x.o == owner and x.f == fence then held = 1 else rest[#rest + 1] = x end
end
live = rest
save()
if #queue > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return held
";

// KEYS: state. ARGV: owner, channel, name.
const LEAVE: &str = r"
if legacy then return 0 end
local rest = {}
for _, x in ipairs(queue) do
  if x.o ~= ARGV[1] then rest[#rest + 1] = x end
end
queue = rest
save()
if #queue > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
";

// KEYS: state. Returns {kind, owner, fence, mode, ms left, owner, ...} of live holders.
const LIST: &str = r"
if legacy or not raw then return {} end
local out = { st.k }
for _, x in ipairs(live) do
  out[#out + 1] = x.o
  out[#out + 1] = x.f
  out[#out + 1] = x.m
  out[#out + 1] = x.e - now
end
return out
";

/// The full text of a script: the prelude, then its body.
fn script(body: &str) -> ::redis::Script {
    ::redis::Script::new(&format!("{PRELUDE}{body}"))
}

/// The compiled scripts of one store.
pub(super) struct Scripts {
    pub(super) acquire: ::redis::Script,
    pub(super) refresh: ::redis::Script,
    pub(super) release: ::redis::Script,
    pub(super) leave: ::redis::Script,
    pub(super) list: ::redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            acquire: script(ACQUIRE),
            refresh: script(REFRESH),
            release: script(RELEASE),
            leave: script(LEAVE),
            list: script(LIST),
        }
    }
}
