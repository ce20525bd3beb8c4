//! `payd audit`: the checks of the invariants every store keeps, written once over
//! [`AuditSource`] (run a query, visit its rows), which each backend implements on one
//! read-only snapshot of its database.
//!
//! A store keeps balances denormalized on `accounts` (one row per account, available and
//! held per category; the system account may have several rows) next to the double-entry
//! journal (`entries`), and keeps holds, transfers and pay-ins in tables of their own.
//! Nothing but the command layer's code ties these together, so a bug there, a bad
//! migration or a hand-edited database could break a fact that the API silently relies
//! on. The audit restates each fact as a query and lists every row that breaks it:
//!
//! 1. **Entries balance per category**: every movement is a pair of entries summing to zero,
//!    so all entries of a category, over all accounts and both buckets, sum to zero.
//! 2. **Balances equal their entries**: each account row's six balances (available and held
//!    for FOOD, MEAL, CASH) equal the sums of its entries in that category and bucket; no
//!    entry names an account that does not exist. A balance can only change through an
//!    entry.
//! 3. **No negative balances**: available is never negative except on system accounts
//!    (`@...`, the outside world); held is never negative for anyone.
//! 4. **Active holds equal held balances**: for every customer account and category, the
//!    amounts of its `active` holds add up to its held balance, and no active hold names an
//!    account that does not exist.
//! 5. **Captured amounts within their holds**: a captured hold took `0 < captured <= amount`;
//!    a hold in any other status captured nothing.
//! 6. **Pay-in holds follow their payments**: the hold of a `booked` payment is captured,
//!    that of a `failed` one voided, that of an open one (`queued`, `processing`, `unknown`)
//!    still active; a payment's hold names that payment back, and a hold that names a
//!    payment points to an existing payment whose hold it is.
//! 7. **Transfers have their entries**: a `completed` transfer has exactly two `transfer`
//!    entries referencing it, −amount on the available bucket of `from` and +amount on that
//!    of `to`, in its category; a `pending` or `rejected` one has none; no `transfer` entry
//!    references a transfer that does not exist.
//! 8. **Movements balance per cause and reference**: the entries of one cause, reference and
//!    category (a deposit, a transfer, a hold and its capture, ...) are an even number
//!    summing to zero, because each movement writes both its legs with the same cause and
//!    reference. This pins an unbalanced pair to the operation that wrote it, where check 1
//!    only says that some pair somewhere is off.
//! 9. **Entry chains link every entry**: each account row's chain (`entries.prev`, headed
//!    by `accounts.last_entry`) links all of its entries newest to oldest.
//!
//! Every check is one or two aggregate queries (`GROUP BY` inside the database, rows come
//! back only for violations), written in the SQL that SQLite and PostgreSQL share (sums
//! cast to `BIGINT`, `IS DISTINCT FROM`, `CASE` instead of summing booleans), and a backend
//! runs all of them on one snapshot, so they see one consistent state even while payd keeps
//! writing.

use std::fmt;
use std::future::Future;
use std::time::Instant;

/// Violations kept per check; beyond this the report only counts them.
const KEPT_MAX: usize = 1_000;

/// Violations printed per failed check by [`AuditReport`]'s `Display`.
const SHOWN_MAX: usize = 20;

/// The names of the checks, as they appear in [`CheckResult::name`] and in the report.
pub mod checks {
    /// 1: all entries of a category sum to zero.
    pub const ENTRIES_BALANCE: &str = "entries balance per category";
    /// 2: each account's balances equal the sums of its entries, per category and bucket.
    pub const BALANCES_MATCH_ENTRIES: &str = "balances equal the sum of their entries";
    /// 3: no negative available (except system accounts), no negative held.
    pub const NO_NEGATIVE_BALANCES: &str = "no negative balances";
    /// 4: active holds add up to held balances.
    pub const HOLDS_MATCH_HELD: &str = "active holds equal held balances";
    /// 5: captured holds took 0 < captured <= amount; other holds captured nothing.
    pub const CAPTURES_WITHIN_HOLDS: &str = "captured amounts within their holds";
    /// 6: a pay-in's hold follows its payment's status, and the two name each other.
    pub const PAYMENT_HOLDS: &str = "pay-in holds follow their payments";
    /// 7: completed transfers have their two entries, others none.
    pub const TRANSFERS_HAVE_ENTRIES: &str = "transfers have their entries";
    /// 8: entries of one cause, reference and category pair up and sum to zero.
    pub const MOVEMENTS_BALANCE: &str = "movements balance per cause and reference";
    /// 9: each account's entry chain (`entries.prev`, headed by `accounts.last_entry`)
    /// links all of its entries newest to oldest, so its journal reads complete.
    pub const ENTRY_CHAINS: &str = "entry chains link every entry";

    /// Every check, in the order they run and are reported.
    pub const ALL: [&str; 9] = [
        ENTRIES_BALANCE,
        BALANCES_MATCH_ENTRIES,
        NO_NEGATIVE_BALANCES,
        HOLDS_MATCH_HELD,
        CAPTURES_WITHIN_HOLDS,
        PAYMENT_HOLDS,
        TRANSFERS_HAVE_ENTRIES,
        MOVEMENTS_BALANCE,
        ENTRY_CHAINS,
    ];
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// One of the names in [`checks`].
    pub name: &'static str,
    /// What the check looked at, for the report, e.g. `3 categories, 12,345 entries`.
    pub scope: String,
    /// How many rows (entries, accounts, holds, ...) the check examined; its main unit is
    /// named in [`CheckResult::scope`].
    pub examined: u64,
    /// One line per violation, naming the row (account id and category, hold id, ...) and
    /// the expected and actual values. At most [`CheckResult::KEPT_MAX`] are kept.
    pub violations: Vec<String>,
    /// Violations found beyond those kept in [`CheckResult::violations`].
    pub unlisted: u64,
}

impl CheckResult {
    /// Most violations kept per check; the rest are only counted in
    /// [`CheckResult::unlisted`].
    pub const KEPT_MAX: usize = KEPT_MAX;

    /// No violation.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.unlisted == 0
    }

    /// Every violation found, kept or not.
    pub fn violation_count(&self) -> u64 {
        count(self.violations.len()).saturating_add(self.unlisted)
    }
}

/// The outcome of [`audit`]: one [`CheckResult`] per check, in the order of [`checks::ALL`].
/// Its `Display` is the report `payd audit` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// The database's schema version (its newest applied migration).
    pub schema_version: i64,
    /// One result per check.
    pub checks: Vec<CheckResult>,
}

impl AuditReport {
    /// No check found a violation.
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(CheckResult::is_clean)
    }

    /// The result of the check called `name` (one of [`checks`]).
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// The checks that found violations.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|check| !check.is_clean())
    }

    /// Violations over all checks.
    pub fn violation_count(&self) -> u64 {
        self.checks
            .iter()
            .map(CheckResult::violation_count)
            .fold(0, u64::saturating_add)
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            if check.is_clean() {
                writeln!(f, "ok   {} ({})", check.name, check.scope)?;
                continue;
            }
            let total = check.violation_count();
            writeln!(
                f,
                "FAIL {} ({}): {} violation{}",
                check.name,
                check.scope,
                grouped(total),
                plural(total)
            )?;
            for violation in check.violations.iter().take(SHOWN_MAX) {
                writeln!(f, "       {violation}")?;
            }
            let shown = count(check.violations.len().min(SHOWN_MAX));
            if total > shown {
                writeln!(f, "       ... and {} more", grouped(total - shown))?;
            }
        }
        let failed = self.failed().count();
        if failed == 0 {
            write!(f, "clean: {} checks passed", self.checks.len())
        } else {
            let total = self.violation_count();
            write!(
                f,
                "NOT CLEAN: {} violation{} in {failed} of {} checks",
                grouped(total),
                plural(total),
                self.checks.len()
            )
        }
    }
}

/// The categories, in the column order of `accounts`.
const CATEGORIES: [&str; 3] = ["FOOD", "MEAL", "CASH"];

/// The six balance columns of `accounts`, in order: (category, bucket name).
const BALANCE_COLUMNS: [(&str, &str); 6] = [
    ("FOOD", "available"),
    ("FOOD", "held"),
    ("MEAL", "available"),
    ("MEAL", "held"),
    ("CASH", "available"),
    ("CASH", "held"),
];

/// Sums of one account's entries per balance column, in [`BALANCE_COLUMNS`] order.
const ENTRY_SUMS: &str = "
    COUNT(*) AS n,
    CAST(COALESCE(SUM(CASE WHEN category = 'FOOD' AND bucket = 0 THEN amount_cents END), 0) AS BIGINT)
        AS food_available,
    CAST(COALESCE(SUM(CASE WHEN category = 'FOOD' AND bucket = 1 THEN amount_cents END), 0) AS BIGINT)
        AS food_held,
    CAST(COALESCE(SUM(CASE WHEN category = 'MEAL' AND bucket = 0 THEN amount_cents END), 0) AS BIGINT)
        AS meal_available,
    CAST(COALESCE(SUM(CASE WHEN category = 'MEAL' AND bucket = 1 THEN amount_cents END), 0) AS BIGINT)
        AS meal_held,
    CAST(COALESCE(SUM(CASE WHEN category = 'CASH' AND bucket = 0 THEN amount_cents END), 0) AS BIGINT)
        AS cash_available,
    CAST(COALESCE(SUM(CASE WHEN category = 'CASH' AND bucket = 1 THEN amount_cents END), 0) AS BIGINT)
        AS cash_held";

/// The statuses of a payment that is still open (its outcome not yet known).
const OPEN_PAYMENT: &str =
    "(p.status = 'queued' OR p.status = 'processing' OR p.status = 'unknown')";

/// Violations of one check: the first [`KEPT_MAX`] as text, the rest counted.
#[derive(Default)]
struct Violations {
    kept: Vec<String>,
    unlisted: u64,
}

impl Violations {
    /// Records one violation; its text is built only if it is kept.
    fn add(&mut self, text: impl FnOnce() -> String) {
        if self.kept.len() < KEPT_MAX {
            self.kept.push(text());
        } else {
            self.unlisted = self.unlisted.saturating_add(1);
        }
    }
}

/// One row of a query's result, read by column index. SQLite and PostgreSQL type the same
/// query slightly differently (a comparison is an integer in one and a boolean in the
/// other); an implementation reads each the way its database answers it.
pub trait AuditRow {
    /// An integer column (`BIGINT`, `COUNT(*)`, a sum cast to `BIGINT`).
    fn int(&self, index: usize) -> Result<i64, RowError>;
    /// An integer column that may be `NULL`.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, RowError>;
    /// A text column.
    fn text(&self, index: usize) -> Result<String, RowError>;
    /// A text column that may be `NULL`.
    fn opt_text(&self, index: usize) -> Result<Option<String>, RowError>;
    /// A truth value (a comparison in the select list).
    fn flag(&self, index: usize) -> Result<bool, RowError>;
}

/// A column that could not be read as asked.
#[derive(Debug)]
pub struct RowError(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Where the checks read: one read-only snapshot of a store's database.
pub trait AuditSource {
    /// Runs `sql` (no parameters) and calls `visit` with each row, in order.
    fn each(
        &mut self,
        sql: &str,
        visit: &mut (dyn FnMut(&dyn AuditRow) -> Result<(), RowError> + Send),
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>;
}

/// A check's query failed (I/O, a corrupt file, a sum overflowing 64 bits, ...): the audit
/// could not run to the end.
#[derive(Debug, thiserror::Error)]
#[error("audit query failed ({step}): {source}")]
pub struct QueryError {
    /// The check or step that was running.
    pub step: &'static str,
    /// The database's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Runs every check, in the order of [`checks::ALL`], on `source`'s snapshot.
pub async fn run<S: AuditSource>(source: &mut S) -> Result<Vec<CheckResult>, QueryError> {
    let mut audit = Audit {
        source,
        results: Vec::with_capacity(checks::ALL.len()),
        entries: 0,
        transfer_entries: 0,
        accounts: 0,
        started: Instant::now(),
    };
    audit.accounts = count_i64(
        audit
            .one(
                "counting accounts",
                "SELECT COUNT(*) FROM accounts",
                |row| row.int(0),
            )
            .await?,
    );
    audit.entries_balance().await?;
    audit.balances_match_entries().await?;
    audit.no_negative_balances().await?;
    audit.holds_match_held().await?;
    audit.captures_within_holds().await?;
    audit.payment_holds().await?;
    audit.transfers_have_entries().await?;
    audit.movements_balance().await?;
    audit.entry_chains().await?;
    Ok(audit.results)
}

/// The checks' shared state: the snapshot and what earlier checks counted.
struct Audit<'s, S> {
    source: &'s mut S,
    results: Vec<CheckResult>,
    /// Entries in the journal (counted by check 1).
    entries: u64,
    /// `transfer` entries in the journal (counted by check 1).
    transfer_entries: u64,
    /// Account rows, system ones included.
    accounts: u64,
    /// When the running check started.
    started: Instant,
}

impl<S: AuditSource> Audit<'_, S> {
    /// One row of a query (its first).
    async fn one<T: Send>(
        &mut self,
        step: &'static str,
        sql: &str,
        map: impl FnOnce(&dyn AuditRow) -> Result<T, RowError> + Send,
    ) -> Result<T, QueryError> {
        let mut map = Some(map);
        let mut value = None;
        self.each(step, sql, |row| {
            if let Some(map) = map.take() {
                value = Some(map(row)?);
            }
            Ok(())
        })
        .await?;
        value.ok_or_else(|| QueryError {
            step,
            source: "the query returned no row".into(),
        })
    }

    /// Every row of a query.
    async fn each(
        &mut self,
        step: &'static str,
        sql: &str,
        mut visit: impl FnMut(&dyn AuditRow) -> Result<(), RowError> + Send,
    ) -> Result<(), QueryError> {
        self.source
            .each(sql, &mut visit)
            .await
            .map_err(|source| QueryError { step, source })
    }

    /// "N accounts, M entries": the scope of the checks that read both.
    fn accounts_and_entries(&self) -> String {
        format!(
            "{}, {}",
            counted(self.accounts, "account", "accounts"),
            counted(self.entries, "entry", "entries")
        )
    }

    fn record(&mut self, name: &'static str, scope: String, examined: u64, found: Violations) {
        tracing::debug!(
            target: "payd_audit",
            check = name,
            examined,
            violations = count(found.kept.len()).saturating_add(found.unlisted),
            elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "audit check done"
        );
        self.started = Instant::now();
        self.results.push(CheckResult {
            name,
            scope,
            examined,
            violations: found.kept,
            unlisted: found.unlisted,
        });
    }

    /// Check 1. One pass over the journal, no sort: conditional sums per category.
    async fn entries_balance(&mut self) -> Result<(), QueryError> {
        let name = checks::ENTRIES_BALANCE;
        let (total, transfers, per_category) = self.one(
            name,
            "SELECT COUNT(*),
                    CAST(COALESCE(SUM(CASE WHEN cause = 'transfer' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'FOOD' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'FOOD' THEN amount_cents END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'MEAL' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'MEAL' THEN amount_cents END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'CASH' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN category = 'CASH' THEN amount_cents END), 0) AS BIGINT)
             FROM entries",
            |row| {
                let mut per_category = [(0_i64, 0_i64); 3];
                for (i, slot) in per_category.iter_mut().enumerate() {
                    *slot = (row.int(2 + 2 * i)?, row.int(3 + 2 * i)?);
                }
                Ok((row.int(0)?, row.int(1)?, per_category))
            },
        ).await?;
        self.entries = count_i64(total);
        self.transfer_entries = count_i64(transfers);
        let mut found = Violations::default();
        for (category, (entries, sum)) in CATEGORIES.iter().zip(per_category) {
            if sum != 0 {
                found.add(|| {
                    format!(
                        "{category}: its {} sum to {}, expected 0",
                        counted(count_i64(entries), "entry", "entries"),
                        signed(sum)
                    )
                });
            }
        }
        let scope = format!(
            "{} categories, {}",
            CATEGORIES.len(),
            counted(self.entries, "entry", "entries")
        );
        self.record(name, scope, self.entries, found);
        Ok(())
    }

    /// Check 2. Sums per account and column in one grouped pass, compared with the row.
    async fn balances_match_entries(&mut self) -> Result<(), QueryError> {
        let name = checks::BALANCES_MATCH_ENTRIES;
        let mut found = Violations::default();
        let sql = format!(
            "WITH sums AS (SELECT account AS num, {ENTRY_SUMS} FROM entries GROUP BY account)
             SELECT s.num, a.id, s.n,
                    a.food_available, a.food_held, a.meal_available, a.meal_held,
                    a.cash_available, a.cash_held,
                    s.food_available, s.food_held, s.meal_available, s.meal_held,
                    s.cash_available, s.cash_held
             FROM sums s LEFT JOIN accounts a ON a.num = s.num
             WHERE a.num IS NULL
                OR a.food_available <> s.food_available OR a.food_held <> s.food_held
                OR a.meal_available <> s.meal_available OR a.meal_held <> s.meal_held
                OR a.cash_available <> s.cash_available OR a.cash_held <> s.cash_held"
        );
        self.each(name, &sql, |row| {
            let num = row.int(0)?;
            let Some(id) = row.opt_text(1)? else {
                let entries = row.int(2)?;
                found.add(|| {
                    format!(
                        "{} name account number {num}, which does not exist",
                        counted(count_i64(entries), "entry", "entries")
                    )
                });
                return Ok(());
            };
            for (i, (category, bucket)) in BALANCE_COLUMNS.iter().enumerate() {
                let balance = row.int(3 + i)?;
                let sum = row.int(9 + i)?;
                if balance != sum {
                    found.add(|| balance_mismatch(&id, category, bucket, balance, sum));
                }
            }
            Ok(())
        })
        .await?;
        // Accounts with no entry at all must have zero balances; the grouped pass above
        // only sees accounts that have entries.
        self.each(
            name,
            "SELECT a.id, a.food_available, a.food_held, a.meal_available, a.meal_held,
                    a.cash_available, a.cash_held
             FROM accounts a
             WHERE (a.food_available <> 0 OR a.food_held <> 0 OR a.meal_available <> 0
                    OR a.meal_held <> 0 OR a.cash_available <> 0 OR a.cash_held <> 0)
               AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.account = a.num)",
            |row| {
                let id = row.text(0)?;
                for (i, (category, bucket)) in BALANCE_COLUMNS.iter().enumerate() {
                    let balance = row.int(1 + i)?;
                    if balance != 0 {
                        found.add(|| balance_mismatch(&id, category, bucket, balance, 0));
                    }
                }
                Ok(())
            },
        )
        .await?;
        let scope = self.accounts_and_entries();
        self.record(name, scope, self.accounts, found);
        Ok(())
    }

    /// Check 3.
    async fn no_negative_balances(&mut self) -> Result<(), QueryError> {
        let name = checks::NO_NEGATIVE_BALANCES;
        let mut found = Violations::default();
        self.each(
            name,
            "SELECT id, substr(id, 1, 1) = '@',
                    food_available, food_held, meal_available, meal_held,
                    cash_available, cash_held
             FROM accounts
             WHERE (substr(id, 1, 1) <> '@'
                    AND (food_available < 0 OR meal_available < 0 OR cash_available < 0))
                OR food_held < 0 OR meal_held < 0 OR cash_held < 0",
            |row| {
                let id = row.text(0)?;
                let system = row.flag(1)?;
                for (i, (category, bucket)) in BALANCE_COLUMNS.iter().enumerate() {
                    let balance = row.int(2 + i)?;
                    let may_be_negative = system && *bucket == "available";
                    if balance < 0 && !may_be_negative {
                        found.add(|| {
                            format!(
                                "account {id} {category} {bucket}: {}, expected >= 0",
                                signed(balance)
                            )
                        });
                    }
                }
                Ok(())
            },
        )
        .await?;
        let scope = counted(self.accounts, "account", "accounts");
        self.record(name, scope, self.accounts, found);
        Ok(())
    }

    /// Check 4. Active holds summed per account and category, against every customer
    /// account's three held balances; then active holds on accounts that do not exist.
    async fn holds_match_held(&mut self) -> Result<(), QueryError> {
        let name = checks::HOLDS_MATCH_HELD;
        let mut found = Violations::default();
        let active_holds = count_i64(
            self.one(
                name,
                "SELECT COUNT(*) FROM holds WHERE status = 'active'",
                |row| row.int(0),
            )
            .await?,
        );
        self.each(
            name,
            "WITH active AS (
                 SELECT account, category, CAST(SUM(amount_cents) AS BIGINT) AS cents, COUNT(*) AS n
                 FROM holds WHERE status = 'active' GROUP BY account, category),
             held AS (
                 SELECT id AS account, 'FOOD' AS category, food_held AS cents
                     FROM accounts WHERE substr(id, 1, 1) <> '@'
                 UNION ALL
                 SELECT id, 'MEAL', meal_held FROM accounts WHERE substr(id, 1, 1) <> '@'
                 UNION ALL
                 SELECT id, 'CASH', cash_held FROM accounts WHERE substr(id, 1, 1) <> '@')
             SELECT held.account, held.category, held.cents,
                    COALESCE(active.cents, 0), COALESCE(active.n, 0)
             FROM held LEFT JOIN active
                  ON active.account = held.account AND active.category = held.category
             WHERE held.cents <> COALESCE(active.cents, 0)
             UNION ALL
             SELECT active.account, active.category, NULL, active.cents, active.n
             FROM active
             WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = active.account)",
            |row| {
                let account = row.text(0)?;
                let category = row.text(1)?;
                let held = row.opt_int(2)?;
                let active = row.int(3)?;
                let holds = count_i64(row.int(4)?);
                found.add(|| {
                    let holds = counted(holds, "active hold", "active holds");
                    match held {
                        Some(held) => format!(
                            "account {account} {category}: held {}, expected {} \
                             (the sum of its {holds})",
                            signed(held),
                            signed(active)
                        ),
                        None => format!(
                            "account {account} does not exist, yet has {holds} \
                             of {} {category}",
                            signed(active)
                        ),
                    }
                });
                Ok(())
            },
        )
        .await?;
        let scope = format!(
            "{}, {}",
            counted(self.accounts, "account", "accounts"),
            counted(active_holds, "active hold", "active holds")
        );
        self.record(name, scope, active_holds, found);
        Ok(())
    }

    /// Check 5.
    async fn captures_within_holds(&mut self) -> Result<(), QueryError> {
        let name = checks::CAPTURES_WITHIN_HOLDS;
        let mut found = Violations::default();
        let (holds, captured) = self.one(
            name,
            "SELECT COUNT(*),
                    CAST(COALESCE(SUM(CASE WHEN status = 'captured' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM holds",
            |row| Ok((row.int(0)?, row.int(1)?)),
        ).await?;
        self.each(
            name,
            "SELECT id, account, category, status, amount_cents, captured_cents FROM holds
             WHERE amount_cents <= 0
                OR (status = 'captured'
                    AND NOT (captured_cents > 0 AND captured_cents <= amount_cents))
                OR (status <> 'captured' AND captured_cents <> 0)",
            |row| {
                let id = row.text(0)?;
                let account = row.text(1)?;
                let category = row.text(2)?;
                let status = row.text(3)?;
                let amount = row.int(4)?;
                let captured = row.int(5)?;
                let expected = if amount <= 0 {
                    "a positive amount".to_owned()
                } else if status == "captured" {
                    format!("0 < captured <= {}", signed(amount))
                } else {
                    "captured 0".to_owned()
                };
                found.add(|| {
                    format!(
                        "hold {id} ({account} {category}, {status}): amount {}, captured {}, \
                         expected {expected}",
                        signed(amount),
                        signed(captured)
                    )
                });
                Ok(())
            },
        )
        .await?;
        let scope = format!(
            "{}, {} captured",
            counted(count_i64(holds), "hold", "holds"),
            grouped(count_i64(captured))
        );
        self.record(name, scope, count_i64(holds), found);
        Ok(())
    }

    /// Check 6. From each payment with a hold to its hold, then from each hold with a
    /// payment to its payment; both joins are primary-key lookups.
    async fn payment_holds(&mut self) -> Result<(), QueryError> {
        let name = checks::PAYMENT_HOLDS;
        let mut found = Violations::default();
        let payments = count_i64(
            self.one(
                name,
                "SELECT COUNT(*) FROM payments WHERE hold IS NOT NULL",
                |row| row.int(0),
            )
            .await?,
        );
        let holds = count_i64(
            self.one(
                name,
                "SELECT COUNT(*) FROM holds WHERE payment IS NOT NULL",
                |row| row.int(0),
            )
            .await?,
        );
        let sql = format!(
            "SELECT p.id, p.status, p.hold, h.status, h.payment
             FROM payments p LEFT JOIN holds h ON h.id = p.hold
             WHERE p.hold IS NOT NULL
               AND (h.id IS NULL
                    OR h.payment IS DISTINCT FROM p.id
                    OR (p.status = 'booked' AND h.status <> 'captured')
                    OR (p.status = 'failed' AND h.status <> 'voided')
                    OR ({OPEN_PAYMENT} AND h.status <> 'active'))"
        );
        self.each(name, &sql, |row| {
            let payment = row.text(0)?;
            let status = row.text(1)?;
            let hold = row.text(2)?;
            let hold_status = row.opt_text(3)?;
            let backs = row.opt_text(4)?;
            let Some(hold_status) = hold_status else {
                found.add(|| {
                    format!("payment {payment} ({status}): its hold {hold} does not exist")
                });
                return Ok(());
            };
            if backs.as_deref() != Some(payment.as_str()) {
                found.add(|| {
                    format!(
                        "payment {payment} ({status}): its hold {hold} backs {}",
                        backs.as_deref().map_or_else(
                            || "no payment".to_owned(),
                            |other| format!("payment {other}")
                        )
                    )
                });
            }
            let expected = match status.as_str() {
                "booked" => "captured",
                "failed" => "voided",
                _ => "active",
            };
            if hold_status != expected {
                found.add(|| {
                    format!(
                        "payment {payment} ({status}): its hold {hold} is {hold_status}, \
                         expected {expected}"
                    )
                });
            }
            Ok(())
        })
        .await?;
        self.each(
            name,
            "SELECT h.id, h.payment, p.id, p.hold
             FROM holds h LEFT JOIN payments p ON p.id = h.payment
             WHERE h.payment IS NOT NULL AND (p.id IS NULL OR p.hold IS DISTINCT FROM h.id)",
            |row| {
                let hold = row.text(0)?;
                let payment = row.text(1)?;
                let exists = row.opt_text(2)?.is_some();
                let payments_hold = row.opt_text(3)?;
                found.add(|| {
                    if !exists {
                        format!("hold {hold} backs payment {payment}, which does not exist")
                    } else {
                        format!(
                            "hold {hold} backs payment {payment}, whose hold is {}",
                            payments_hold.as_deref().unwrap_or("none")
                        )
                    }
                });
                Ok(())
            },
        )
        .await?;
        let scope = format!(
            "{} with a hold, {} with a payment",
            counted(payments, "payment", "payments"),
            counted(holds, "hold", "holds")
        );
        self.record(name, scope, payments.saturating_add(holds), found);
        Ok(())
    }

    /// Check 7. The `transfer` entries grouped by reference (one pass over the journal,
    /// joined to transfers by their unique id), against every transfer; then `transfer`
    /// entries whose reference is no transfer.
    async fn transfers_have_entries(&mut self) -> Result<(), QueryError> {
        let name = checks::TRANSFERS_HAVE_ENTRIES;
        let mut found = Violations::default();
        let (transfers, completed) = self.one(
            name,
            "SELECT COUNT(*),
                    CAST(COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM transfers",
            |row| Ok((row.int(0)?, row.int(1)?)),
        ).await?;
        self.each(
            name,
            "WITH legs AS (
                 SELECT t.id AS id, COUNT(*) AS n,
                        CAST(SUM(CASE WHEN a.id = t.from_account AND e.category = t.category
                                      AND e.bucket = 0 AND e.amount_cents = -t.amount_cents
                                 THEN 1 ELSE 0 END) AS BIGINT) AS debits,
                        CAST(SUM(CASE WHEN a.id = t.to_account AND e.category = t.category
                                      AND e.bucket = 0 AND e.amount_cents = t.amount_cents
                                 THEN 1 ELSE 0 END) AS BIGINT) AS credits
                 FROM entries e
                 JOIN transfers t ON t.id = e.reference
                 LEFT JOIN accounts a ON a.num = e.account
                 WHERE e.cause = 'transfer'
                 GROUP BY t.id)
             SELECT t.id, t.status, t.from_account, t.to_account, t.category, t.amount_cents,
                    COALESCE(legs.n, 0), COALESCE(legs.debits, 0), COALESCE(legs.credits, 0)
             FROM transfers t LEFT JOIN legs ON legs.id = t.id
             WHERE (t.status = 'completed'
                    AND NOT (COALESCE(legs.n, 0) = 2 AND legs.debits = 1 AND legs.credits = 1))
                OR (t.status <> 'completed' AND COALESCE(legs.n, 0) <> 0)",
            |row| {
                let id = row.text(0)?;
                let status = row.text(1)?;
                let from = row.text(2)?;
                let to = row.text(3)?;
                let category = row.text(4)?;
                let amount = row.int(5)?;
                let n = count_i64(row.int(6)?);
                let debits = row.int(7)?;
                let credits = row.int(8)?;
                found.add(|| {
                    let what = format!(
                        "transfer {id} ({status}, {from} -> {to}, {category} {})",
                        signed(amount)
                    );
                    if status == "completed" {
                        format!(
                            "{what}: {}, {debits} matching debit of {from} \
                             and {credits} matching credit of {to}; expected exactly 2 entries, \
                             -{} on {from} and +{} on {to} (available {category})",
                            counted(n, "transfer entry", "transfer entries"),
                            grouped(count_i64(amount)),
                            grouped(count_i64(amount))
                        )
                    } else {
                        format!(
                            "{what}: {}, expected none until completed",
                            counted(n, "transfer entry", "transfer entries")
                        )
                    }
                });
                Ok(())
            },
        )
        .await?;
        self.each(
            name,
            "SELECT e.reference, COUNT(*) FROM entries e
             WHERE e.cause = 'transfer'
               AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = e.reference)
             GROUP BY e.reference",
            |row| {
                let reference = row.text(0)?;
                let n = count_i64(row.int(1)?);
                found.add(|| {
                    format!(
                        "transfer {reference} does not exist, yet has {}",
                        counted(n, "transfer entry", "transfer entries")
                    )
                });
                Ok(())
            },
        )
        .await?;
        let scope = format!(
            "{}, {} completed, {}",
            counted(count_i64(transfers), "transfer", "transfers"),
            grouped(count_i64(completed)),
            counted(self.transfer_entries, "transfer entry", "transfer entries")
        );
        self.record(name, scope, count_i64(transfers), found);
        Ok(())
    }

    /// Check 8. One grouped pass over the journal; only unbalanced groups come back.
    async fn movements_balance(&mut self) -> Result<(), QueryError> {
        let name = checks::MOVEMENTS_BALANCE;
        let mut found = Violations::default();
        self.each(
            name,
            "SELECT cause, reference, category, COUNT(*), CAST(SUM(amount_cents) AS BIGINT)
             FROM entries
             GROUP BY cause, reference, category
             HAVING COUNT(*) % 2 <> 0 OR SUM(amount_cents) <> 0",
            |row| {
                let cause = row.text(0)?;
                let reference = row.text(1)?;
                let category = row.text(2)?;
                let n = count_i64(row.int(3)?);
                let sum = row.int(4)?;
                found.add(|| {
                    format!(
                        "{cause} {reference} {category}: {} summing to {}, expected \
                         an even number summing to 0",
                        counted(n, "entry", "entries"),
                        signed(sum)
                    )
                });
                Ok(())
            },
        )
        .await?;
        let scope = counted(self.entries, "entry", "entries");
        self.record(name, scope, self.entries, found);
        Ok(())
    }

    /// Check 9. Each entry's `prev` must be the account's previous entry (one sorted pass
    /// with a window function), and each account's `last_entry` its newest.
    async fn entry_chains(&mut self) -> Result<(), QueryError> {
        let name = checks::ENTRY_CHAINS;
        let mut found = Violations::default();
        self.each(
            name,
            "SELECT COALESCE(a.id, '#' || CAST(c.account AS TEXT)), c.sequence, c.prev, c.expected
               FROM (SELECT account, sequence, prev,
                            LAG(sequence) OVER (PARTITION BY account ORDER BY sequence) AS expected
                       FROM entries) AS c
               LEFT JOIN accounts a ON a.num = c.account
              WHERE c.prev IS DISTINCT FROM c.expected",
            |row| {
                let account = row.text(0)?;
                let sequence = row.int(1)?;
                let prev = row.opt_int(2)?;
                let expected = row.opt_int(3)?;
                found.add(|| {
                    format!(
                        "account {account}: entry {sequence} links to {}, expected {}",
                        link(prev),
                        link(expected)
                    )
                });
                Ok(())
            },
        )
        .await?;
        self.each(
            name,
            "SELECT a.id, a.last_entry, h.newest
               FROM accounts a
               LEFT JOIN (SELECT account, MAX(sequence) AS newest FROM entries GROUP BY account) h
                      ON h.account = a.num
              WHERE a.last_entry IS DISTINCT FROM h.newest",
            |row| {
                let account = row.text(0)?;
                let head = row.opt_int(1)?;
                let newest = row.opt_int(2)?;
                found.add(|| {
                    format!(
                        "account {account}: its chain starts at {}, its newest entry is {}",
                        link(head),
                        link(newest)
                    )
                });
                Ok(())
            },
        )
        .await?;
        let scope = self.accounts_and_entries();
        self.record(name, scope, self.entries, found);
        Ok(())
    }
}

/// An entry link for a report: `entry 12` or `none`.
fn link(sequence: Option<i64>) -> String {
    sequence.map_or_else(|| "none".to_owned(), |sequence| format!("entry {sequence}"))
}

fn balance_mismatch(id: &str, category: &str, bucket: &str, balance: i64, sum: i64) -> String {
    format!(
        "account {id} {category} {bucket}: balance {}, its entries sum to {} (off by {})",
        signed(balance),
        signed(sum),
        signed(balance.saturating_sub(sum))
    )
}

/// A count from SQLite (never negative) as `u64`.
fn count_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `1 entry`, `12,345 entries`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `12345` → `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Cents with digit grouping and a sign when negative: `-1,234`.
fn signed(cents: i64) -> String {
    let magnitude = grouped(cents.unsigned_abs());
    if cents < 0 {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
        assert_eq!(signed(-1_234), "-1,234");
        assert_eq!(signed(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn report_lists_at_most_twenty_violations() {
        let report = AuditReport {
            schema_version: 3,
            checks: vec![
                CheckResult {
                    name: checks::ENTRIES_BALANCE,
                    scope: "3 categories, 12,345 entries".to_owned(),
                    examined: 12_345,
                    violations: vec![],
                    unlisted: 0,
                },
                CheckResult {
                    name: checks::NO_NEGATIVE_BALANCES,
                    scope: "2 accounts".to_owned(),
                    examined: 2,
                    violations: (0..25).map(|i| format!("v{i}")).collect(),
                    unlisted: 5,
                },
            ],
        };
        let text = report.to_string();
        assert!(
            text.starts_with("ok   entries balance per category (3 categories, 12,345 entries)\n")
        );
        assert!(text.contains("FAIL no negative balances (2 accounts): 30 violations\n"));
        assert!(text.contains("       v19\n"));
        assert!(!text.contains("v20"));
        assert!(text.contains("       ... and 10 more\n"));
        assert!(text.ends_with("NOT CLEAN: 30 violations in 1 of 2 checks"));
        assert!(!report.is_clean());
        assert_eq!(report.violation_count(), 30);
    }
}
