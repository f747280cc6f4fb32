-- Store staff. The e-mail is sealed under the staff member's data key and found by its blind index.
CREATE TABLE staff (
    id TEXT PRIMARY KEY NOT NULL,
    email_index BYTEA NOT NULL UNIQUE,
    email BYTEA NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    disabled_at TIMESTAMP
);

-- Every reveal of personal data and every privileged action by staff. Never the value itself.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    request_id TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_log_created_at ON audit_log (created_at);
