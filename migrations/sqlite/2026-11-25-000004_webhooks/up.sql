-- One row per provider event that took effect (or was found to need none), written in the same transaction
-- as its effect: the primary key makes every effect happen once, however often the event is delivered.
CREATE TABLE webhook_receipts (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT,
    outcome TEXT NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_receipts_order ON webhook_receipts (order_id, kind);

-- Every request received on a webhook route, for audit: the headers that matter (no secret), the body sealed
-- under the data key of the order's customer (or only its digest when it could not be tied to an order), the
-- verification result and the outcome. Purged after WEBHOOK_RETENTION.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    event_id TEXT,
    event_type TEXT,
    verification TEXT NOT NULL,
    outcome TEXT,
    order_id TEXT,
    customer_id TEXT,
    headers TEXT NOT NULL,
    body BLOB,
    body_sha256 BLOB NOT NULL,
    body_len INTEGER NOT NULL,
    received_at TIMESTAMP NOT NULL
);
CREATE INDEX webhook_events_received_at ON webhook_events (received_at);
