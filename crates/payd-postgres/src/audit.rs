//! `payd audit` on PostgreSQL: the checks of `payd_ledger::audit` (one list for every
//! backend), on one `REPEATABLE READ READ ONLY` transaction, so every check reads the same
//! snapshot while any number of payd processes keep writing, and the audit changes nothing.

use payd_ledger::audit::{AuditReport, AuditRow, AuditSource, QueryError, RowError};
use tokio_postgres::{NoTls, Row};

use crate::schema;

/// The audit could not run (as opposed to: it ran and found violations).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No connection to the database.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// The database has no payd schema.
    #[error(
        "the database is not a payd database (no schema_migrations table; `payd migrate` creates it)"
    )]
    NotPayd,
    /// A query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

fn query(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AuditError {
    move |error| {
        AuditError::Query(QueryError {
            step,
            source: Box::new(error),
        })
    }
}

/// Audits the payd database at `url`, read-only, on one snapshot.
pub async fn audit(url: &str) -> Result<AuditReport, AuditError> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(AuditError::Connect)?;
    let driver = tokio::spawn(connection);
    let result = audit_on(&mut client).await;
    drop(client);
    // The connection ends once the client is gone.
    let _ = driver.await;
    result
}

async fn audit_on(client: &mut tokio_postgres::Client) -> Result<AuditReport, AuditError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(query("BEGIN"))?;
    let schema_version = schema::version(&tx)
        .await
        .map_err(query("reading the schema version"))?;
    if schema_version == 0 {
        return Err(AuditError::NotPayd);
    }
    let checks = payd_ledger::audit::run(&mut Snapshot(&tx)).await?;
    tx.commit().await.map_err(query("COMMIT"))?;
    Ok(AuditReport {
        schema_version,
        checks,
    })
}

struct Snapshot<'t>(&'t tokio_postgres::Transaction<'t>);

struct PgRow<'r>(&'r Row);

fn column(error: tokio_postgres::Error) -> RowError {
    RowError(Box::new(error))
}

impl AuditRow for PgRow<'_> {
    fn int(&self, index: usize) -> Result<i64, RowError> {
        self.0.try_get(index).map_err(column)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, RowError> {
        self.0.try_get(index).map_err(column)
    }

    fn text(&self, index: usize) -> Result<String, RowError> {
        self.0.try_get(index).map_err(column)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>, RowError> {
        self.0.try_get(index).map_err(column)
    }

    fn flag(&self, index: usize) -> Result<bool, RowError> {
        self.0.try_get(index).map_err(column)
    }
}

impl AuditSource for Snapshot<'_> {
    async fn each(
        &mut self,
        sql: &str,
        visit: &mut (dyn FnMut(&dyn AuditRow) -> Result<(), RowError> + Send),
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for row in self.0.query(sql, &[]).await? {
            visit(&PgRow(&row))?;
        }
        Ok(())
    }
}
