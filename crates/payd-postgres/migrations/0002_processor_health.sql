-- The processors' health, shared by every payd process on this database (payd_ports::
-- HealthBoard): per processor, the poller's lease (who calls the health endpoint, until
-- when, on the database's clock) and the last report it published.
CREATE TABLE processor_health (
    processor        TEXT    PRIMARY KEY CHECK (processor IN ('default', 'fallback')),
    leader           TEXT    NOT NULL,
    lease_until_ms   BIGINT  NOT NULL,
    failing          BOOLEAN,
    min_response_ms  BIGINT  CHECK (min_response_ms >= 0),
    polled_at_ms     BIGINT,
    CHECK ((failing IS NULL) = (polled_at_ms IS NULL)
           AND (failing IS NULL) = (min_response_ms IS NULL))
);
