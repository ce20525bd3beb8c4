//! The simulator through its real router, without a socket (`tower::ServiceExt::oneshot`).
//! Timing tests run on tokio's paused clock, so delays and rate limits cost no wall time.
//!
//! One test binary (modules below) so the crate links once.

// `clippy.toml` allows unwrap inside `#[test]` functions only; the helpers here are test
// code too, where a failed unwrap is exactly a failed test.
#![allow(clippy::unwrap_used)]

mod admin;
mod health;
mod helpers;
mod payments;
mod server;
mod summary;
