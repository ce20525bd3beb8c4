//! payd's command layer: every use case of the ledger, written once, over [`LedgerTx`], the
//! small transaction trait each store backend implements (SQLite, PostgreSQL). A backend
//! adds SQL, locking and batching; it never decides anything itself.
//!
//! # Layout
//! - [`tx`]: the transaction trait, [`LedgerTx`] (load a row, stage a change, journal entries, append an event)
//!   and [`Failure`], how a transaction fails.
//! - [`command`]: [`Command`], a store request on its way to a backend's writer with its
//!   reply channel; [`apply`] runs one inside a transaction; [`Answer`] is what it
//!   decided, sent once the transaction commits; [`take_background`] lets requests commit
//!   before the gateway's bookkeeping.
//! - [`card`]: card authorizations (`payd_domain::decide`) and deposits.
//! - `money`: the one way a command moves money (entries applied to balances, all or
//!   none, and journaled), and opening an account.
//! - [`wallet`]: every `Mutation` (accounts, holds, withdrawals, transfers, merchants,
//!   webhooks), idempotent under a claim with the first response stored in the same
//!   commit; the sweeps that expire holds and settle transfers.
//! - [`gateway`]: payment intake (with a pay-in's hold) and the compare-and-set
//!   transitions that capture or release it and announce outcomes.
//! - [`columns`]: how payment states, balances and transfer statuses are laid out in
//!   columns, the same for every backend.
//! - [`summary`]: how a store reads `GET /payments-summary` (whole seconds from totals,
//!   partial seconds from the payments).
//! - [`audit`]: the checks of `payd audit`, in SQL that every backend runs on one snapshot
//!   ([`audit::AuditSource`]), and the report they make.

pub mod audit;
pub mod card;
pub mod columns;
pub mod command;
pub mod gateway;
mod money;
pub mod summary;
pub mod tx;
pub mod wallet;

pub use command::{Answer, Command, Reply, apply, fail_all, take_background};
pub use tx::{Failure, LedgerTx, PendingTransfer, StoredClaim, StoredHold, StoredTransfer, Turn};
