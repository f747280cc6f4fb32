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
