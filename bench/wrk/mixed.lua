-- A mixed wallet workload over ACCOUNTS (env) accounts, unique ids everywhere:
--   40% POST /transfers, 30% POST /transactions (card, MCC 5999 → CASH),
--   20% POST /accounts/{id}/holds (expire in 60 s), 10% GET /accounts/{id}.
local accounts = tonumber(os.getenv("ACCOUNTS") or "10000")
local thread_counter = 0
local prefix
local counter = 0

function setup(thread)
  thread:set("thread_id", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  prefix = string.format("m%d-%d-", os.time(), thread_id or 0)
  math.randomseed(os.time() + 13 * (thread_id or 0))
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local a = math.random(0, accounts - 1)
  local roll = counter % 10
  if roll < 4 then
    local b = (a + math.random(1, accounts - 1)) % accounts
    return wrk.format("POST", "/transfers", headers, string.format(
      '{"id":"%s%d","from":"acc-%d","to":"acc-%d","amount":"%d.%02d"}',
      prefix, counter, a, b, math.random(0, 9), math.random(1, 99)))
  elseif roll < 7 then
    return wrk.format("POST", "/transactions", headers, string.format(
      '{"id":"%s%d","account":"acc-%d","totalAmount":%d.%02d,"mcc":"5999","merchant":"BENCH SHOP               SAO PAULO BR"}',
      prefix, counter, a, math.random(0, 9), math.random(1, 99)))
  elseif roll < 9 then
    return wrk.format("POST", "/accounts/acc-" .. a .. "/holds", headers, string.format(
      '{"id":"%s%d","amount":"%d.%02d","expiresInMs":60000}',
      prefix, counter, math.random(0, 9), math.random(1, 99)))
  else
    return wrk.format("GET", "/accounts/acc-" .. a)
  end
end

dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")
