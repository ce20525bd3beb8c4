-- The summary's edge reads without table lookups.
--
-- A summary reads whole seconds from `payment_totals` and the booked payments of its two
-- partial seconds from `payments_booked_at`. That index held only `requested_at_ms` (and the
-- key, `id`), so each of those payments (up to one second's worth per edge, 600 at the
-- gateway benchmark's peak) cost a lookup of its row by `id`: a random UUID, so a random
-- leaf of `payments` each. Under load every read also starts with a cold page cache (a
-- reader drops its cache when the WAL has changed), so those leaves were read again every
-- time: the summary took 0.25 ms idle and 1.1 ms (p50) under 600 payments/s. With
-- `processor` and `amount_cents` in the index, the edges are read from the index alone.
DROP INDEX payments_booked_at;
CREATE INDEX payments_booked_at ON payments (requested_at_ms, processor, amount_cents)
    WHERE status = 'booked';
