//! Statements of fixed text whose prepared statement is kept on their connection.
//!
//! diesel keeps one prepared statement per connection for each fixed query, but never for an `UPDATE`, an
//! `INSERT` of several rows or a `sql_query`: their SQL may take unboundedly many forms, so they go out as
//! unnamed statements that PostgreSQL parses, analyses and plans at every execution (and SQLite compiles
//! again). A wrapper cannot change that: diesel asks the query through a reference, which walks the inner
//! query. Under the load harness's order placements, that was about a fifth of PostgreSQL's CPU (`perf
//! record`, see docs/performance.md).
//!
//! A `kept_sql` statement is built of `&'static str` pieces and bound values, so each call site is one
//! statement, found again by its text and bind types. Each `bind` puts the backend's own placeholder (`$1` on
//! PostgreSQL, `?` on SQLite) where it stands, so one text serves both backends when its SQL does. Use it only
//! for statements that find their rows by equality on a unique key or an indexed column: any plan PostgreSQL
//! keeps for them, made at any table size, looks the rows up by that index. (The opposite case is
//! `unprepared`.)

use std::marker::PhantomData;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// The start of a statement: `kept_sql("UPDATE products SET stock = stock - ").bind::<Integer, _>(n).sql(…)`.
pub fn kept_sql(sql: &'static str) -> KeptSql<()> {
    KeptSql { before: (), sql }
}

/// The statement so far, then a piece of SQL text.
#[derive(Debug, Clone, Copy)]
pub struct KeptSql<Before> {
    before: Before,
    sql: &'static str,
}

/// The statement so far, then the placeholder of a bound value of SQL type `ST`.
#[derive(Debug, Clone, Copy)]
pub struct KeptBind<Before, V, ST> {
    before: Before,
    value: V,
    sql_type: PhantomData<ST>,
}

/// Appending to a statement: implemented by both of its parts, so that a function can take a statement's start
/// and add the rest.
pub trait KeptStatement: Sized {
    /// Appends the placeholder of the next parameter, bound to `value`.
    fn bind<BoundType, Value>(self, value: Value) -> KeptBind<Self, Value, BoundType> {
        KeptBind {
            before: self,
            value,
            sql_type: PhantomData,
        }
    }

    /// Appends a piece of SQL text.
    fn sql(self, sql: &'static str) -> KeptSql<Self> {
        KeptSql { before: self, sql }
    }
}

macro_rules! kept_statement {
    ($($ty:ident<$($param:ident),*>),*) => {$(
        impl<$($param),*> KeptStatement for $ty<$($param),*> {}

        /// No static id: the statement cache finds the statement by its text and bind types.
        impl<$($param),*> QueryId for $ty<$($param),*> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<$($param),*> Query for $ty<$($param),*> {
            type SqlType = Untyped;
        }

        impl<$($param,)* Conn> RunQueryDsl<Conn> for $ty<$($param),*> {}
    )*};
}

kept_statement!(KeptSql<Before>, KeptBind<Before, V, ST>);

impl<Before, DB> QueryFragment<DB> for KeptSql<Before>
where
    DB: Backend,
    Before: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.before.walk_ast(out.reborrow())?;
        out.push_sql(self.sql);
        Ok(())
    }
}

impl<Before, V, ST, DB> QueryFragment<DB> for KeptBind<Before, V, ST>
where
    DB: Backend + HasSqlType<ST>,
    Before: QueryFragment<DB>,
    V: ToSql<ST, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.before.walk_ast(out.reborrow())?;
        out.push_bind_param::<ST, V>(&self.value)
    }
}
