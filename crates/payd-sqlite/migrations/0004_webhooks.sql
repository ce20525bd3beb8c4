-- Webhooks: registered endpoints, one delivery per (webhook, event), and the attempt log.

-- A registered endpoint. `cursor` is the last outbox event already scheduled for it: the
-- deliverer schedules `events.seq > cursor` without scanning older events. It starts at
-- `start_seq`, the newest event at registration, so a webhook receives only events created
-- after it was registered. This relies on the outbox being append-only with `seq` growing
-- in commit order (one writer; events are never deleted). Deleted webhooks are kept, with
-- `deleted_at_ms`, so that an id is never reused. The secret is kept in clear: it is the
-- HMAC key of every signature.
CREATE TABLE webhooks (
    id              TEXT    PRIMARY KEY NOT NULL,
    url             TEXT    NOT NULL,
    secret          TEXT    NOT NULL,
    start_seq       INTEGER NOT NULL,
    cursor          INTEGER NOT NULL CHECK (cursor >= start_seq),
    created_at_ms   INTEGER NOT NULL,
    deleted_at_ms   INTEGER
) WITHOUT ROWID;

-- One event for one webhook. `attempts` counts attempts started (a lease bumps it and
-- pushes `next_attempt_ms` past the call's timeout, so a deliverer that dies mid-call
-- leaves the delivery due again). Pending ones are found through `webhook_deliveries_due`.
CREATE TABLE webhook_deliveries (
    webhook         TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status = 'pending' OR status = 'delivered'
                                            OR status = 'failed' OR status = 'cancelled'),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    scheduled_at_ms INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    PRIMARY KEY (webhook, event_seq),
    CHECK ((status = 'pending') = (next_attempt_ms IS NOT NULL)),
    CHECK ((status = 'delivered') = (delivered_at_ms IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE status = 'pending';

-- Every attempt, as it ended. `result`: what it meant for the delivery.
CREATE TABLE webhook_attempts (
    seq             INTEGER PRIMARY KEY,
    webhook         TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    at_ms           INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL CHECK (duration_ms >= 0),
    http_status     INTEGER,
    error           TEXT,
    result          TEXT    NOT NULL CHECK (result = 'delivered' OR result = 'retrying'
                                            OR result = 'gave_up')
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook, seq);
