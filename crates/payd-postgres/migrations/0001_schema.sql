-- payd on PostgreSQL, version 1: the whole schema. All money is BIGINT cents. Applied once,
-- inside one transaction, under an advisory lock (src/schema.rs), which then records
-- version 1 in schema_migrations.
--
-- The tables mirror the embedded store's (payd-sqlite/migrations), so that the audit's
-- checks (payd_ledger::audit) read both with the same SQL. What differs is what many
-- processes sharing one database need:
-- - the system account is split into shard rows (`accounts.shard`), so that batches of
--   different processes, which all move money to or from the outside world, never wait on
--   one row;
-- - the journal has an index per account (`entries_by_account`) for its pages, beside the
--   per-account chain (`prev`, `last_entry`) that the audit checks;
-- - events get their sequence at commit, from `event_head`, so that `seq` grows in commit
--   order across processes (the webhook cursors and `GET /events` rely on it);
-- - the merchant table has a version, so each process knows when to reload it;
-- - requests in flight are claimed in `request_claims`;
-- - a payment in flight records its lease's owner.

CREATE TABLE accounts (
    num             BIGSERIAL PRIMARY KEY,
    id              TEXT     NOT NULL,
    -- 0 for customer accounts; 0..N for the rows of a system account.
    shard           SMALLINT NOT NULL DEFAULT 0,
    food_available  BIGINT   NOT NULL DEFAULT 0,
    food_held       BIGINT   NOT NULL DEFAULT 0 CHECK (food_held >= 0),
    meal_available  BIGINT   NOT NULL DEFAULT 0,
    meal_held       BIGINT   NOT NULL DEFAULT 0 CHECK (meal_held >= 0),
    cash_available  BIGINT   NOT NULL DEFAULT 0,
    cash_held       BIGINT   NOT NULL DEFAULT 0 CHECK (cash_held >= 0),
    last_entry      BIGINT,
    created_at_ms   BIGINT   NOT NULL,
    UNIQUE (id, shard),
    CHECK (shard = 0 OR substr(id, 1, 1) = '@'),
    -- The backstop of every guarded balance update: no customer balance goes negative.
    CHECK (substr(id, 1, 1) = '@'
           OR (food_available >= 0 AND meal_available >= 0 AND cash_available >= 0))
);

CREATE TABLE transactions (
    seq             BIGINT   PRIMARY KEY,
    client_id       TEXT     UNIQUE,
    account         TEXT     NOT NULL,
    amount_cents    BIGINT   NOT NULL CHECK (amount_cents > 0),
    mcc             INTEGER  NOT NULL CHECK (mcc BETWEEN 0 AND 9999),
    merchant        TEXT     NOT NULL,
    code            TEXT     NOT NULL CHECK (code IN ('00', '51')),
    category        TEXT     CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    created_at_ms   BIGINT   NOT NULL,
    CHECK ((code = '00') = (category IS NOT NULL))
);
-- Numbers for `transactions.seq`, taken in blocks by each writer (gaps are fine).
CREATE SEQUENCE transactions_seq INCREMENT BY 1000;

CREATE TABLE deposits (
    key                     TEXT   PRIMARY KEY,
    account                 TEXT   NOT NULL,
    category                TEXT   NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    amount_cents            BIGINT NOT NULL CHECK (amount_cents > 0),
    available_after_cents   BIGINT NOT NULL,
    created_at_ms           BIGINT NOT NULL
);

-- The double-entry journal. `sequence` comes from `entries_sequence` when the batch that
-- writes the entry flushes, after it has locked the entry's account: so an account's
-- entries are numbered in the order they were written, whichever process wrote them.
CREATE TABLE entries (
    sequence        BIGINT   PRIMARY KEY,
    account         BIGINT   NOT NULL,
    category        TEXT     NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    bucket          SMALLINT NOT NULL CHECK (bucket IN (0, 1)),
    amount_cents    BIGINT   NOT NULL CHECK (amount_cents <> 0),
    cause           TEXT     NOT NULL CHECK (cause IN ('opening', 'deposit', 'transaction',
                                                       'withdrawal', 'hold', 'capture', 'void',
                                                       'expiry', 'transfer', 'payment')),
    reference       TEXT     NOT NULL,
    created_at_ms   BIGINT   NOT NULL,
    prev            BIGINT   CHECK (prev < sequence)
);
CREATE SEQUENCE entries_sequence;
CREATE INDEX entries_by_account ON entries (account, sequence);

CREATE TABLE merchants (
    pattern         TEXT PRIMARY KEY,
    category        TEXT NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH'))
);
-- Bumped by every change of `merchants`: a process reloads its copy when it moves.
CREATE TABLE merchant_version (
    one             BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version         BIGINT  NOT NULL
);
INSERT INTO merchant_version (version) VALUES (0);

-- The gateway: one row per payment is both the record and the queue entry.
CREATE TABLE payments (
    id               TEXT    PRIMARY KEY,
    amount_cents     BIGINT  NOT NULL CHECK (amount_cents > 0),
    requested_at_ms  BIGINT  NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'processing', 'unknown',
                                                        'booked', 'failed')),
    processor        TEXT    CHECK (processor IN ('default', 'fallback')),
    due_ms           BIGINT,
    sent_ms          BIGINT,
    unknown_since_ms BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    version          BIGINT  NOT NULL DEFAULT 0,
    hold             TEXT,
    -- The instance whose lease this is while `processing`.
    lease_owner      TEXT,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL
);
CREATE INDEX payments_bound_due ON payments (due_ms)
    WHERE status = 'processing' OR status = 'unknown';
CREATE INDEX payments_queued_due ON payments (due_ms) WHERE status = 'queued';
CREATE INDEX payments_in_flight ON payments (lease_owner) WHERE status = 'processing';
CREATE INDEX payments_booked_at ON payments (requested_at_ms, processor, amount_cents)
    WHERE status = 'booked';

-- Booked totals per processor and second of `requestedAt`. `shard` is the writer's slot:
-- two processes booking in the same second write different rows, never waiting on each
-- other; the summary adds them up.
CREATE TABLE payment_totals (
    processor     TEXT     NOT NULL,
    second        BIGINT   NOT NULL,
    shard         SMALLINT NOT NULL,
    requests      BIGINT   NOT NULL,
    amount_cents  BIGINT   NOT NULL,
    PRIMARY KEY (processor, second, shard)
);

CREATE TABLE holds (
    id              TEXT   PRIMARY KEY,
    account         TEXT   NOT NULL,
    category        TEXT   NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
    captured_cents  BIGINT NOT NULL DEFAULT 0
                    CHECK (captured_cents >= 0 AND captured_cents <= amount_cents),
    status          TEXT   NOT NULL CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    expires_at_ms   BIGINT,
    payment         TEXT,
    fingerprint     TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    CHECK ((status = 'captured') = (captured_cents > 0))
);
CREATE INDEX holds_expiring ON holds (expires_at_ms)
    WHERE status = 'active' AND expires_at_ms IS NOT NULL;

-- Transfers, settled in `seq` order per account. The two indexes on pending transfers by
-- account let a settler see whether an earlier pending transfer of an account exists.
CREATE TABLE transfers (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT   NOT NULL UNIQUE,
    from_account    TEXT   NOT NULL,
    to_account      TEXT   NOT NULL,
    category        TEXT   NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
    description     TEXT,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'completed', 'rejected')),
    reason          TEXT,
    fingerprint     TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    CHECK (from_account <> to_account),
    CHECK ((status = 'rejected') = (reason IS NOT NULL))
);
CREATE INDEX transfers_pending ON transfers (seq) WHERE status = 'pending';
CREATE INDEX transfers_pending_from ON transfers (from_account, seq) WHERE status = 'pending';
CREATE INDEX transfers_pending_to ON transfers (to_account, seq) WHERE status = 'pending';

CREATE TABLE withdrawals (
    id                      TEXT   PRIMARY KEY,
    account                 TEXT   NOT NULL,
    category                TEXT   NOT NULL CHECK (category IN ('FOOD', 'MEAL', 'CASH')),
    amount_cents            BIGINT NOT NULL CHECK (amount_cents > 0),
    available_after_cents   BIGINT NOT NULL,
    created_at_ms           BIGINT NOT NULL
);

CREATE TABLE idempotency (
    key             TEXT    PRIMARY KEY,
    fingerprint     TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    body            BYTEA   NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    expires_at_ms   BIGINT
);
CREATE INDEX idempotency_expiring ON idempotency (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

-- Requests in flight, by idempotency key, across processes. A claim is held from the
-- request's arrival to its answer; one left behind by a crash expires.
CREATE TABLE request_claims (
    key             TEXT   PRIMARY KEY,
    owner           TEXT   NOT NULL,
    expires_at_ms   BIGINT NOT NULL
);

-- The outbox. `seq` is `event_head.seq` plus the event's position in its batch, taken at
-- the end of the batch's transaction under the head row's lock, which is held until
-- COMMIT: so sequences are given out in commit order, and a reader that sees event N has
-- seen every event before it.
CREATE TABLE events (
    seq             BIGINT PRIMARY KEY,
    kind            TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
CREATE TABLE event_head (
    one             BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq             BIGINT  NOT NULL
);
INSERT INTO event_head (seq) VALUES (0);

CREATE TABLE webhooks (
    id              TEXT   PRIMARY KEY,
    url             TEXT   NOT NULL,
    secret          TEXT   NOT NULL,
    start_seq       BIGINT NOT NULL,
    cursor          BIGINT NOT NULL CHECK (cursor >= start_seq),
    created_at_ms   BIGINT NOT NULL,
    deleted_at_ms   BIGINT
);

CREATE TABLE webhook_deliveries (
    webhook         TEXT    NOT NULL,
    event_seq       BIGINT  NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    scheduled_at_ms BIGINT  NOT NULL,
    updated_at_ms   BIGINT  NOT NULL,
    delivered_at_ms BIGINT,
    PRIMARY KEY (webhook, event_seq),
    CHECK ((status = 'pending') = (next_attempt_ms IS NOT NULL)),
    CHECK ((status = 'delivered') = (delivered_at_ms IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    seq             BIGSERIAL PRIMARY KEY,
    webhook         TEXT    NOT NULL,
    event_seq       BIGINT  NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    at_ms           BIGINT  NOT NULL,
    duration_ms     BIGINT  NOT NULL CHECK (duration_ms >= 0),
    http_status     INTEGER,
    error           TEXT,
    result          TEXT    NOT NULL CHECK (result IN ('delivered', 'retrying', 'gave_up'))
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook, seq);

-- The system account's shard rows and the default merchant table are inserted by the Rust
-- side of this migration (src/schema.rs), from payd_domain, so that their values have one
-- source.
