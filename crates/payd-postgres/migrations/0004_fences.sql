-- Fencing tokens (payd_domain::fence) of the transfer pipeline's account locks: per
-- account, the largest token a fenced write carried; a write with an older one is refused.
-- Written in the same commit as the write it fences, after the account's row lock.
CREATE TABLE account_fences (
    account  TEXT   PRIMARY KEY,
    token    BIGINT NOT NULL
);
