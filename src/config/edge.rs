//! The configuration of the edge: app attestation, TLS, trusted proxies, rate limits, server limits and
//! metrics. `docs/configuration.md` describes each variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, Vars, duration, number, parse};
use crate::crypto::attestation::{AttestationKey, Binding};
use crate::domain::Sensitive;
use crate::limits::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationMode {
    /// Tokens are not looked at.
    Off,
    /// Tokens are checked and failures counted, but every request goes through.
    Report,
    /// A request that fails the check is answered 401 `attestation_failed`.
    Enforce,
}

#[derive(Debug, Clone)]
pub struct AttestationConfig {
    pub mode: AttestationMode,
    pub binding: Binding,
    /// Set whenever the mode is not `off`.
    pub key: Option<Arc<AttestationKey>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for a change; `None` leaves reloading to SIGHUP alone.
    pub reload_interval: Option<Duration>,
}

/// The proxies whose `X-Forwarded-For` is believed. Empty (the default): the peer address is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Addresses (`10.0.0.1`) and networks (`10.0.0.0/8`, `fd00::/8`), comma-separated.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse::list(text)
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("`{entry}` is not an address or a network like 10.0.0.0/8")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|nets| {
                if nets.iter().any(|n| n.prefix_len() == 0) {
                    return Err(
                        "a /0 network trusts every address, so any client could choose its own \
                         address; list the proxies"
                            .to_owned(),
                    );
                }
                Ok(Self(nets))
            })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` carrying these `X-Forwarded-For` header values (in the
    /// order received). Unless the peer is a trusted proxy, the header is ignored and the peer is the client.
    /// Otherwise the list is read from the right — each trusted proxy appends the address it saw — skipping
    /// trusted proxies, and the first untrusted address is the client. An entry that is not an address
    /// stops the walk: the last address known good stands. A list of trusted proxies only yields its
    /// leftmost entry.
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:4711`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// The edge's rates (docs/configuration.md says what each counts and why); `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Every request with a valid access token, per account.
    pub account: Option<Rate>,
    /// `/v1/auth/*` and `/v1/staff/auth/*` without one, per address.
    pub auth: Option<Rate>,
    /// `/v1/webhooks/*`, per address.
    pub webhooks: Option<Rate>,
    /// Every other `/v1` route without an access token, per address.
    pub api: Option<Rate>,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `/metrics` on an address of its own, and then not on the public one.
    pub bind: Option<SocketAddr>,
    /// The bearer token `/metrics` needs, wherever it is served.
    pub token: Option<Sensitive<String>>,
}

impl MetricsConfig {
    /// Whether `/metrics` is mounted on the public address.
    pub fn on_public_address(&self) -> bool {
        self.bind.is_none() && self.token.is_some()
    }
}

/// Limits of the HTTP server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client may take to send a request head (then 408).
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// Open connections per instance, shared out evenly between the workers.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub attestation: AttestationConfig,
    pub tls: Option<TlsConfig>,
    pub trusted_proxies: TrustedProxies,
    pub rate_limits: RateLimits,
    pub metrics: MetricsConfig,
    pub server: ServerLimits,
}

pub const MIN_METRICS_TOKEN_LEN: usize = 24;

pub(super) fn edge_config(vars: &Vars) -> Result<EdgeConfig, ConfigError> {
    let mode = match vars.get("ATTESTATION_MODE") {
        None | Some("off") => AttestationMode::Off,
        Some("report") => AttestationMode::Report,
        Some("enforce") => AttestationMode::Enforce,
        Some(other) => {
            return Err(ConfigError::new(
                "ATTESTATION_MODE",
                format!("`{other}` is not `off`, `report` or `enforce`"),
            ));
        }
    };
    let binding = match vars.get("ATTESTATION_BINDING") {
        None | Some("required") => Binding::Required,
        Some("optional") => Binding::Optional,
        Some(other) => {
            return Err(ConfigError::new(
                "ATTESTATION_BINDING",
                format!("`{other}` is not `required` or `optional`"),
            ));
        }
    };
    let key = match vars.get("ATTESTATION_SECRET") {
        Some(text) => Some(Arc::new(
            AttestationKey::parse(text).map_err(|e| ConfigError::new("ATTESTATION_SECRET", e))?,
        )),
        None if mode != AttestationMode::Off => {
            return Err(ConfigError::new(
                "ATTESTATION_SECRET",
                "is required when ATTESTATION_MODE is `report` or `enforce` (the base64 secret of the attestation service)",
            ));
        }
        None => None,
    };

    let tls = match (vars.get("TLS_CERT_FILE"), vars.get("TLS_KEY_FILE")) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "TLS_KEY_FILE",
                "is required when TLS_CERT_FILE is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "TLS_CERT_FILE",
                "is required when TLS_KEY_FILE is set",
            ));
        }
        (Some(cert), Some(key)) => {
            let reload_interval = match vars.get("TLS_RELOAD_INTERVAL") {
                Some("off") => None,
                _ => {
                    let every = duration(vars, "TLS_RELOAD_INTERVAL", "1m")?;
                    if every < Duration::from_millis(50) {
                        return Err(ConfigError::new(
                            "TLS_RELOAD_INTERVAL",
                            "must be at least 50ms (or `off`)",
                        ));
                    }
                    Some(every)
                }
            };
            Some(TlsConfig {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(key),
                reload_interval,
            })
        }
    };

    let trusted_proxies = match vars.get("TRUSTED_PROXIES") {
        None => TrustedProxies::default(),
        Some(text) => {
            TrustedProxies::parse(text).map_err(|e| ConfigError::new("TRUSTED_PROXIES", e))?
        }
    };

    let rate = |name: &str, default: &str| -> Result<Option<Rate>, ConfigError> {
        Rate::parse(vars.get(name).unwrap_or(default)).map_err(|e| ConfigError::new(name, e))
    };
    if vars.get("RATE_LIMIT_ORDERS").is_some() {
        return Err(ConfigError::new(
            "RATE_LIMIT_ORDERS",
            "is gone: orders need an account and are counted per account (RATE_LIMIT_ACCOUNT)",
        ));
    }
    let rate_limits = RateLimits {
        account: rate("RATE_LIMIT_ACCOUNT", "600/1m")?,
        auth: rate("RATE_LIMIT_AUTH", "600/1m")?,
        webhooks: rate("RATE_LIMIT_WEBHOOKS", "600/1m")?,
        api: rate("RATE_LIMIT_API", "1200/1m")?,
    };

    let metrics_bind = match vars.get("METRICS_BIND") {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new("METRICS_BIND", "is not an address like 127.0.0.1:9090")
        })?),
    };
    let metrics_token = match vars.get("METRICS_TOKEN") {
        None => None,
        Some(token) => {
            if token.len() < MIN_METRICS_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::new(
                    "METRICS_TOKEN",
                    format!(
                        "must be at least {MIN_METRICS_TOKEN_LEN} printable characters without spaces \
                         (e.g. `openssl rand -base64 32`)"
                    ),
                ));
            }
            Some(Sensitive::new(token.to_owned()))
        }
    };

    let request_timeout = duration(vars, "REQUEST_TIMEOUT", "5s")?;
    if request_timeout < Duration::from_millis(100) || request_timeout > Duration::from_secs(300) {
        return Err(ConfigError::new(
            "REQUEST_TIMEOUT",
            "must be from 100ms to 300s",
        ));
    }
    let keep_alive = duration(vars, "KEEP_ALIVE", "5s")?;
    if keep_alive > Duration::from_secs(3600) {
        return Err(ConfigError::new("KEEP_ALIVE", "must be at most 1h"));
    }
    let max_connections = number(vars, "MAX_CONNECTIONS", 4096usize)?;
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(ConfigError::new(
            "MAX_CONNECTIONS",
            "must be from 1 to 1000000",
        ));
    }

    Ok(EdgeConfig {
        attestation: AttestationConfig { mode, binding, key },
        tls,
        trusted_proxies,
        rate_limits,
        metrics: MetricsConfig {
            bind: metrics_bind,
            token: metrics_token,
        },
        server: ServerLimits {
            request_timeout,
            keep_alive,
            max_connections,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("10.0.0.5"), ["203.0.113.9"].into_iter()),
            ip("10.0.0.5")
        );
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7, fd00::/8").unwrap();
        // From a proxy: the rightmost untrusted entry; what the client wrote on the left is ignored.
        assert_eq!(
            proxies.client_address(
                ip("10.0.0.5"),
                ["6.6.6.6, 203.0.113.9", "10.1.1.1"].into_iter()
            ),
            ip("203.0.113.9")
        );
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(
            proxies.client_address(ip("198.51.100.1"), ["203.0.113.9"].into_iter()),
            ip("198.51.100.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_address(ip("192.0.2.7"), std::iter::empty()),
            ip("192.0.2.7")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            proxies.client_address(ip("10.0.0.5"), ["203.0.113.9, junk, 10.2.2.2"].into_iter()),
            ip("10.2.2.2")
        );
        // Ports, IPv6 and mapped addresses.
        assert_eq!(
            proxies.client_address(
                ip("::ffff:10.0.0.5"),
                ["[2001:db8::1]:443, 198.51.100.3:9000"].into_iter()
            ),
            ip("198.51.100.3")
        );
        assert_eq!(
            proxies.client_address(ip("fd00::1"), ["2001:db8::1"].into_iter()),
            ip("2001:db8::1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert!(TrustedProxies::parse("0.0.0.0/0").is_err());
    }
}
