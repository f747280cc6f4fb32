-- A customer's passkeys (WebAuthn). `passkey` is webauthn-rs's record of the credential as JSON: its public
-- key, sign count and backup flags, nothing personal. The name the customer gave it is sealed under their
-- data key.
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    credential_id BLOB NOT NULL UNIQUE,
    passkey TEXT NOT NULL,
    name BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX passkeys_customer ON passkeys (customer_id);

-- A registration (`customer_id` set) or sign-in begun and not yet finished: the challenge's state, deleted
-- by the finish that reads it (single use), 5 minutes at most.
CREATE TABLE passkey_ceremonies (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    customer_id TEXT,
    state TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
