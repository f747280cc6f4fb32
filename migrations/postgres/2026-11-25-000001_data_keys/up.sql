-- One data key per person (customer or staff member), stored only wrapped by a master key.
CREATE TABLE data_keys (
    person_id TEXT PRIMARY KEY NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL,
    rewrapped_at TIMESTAMP
);
CREATE INDEX data_keys_master_key_id ON data_keys (master_key_id);
