//! [`RedisDecisions`]: recent card decisions on Redis ([`payd_ports::DecisionCache`]).
//!
//! One key per transaction id, `tx:<id>`, holding `code account amount_cents mcc merchant`
//! (the merchant last: it is the only field that may contain spaces), with a TTL: replays
//! come within minutes of the first request (a client's retries), and after the TTL the
//! store answers them as before.

use std::sync::Arc;

use async_trait::async_trait;
use payd_domain::{AccountId, Amount, Code, Mcc, PriorAuthorization, TransactionId};
use payd_ports::DecisionCache;

use crate::{Redis, answered, failed_quietly};

/// Recent decisions on Redis.
pub struct RedisDecisions {
    redis: Arc<Redis>,
    ttl_ms: u64,
}

impl RedisDecisions {
    /// A cache on `redis` whose entries live `ttl_ms`.
    pub fn new(redis: Arc<Redis>, ttl_ms: u64) -> RedisDecisions {
        RedisDecisions {
            redis,
            ttl_ms: ttl_ms.max(1),
        }
    }

    fn key(&self, id: &TransactionId) -> String {
        self.redis.key(&format!("tx:{}", id.as_str()))
    }
}

#[async_trait]
impl DecisionCache for RedisDecisions {
    async fn get(&self, id: &TransactionId) -> Option<PriorAuthorization> {
        let key = self.key(id);
        let value = self.redis.get(&key).await;
        let hit = match value {
            Ok(value) => {
                answered();
                value
            }
            Err(error) => {
                failed_quietly("decision_get", &error);
                return None;
            }
        };
        let prior = hit.as_deref().and_then(decode);
        if hit.is_some() && prior.is_none() {
            tracing::warn!(key, "Unreadable decision in Redis; asking the store.");
        }
        metrics::counter!("payd_decision_cache_total", "result" => if prior.is_some() { "hit" } else { "miss" })
            .increment(1);
        prior
    }

    async fn put(&self, id: &TransactionId, prior: &PriorAuthorization) {
        let key = self.key(id);
        let stored: Result<(), _> = match self.redis.connection().await {
            Ok(mut connection) => {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(encode(prior))
                    .arg("PX")
                    .arg(self.ttl_ms)
                    .query_async(&mut connection)
                    .await
            }
            Err(error) => Err(error),
        };
        match stored {
            Ok(()) => answered(),
            Err(error) => failed_quietly("decision_put", &error),
        }
    }
}

fn encode(prior: &PriorAuthorization) -> String {
    format!(
        "{} {} {} {} {}",
        prior.code.as_str(),
        prior.account.as_str(),
        prior.amount.cents(),
        prior.mcc,
        prior.merchant
    )
}

fn decode(value: &str) -> Option<PriorAuthorization> {
    let mut parts = value.splitn(5, ' ');
    let code = Code::parse(parts.next()?)?;
    let account = AccountId::parse(parts.next()?).ok()?;
    let amount = Amount::from_cents(parts.next()?.parse().ok()?);
    let mcc = Mcc::parse(parts.next()?).ok()?;
    let merchant = parts.next()?.to_owned();
    Some(PriorAuthorization {
        account,
        amount,
        mcc,
        merchant,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a decision survives its trip through Redis exactly, a merchant with spaces
    /// (and an empty one) included, and a damaged entry reads as a miss.
    #[test]
    fn decisions_round_trip_and_damage_is_a_miss() {
        for merchant in ["PADARIA DO ZE               SAO PAULO BR", "", "UBER EATS"] {
            let prior = PriorAuthorization {
                account: AccountId::parse("acc-1").unwrap(),
                amount: Amount::from_cents(12_345),
                mcc: Mcc::parse("0742").unwrap(),
                merchant: merchant.to_owned(),
                code: Code::InsufficientFunds,
            };
            assert_eq!(decode(&encode(&prior)), Some(prior));
        }
        for damaged in [
            "",
            "99 acc-1 1 5411 M",
            "00 acc-1 x 5411 M",
            "00 acc-1 1 541 M",
            "00 acc-1 1",
        ] {
            assert_eq!(decode(damaged), None, "{damaged:?}");
        }
    }
}
