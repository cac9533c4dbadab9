-- Several gateways on one database (PostgreSQL; a SQLite database serves one gateway, and keeps
-- the same columns so that `passerelle db copy` moves them unchanged).
-- A delivery is claimed by one gateway for a while (a lease): the others skip it while the lease
-- runs, and take it over when it has run out (its gateway stopped or crashed before sending it).
ALTER TABLE message_outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE message_outbox ADD COLUMN lease_until INTEGER;
-- The gateway that committed each audit record: each deletes its own once the trail holds them.
ALTER TABLE audit_outbox ADD COLUMN owner TEXT;
-- Scheduled work that one gateway does for all: claimed for a time (a periodic job) or for good
-- once done (a one-time job such as a period's extract).
CREATE TABLE job_claim (
  name     TEXT    PRIMARY KEY,
  started  INTEGER NOT NULL,
  owner    TEXT    NOT NULL,
  done     INTEGER NOT NULL DEFAULT 0
);
