-- The audit record of each write, committed in the write's own transaction: the write and its
-- record are durable together, with one fsync. The audit trail chains them right after the commit
-- and they are deleted once it holds them; after a crash it takes the rows left here.
CREATE TABLE audit_outbox (
  id     INTEGER PRIMARY KEY,
  record BLOB    NOT NULL
);
