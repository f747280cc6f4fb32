-- The catalogue: prices in integer minor units of `currency`; stock never below 0.
CREATE TABLE products (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price >= 0),
    currency TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    active BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Idempotency keys of POST /v1/orders, per customer, kept 24 h. The key and the request are stored only as
-- digests; the first response (status and body, sealed under the customer's data key) is kept for replays.
-- A key is claimed (claim_token, claimed_until) while its request runs.
CREATE TABLE idempotency_keys (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    request_hash BLOB NOT NULL,
    claim_token TEXT,
    claimed_until TIMESTAMP,
    response_status INTEGER,
    response_body BLOB,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (customer_id, key_hash)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Orders: amounts in clear (the books), the shipping address sealed under the customer's data key.
CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    status TEXT NOT NULL,
    total_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    shipping_address BLOB NOT NULL,
    payment_provider TEXT NOT NULL,
    payment_id TEXT,
    idempotency_key_id TEXT UNIQUE,
    payment_review BOOLEAN NOT NULL DEFAULT FALSE,
    needs_refund BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_status_expires ON orders (status, expires_at);
CREATE INDEX orders_payment ON orders (payment_id);

-- The lines of an order: name and unit price as they were when it was placed.
CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line INTEGER NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    name TEXT NOT NULL,
    unit_price BIGINT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line)
);

-- Every change of an order's state: from (NULL when placed), to, who, when, why.
CREATE TABLE order_events (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    note TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
