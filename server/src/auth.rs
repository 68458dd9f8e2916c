//! Users, passwords and TLS for the front ends.
//!
//! Passwords are checked with SCRAM-SHA-256 on pgwire (the client never sends the password) and
//! against the same stored secret for Flight SQL basic auth. A stored secret is
//! `SCRAM-SHA-256$<iterations>:<salt>$<salted password>` (base64): pgwire's SCRAM server takes
//! the salted password itself rather than PostgreSQL's StoredKey/ServerKey pair, so that is what
//! Bowman keeps. It does not reveal the password, but whoever reads it can log in: keep the
//! config file private. `bowman hash-password` prints one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use pgwire::api::auth::Password;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;

/// A user's password as the server keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(..)")
    }
}

impl ScramSecret {
    /// Hash a password with a fresh random salt.
    pub fn from_password(password: &str) -> ScramSecret {
        let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
        let salted_password = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        ScramSecret { salt, salted_password }
    }

    /// Parse `SCRAM-SHA-256$4096:<salt>$<salted password>`.
    pub fn parse(text: &str) -> Result<ScramSecret, String> {
        let bad = || "a password hash looks like SCRAM-SHA-256$4096:<salt>$<key>; make one with `bowman hash-password`".to_string();
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, key) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        if iterations.parse::<usize>().ok() != Some(SCRAM_ITERATIONS) {
            return Err(format!("password hashes must use {SCRAM_ITERATIONS} iterations"));
        }
        let salt = STANDARD.decode(salt).map_err(|_| bad())?;
        let salted_password = STANDARD.decode(key).map_err(|_| bad())?;
        Ok(ScramSecret { salt, salted_password })
    }

    /// What pgwire's SCRAM exchange runs against.
    pub fn scram_password(&self) -> Password {
        Password::new(Some(self.salt.clone()), self.salted_password.clone())
    }

    pub fn to_hash_string(&self) -> String {
        format!("SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}", STANDARD.encode(&self.salt), STANDARD.encode(&self.salted_password))
    }

    /// Whether `password` is this secret's (Flight SQL basic auth, which sends it over TLS).
    pub fn verify(&self, password: &str) -> bool {
        let candidate = gen_salted_password(password, &self.salt, SCRAM_ITERATIONS);
        // Constant-time comparison.
        candidate.len() == self.salted_password.len()
            && candidate.iter().zip(&self.salted_password).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Base64 as Flight SQL clients send basic auth: with or without `=` padding (Go's and some
/// ADBC drivers leave it out).
pub const BASIC_AUTH_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The users who may connect. Empty means no authentication (and loopback only).
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, ScramSecret>,
}

impl Users {
    pub fn insert(&mut self, name: &str, secret: ScramSecret) {
        self.by_name.insert(name.to_string(), secret);
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn check(&self, name: &str, password: &str) -> bool {
        self.by_name.get(name).is_some_and(|s| s.verify(password))
    }

    /// The users' names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

/// The users a login is checked against: bowman.toml's, then those made with CREATE USER
/// (read from the catalog at each login, so users created on any node can log in).
#[derive(Debug)]
pub struct UserSource {
    users: Users,
    catalog: Arc<bowman_catalog::Catalog>,
    /// Answer for unknown users, so that they fail like a wrong password (28P01) instead of
    /// revealing which names exist.
    decoy: ScramSecret,
    /// Failed logins slow down further guesses at the same name (pgwire and Flight SQL alike).
    pub throttle: LoginThrottle,
}

impl UserSource {
    pub fn new(users: Users, catalog: Arc<bowman_catalog::Catalog>) -> Self {
        Self::with_throttle(users, catalog, LoginThrottle::default())
    }

    pub fn with_throttle(users: Users, catalog: Arc<bowman_catalog::Catalog>, throttle: LoginThrottle) -> Self {
        UserSource { users, catalog, decoy: ScramSecret::from_password(&uuid::Uuid::new_v4().to_string()), throttle }
    }

    /// Whether any user exists (bowman.toml's or the catalog's, as of now): then every client
    /// must log in, also on a server that started without users.
    pub async fn any(&self) -> bool {
        if !self.users.is_empty() {
            return true;
        }
        match self.catalog.sync().await {
            Ok(state) => !state.users.is_empty(),
            Err(e) => {
                // Fail closed: without the catalog nobody can be told apart, so ask for passwords.
                tracing::warn!(error = %e, "cannot read users from the catalog");
                true
            }
        }
    }

    /// The secret to run SCRAM against: `user`'s, or a decoy that no password matches.
    pub async fn secret_or_decoy(&self, user: &str) -> ScramSecret {
        match self.secret(user).await {
            Some(s) => s,
            None => {
                tracing::info!(user, "login by an unknown user");
                self.decoy.clone()
            }
        }
    }

    /// The stored secret of `user`, if there is such a user.
    pub async fn secret(&self, user: &str) -> Option<ScramSecret> {
        if let Some(s) = self.users.by_name.get(user) {
            return Some(s.clone());
        }
        let state = match self.catalog.sync().await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read users from the catalog");
                return None;
            }
        };
        if !state.may_log_in(user) {
            tracing::info!(user, "login by a role without LOGIN");
            return None;
        }
        state.users.get(user).and_then(|h| ScramSecret::parse(h).ok())
    }

    /// Flight SQL basic auth: whether `password` is `user`'s (throttled like pgwire logins).
    pub async fn check(&self, user: &str, password: &str) -> bool {
        self.throttle.turn(user).await;
        let ok = self.secret_or_decoy(user).await.verify(password);
        if ok {
            self.throttle.succeeded(user);
        } else {
            self.throttle.failed(user).await;
        }
        ok
    }
}

/// Slows password guessing. Each failed login for a name answers after a delay that doubles
/// with that name's recent failures (`auth_failure_delay`, up to `auth_failure_delay_max`), and
/// while a name has failures, attempts at it take turns spaced by that delay however many
/// connections make them. A successful login clears the name's failures; names untried for
/// ten minutes are forgotten. Other names are never slowed, and nobody is locked out.
#[derive(Debug)]
pub struct LoginThrottle {
    base: std::time::Duration,
    max: std::time::Duration,
    names: std::sync::Mutex<HashMap<String, Failures>>,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    /// When the next attempt at this name may be checked.
    next_turn: tokio::time::Instant,
    last: tokio::time::Instant,
}

/// How long a name's failures are remembered.
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);
/// At most this many names are tracked (guessing random names cannot grow memory without bound).
const MAX_TRACKED_NAMES: usize = 10_000;

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(DEFAULT_AUTH_FAILURE_DELAY, DEFAULT_AUTH_FAILURE_DELAY_MAX)
    }
}

pub const DEFAULT_AUTH_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
pub const DEFAULT_AUTH_FAILURE_DELAY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl LoginThrottle {
    pub fn new(base: std::time::Duration, max: std::time::Duration) -> Self {
        LoginThrottle { base, max: max.max(base), names: Default::default() }
    }

    fn delay(&self, failures: u32) -> std::time::Duration {
        if failures == 0 {
            return std::time::Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Wait for this name's turn before checking a password for it.
    pub async fn turn(&self, user: &str) {
        let now = tokio::time::Instant::now();
        let wait = {
            let mut names = self.names.lock().expect("login throttle");
            match names.get_mut(user) {
                Some(f) if now.duration_since(f.last) < FAILURE_MEMORY => {
                    let turn = f.next_turn.max(now);
                    f.next_turn = turn + self.delay(f.count);
                    turn - now
                }
                _ => std::time::Duration::ZERO,
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Record a failed login for `user` and wait before it is answered.
    pub async fn failed(&self, user: &str) {
        let now = tokio::time::Instant::now();
        let delay = {
            let mut names = self.names.lock().expect("login throttle");
            if names.len() >= MAX_TRACKED_NAMES && !names.contains_key(user) {
                names.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
                if names.len() >= MAX_TRACKED_NAMES {
                    if let Some(oldest) = names.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone()) {
                        names.remove(&oldest);
                    }
                }
            }
            let f = names.entry(user.to_string()).or_insert(Failures { count: 0, next_turn: now, last: now });
            if now.duration_since(f.last) >= FAILURE_MEMORY {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            let delay = self.delay(f.count);
            f.next_turn = f.next_turn.max(now + delay);
            delay
        };
        tokio::time::sleep(delay).await;
    }

    /// A successful login clears the name's failures.
    pub fn succeeded(&self, user: &str) {
        self.names.lock().expect("login throttle").remove(user);
    }
}

/// Connections per user and in total (`max_connections`, `max_connections_per_user`; 0 means
/// no limit). A connection past either gets 53300, as in PostgreSQL.
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_user: usize,
    counts: std::sync::Mutex<(usize, HashMap<String, usize>)>,
}

/// One counted connection (or one user's share of it); released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    user: Option<String>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        ConnectionLimits { max_total, max_per_user, counts: Default::default() }
    }

    /// Count a new connection against `max_connections`.
    pub fn connect(self: &Arc<Self>) -> Result<ConnectionSlot, bowman_sql::BowmanError> {
        let mut counts = self.counts.lock().expect("connection counts");
        if self.max_total > 0 && counts.0 >= self.max_total {
            return Err(bowman_sql::BowmanError::TooManyConnections(format!(
                "sorry, too many clients already (max_connections is {})",
                self.max_total
            )));
        }
        counts.0 += 1;
        Ok(ConnectionSlot { limits: self.clone(), user: None })
    }

    /// Count a logged-in connection of `user` against `max_connections_per_user`.
    pub fn login(self: &Arc<Self>, user: &str) -> Result<ConnectionSlot, bowman_sql::BowmanError> {
        let mut counts = self.counts.lock().expect("connection counts");
        let n = counts.1.entry(user.to_string()).or_insert(0);
        if self.max_per_user > 0 && *n >= self.max_per_user {
            return Err(bowman_sql::BowmanError::TooManyConnections(format!(
                "too many connections for role \"{user}\" (max_connections_per_user is {})",
                self.max_per_user
            )));
        }
        *n += 1;
        Ok(ConnectionSlot { limits: self.clone(), user: Some(user.to_string()) })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().expect("connection counts");
        match &self.user {
            None => counts.0 = counts.0.saturating_sub(1),
            Some(user) => {
                if let Some(n) = counts.1.get_mut(user) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.1.remove(user);
                    }
                }
            }
        }
    }
}

/// The TLS acceptor for a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not match: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_verify() {
        let s = ScramSecret::from_password("hunter2");
        let parsed = ScramSecret::parse(&s.to_hash_string()).unwrap();
        assert_eq!(parsed, s);
        assert!(parsed.verify("hunter2"));
        assert!(!parsed.verify("hunter3"));
        assert!(ScramSecret::parse("md5abc").is_err());
        assert!(!format!("{s:?}").contains(&STANDARD.encode(&s.salt)));
    }
}
