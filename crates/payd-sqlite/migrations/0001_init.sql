-- payd ledger, version 1. All money is INTEGER cents. Applied once, inside one transaction,
-- by src/schema.rs, which then records version 1 in schema_migrations.
--
-- CHECKs on closed sets are written as OR-ed equalities, not `IN (...)`: SQLite evaluates an
-- IN list of three or more values by building a temporary index on every insert, which was
-- a measurable share of the writer's time.

-- One row per account, balances denormalized per category so that a decision reads one row.
-- System accounts ('@...') stand for the outside world and may go negative.
-- `num` (the rowid) is the key the writer updates by and the journal refers to: an integer
-- B-tree search instead of string compares on every balance write and on both journal
-- index inserts of a movement, and journal index entries half the size (ids are text).
CREATE TABLE accounts (
    num             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    food_available  INTEGER NOT NULL DEFAULT 0,
    food_held       INTEGER NOT NULL DEFAULT 0 CHECK (food_held >= 0),
    meal_available  INTEGER NOT NULL DEFAULT 0,
    meal_held       INTEGER NOT NULL DEFAULT 0 CHECK (meal_held >= 0),
    cash_available  INTEGER NOT NULL DEFAULT 0,
    cash_held       INTEGER NOT NULL DEFAULT 0 CHECK (cash_held >= 0),
    created_at_ms   INTEGER NOT NULL,
    CHECK (substr(id, 1, 1) = '@'
           OR (food_available >= 0 AND meal_available >= 0 AND cash_available >= 0))
);

-- Decided card transactions (approved '00' and declined '51'); client_id is the idempotency
-- key (NULL for id-less requests, which are never replayed).
CREATE TABLE transactions (
    seq             INTEGER PRIMARY KEY,
    client_id       TEXT    UNIQUE,
    account         TEXT    NOT NULL,
    amount_cents    INTEGER NOT NULL CHECK (amount_cents > 0),
    mcc             INTEGER NOT NULL CHECK (mcc BETWEEN 0 AND 9999),
    merchant        TEXT    NOT NULL,
    code            TEXT    NOT NULL CHECK (code = '00' OR code = '51'),
    category        TEXT    CHECK (category = 'FOOD' OR category = 'MEAL' OR category = 'CASH'),
    created_at_ms   INTEGER NOT NULL,
    CHECK ((code = '00') = (category IS NOT NULL))
);

-- Credited deposits by idempotency key; a replay returns this row as the receipt.
CREATE TABLE deposits (
    key                     TEXT    PRIMARY KEY NOT NULL,
    account                 TEXT    NOT NULL,
    category                TEXT    NOT NULL CHECK (category = 'FOOD' OR category = 'MEAL' OR category = 'CASH'),
    amount_cents            INTEGER NOT NULL CHECK (amount_cents > 0),
    available_after_cents   INTEGER NOT NULL,
    created_at_ms           INTEGER NOT NULL
) WITHOUT ROWID;

-- The double-entry journal: every movement is two rows summing to zero. `account` is
-- accounts.num; read per account newest first through entries_by_account.
CREATE TABLE entries (
    sequence        INTEGER PRIMARY KEY,
    account         INTEGER NOT NULL,
    category        TEXT    NOT NULL CHECK (category = 'FOOD' OR category = 'MEAL' OR category = 'CASH'),
    amount_cents    INTEGER NOT NULL CHECK (amount_cents <> 0),
    cause           TEXT    NOT NULL CHECK (cause = 'opening' OR cause = 'deposit' OR cause = 'transaction'),
    reference       TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX entries_by_account ON entries (account, sequence);

-- Merchant overrides (L3); pattern is the normalized text, with a trailing '*' for prefixes.
CREATE TABLE merchants (
    pattern         TEXT    PRIMARY KEY NOT NULL,
    category        TEXT    NOT NULL CHECK (category = 'FOOD' OR category = 'MEAL' OR category = 'CASH')
) WITHOUT ROWID;

-- The system account and the default merchant table are inserted by the Rust side of this
-- migration (schema.rs), from payd_domain, so that their values have one source.
