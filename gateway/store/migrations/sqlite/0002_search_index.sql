-- Search indexes for every search parameter. Each resource gets a stable row number (rid) that
-- the index tables refer to; index rows are keyed by a hash of the parameter name
-- ("Observation.code"). Rows of a resource are replaced with each version and dropped on delete.
-- After this migration the gateway rebuilds the indexes (the fingerprint in store_meta differs).
CREATE TABLE resource_current_new (
  rid          INTEGER PRIMARY KEY,
  res_type     TEXT    NOT NULL,
  res_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  seq          INTEGER NOT NULL,
  deleted      INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  UNIQUE (res_type, res_id)
);
INSERT INTO resource_current_new (res_type, res_id, version, seq, deleted, last_updated)
  SELECT res_type, res_id, version, seq, deleted, last_updated FROM resource_current ORDER BY seq;
DROP TABLE resource_current;
ALTER TABLE resource_current_new RENAME TO resource_current;
CREATE INDEX resource_current_updated ON resource_current (res_type, last_updated);
CREATE INDEX resource_current_type ON resource_current (res_type);
DROP TABLE token_index;

CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE search_token (
  param INTEGER NOT NULL, value TEXT NOT NULL, system TEXT NOT NULL, rid INTEGER NOT NULL,
  PRIMARY KEY (param, value, system, rid)
) WITHOUT ROWID;
CREATE INDEX search_token_rid ON search_token (rid, param);

CREATE TABLE search_string (
  param INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL, rid INTEGER NOT NULL,
  PRIMARY KEY (param, norm, exact, rid)
) WITHOUT ROWID;
CREATE INDEX search_string_rid ON search_string (rid, param);

CREATE TABLE search_date (
  param INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, rid INTEGER NOT NULL,
  PRIMARY KEY (param, lo, hi, rid)
) WITHOUT ROWID;
CREATE INDEX search_date_hi ON search_date (param, hi);
CREATE INDEX search_date_rid ON search_date (rid, param);

CREATE TABLE search_number (
  param INTEGER NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
  rid INTEGER NOT NULL,
  PRIMARY KEY (param, lo, hi, system, code, rid)
) WITHOUT ROWID;
CREATE INDEX search_number_rid ON search_number (rid, param);

CREATE TABLE search_reference (
  param INTEGER NOT NULL, target_id TEXT NOT NULL, target_type TEXT NOT NULL, rid INTEGER NOT NULL,
  PRIMARY KEY (param, target_id, target_type, rid)
) WITHOUT ROWID;
CREATE INDEX search_reference_rid ON search_reference (rid, param);

CREATE TABLE search_composite (
  param INTEGER NOT NULL, value1 TEXT NOT NULL, system1 TEXT NOT NULL, value2 TEXT NOT NULL,
  system2 TEXT NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, rid INTEGER NOT NULL,
  PRIMARY KEY (param, value1, system1, value2, system2, lo, hi, rid)
) WITHOUT ROWID;
CREATE INDEX search_composite_rid ON search_composite (rid, param);
