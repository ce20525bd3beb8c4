//! Test databases on a real PostgreSQL server, for payd's tests: [`TestDatabase::create`]
//! makes a database of its own for one test (so tests run in parallel), and dropping it
//! drops the database.
//!
//! The server is `PAYD_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! trust auth, as on our machines). When it cannot be reached the test is skipped, loudly:
//! a line on stderr that the test harness does not swallow. With `PAYD_REQUIRE_SERVICES=1`
//! (set by `.ci/run`) an unreachable server fails the test instead: in CI a skipped test
//! would be a silent pass.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use tokio_postgres;
use tokio_postgres::NoTls;

/// The server's URL when none is given.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server to create test databases on.
pub fn server_url() -> String {
    std::env::var("PAYD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// Whether absent services fail tests instead of skipping them (CI).
pub fn services_required() -> bool {
    std::env::var("PAYD_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Says, where the harness cannot hide it, that a test did not run; or, where services are
/// required, fails the test.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !services_required(),
        "{test}: the services are required (PAYD_REQUIRE_SERVICES=1) but {reason}"
    );
    // Straight to the process's stderr: libtest captures `eprintln!`, not this.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {reason} ***\n");
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    // postgres://user@host:port/db?params
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (url, None),
    };
    let root = match base.find("://").map(|i| i + 3) {
        Some(start) => match base[start..].find('/') {
            Some(slash) => &base[..start + slash],
            None => base,
        },
        None => base,
    };
    match params {
        Some(params) => format!("{root}/{database}?{params}"),
        None => format!("{root}/{database}"),
    }
}

/// A client on `url` (its connection driven on the current runtime).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// How many rows `count_sql` (a `SELECT COUNT(*)` whose `$1` is a text array) counts among
/// `keys`: how tests check that each acknowledged thing is stored exactly once.
pub async fn count_among(
    db: &tokio_postgres::Client,
    count_sql: &str,
    keys: impl IntoIterator<Item = &str>,
) -> Result<usize, tokio_postgres::Error> {
    let keys: Vec<&str> = keys.into_iter().collect();
    let rows: i64 = db.query_one(count_sql, &[&keys]).await?.get(0);
    // COUNT(*) is never negative.
    Ok(usize::try_from(rows).unwrap_or(0))
}

/// One test's database; dropped (with `WITH (FORCE)`, which ends its connections) when
/// this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server: String,
}

impl TestDatabase {
    /// A new, empty database for `test`; `None` (after a loud skip) when the server cannot
    /// be reached.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let server = server_url();
        let admin = match connect(&server).await {
            Ok(client) => client,
            Err(error) => {
                skip(
                    test,
                    &format!(
                        "cannot connect to {server}: {error} (set PAYD_TEST_PG_URL, or start PostgreSQL)"
                    ),
                );
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "payd_test_{}_{}_{nanos}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| panic!("creating the test database {name}: {error}"));
        Some(TestDatabase {
            url: with_database(&server, &name),
            name,
            server,
        })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot wait on the test's runtime: a thread with a runtime of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = connect(&server).await.map_err(|e| e.to_string())?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop the test database {}: {error}",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_part_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }
}
