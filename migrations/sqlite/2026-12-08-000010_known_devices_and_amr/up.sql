-- The devices a customer signed in on with a second factor (or a texted code at signup, or a passkey): the
-- device's token as its SHA-256. A password sign-in naming one skips the second factor.
CREATE TABLE known_devices (
    token_hash BLOB PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP NOT NULL
);
CREATE INDEX known_devices_customer ON known_devices (customer_id);

-- How each session was signed in to: the access token's `amr` (`pwd`, `sms`, `otp`, `hwk`, `user`, `fed`,
-- `mfa`), space-separated.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';
