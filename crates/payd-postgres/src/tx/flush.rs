//! The flush: every change a batch staged, written in bulk (one statement per table,
//! arrays `UNNEST`ed), pipelined, before the COMMIT.

use std::collections::HashMap;

use payd_domain::gateway::payment::PaymentState;
use payd_domain::{AccountId, CorrelationId};
use payd_ledger::Failure;
use payd_ledger::columns::{balance_columns, bucket_column, state_columns, transfer_reason};
use payd_ports::HoldView;

use crate::schema;

use super::{
    HoldRow, PaymentRow, PgTx, StagedEntry, TAKE_SEQUENCES, cause, keep, rows_error_corrupt,
    sequences_of,
};

impl PgTx<'_> {
    /// Writes every change staged so far, in bulk, pipelined. Runs before COMMIT, and
    /// before any statement that must see the batch's earlier changes in the database.
    pub(crate) async fn flush(&mut self) -> Result<(), Failure> {
        self.number_entries().await?;
        self.insert_new_accounts().await?;
        let entries = std::mem::take(&mut self.entries);
        let sequences = std::mem::take(&mut self.sequences);
        let writes = Writes::collect(self, &entries, &sequences)?;
        writes.run(self).await?;
        // What is written is now the base of any later change in this transaction.
        for row in self.accounts.values_mut() {
            row.base = row.balances;
            row.dirty = false;
        }
        for row in self.holds.values_mut().flatten() {
            row.new = false;
            row.dirty = false;
        }
        for row in self.payments.values_mut().flatten() {
            row.new = false;
            row.dirty = false;
            row.base_version = row.record.version;
            row.attempts_added = 0;
        }
        self.new_transactions.clear();
        self.new_deposits.clear();
        self.new_claims.clear();
        self.new_transfers.clear();
        self.settled_transfers.clear();
        self.new_fences.clear();
        self.withdrawals.clear();
        self.totals.clear();
        self.events.clear();
        self.merchant_ops.clear();
        self.merchants_changed = false;
        Ok(())
    }

    /// Gives every staged entry its sequence number and links it into its account's chain.
    async fn number_entries(&mut self) -> Result<(), Failure> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let needed = self.entries.len();
        // Numbers taken before a lock was granted can be older than the chain head another
        // process committed meanwhile: an account loaded on demand is locked after the
        // prefetch; and even the prefetch's own locks may be granted after its numbers (a
        // pipelined statement that waits for its first PREPARE is sent on a later poll, and
        // `tokio::join!` rotates which future it polls first). Every lock is held by now, so
        // numbers taken now are newer than every head they chain to.
        let newest_head = self
            .entries
            .iter()
            .filter_map(|entry| self.accounts.get(&entry.account)?.base_last_entry)
            .max();
        let stale = match (newest_head, self.sequences.first()) {
            (Some(head), Some(first)) => *first <= head,
            _ => false,
        };
        if stale {
            metrics::counter!("payd_pg_entry_sequences_retaken_total").increment(1);
        }
        if stale || self.sequences.len() < needed {
            let count = i64::try_from(needed).unwrap_or(i64::MAX);
            let rows = self.query(TAKE_SEQUENCES, &[&count]).await?;
            self.sequences = sequences_of(&rows)?;
        }
        if self.sequences.len() < needed {
            return Err(Failure::invariant("too few entry sequence numbers"));
        }
        Ok(())
    }

    /// Inserts the accounts this transaction created, with their final balances and
    /// chain heads; their `num` is known from then on.
    async fn insert_new_accounts(&mut self) -> Result<(), Failure> {
        let new: Vec<AccountId> = self
            .accounts
            .iter()
            .filter(|(_, row)| row.num.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = new.iter().map(|id| id.as_str().to_owned()).collect();
        let mut columns: [Vec<i64>; 6] = Default::default();
        for id in &new {
            let values = balance_columns(&self.accounts[id].balances);
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
        }
        let rows = self
            .query(
                "INSERT INTO accounts (id, food_available, food_held, meal_available, meal_held,
                                       cash_available, cash_held, created_at_ms)
                 SELECT id, fa, fh, ma, mh, ca, ch, $8
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                               $5::bigint[], $6::bigint[], $7::bigint[])
                        AS n(id, fa, fh, ma, mh, ca, ch)
                 RETURNING id, num",
                &[
                    &ids,
                    &columns[0],
                    &columns[1],
                    &columns[2],
                    &columns[3],
                    &columns[4],
                    &columns[5],
                    &self.now_ms,
                ],
            )
            .await?;
        for row in &rows {
            let id = schema::account_id(row.try_get(0)?).map_err(rows_error_corrupt)?;
            let num: i64 = row.try_get(1)?;
            let account = self
                .accounts
                .get_mut(&id)
                .ok_or_else(|| Failure::invariant(format!("inserted unknown account {id}")))?;
            account.num = Some(num);
            // The row holds its balances; an update writes only the chain head.
            account.base = account.balances;
            account.base_last_entry = None;
            account.dirty = true;
        }
        Ok(())
    }
}

/// Every staged change, as the arrays of the bulk statements.
#[derive(Default)]
struct Writes {
    // accounts: num, six deltas, new chain head, the head read (the guard)
    account_nums: Vec<i64>,
    account_deltas: [Vec<i64>; 6],
    account_heads: Vec<Option<i64>>,
    account_base_heads: Vec<Option<i64>>,
    // entries
    entry_sequences: Vec<i64>,
    entry_accounts: Vec<i64>,
    entry_categories: Vec<String>,
    entry_buckets: Vec<i16>,
    entry_amounts: Vec<i64>,
    entry_causes: Vec<String>,
    entry_references: Vec<String>,
    entry_prevs: Vec<Option<i64>>,
}

impl Writes {
    /// Numbers the entries (`sequences` are enough and sorted), links the chains, and
    /// takes the account changes.
    fn collect(
        tx: &mut PgTx<'_>,
        entries: &[StagedEntry],
        sequences: &[i64],
    ) -> Result<Writes, Failure> {
        let mut writes = Writes::default();
        let mut heads: HashMap<&AccountId, Option<i64>> = HashMap::new();
        for (entry, sequence) in entries.iter().zip(sequences) {
            let row = tx.accounts.get(&entry.account).ok_or_else(|| {
                Failure::invariant(format!("entry for unloaded account {}", entry.account))
            })?;
            let num = row
                .num
                .ok_or_else(|| Failure::invariant("an entry's account has no number"))?;
            let head = heads.entry(&entry.account).or_insert(row.base_last_entry);
            writes.entry_sequences.push(*sequence);
            writes.entry_accounts.push(num);
            writes
                .entry_categories
                .push(entry.category.as_str().to_owned());
            writes.entry_buckets.push(bucket_column(entry.bucket));
            writes.entry_amounts.push(entry.amount.cents());
            writes.entry_causes.push(entry.cause.as_str().to_owned());
            writes.entry_references.push(entry.reference.clone());
            writes.entry_prevs.push(*head);
            *head = Some(*sequence);
        }
        let heads: HashMap<AccountId, Option<i64>> = heads
            .into_iter()
            .map(|(id, head)| (id.clone(), head))
            .collect();
        for (id, row) in &tx.accounts {
            let head = heads.get(id).copied();
            if !row.dirty && head.is_none() {
                continue;
            }
            let num = row
                .num
                .ok_or_else(|| Failure::invariant("a changed account has no number"))?;
            let base = balance_columns(&row.base);
            let now = balance_columns(&row.balances);
            for (column, (now, base)) in writes
                .account_deltas
                .iter_mut()
                .zip(now.into_iter().zip(base))
            {
                column.push(now.checked_sub(base).ok_or_else(|| {
                    Failure::invariant(format!("a balance change of {id} overflows"))
                })?);
            }
            writes.account_nums.push(num);
            writes
                .account_heads
                .push(head.unwrap_or(row.base_last_entry));
            writes.account_base_heads.push(row.base_last_entry);
        }
        // A new account's chain head is written by this update too: its row was
        // inserted without one.
        Ok(writes)
    }

    /// Runs every bulk statement, pipelined, the event head last.
    async fn run(self, tx: &PgTx<'_>) -> Result<(), Failure> {
        let accounts = async {
            if self.account_nums.is_empty() {
                return Ok(());
            }
            let expected = self.account_nums.len() as u64;
            let d = &self.account_deltas;
            let updated = tx
                .execute(
                    "UPDATE accounts AS a
                        SET food_available = a.food_available + d.fa,
                            food_held = a.food_held + d.fh,
                            meal_available = a.meal_available + d.ma,
                            meal_held = a.meal_held + d.mh,
                            cash_available = a.cash_available + d.ca,
                            cash_held = a.cash_held + d.ch,
                            last_entry = d.head
                       FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                   $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                   $9::bigint[])
                            AS d(num, fa, fh, ma, mh, ca, ch, head, base_head)
                      WHERE a.num = d.num
                        AND a.last_entry IS NOT DISTINCT FROM d.base_head
                        AND (substr(a.id, 1, 1) = '@'
                             OR (a.food_available + d.fa >= 0 AND a.meal_available + d.ma >= 0
                                 AND a.cash_available + d.ca >= 0))
                        AND a.food_held + d.fh >= 0 AND a.meal_held + d.mh >= 0
                        AND a.cash_held + d.ch >= 0",
                    &[
                        &self.account_nums,
                        &d[0],
                        &d[1],
                        &d[2],
                        &d[3],
                        &d[4],
                        &d[5],
                        &self.account_heads,
                        &self.account_base_heads,
                    ],
                )
                .await?;
            if updated != expected {
                return Err(Failure::invariant(format!(
                    "{updated} of {expected} guarded balance updates applied"
                )));
            }
            Ok(())
        };
        let entries = async {
            if self.entry_sequences.is_empty() {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO entries (sequence, account, category, bucket, amount_cents, cause,
                                      reference, created_at_ms, prev)
                 SELECT s, a, c, b, m, k, r, $9, p
                   FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::smallint[],
                               $5::bigint[], $6::text[], $7::text[], $8::bigint[])
                        AS e(s, a, c, b, m, k, r, p)",
                &[
                    &self.entry_sequences,
                    &self.entry_accounts,
                    &self.entry_categories,
                    &self.entry_buckets,
                    &self.entry_amounts,
                    &self.entry_causes,
                    &self.entry_references,
                    &self.entry_prevs,
                    &tx.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let rest = tx.write_records();
        pipelined!(_accounts = accounts, _entries = entries, _rest = rest);
        tx.write_events().await
    }
}

impl PgTx<'_> {
    /// Everything but balances, entries and events: one bulk statement per table.
    async fn write_records(&self) -> Result<(), Failure> {
        pipelined!(
            _transactions = self.write_transactions(),
            _deposits = self.write_deposits(),
            _claims = self.write_claims(),
            _holds = self.write_holds(),
            _transfers = self.write_transfers(),
            _withdrawals = self.write_withdrawals(),
            _payments = self.write_payments(),
            _totals = self.write_totals(),
            _merchants = self.write_merchants(),
            _fences = self.write_fences(),
        );
        Ok(())
    }

    /// The fencing tokens recorded by fenced writes, each kept only if it is the largest.
    async fn write_fences(&self) -> Result<(), Failure> {
        if self.new_fences.is_empty() {
            return Ok(());
        }
        let (accounts, tokens): (Vec<&str>, Vec<i64>) = self
            .new_fences
            .iter()
            .map(|(account, token)| (account.as_str(), *token))
            .unzip();
        self.execute(
            "INSERT INTO account_fences (account, token)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (account) DO UPDATE
                SET token = GREATEST(account_fences.token, EXCLUDED.token)",
            &[&accounts, &tokens],
        )
        .await
        .map(|_| ())
    }

    async fn write_transactions(&self) -> Result<(), Failure> {
        if self.new_transactions.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::new();
        let mut ids: Vec<Option<String>> = Vec::new();
        let mut accounts = Vec::new();
        let mut amounts = Vec::new();
        let mut mccs: Vec<i32> = Vec::new();
        let mut merchants = Vec::new();
        let mut codes = Vec::new();
        let mut categories: Vec<Option<String>> = Vec::new();
        for (seq, request, code, category) in &self.new_transactions {
            seqs.push(*seq);
            ids.push(request.id.as_ref().map(|id| id.as_str().to_owned()));
            accounts.push(request.account.as_str().to_owned());
            amounts.push(request.amount.cents());
            mccs.push(i32::from(request.mcc.code()));
            merchants.push(request.merchant.clone());
            codes.push(code.as_str().to_owned());
            categories.push(category.map(|c| c.as_str().to_owned()));
        }
        self.execute(
            "INSERT INTO transactions (seq, client_id, account, amount_cents, mcc, merchant, code,
                                       category, created_at_ms)
             SELECT s, i, a, m, c, n, k, g, $9
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::integer[],
                           $6::text[], $7::text[], $8::text[])
                    AS t(s, i, a, m, c, n, k, g)",
            &[
                &seqs,
                &ids,
                &accounts,
                &amounts,
                &mccs,
                &merchants,
                &codes,
                &categories,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_deposits(&self) -> Result<(), Failure> {
        if self.new_deposits.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.key.as_str().to_owned())
            .collect();
        let accounts: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.account.as_str().to_owned())
            .collect();
        let categories: Vec<String> = self
            .new_deposits
            .iter()
            .map(|d| d.category.as_str().to_owned())
            .collect();
        let amounts: Vec<i64> = self.new_deposits.iter().map(|d| d.amount.cents()).collect();
        let after: Vec<i64> = self
            .new_deposits
            .iter()
            .map(|d| d.available_after.cents())
            .collect();
        self.execute(
            "INSERT INTO deposits (key, account, category, amount_cents, available_after_cents,
                                   created_at_ms)
             SELECT k, a, c, m, v, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                    AS d(k, a, c, m, v)",
            &[
                &keys,
                &accounts,
                &categories,
                &amounts,
                &after,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_claims(&self) -> Result<(), Failure> {
        if self.new_claims.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.key.as_str())
            .collect();
        let fingerprints: Vec<&str> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.fingerprint.as_str())
            .collect();
        let statuses: Vec<i32> = self
            .new_claims
            .iter()
            .map(|(_, r)| i32::from(r.status))
            .collect();
        let bodies: Vec<&[u8]> = self
            .new_claims
            .iter()
            .map(|(_, r)| r.body.as_slice())
            .collect();
        let expires: Vec<Option<i64>> = self
            .new_claims
            .iter()
            .map(|(c, _)| c.expires_at_ms)
            .collect();
        self.execute(
            "INSERT INTO idempotency (key, fingerprint, status, body, created_at_ms, expires_at_ms)
             SELECT k, f, s, b, $6, e
               FROM unnest($1::text[], $2::text[], $3::integer[], $4::bytea[], $5::bigint[])
                    AS i(k, f, s, b, e)",
            &[
                &keys,
                &fingerprints,
                &statuses,
                &bodies,
                &expires,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn write_holds(&self) -> Result<(), Failure> {
        let (new, changed): (Vec<&HoldRow>, Vec<&HoldRow>) = self
            .holds
            .values()
            .flatten()
            .filter(|row| row.new || row.dirty)
            .partition(|row| row.new);
        let insert = async {
            if new.is_empty() {
                return Ok(());
            }
            let view = |row: &&HoldRow| row.stored.view.clone();
            let views: Vec<HoldView> = new.iter().map(view).collect();
            let ids: Vec<&str> = views.iter().map(|v| v.hold.id.as_str()).collect();
            let accounts: Vec<&str> = views.iter().map(|v| v.hold.account.as_str()).collect();
            let categories: Vec<&str> = views.iter().map(|v| v.hold.category.as_str()).collect();
            let amounts: Vec<i64> = views.iter().map(|v| v.hold.amount.cents()).collect();
            let captured: Vec<i64> = views.iter().map(|v| v.hold.captured.cents()).collect();
            let statuses: Vec<&str> = views.iter().map(|v| v.hold.status.as_str()).collect();
            let expires: Vec<Option<i64>> = views.iter().map(|v| v.hold.expires_at_ms).collect();
            let payments: Vec<Option<&str>> = views
                .iter()
                .map(|v| v.payment.as_ref().map(CorrelationId::as_str))
                .collect();
            let fingerprints: Vec<Option<&str>> = new
                .iter()
                .map(|row| row.stored.fingerprint.as_deref())
                .collect();
            let created: Vec<i64> = views.iter().map(|v| v.created_at_ms).collect();
            let updated: Vec<i64> = views.iter().map(|v| v.updated_at_ms).collect();
            self.execute(
                "INSERT INTO holds (id, account, category, amount_cents, captured_cents, status,
                                    expires_at_ms, payment, fingerprint, created_at_ms,
                                    updated_at_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                      $5::bigint[], $6::text[], $7::bigint[], $8::text[],
                                      $9::text[], $10::bigint[], $11::bigint[])",
                &[
                    &ids,
                    &accounts,
                    &categories,
                    &amounts,
                    &captured,
                    &statuses,
                    &expires,
                    &payments,
                    &fingerprints,
                    &created,
                    &updated,
                ],
            )
            .await
            .map(|_| ())
        };
        let update = async {
            if changed.is_empty() {
                return Ok(());
            }
            let ids: Vec<&str> = changed
                .iter()
                .map(|r| r.stored.view.hold.id.as_str())
                .collect();
            let statuses: Vec<&str> = changed
                .iter()
                .map(|r| r.stored.view.hold.status.as_str())
                .collect();
            let captured: Vec<i64> = changed
                .iter()
                .map(|r| r.stored.view.hold.captured.cents())
                .collect();
            let updated_at: Vec<i64> = changed
                .iter()
                .map(|r| r.stored.view.updated_at_ms)
                .collect();
            let updated = self
                .execute(
                    "UPDATE holds AS h SET status = u.s, captured_cents = u.c, updated_at_ms = u.t
                       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                            AS u(id, s, c, t)
                      WHERE h.id = u.id AND h.status = 'active'",
                    &[&ids, &statuses, &captured, &updated_at],
                )
                .await?;
            if updated != changed.len() as u64 {
                return Err(Failure::invariant("a hold changed was no longer active"));
            }
            Ok(())
        };
        pipelined!(_insert = insert, _update = update);
        Ok(())
    }

    async fn write_transfers(&self) -> Result<(), Failure> {
        let insert = async {
            if self.new_transfers.is_empty() {
                return Ok(());
            }
            let t = &self.new_transfers;
            let ids: Vec<&str> = t.iter().map(|(v, _)| v.transfer.id.as_str()).collect();
            let from: Vec<&str> = t.iter().map(|(v, _)| v.transfer.from.as_str()).collect();
            let to: Vec<&str> = t.iter().map(|(v, _)| v.transfer.to.as_str()).collect();
            let categories: Vec<&str> = t
                .iter()
                .map(|(v, _)| v.transfer.category.as_str())
                .collect();
            let amounts: Vec<i64> = t.iter().map(|(v, _)| v.transfer.amount.cents()).collect();
            let descriptions: Vec<Option<&str>> =
                t.iter().map(|(v, _)| v.description.as_deref()).collect();
            let fingerprints: Vec<Option<&str>> = t.iter().map(|(_, f)| f.as_deref()).collect();
            // In acceptance order: `seq` is given in the order of the rows.
            self.execute(
                "INSERT INTO transfers (id, from_account, to_account, category, amount_cents,
                                        description, status, fingerprint, created_at_ms,
                                        updated_at_ms)
                 SELECT i, f, t, c, a, d, 'pending', p, $8, $8
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                               $6::text[], $7::text[]) WITH ORDINALITY AS n(i, f, t, c, a, d, p, o)
                  ORDER BY o",
                &[
                    &ids,
                    &from,
                    &to,
                    &categories,
                    &amounts,
                    &descriptions,
                    &fingerprints,
                    &self.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let settle = async {
            if self.settled_transfers.is_empty() {
                return Ok(());
            }
            let s = &self.settled_transfers;
            let seqs: Vec<i64> = s.iter().map(|(seq, _)| *seq).collect();
            let statuses: Vec<&str> = s.iter().map(|(_, v)| v.status.as_str()).collect();
            let reasons: Vec<Option<&str>> =
                s.iter().map(|(_, v)| transfer_reason(v.status)).collect();
            let updated_at: Vec<i64> = s.iter().map(|(_, v)| v.updated_at_ms).collect();
            let updated = self
                .execute(
                    "UPDATE transfers AS t SET status = u.s, reason = u.r, updated_at_ms = u.m
                       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                            AS u(seq, s, r, m)
                      WHERE t.seq = u.seq AND t.status = 'pending'",
                    &[&seqs, &statuses, &reasons, &updated_at],
                )
                .await?;
            if updated != seqs.len() as u64 {
                return Err(Failure::invariant(
                    "a settled transfer was no longer pending",
                ));
            }
            Ok(())
        };
        // The new transfers' messages, in the same commit (the transactional outbox).
        let announce = async {
            if self.new_transfers.is_empty() || !self.state.outbox {
                return Ok(());
            }
            let ids: Vec<&str> = self
                .new_transfers
                .iter()
                .map(|(v, _)| v.transfer.id.as_str())
                .collect();
            self.announce(payd_ports::TRANSFERS_QUEUE, &ids).await
        };
        pipelined!(_insert = insert, _settle = settle, _announce = announce);
        Ok(())
    }

    /// Writes one outbox message to `queue` per id (the body), in the order of `ids`.
    async fn announce(&self, queue: &str, ids: &[&str]) -> Result<(), Failure> {
        self.execute(
            "INSERT INTO outbox (queue, body, created_ms)
             SELECT $1, i, $3 FROM unnest($2::text[]) WITH ORDINALITY AS x(i, o) ORDER BY o",
            &[&queue, &ids, &self.now_ms],
        )
        .await
        .map(|_| ())
    }

    async fn write_withdrawals(&self) -> Result<(), Failure> {
        if self.withdrawals.is_empty() {
            return Ok(());
        }
        let w = &self.withdrawals;
        let ids: Vec<&str> = w.iter().map(|r| r.id.as_str()).collect();
        let accounts: Vec<&str> = w.iter().map(|r| r.account.as_str()).collect();
        let categories: Vec<&str> = w.iter().map(|r| r.category.as_str()).collect();
        let amounts: Vec<i64> = w.iter().map(|r| r.amount.cents()).collect();
        let after: Vec<i64> = w.iter().map(|r| r.available_after.cents()).collect();
        self.execute(
            "INSERT INTO withdrawals (id, account, category, amount_cents, available_after_cents,
                                      created_at_ms)
             SELECT i, a, c, m, v, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                    AS w(i, a, c, m, v)",
            &[&ids, &accounts, &categories, &amounts, &after, &self.now_ms],
        )
        .await?;
        Ok(())
    }

    async fn write_payments(&self) -> Result<(), Failure> {
        let (new, changed): (Vec<&PaymentRow>, Vec<&PaymentRow>) = self
            .payments
            .values()
            .flatten()
            .filter(|row| row.new || row.dirty)
            .partition(|row| row.new);
        let owner = self.state.instance.as_str();
        let columns = |rows: &[&PaymentRow]| {
            let mut c = PaymentColumns::default();
            for row in rows {
                let r = &row.record;
                let (status, processor, due, sent, unknown) = state_columns(&r.state);
                c.ids.push(r.id.as_str().to_owned());
                c.statuses.push(status);
                c.processors.push(processor);
                c.dues.push(due);
                c.sents.push(sent);
                c.unknowns.push(unknown);
                c.owners
                    .push(matches!(r.state, PaymentState::Processing { .. }).then_some(owner));
                c.versions
                    .push(i64::try_from(r.version).unwrap_or(i64::MAX));
                c.base_versions
                    .push(i64::try_from(row.base_version).unwrap_or(i64::MAX));
                // Added by an update; the whole count by an insert.
                let attempts = if row.new {
                    r.attempts
                } else {
                    row.attempts_added
                };
                c.attempts.push(i32::try_from(attempts).unwrap_or(i32::MAX));
                c.amounts.push(r.amount.cents());
                c.requested.push(r.requested_at_ms);
                c.holds.push(r.hold.as_ref().map(|h| h.as_str().to_owned()));
            }
            c
        };
        let insert = async {
            if new.is_empty() {
                return Ok(());
            }
            let c = columns(&new);
            self.execute(
                "INSERT INTO payments (id, amount_cents, requested_at_ms, status, processor, due_ms,
                                       sent_ms, unknown_since_ms, hold, version, attempts,
                                       lease_owner, created_at_ms, updated_at_ms)
                 SELECT i, a, r, s, p, d, t, u, h, v, k, o, $13, $13
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                               $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[],
                               $11::integer[], $12::text[])
                        AS x(i, a, r, s, p, d, t, u, h, v, k, o)",
                &[
                    &c.ids,
                    &c.amounts,
                    &c.requested,
                    &c.statuses,
                    &c.processors,
                    &c.dues,
                    &c.sents,
                    &c.unknowns,
                    &c.holds,
                    &c.versions,
                    &c.attempts,
                    &c.owners,
                    &self.now_ms,
                ],
            )
            .await
            .map(|_| ())
        };
        let update = async {
            if changed.is_empty() {
                return Ok(());
            }
            let c = columns(&changed);
            let updated = self
                .execute(
                    "UPDATE payments AS p
                        SET status = u.s, processor = u.p, due_ms = u.d, sent_ms = u.t,
                            unknown_since_ms = u.n, attempts = p.attempts + u.a,
                            version = u.v, lease_owner = u.o, updated_at_ms = $11
                       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                   $5::bigint[], $6::bigint[], $7::integer[], $8::bigint[],
                                   $9::bigint[], $10::text[])
                            AS u(id, s, p, d, t, n, a, v, b, o)
                      WHERE p.id = u.id AND p.version = u.b",
                    &[
                        &c.ids,
                        &c.statuses,
                        &c.processors,
                        &c.dues,
                        &c.sents,
                        &c.unknowns,
                        &c.attempts,
                        &c.versions,
                        &c.base_versions,
                        &c.owners,
                        &self.now_ms,
                    ],
                )
                .await?;
            if updated != changed.len() as u64 {
                return Err(Failure::invariant("a payment moved during its transition"));
            }
            Ok(())
        };
        // The new payments' messages, in the same commit (the transactional outbox).
        let announce = async {
            if new.is_empty() || !self.state.outbox {
                return Ok(());
            }
            let ids: Vec<&str> = new.iter().map(|row| row.record.id.as_str()).collect();
            self.announce(payd_ports::PAYMENTS_QUEUE, &ids).await
        };
        pipelined!(_insert = insert, _update = update, _announce = announce);
        Ok(())
    }

    async fn write_totals(&self) -> Result<(), Failure> {
        if self.totals.is_empty() {
            return Ok(());
        }
        let mut processors = Vec::new();
        let mut seconds = Vec::new();
        let mut requests = Vec::new();
        let mut amounts = Vec::new();
        // In one order (the rows' key), like every other lock: two processes' writers of
        // the same slot share these rows, and opposite orders could deadlock them.
        let mut totals: Vec<_> = self.totals.iter().collect();
        totals.sort_unstable_by_key(|(key, _)| **key);
        for ((processor, second), (count, cents)) in totals {
            processors.push(processor.as_str());
            seconds.push(*second);
            requests.push(*count);
            amounts.push(*cents);
        }
        self.execute(
            "INSERT INTO payment_totals (processor, second, shard, requests, amount_cents)
             SELECT p, s, $5, r, a FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                    WITH ORDINALITY AS t(p, s, r, a, n)
              ORDER BY n
             ON CONFLICT (processor, second, shard) DO UPDATE
                SET requests = payment_totals.requests + excluded.requests,
                    amount_cents = payment_totals.amount_cents + excluded.amount_cents",
            &[&processors, &seconds, &requests, &amounts, &self.state.slot],
        )
        .await?;
        Ok(())
    }

    async fn write_merchants(&self) -> Result<(), Failure> {
        if !self.merchants_changed {
            return Ok(());
        }
        // In order: a put and a delete of the same pattern in one batch apply as sent.
        for (pattern, category) in &self.merchant_ops {
            match category {
                Some(category) => {
                    self.execute(
                        "INSERT INTO merchants (pattern, category) VALUES ($1, $2)
                         ON CONFLICT (pattern) DO UPDATE SET category = excluded.category",
                        &[pattern, category],
                    )
                    .await?;
                }
                None => {
                    self.execute("DELETE FROM merchants WHERE pattern = $1", &[pattern])
                        .await?;
                }
            }
        }
        self.execute("UPDATE merchant_version SET version = version + 1", &[])
            .await?;
        Ok(())
    }

    /// The batch's events, numbered from the event head, which stays locked until COMMIT:
    /// so sequences are given out in commit order. The last statement before COMMIT, so
    /// the lock is held as briefly as can be.
    async fn write_events(&self) -> Result<(), Failure> {
        if self.events.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = self.events.iter().map(|(k, _, _)| k.as_str()).collect();
        let subjects: Vec<&str> = self.events.iter().map(|(_, s, _)| s.as_str()).collect();
        let payloads: Vec<&str> = self.events.iter().map(|(_, _, p)| p.as_str()).collect();
        let count = i64::try_from(self.events.len()).unwrap_or(i64::MAX);
        self.execute(
            "WITH head AS (UPDATE event_head SET seq = seq + $4 RETURNING seq - $4 AS base)
             INSERT INTO events (seq, kind, subject, payload, created_at_ms)
             SELECT head.base + e.o, e.k, e.s, e.p, $5
               FROM head, unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(k, s, p, o)",
            &[&kinds, &subjects, &payloads, &count, &self.now_ms],
        )
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct PaymentColumns<'a> {
    ids: Vec<String>,
    statuses: Vec<&'static str>,
    processors: Vec<Option<&'static str>>,
    dues: Vec<Option<i64>>,
    sents: Vec<Option<i64>>,
    unknowns: Vec<Option<i64>>,
    owners: Vec<Option<&'a str>>,
    versions: Vec<i64>,
    base_versions: Vec<i64>,
    attempts: Vec<i32>,
    amounts: Vec<i64>,
    requested: Vec<i64>,
    holds: Vec<Option<String>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

    use payd_domain::{Amount, Balances, Bucket, Category, EntryCause, MccMap};

    use super::*;
    use crate::tx::{AccountRow, StagedEntry, WriterState};

    /// Goal: an entry never chains to a newer head than its own number (the `prev <
    /// sequence` CHECK would fail the batch). Method: numbers reserved before a lock was
    /// granted, older than the head the account's row shows; numbering must take new ones.
    #[tokio::test]
    async fn entry_numbers_older_than_a_locked_chain_head_are_taken_again() {
        let Some(database) =
            payd_pgtest::TestDatabase::create("entry_numbers_older_than_a_chain_head").await
        else {
            return;
        };
        crate::migrate(database.url(), 0).await.unwrap();
        let pool = crate::connect_pool(database.url(), 1, "").unwrap();
        let mut client = pool.get().await.unwrap();
        client
            .execute("SELECT setval('entries_sequence', 1000)", &[])
            .await
            .unwrap();
        let transaction = client.transaction().await.unwrap();
        let mut state = WriterState::new(MccMap::default(), 0, "test".to_owned(), false);
        let mut tx = PgTx::new(transaction, &mut state, 0);
        let account = AccountId::parse("chained").unwrap();
        // Another process committed entry 500 on the account after this batch reserved 3.
        tx.accounts.insert(
            account.clone(),
            AccountRow::loaded(1, Balances::default(), Some(500)),
        );
        tx.entries.push(StagedEntry {
            account,
            category: Category::Cash,
            bucket: Bucket::Available,
            amount: Amount::from_cents(100),
            cause: EntryCause::Deposit,
            reference: "d-1".to_owned(),
        });
        tx.sequences = vec![3];
        tx.number_entries().await.unwrap();
        assert!(tx.sequences[0] > 500, "{:?}", tx.sequences);
    }
}
