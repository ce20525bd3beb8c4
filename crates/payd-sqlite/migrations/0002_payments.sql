-- The payment gateway: accepted payments, their work queue, and booked totals.
--
-- One row per payment is both the record and the queue entry: "accepted" and "queued" are
-- the same atomic insert. `due_ms` is when the payment next needs attention (NULL once
-- final); two partial indexes let workers read bound payments (processing, unknown) before
-- queued ones without scanning either. `version` is the compare-and-set token of every
-- state change.
CREATE TABLE payments (
    id               TEXT PRIMARY KEY,
    amount_cents     INTEGER NOT NULL CHECK (amount_cents > 0),
    requested_at_ms  INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status = 'queued' OR status = 'processing'
                                          OR status = 'unknown' OR status = 'booked'
                                          OR status = 'failed'),
    processor        TEXT CHECK (processor IS NULL OR processor = 'default' OR processor = 'fallback'),
    due_ms           INTEGER,
    sent_ms          INTEGER,
    unknown_since_ms INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX payments_bound_due ON payments (due_ms)
    WHERE status = 'processing' OR status = 'unknown';
CREATE INDEX payments_queued_due ON payments (due_ms) WHERE status = 'queued';
CREATE INDEX payments_booked_at ON payments (requested_at_ms) WHERE status = 'booked';

-- Booked totals per processor and second of `requestedAt`, maintained in the same commit as
-- each booking, so a summary reads whole seconds from here and only the partial seconds at
-- its two edges from `payments`: a few ms whatever the volume.
CREATE TABLE payment_totals (
    processor     TEXT NOT NULL,
    second        INTEGER NOT NULL,
    requests      INTEGER NOT NULL,
    amount_cents  INTEGER NOT NULL,
    PRIMARY KEY (processor, second)
) WITHOUT ROWID;
