//! The processors' shared health ([`HealthBoard`](payd_ports::HealthBoard)) in the
//! `processor_health` table: one statement each, on pooled connections. The lease is timed
//! by the database's clock, so the processes' clocks need not agree.

use payd_domain::gateway::Processor;
use payd_ports::{HealthReading, HealthReport};
use tokio_postgres::GenericClient;

use crate::schema::RowResult;

/// The database's clock, in ms since the epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Takes, renews or fails to take `processor`'s lease for `instance`.
pub(crate) async fn lead(
    client: &impl GenericClient,
    processor: Processor,
    instance: &str,
    lease_ms: i64,
) -> RowResult<bool> {
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO processor_health AS h (processor, leader, lease_until_ms)
                 VALUES ($1, $2, {NOW_MS} + $3)
                 ON CONFLICT (processor) DO UPDATE
                    SET leader = EXCLUDED.leader, lease_until_ms = EXCLUDED.lease_until_ms
                  WHERE h.leader = EXCLUDED.leader OR h.lease_until_ms < {NOW_MS}
                 RETURNING leader"
            ),
            &[&processor.as_str(), &instance, &lease_ms],
        )
        .await?;
    Ok(row.is_some())
}

/// Stores `reading` if `instance` holds the lease.
pub(crate) async fn publish(
    client: &impl GenericClient,
    processor: Processor,
    instance: &str,
    reading: HealthReading,
) -> RowResult<()> {
    let min_response_ms = i64::try_from(reading.report.min_response_ms).unwrap_or(i64::MAX);
    client
        .execute(
            "UPDATE processor_health
                SET failing = $3, min_response_ms = $4, polled_at_ms = $5
              WHERE processor = $1 AND leader = $2",
            &[
                &processor.as_str(),
                &instance,
                &reading.report.failing,
                &min_response_ms,
                &reading.polled_at_ms,
            ],
        )
        .await?;
    Ok(())
}

/// The last published reading.
pub(crate) async fn latest(
    client: &impl GenericClient,
    processor: Processor,
) -> RowResult<Option<HealthReading>> {
    let row = client
        .query_opt(
            "SELECT failing, min_response_ms, polled_at_ms FROM processor_health
              WHERE processor = $1 AND polled_at_ms IS NOT NULL",
            &[&processor.as_str()],
        )
        .await?;
    row.map(|row| {
        let min_response_ms: i64 = row.try_get(1)?;
        Ok(HealthReading {
            report: HealthReport {
                failing: row.try_get(0)?,
                min_response_ms: u64::try_from(min_response_ms).unwrap_or(0),
            },
            polled_at_ms: row.try_get(2)?,
        })
    })
    .transpose()
}
