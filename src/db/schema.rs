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

diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(
    data_keys,
    customers,
    verifications,
    sms_sends,
    sessions,
    refresh_tokens,
    login_failures,
    security_events,
    outbox,
    staff,
    audit_log,
);
