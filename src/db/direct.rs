//! Statements run on the connection's own backend, for the hot paths.
//!
//! Through the multi-backend `DbConnection`, diesel writes a query's SQL text again on every execution and
//! looks its prepared statement up by that text (on the authenticated order read that was about 11 % of
//! shopd's CPU, measured with `perf`). On the backend's own connection, a fixed query's prepared statement is
//! found by the query's type and no text is written. These functions take the same queries as diesel's
//! `RunQueryDsl` methods of the same names.

use diesel::dsl::Limit;
use diesel::query_dsl::methods::{ExecuteDsl, LimitDsl};
use diesel::query_dsl::{LoadQuery, RunQueryDsl};
use diesel::result::QueryResult;
use diesel::{PgConnection, SqliteConnection};

use super::DbConnection;

/// `query.load(conn)`.
pub fn load<'q, Q, U>(query: Q, conn: &mut DbConnection) -> QueryResult<Vec<U>>
where
    Q: RunQueryDsl<SqliteConnection>
        + RunQueryDsl<PgConnection>
        + LoadQuery<'q, SqliteConnection, U>
        + LoadQuery<'q, PgConnection, U>,
{
    match conn {
        DbConnection::Sqlite(c) => RunQueryDsl::<SqliteConnection>::load(query, c),
        DbConnection::Postgresql(c) => RunQueryDsl::<PgConnection>::load(query, c),
    }
}

/// `query.first(conn)`.
pub fn first<'q, Q, U>(query: Q, conn: &mut DbConnection) -> QueryResult<U>
where
    Q: LimitDsl,
    Limit<Q>: RunQueryDsl<SqliteConnection>
        + RunQueryDsl<PgConnection>
        + LoadQuery<'q, SqliteConnection, U>
        + LoadQuery<'q, PgConnection, U>,
{
    let query = query.limit(1);
    match conn {
        DbConnection::Sqlite(c) => RunQueryDsl::<SqliteConnection>::get_result(query, c),
        DbConnection::Postgresql(c) => RunQueryDsl::<PgConnection>::get_result(query, c),
    }
}

/// `query.execute(conn)`.
pub fn execute<Q>(query: Q, conn: &mut DbConnection) -> QueryResult<usize>
where
    Q: RunQueryDsl<SqliteConnection>
        + RunQueryDsl<PgConnection>
        + ExecuteDsl<SqliteConnection>
        + ExecuteDsl<PgConnection>,
{
    match conn {
        DbConnection::Sqlite(c) => RunQueryDsl::<SqliteConnection>::execute(query, c),
        DbConnection::Postgresql(c) => RunQueryDsl::<PgConnection>::execute(query, c),
    }
}
