//! What a simulator instance starts with. Delay, failure mode and token can be changed at
//! run time through the admin endpoints; the rest is fixed for the life of the process.

use std::net::{Ipv4Addr, SocketAddr};

/// Which of the two processors of the spec to impersonate. Only the defaults differ: the
/// default processor is the cheap one, the fallback the expensive one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// `127.0.0.1:8001`, fee 0.05.
    Default,
    /// `127.0.0.1:8002`, fee 0.15.
    Fallback,
}

/// Everything a simulator instance starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Where [`crate::run`] listens. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Fee per payment in basis points (500 = 5 %); see [`crate::parse_fee`].
    pub fee_bps: u32,
    /// Initial `X-Rinha-Token` the admin endpoints require.
    pub token: String,
    /// Initial delay applied to every `POST /payments` before booking, in milliseconds.
    pub delay_ms: u64,
    /// Initial failure mode: when on, `POST /payments` answers 500 and books nothing.
    pub failing: bool,
    /// `GET /payments/service-health` answers at most once per this many milliseconds, for
    /// all callers together; 0 disables the limit.
    pub health_interval_ms: u64,
    /// More than this many `POST /payments` being processed at once (delays included) is
    /// overload: the extra ones get 429 at once.
    pub max_in_flight: usize,
}

impl SimConfig {
    /// The spec's defaults for `role`: token `123`, no delay, not failing, health once per
    /// 5 s, 1000 payments in flight.
    pub fn for_role(role: Role) -> SimConfig {
        let (port, fee_bps) = match role {
            Role::Default => (8001, 500),
            Role::Fallback => (8002, 1500),
        };
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            fee_bps,
            token: "123".to_owned(),
            delay_ms: 0,
            failing: false,
            health_interval_ms: 5000,
            max_in_flight: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_cheaper_processor() {
        let default = SimConfig::for_role(Role::Default);
        let fallback = SimConfig::for_role(Role::Fallback);
        assert_eq!(default.listen.to_string(), "127.0.0.1:8001");
        assert_eq!(fallback.listen.to_string(), "127.0.0.1:8002");
        assert!(default.fee_bps < fallback.fee_bps);
        assert_eq!((default.fee_bps, fallback.fee_bps), (500, 1500));
        assert_eq!(default.token, "123");
        assert_eq!((default.delay_ms, default.failing), (0, false));
        assert_eq!(
            (default.health_interval_ms, default.max_in_flight),
            (5000, 1000)
        );
    }
}
