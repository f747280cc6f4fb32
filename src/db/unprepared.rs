//! A query sent without a prepared statement, so that PostgreSQL plans it at each execution with its actual
//! parameters and the table sizes of that moment.
//!
//! diesel prepares each fixed query once per connection. After five executions of a prepared statement,
//! PostgreSQL may keep one generic plan for it, made from the statistics of that moment, until the next
//! ANALYZE. A plan chosen while a table was small (a sequential scan) then stays after the table has grown,
//! and with autovacuum off nothing ever replaces it. Unprepared, the statement goes out with its parameters
//! in one message (`PQsendQueryParams`, still one round trip) and is planned each time, at the cost of
//! parsing and planning it again. On SQLite a query is prepared again at each execution.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;

/// `query`, sent without a prepared statement (see the module).
#[derive(Debug, Clone, Copy)]
pub struct Unprepared<Q>(pub Q);

impl<Q: Query> Query for Unprepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, DB> QueryFragment<DB> for Unprepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for Unprepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, Conn> RunQueryDsl<Conn> for Unprepared<Q> {}
