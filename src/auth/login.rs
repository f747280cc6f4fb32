//! One password login for customers and staff: the per-account throttle, the argon2 check (against a dummy
//! hash when the account is unknown), the failure record, the hash upgrade, and the session start.

use diesel::QueryResult;

use super::passwords::Hasher;
use super::sessions::now;
use super::throttle;
use crate::db::{Db, DbConnection};
use crate::domain::Sensitive;
use crate::error::{AppError, AppResult, Problem};
use crate::telemetry::Metrics;

/// The account a login names.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub role: Option<String>,
    pub password_hash: Option<String>,
}

/// How a kind of account is found and updated.
pub struct AccountStore<Find, Rehash> {
    pub find: Find,
    pub store_rehash: Rehash,
}

pub fn invalid_credentials(detail: &str) -> AppError {
    Problem::unauthorized("invalid_credentials", detail.to_owned()).into()
}

/// Checks `password` for the account under `account_key` and, when it matches, starts a session with `start`,
/// which also clears the account's failed logins, in one transaction (with the upgrade of the stored hash,
/// when it has older parameters).
/// A wrong password and an unknown account give the same `invalid_credentials` in the same time. A login
/// refused by the per-account back-off is counted in `metrics` (`login_throttled{by="account"}`).
#[allow(clippy::too_many_arguments)]
pub async fn password_login<Find, Rehash, Start, Started>(
    db: &Db,
    metrics: &Metrics,
    hasher: &Hasher,
    account_key: Vec<u8>,
    password: Sensitive<String>,
    store: AccountStore<Find, Rehash>,
    failure_detail: &'static str,
    start: Start,
) -> AppResult<Started>
where
    Find: FnOnce(&mut DbConnection, &[u8]) -> QueryResult<Option<Account>> + Send + 'static,
    Rehash: FnMut(&mut DbConnection, &str, String) -> QueryResult<usize> + Send + 'static,
    Start: FnMut(&mut DbConnection, &[u8], &Account) -> AppResult<Started> + Send + 'static,
    Started: Send + 'static,
{
    let key = account_key.clone();
    let find = store.find;
    let (account, delay) = db
        .run(move |conn| -> AppResult<_> {
            let delay = throttle::login_delay(conn, &key, now())?;
            Ok((find(conn, &key)?, delay))
        })
        .await?;
    if let Some(wait) = delay {
        metrics.login_throttled("account");
        return Err(Problem {
            code: "login_throttled",
            ..Problem::too_many(wait, "Too many failed logins; wait before trying again.")
        }
        .into());
    }
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let verdict = hasher.verify(password.clone(), stored).await?;
    let Some(account) = account.filter(|_| verdict.matches) else {
        db.write(move |conn| -> AppResult<()> {
            Ok(throttle::record_login_failure(conn, &account_key, now())?)
        })
        .await?;
        return Err(invalid_credentials(failure_detail));
    };
    if !verdict.needs_rehash {
        let mut start = start;
        return db
            .write(move |conn| start(conn, &account_key, &account))
            .await;
    }
    let rehash = hasher.hash(password).await?;
    let (mut store_rehash, mut start) = (store.store_rehash, start);
    db.write(move |conn| -> AppResult<Started> {
        store_rehash(conn, &account.id, rehash.clone())?;
        start(conn, &account_key, &account)
    })
    .await
}
