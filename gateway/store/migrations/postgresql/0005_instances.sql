-- Several gateways on one database.
-- A delivery is claimed by one gateway for a while (a lease): the others skip it while the lease
-- runs, and take it over when it has run out (its gateway stopped or crashed before sending it).
ALTER TABLE message_outbox ADD COLUMN lease_owner text COLLATE "C";
ALTER TABLE message_outbox ADD COLUMN lease_until bigint;
-- The gateway that committed each audit record: each deletes its own once the trail holds them
-- (another's may not be chained yet).
ALTER TABLE audit_outbox ADD COLUMN owner text COLLATE "C";
-- Scheduled work that one gateway does for all: claimed for a time (a periodic job) or for good
-- once done (a one-time job such as a period's extract).
CREATE TABLE job_claim (
  name     text    COLLATE "C" PRIMARY KEY,
  started  bigint  NOT NULL,               -- ms since the epoch
  owner    text    COLLATE "C" NOT NULL,   -- the gateway that claimed it
  done     integer NOT NULL DEFAULT 0
);
