-- A way in through a platform's sign-in (Sign in with Apple, Sign in with Google): the provider's subject for
-- this customer, found by its blind index (the subject itself is not kept), and the e-mail the provider gave,
-- sealed under the customer's data key. One customer per (provider, subject); never joined by e-mail.
CREATE TABLE identities (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    subject_index BYTEA NOT NULL,
    email BYTEA,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (provider, subject_index)
);
CREATE INDEX identities_customer ON identities (customer_id);

-- The nonces shopd gives the app for a platform sign-in, as their SHA-256: each binds one ID token to one
-- sign-in and is spent by it, so a captured token cannot be replayed.
CREATE TABLE sign_in_nonces (
    hash BYTEA PRIMARY KEY NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX sign_in_nonces_expiry ON sign_in_nonces (expires_at);
