-- wrk script of the benchmarks: prints the summary as one JSON line for the runner.
--
-- Plain mode (no script arguments): wrk sends its fixed request (-H headers included).
-- Chain mode (`-- COOKIE_FILE COOKIE_NAME`): each request takes a session cookie from a
-- queue seeded from COOKIE_FILE (one value a line) and each response gives back the cookie
-- it sets. A regenerated session's old id is dead after its request, so every request must
-- carry the newest cookie of some live session; with more cookies than connections, no
-- two requests in flight use the same one.

local queue, head, tail, name, last = {}, 1, 0, nil, nil

local function chain_request()
  local cookie = last
  if head <= tail then
    cookie = queue[head]
    queue[head] = nil
    head = head + 1
  end
  return wrk.format(nil, nil, { ["Cookie"] = name .. "=" .. cookie })
end

local function chain_response(status, headers, body)
  local header = headers["Set-Cookie"] or headers["set-cookie"]
  if header then
    local value = header:match(name:gsub("%p", "%%%0") .. "=([^;]*)")
    if value and value ~= "" then
      tail = tail + 1
      queue[tail] = value
      last = value
    end
  end
end

function init(args)
  if args[1] then
    name = args[2]
    for line in io.lines(args[1]) do
      if line ~= "" then
        tail = tail + 1
        queue[tail] = line
      end
    end
    last = queue[tail]
    request = chain_request
    response = chain_response
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
