-- The staff's second factor (TOTP, RFC 6238). The secret is sealed under the member's data key; the factor
-- counts once its first code was right (`confirmed_at`). `last_step` is the time step of the last code
-- taken, so that a code is taken once.
CREATE TABLE staff_factors (
    staff_id TEXT PRIMARY KEY NOT NULL,
    secret BLOB NOT NULL,
    confirmed_at TIMESTAMP,
    last_step BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Ten one-time recovery codes a factor, each as its SHA-256 (the codes are 80 random bits).
CREATE TABLE staff_recovery_codes (
    code_hash BLOB PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX staff_recovery_codes_staff ON staff_recovery_codes (staff_id);

-- A browser's sign-in to the staff console: the cookie's secret as its SHA-256, and how far it got
-- (`factor`: the password was right, a code is due; `enrol`: a factor is to be set up; `signed_in`: the
-- staff session `session_id` carries it, with that session's lifetimes).
CREATE TABLE console_sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    session_id TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_staff ON console_sessions (staff_id);

-- What the customer's app shows of a shipment.
ALTER TABLE orders ADD COLUMN carrier TEXT;
ALTER TABLE orders ADD COLUMN tracking_number TEXT;

-- The staff's orders queue by status, newest first.
CREATE INDEX orders_status_id ON orders (status, id);

-- The audit log filtered by person, newest first.
CREATE INDEX audit_log_staff ON audit_log (staff_id, id);

-- The webhook events of an order, on its console page.
CREATE INDEX webhook_events_order ON webhook_events (order_id);

-- An admin's invitation of a new member: a one-time link to set their password. The link's secret is a MAC of
-- the id under the blind-index key, made again when the e-mail is sent and when the link is followed, so that
-- nothing in the database opens it.
CREATE TABLE staff_invitations (
    id TEXT PRIMARY KEY NOT NULL,
    staff_id TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
