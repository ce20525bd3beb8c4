//! The four store suites (`payd_ports::testkit`) on PostgreSQL, each check on a database of
//! its own (created and dropped by the test, so checks run in parallel), each ending with
//! `payd audit` on that database.

mod support;

use support::Pg;

payd_ports::store_conformance!(Pg::fresh(concat!(module_path!(), " (PostgreSQL)")).await);
