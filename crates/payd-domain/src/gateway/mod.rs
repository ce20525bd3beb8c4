//! The payment gateway's rules: a payment's lifecycle across processors, the circuit
//! breaker, the routing policy and retry backoff. All pure: time and randomness come in as
//! arguments, so the engine's behaviour under every failure pattern is unit- and
//! property-testable without a clock.
//!
//! - [`payment`]: [`PaymentState`] and its transitions. The invariant it exists for: a
//!   payment whose outcome at a processor is unknown stays bound to that processor until a
//!   definite answer, so it can never be booked at both.
//! - [`breaker`]: a per-processor circuit breaker (closed / open / half-open).
//! - [`routing`]: which processor a new attempt goes to, from a health snapshot.
//! - [`backoff`]: capped, jittered exponential backoff.

pub mod backoff;
pub mod breaker;
pub mod payment;
pub mod routing;

use std::fmt;
use std::str::FromStr;

/// The two external payment processors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Processor {
    /// The cheaper one, preferred whenever it is healthy and fast enough.
    Default,
    /// The more expensive one, for when the default cannot keep up.
    Fallback,
}

impl Processor {
    /// Both processors, default first.
    pub const ALL: [Processor; 2] = [Processor::Default, Processor::Fallback];

    /// The wire and storage name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Processor::Default => "default",
            Processor::Fallback => "fallback",
        }
    }

    /// The other processor.
    pub const fn other(self) -> Processor {
        match self {
            Processor::Default => Processor::Fallback,
            Processor::Fallback => Processor::Default,
        }
    }
}

impl fmt::Display for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not `default` or `fallback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("processor must be 'default' or 'fallback'")]
pub struct UnknownProcessor;

impl FromStr for Processor {
    type Err = UnknownProcessor;

    fn from_str(text: &str) -> Result<Processor, UnknownProcessor> {
        match text {
            "default" => Ok(Processor::Default),
            "fallback" => Ok(Processor::Fallback),
            _ => Err(UnknownProcessor),
        }
    }
}

/// What one call to a processor established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `200`: booked by this call.
    Booked,
    /// `422`: this correlation id was already booked there (by an earlier attempt of ours).
    AlreadyBooked,
    /// `5xx`/`429`: definitely not booked by this call.
    Rejected,
    /// Timeout or cut connection: the processor may book it later, or may not.
    Unknown,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Booked,
        Outcome::AlreadyBooked,
        Outcome::Rejected,
        Outcome::Unknown,
    ];

    /// Its name in metrics (`payd_gateway_calls_total{outcome}`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Booked => "booked",
            Outcome::AlreadyBooked => "already_booked",
            Outcome::Rejected => "rejected",
            Outcome::Unknown => "unknown",
        }
    }
}
