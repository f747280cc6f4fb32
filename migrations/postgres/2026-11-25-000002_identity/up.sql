-- Customers: every personal value sealed under the customer's data key; lookups through blind indexes.
-- After erasure the row stays (orders refer to it) with no personal value and no index.
CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    phone_index BYTEA UNIQUE,
    phone BYTEA,
    name BYTEA,
    email BYTEA,
    email_index BYTEA,
    password_hash TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    erased_at TIMESTAMP
);

-- Phone verifications (signup, password reset). The code is stored only as HMAC(OTP_PEPPER, id || code);
-- code_hash is NULL when no code was sent (the phone already has an account, or has none for a reset).
CREATE TABLE verifications (
    id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    phone_index BYTEA NOT NULL,
    person_id TEXT NOT NULL,
    phone BYTEA,
    name BYTEA,
    password_hash TEXT,
    code_hash BYTEA,
    attempts INTEGER NOT NULL,
    sends INTEGER NOT NULL,
    last_sent_at TIMESTAMP,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX verifications_expires_at ON verifications (expires_at);

-- Every text sent, by phone (blind index), for the per-phone hourly limit.
CREATE TABLE sms_sends (
    id TEXT PRIMARY KEY NOT NULL,
    phone_index BYTEA NOT NULL,
    sent_at TIMESTAMP NOT NULL
);
CREATE INDEX sms_sends_phone_sent ON sms_sends (phone_index, sent_at);

-- Sessions of customers and staff; an access token names its session in `sid`.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    audience TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    role TEXT,
    client TEXT NOT NULL,
    auth_time TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    end_reason TEXT
);
CREATE INDEX sessions_subject ON sessions (subject_id);
CREATE INDEX sessions_ended_at ON sessions (ended_at);

-- Refresh tokens, stored only as SHA-256. A token's children are the tokens issued when it was spent.
CREATE TABLE refresh_tokens (
    hash BYTEA PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    parent_hash BYTEA,
    issued_at TIMESTAMP NOT NULL,
    spent_at TIMESTAMP
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash);

-- Failed logins per account key (the blind index of the phone, known or not), for throttling.
CREATE TABLE login_failures (
    id TEXT PRIMARY KEY NOT NULL,
    account_key BYTEA NOT NULL,
    failed_at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (account_key, failed_at);

-- Security events (refresh-token reuse, password changes) for alerts and audit.
CREATE TABLE security_events (
    id TEXT PRIMARY KEY NOT NULL,
    subject_id TEXT NOT NULL,
    session_id TEXT,
    kind TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX security_events_subject ON security_events (subject_id);
