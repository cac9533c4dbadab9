-- Every version of every resource; resource_current points at the latest one.
CREATE TABLE resource_version (
  seq          INTEGER PRIMARY KEY,
  res_type     TEXT    NOT NULL,
  res_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  method       TEXT    NOT NULL,
  deleted      INTEGER NOT NULL,
  body         TEXT,
  UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_version_type_seq ON resource_version (res_type, seq);
CREATE INDEX resource_version_updated ON resource_version (last_updated);

CREATE TABLE resource_current (
  res_type     TEXT    NOT NULL,
  res_id       TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  seq          INTEGER NOT NULL,
  deleted      INTEGER NOT NULL,
  last_updated INTEGER NOT NULL,
  PRIMARY KEY (res_type, res_id)
);
CREATE INDEX resource_current_updated ON resource_current (res_type, last_updated);

-- Token search index of the current versions (identifier system|value, ...).
CREATE TABLE token_index (
  res_type TEXT NOT NULL,
  res_id   TEXT NOT NULL,
  param    TEXT NOT NULL,
  system   TEXT NOT NULL,
  value    TEXT NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (res_type, param, value, system);
CREATE INDEX token_index_owner ON token_index (res_type, res_id);
