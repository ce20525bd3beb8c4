-- POST /transfers with a unique id per request between two random accounts among ACCOUNTS
-- (env), CASH, small amounts (every transfer is covered, so each completes).
local accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
local thread_counter = 0
local prefix
local counter = 0

function setup(thread)
  thread:set("thread_id", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  prefix = string.format("t%d-%d-", os.time(), thread_id or 0)
  math.randomseed(os.time() + 7 * (thread_id or 0))
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local from = math.random(0, accounts - 1)
  local to = (from + math.random(1, accounts - 1)) % accounts
  local body = string.format(
    '{"id":"%s%d","from":"acc-%d","to":"acc-%d","amount":"%d.%02d"}',
    prefix, counter, from, to, math.random(0, 9), math.random(1, 99))
  return wrk.format("POST", "/transfers", headers, body)
end

dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")
