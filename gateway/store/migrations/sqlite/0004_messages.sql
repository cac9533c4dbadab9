-- The connectors' message store. The inbox keeps every message received (accepted or not, for
-- review) with the acknowledgement it got: a message taken in (processed, or kept for review) and
-- sent again gets the same answer and is not processed twice; one refused may be sent again (its
-- sender fixed something) and is then processed anew. The outbox keeps a delivery per message and destination, written in the same
-- transaction as the change that caused it, until it is sent, cancelled or given up (dead letter).
CREATE TABLE message_inbox (
  id          INTEGER PRIMARY KEY,
  channel     TEXT    NOT NULL,            -- mllp, file, rest
  partner     TEXT    NOT NULL,            -- the sending partner's account
  control_id  TEXT    NOT NULL,            -- MSH-10, or a document's identifier
  type        TEXT    NOT NULL,            -- ADT^A01, MDM^T02...
  received    INTEGER NOT NULL,            -- ms since the epoch
  status      TEXT    NOT NULL,            -- processed | error | rejected | review
  ack_code    TEXT    NOT NULL,            -- AA AE AR (CA CE CR)
  patient     TEXT,                        -- Patient/<id> once known
  detail      TEXT,                        -- what went wrong, for review
  message     BLOB    NOT NULL,            -- as received
  ack         BLOB    NOT NULL             -- the acknowledgement sent
);
CREATE UNIQUE INDEX message_inbox_taken ON message_inbox (partner, control_id) WHERE status IN ('processed', 'review');
CREATE INDEX message_inbox_control ON message_inbox (partner, control_id, id);
CREATE INDEX message_inbox_status ON message_inbox (status, id);

CREATE TABLE message_outbox (
  id          INTEGER PRIMARY KEY,
  destination TEXT    NOT NULL,            -- the partner it goes to
  order_key   TEXT    NOT NULL,            -- deliveries of one destination and key leave in order (the patient)
  kind        TEXT    NOT NULL,            -- REF^I12, fhir-transaction...
  focus       TEXT    NOT NULL,            -- Type/id/_history/n: what it carries
  payload     BLOB,                        -- the message, once rendered (retries send the same bytes)
  status      TEXT    NOT NULL,            -- queued | sent | dead | cancelled
  attempts    INTEGER NOT NULL DEFAULT 0,
  created     INTEGER NOT NULL,
  next_try    INTEGER NOT NULL,
  done        INTEGER,
  last_error  TEXT
);
CREATE INDEX message_outbox_queue ON message_outbox (destination, status, order_key, id);
CREATE INDEX message_outbox_due ON message_outbox (status, next_try);
