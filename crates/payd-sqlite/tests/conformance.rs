//! The four store suites (`payd_ports::testkit`) on a fresh SQLite store per check, each
//! ending with `payd audit` on the database file.

mod support;

use support::Sqlite;

payd_ports::store_conformance!(Sqlite::fresh());
