//! Rate limits: per account (the subject of a valid access token) and per client address, the one mechanism
//! behind every limit of the edge and of texts and logins per address. GCRA from the `governor` crate, in
//! memory: a limit of `20/1m` lets a burst of 20 through and then one request every 3 s. IPv6 clients are
//! limited per /64, the block one subscriber usually gets, so that rotating through it gains nothing.
//!
//! The state is per instance. Behind a load balancer with N instances a client gets at most N times the
//! rate; the limits that must hold across instances (texts per phone, login back-off per account) live in
//! the database.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimits;

/// The limiters of the edge on one instance (`api::edge::rate_limit`); `None` where the rate is `off`.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    /// Every request with a valid access token, per account.
    pub account: Option<AccountLimiter>,
    /// The route classes (`api::edge::RouteClass`) of requests without one, per address.
    pub auth: Option<AddressLimiter>,
    pub webhooks: Option<AddressLimiter>,
    pub api: Option<AddressLimiter>,
}

impl RouteLimits {
    pub fn new(rates: &RateLimits) -> Self {
        Self {
            account: rates.account.map(AccountLimiter::new),
            auth: rates.auth.map(AddressLimiter::new),
            webhooks: rates.webhooks.map(AddressLimiter::new),
            api: rates.api.map(AddressLimiter::new),
        }
    }
}

/// `count` requests per `per`, written `20/1m`, `5/30s`, `100/1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/DURATION`; `off` is `None` (no limit).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate like 20/1m (or `off`)"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` does not start with a whole number of requests"))?;
        let count = NonZeroU32::new(count)
            .filter(|c| c.get() <= 1_000_000)
            .ok_or_else(|| format!("`{text}`: the count must be from 1 to 1000000"))?;
        let per = crate::config::parse::duration(per)?;
        if per < Duration::from_secs(1) || per > Duration::from_secs(86_400) {
            return Err(format!("`{text}`: the period must be from 1s to 1d"));
        }
        Ok(Some(Self { count, per }))
    }

    fn quota(self) -> Quota {
        let interval = self.per / self.count.get();
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

/// How many checks pass between sweeps of the addresses whose state has fully recovered.
const SWEEP_EVERY: u64 = 4096;

struct Inner<K: Hash + Eq + Clone> {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// A rate per key. Cheap to clone: clones share their state.
pub struct Limiter<K: Hash + Eq + Clone>(Arc<Inner<K>>);

impl<K: Hash + Eq + Clone> Clone for Limiter<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self(Arc::new(Inner {
            rate,
            limiter: RateLimiter::keyed(rate.quota()),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }))
    }

    pub fn rate(&self) -> Rate {
        self.0.rate
    }

    /// Counts one request of `key`; `Err(retry_after)`, in whole seconds rounded up, once it is over the rate.
    fn check_key(&self, key: &K) -> Result<(), Duration> {
        let inner = &self.0;
        if inner.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            inner.limiter.retain_recent();
            inner.limiter.shrink_to_fit();
        }
        inner.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(inner.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Duration::from_secs(secs.max(1))
        })
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limiter({})", self.0.rate)
    }
}

/// A rate per client address.
pub type AddressLimiter = Limiter<IpAddr>;

impl Limiter<IpAddr> {
    /// Counts one request from `ip` (an IPv6 address by its /64).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_key(&key(ip))
    }
}

/// Who an account is: its audience and its subject, so that a customer and a staff member never share a
/// budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    pub staff: bool,
    pub subject: String,
}

/// A rate per account.
pub type AccountLimiter = Limiter<Account>;

impl Limiter<Account> {
    pub fn check_account(&self, account: &Account) -> Result<(), Duration> {
        self.check_key(account)
    }
}

/// The key of an address: IPv4 (and IPv4-mapped IPv6) as it is, IPv6 cut to its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = Rate::parse("20/1m").unwrap().unwrap();
        assert_eq!((r.count.get(), r.per), (20, Duration::from_secs(60)));
        assert_eq!(Rate::parse("off"), Ok(None));
        for bad in ["", "20", "0/1m", "x/1m", "20/1", "20/0s", "5/2d", "20/1m/2"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_then_a_wait_per_address_and_per_ipv6_block() {
        let limiter = AddressLimiter::new(Rate::parse("3/1m").unwrap().unwrap());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check(b).is_ok());

        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(v6a).is_ok());
        }
        assert!(limiter.check(v6b).is_err(), "same /64");
        assert!(limiter.check(other).is_ok());
    }

    #[test]
    fn accounts_have_budgets_of_their_own_and_a_customer_is_not_a_staff_member() {
        let limiter = AccountLimiter::new(Rate::parse("2/1m").unwrap().unwrap());
        let customer = Account {
            staff: false,
            subject: "a".into(),
        };
        let staff = Account {
            staff: true,
            subject: "a".into(),
        };
        let other = Account {
            staff: false,
            subject: "b".into(),
        };
        for _ in 0..2 {
            assert!(limiter.check_account(&customer).is_ok());
        }
        assert!(limiter.check_account(&customer).is_err());
        assert!(limiter.check_account(&staff).is_ok());
        assert!(limiter.check_account(&other).is_ok());
    }
}
