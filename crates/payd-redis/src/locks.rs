//! [`RedisLocks`]: per-account locks on Redis ([`payd_ports::AccountLocks`]), each grant
//! fenced.
//!
//! Per account, two keys: `lock:<account>` holds the grant's owner with a TTL, and
//! `fence:<account>` the last token granted. One Lua script takes every lock of a grant or
//! none (checked, then set, in account order: one step for Redis, so two grants cannot
//! each hold half of the other's accounts), and gives each account its next token.
//!
//! A token is `max(last + 1, Redis's clock in µs)`. The clock floor keeps tokens growing
//! when Redis loses its keys (a restart without persistence, an eviction): otherwise the
//! counters would start again from 1, below what PostgreSQL recorded, and every fenced
//! write would be refused from then on. So `fence:` keys may expire (after a day).

use std::sync::Arc;

use async_trait::async_trait;
use payd_domain::{AccountId, Fence};
use payd_ports::{AccountLocks, Grant, LockError};
use redis::Script;

use crate::{Redis, answered, failed_quietly};

/// KEYS: the lock keys, then the fence keys, in account order; ARGV: the owner, the lock's
/// TTL, the fence keys' TTL (ms). The tokens, or nil if a lock is held.
const ACQUIRE: &str = r"
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return false
  end
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tokens = {}
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  local last = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  local token = math.max(last + 1, floor)
  redis.call('SET', KEYS[n + i], string.format('%.0f', token), 'PX', ARGV[3])
  tokens[i] = token
end
return tokens
";

/// KEYS: lock keys; ARGV: the owner. Deletes the ones the owner still holds.
const RELEASE: &str = r"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
  end
end
return 0
";

/// How long a `fence:` key outlives its last grant (losing it is harmless, see above).
const FENCE_TTL_MS: u64 = 86_400_000;

/// Per-account locks on Redis.
pub struct RedisLocks {
    redis: Arc<Redis>,
    acquire: Script,
    release: Script,
}

impl RedisLocks {
    /// Locks on `redis`.
    pub fn new(redis: Arc<Redis>) -> RedisLocks {
        RedisLocks {
            redis,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        }
    }

    fn lock_key(&self, account: &AccountId) -> String {
        self.redis.key(&format!("lock:{}", account.as_str()))
    }
}

/// `accounts` sorted, each once.
fn in_order(accounts: &[AccountId]) -> Vec<AccountId> {
    let mut sorted = accounts.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}

fn unavailable(operation: &'static str, error: &redis::RedisError) -> LockError {
    failed_quietly(operation, error);
    LockError(error.to_string())
}

#[async_trait]
impl AccountLocks for RedisLocks {
    async fn acquire(
        &self,
        accounts: &[AccountId],
        owner: &str,
        ttl_ms: u64,
    ) -> Result<Option<Grant>, LockError> {
        let accounts = in_order(accounts);
        let mut invocation = self.acquire.prepare_invoke();
        for account in &accounts {
            invocation.key(self.lock_key(account));
        }
        for account in &accounts {
            invocation.key(self.redis.key(&format!("fence:{}", account.as_str())));
        }
        invocation.arg(owner).arg(ttl_ms.max(1)).arg(FENCE_TTL_MS);
        let mut connection = self
            .redis
            .connection()
            .await
            .map_err(|error| unavailable("lock_acquire", &error))?;
        let tokens: Option<Vec<i64>> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| unavailable("lock_acquire", &error))?;
        answered();
        let Some(tokens) = tokens else {
            metrics::counter!("payd_lock_acquisitions_total", "result" => "busy").increment(1);
            return Ok(None);
        };
        if tokens.len() != accounts.len() {
            return Err(LockError(format!(
                "the lock script gave {} tokens for {} accounts",
                tokens.len(),
                accounts.len()
            )));
        }
        metrics::counter!("payd_lock_acquisitions_total", "result" => "granted").increment(1);
        Ok(Some(Grant {
            owner: owner.to_owned(),
            fences: accounts
                .into_iter()
                .zip(tokens)
                .map(|(account, token)| Fence { account, token })
                .collect(),
        }))
    }

    async fn release(&self, grant: &Grant) -> Result<(), LockError> {
        let mut invocation = self.release.prepare_invoke();
        for fence in &grant.fences {
            invocation.key(self.lock_key(&fence.account));
        }
        invocation.arg(&grant.owner);
        let mut connection = self
            .redis
            .connection()
            .await
            .map_err(|error| unavailable("lock_release", &error))?;
        let _: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| unavailable("lock_release", &error))?;
        answered();
        Ok(())
    }
}
