-- The transactional outbox (payd_ports::OutboxStore): a message for the work transport,
-- written in the same commit as the work it announces (a payment accepted), and deleted
-- by a relay in the commit that follows the broker's confirm. Rows are taken oldest first.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    queue       TEXT      NOT NULL CHECK (queue <> ''),
    body        TEXT      NOT NULL,
    created_ms  BIGINT    NOT NULL
);
