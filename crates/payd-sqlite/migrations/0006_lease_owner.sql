-- The owner of a payment's lease: the instance (`payd serve --instance-id`, or the id a
-- process draws at start) that dispatched it while it is `processing`, NULL otherwise.
-- On this store one process owns the database, so a restart takes over every lease at
-- once; the column says who held one, for operators and for the audit of a store that was
-- shared (see payd-postgres, where only the same instance takes over before expiry).
ALTER TABLE payments ADD COLUMN lease_owner TEXT;
