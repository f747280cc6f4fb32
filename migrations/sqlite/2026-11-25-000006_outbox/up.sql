-- The transactional outbox of e-mail. A row is written in the same transaction as the event that causes it
-- and names its recipient only by reference (a customer id, or the staff alert address of the configuration):
-- no address, phone or e-mail is ever stored here. `data` is JSON of non-personal values only (order ids,
-- totals, item names). The address is opened through the vault at send time.
--
-- status: pending (due at next_attempt_at), sent, dropped (no one to send to: no e-mail, erased, no staff
-- alert address), failed (refused for good, or still undelivered when the retry window closed).
-- A sender owns a pending row while claimed_until is in the future; a stale claim expires by itself.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    template TEXT NOT NULL,
    recipient_kind TEXT NOT NULL,
    customer_id TEXT,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_by TEXT,
    claimed_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_customer ON outbox (customer_id);
