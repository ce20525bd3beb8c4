-- POST /transactions with a unique id per request, at a random account among ACCOUNTS
-- (env; 1 = one hot account "acc-0"), cycling MCCs so FOOD, MEAL and CASH all pay.
-- With REPLAYS=N, the requests cycle through N fixed transactions instead (the same id,
-- always with the same body): after the first N, every request is a replay.
local accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
local replays = tonumber(os.getenv("REPLAYS") or "0")
local mccs = { "5411", "5811", "5999", "5412" }
local thread_counter = 0
local prefix
local counter = 0

function setup(thread)
  thread:set("thread_id", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  prefix = string.format("b%d-%d-", os.time(), thread_id or 0)
  math.randomseed(os.time() + (thread_id or 0))
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  if replays > 0 then
    local k = counter % replays
    local body = string.format(
      '{"id":"replay-%d","account":"acc-%d","totalAmount":1.00,"mcc":"5411","merchant":"BENCH SHOP"}',
      k, k % accounts)
    return wrk.format("POST", "/transactions", headers, body)
  end
  local account = math.random(0, accounts - 1)
  local body = string.format(
    '{"id":"%s%d","account":"acc-%d","totalAmount":%d.%02d,"mcc":"%s","merchant":"BENCH SHOP               SAO PAULO BR"}',
    prefix, counter, account, math.random(1, 20), math.random(0, 99), mccs[counter % 4 + 1])
  return wrk.format("POST", "/transactions", headers, body)
end

dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")
