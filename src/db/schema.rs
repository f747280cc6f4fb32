//! The tables, in portable column types only (TEXT ids made in the app, BLOB/BYTEA, TIMESTAMP in UTC), so one
//! schema serves both backends.

diesel::table! {
    data_keys (person_id) {
        person_id -> Text,
        master_key_id -> Text,
        wrapped -> Binary,
        created_at -> Timestamp,
        rewrapped_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    customers (id) {
        id -> Text,
        phone_index -> Nullable<Binary>,
        phone -> Nullable<Binary>,
        name -> Nullable<Binary>,
        email -> Nullable<Binary>,
        email_index -> Nullable<Binary>,
        password_hash -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        erased_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    verifications (id) {
        id -> Text,
        purpose -> Text,
        phone_index -> Binary,
        person_id -> Text,
        phone -> Nullable<Binary>,
        name -> Nullable<Binary>,
        password_hash -> Nullable<Text>,
        code_hash -> Nullable<Binary>,
        attempts -> Integer,
        sends -> Integer,
        last_sent_at -> Nullable<Timestamp>,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sms_sends (id) {
        id -> Text,
        phone_index -> Binary,
        sent_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        audience -> Text,
        subject_id -> Text,
        role -> Nullable<Text>,
        client -> Text,
        auth_time -> Timestamp,
        amr -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
        expires_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (hash) {
        hash -> Binary,
        session_id -> Text,
        parent_hash -> Nullable<Binary>,
        issued_at -> Timestamp,
        spent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Text,
        account_key -> Binary,
        failed_at -> Timestamp,
    }
}

diesel::table! {
    security_events (id) {
        id -> Text,
        subject_id -> Text,
        session_id -> Nullable<Text>,
        kind -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    products (id) {
        id -> Text,
        name -> Text,
        price -> BigInt,
        currency -> Text,
        stock -> Integer,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (id) {
        id -> Text,
        customer_id -> Text,
        key_hash -> Binary,
        request_hash -> Binary,
        claim_token -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Binary>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    orders (id) {
        id -> Text,
        customer_id -> Text,
        status -> Text,
        total_amount -> BigInt,
        currency -> Text,
        item_count -> Integer,
        shipping_address -> Binary,
        payment_provider -> Text,
        payment_id -> Nullable<Text>,
        idempotency_key_id -> Nullable<Text>,
        payment_review -> Bool,
        needs_refund -> Bool,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        carrier -> Nullable<Text>,
        tracking_number -> Nullable<Text>,
    }
}

diesel::table! {
    order_items (order_id, line) {
        order_id -> Text,
        line -> Integer,
        product_id -> Text,
        name -> Text,
        unit_price -> BigInt,
        quantity -> Integer,
    }
}

diesel::table! {
    order_events (id) {
        id -> Text,
        order_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        note -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    staff (id) {
        id -> Text,
        email_index -> Binary,
        email -> Binary,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        staff_id -> Text,
        action -> Text,
        target_kind -> Text,
        target_id -> Text,
        request_id -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    staff_factors (staff_id) {
        staff_id -> Text,
        secret -> Binary,
        confirmed_at -> Nullable<Timestamp>,
        last_step -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    staff_recovery_codes (code_hash) {
        code_hash -> Binary,
        staff_id -> Text,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    console_sessions (token_hash) {
        token_hash -> Binary,
        staff_id -> Text,
        stage -> Text,
        session_id -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    staff_invitations (id) {
        id -> Text,
        staff_id -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    identities (id) {
        id -> Text,
        customer_id -> Text,
        provider -> Text,
        subject_index -> Binary,
        email -> Nullable<Binary>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sign_in_nonces (hash) {
        hash -> Binary,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        customer_id -> Text,
        credential_id -> Binary,
        passkey -> Text,
        name -> Binary,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    passkey_ceremonies (id) {
        id -> Text,
        kind -> Text,
        customer_id -> Nullable<Text>,
        state -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    known_devices (token_hash) {
        token_hash -> Binary,
        customer_id -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        template -> Text,
        recipient_kind -> Text,
        customer_id -> Nullable<Text>,
        data -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_receipts (provider, event_id) {
        provider -> Text,
        event_id -> Text,
        kind -> Text,
        order_id -> Nullable<Text>,
        outcome -> Text,
        processed_at -> Timestamp,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        provider -> Text,
        event_id -> Nullable<Text>,
        event_type -> Nullable<Text>,
        verification -> Text,
        outcome -> Nullable<Text>,
        order_id -> Nullable<Text>,
        customer_id -> Nullable<Text>,
        headers -> Text,
        body -> Nullable<Binary>,
        body_sha256 -> Binary,
        body_len -> Integer,
        received_at -> Timestamp,
    }
}

diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(console_sessions -> sessions (session_id));
diesel::joinable!(console_sessions -> staff (staff_id));
diesel::joinable!(orders -> customers (customer_id));
diesel::joinable!(identities -> customers (customer_id));
diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_items -> products (product_id));
diesel::joinable!(order_events -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(
    data_keys,
    customers,
    verifications,
    sms_sends,
    sessions,
    refresh_tokens,
    login_failures,
    security_events,
    products,
    idempotency_keys,
    orders,
    order_items,
    order_events,
    staff,
    audit_log,
    staff_factors,
    staff_recovery_codes,
    console_sessions,
    identities,
    sign_in_nonces,
    passkeys,
    passkey_ceremonies,
    known_devices,
    staff_invitations,
    outbox,
    webhook_receipts,
    webhook_events,
);
