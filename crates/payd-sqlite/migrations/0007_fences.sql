-- Fencing tokens (payd_domain::fence) of account locks held across processes: per account,
-- the largest token a fenced write carried; a write with an older one is refused. The
-- embedded store has one writer and needs no locks, but keeps the same rule, so that a
-- fenced settle behaves the same on both stores.
CREATE TABLE account_fences (
    account  TEXT    PRIMARY KEY,
    token    INTEGER NOT NULL
) WITHOUT ROWID;

-- Earlier pending transfers of an account (a fenced settle waits for them).
CREATE INDEX transfers_pending_from ON transfers (from_account, seq) WHERE status = 'pending';
CREATE INDEX transfers_pending_to ON transfers (to_account, seq) WHERE status = 'pending';
