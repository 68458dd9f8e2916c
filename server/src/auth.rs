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

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
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
}

impl UserSource {
    pub fn new(users: Users, catalog: Arc<bowman_catalog::Catalog>) -> Self {
        UserSource { users, catalog, decoy: ScramSecret::from_password(&uuid::Uuid::new_v4().to_string()) }
    }

    /// The stored secret of `user`, if there is such a user.
    pub async fn secret(&self, user: &str) -> Option<ScramSecret> {
        if let Some(s) = self.users.by_name.get(user) {
            return Some(s.clone());
        }
        let state = match self.catalog.refresh().await {
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

    /// Flight SQL basic auth: whether `password` is `user`'s.
    pub async fn check(&self, user: &str, password: &str) -> bool {
        self.secret(user).await.is_some_and(|s| s.verify(password))
    }
}

#[async_trait]
impl AuthSource for UserSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let found = match login.user() {
            Some(u) => self.secret(u).await,
            None => None,
        };
        if found.is_none() {
            tracing::info!(user = login.user().unwrap_or_default(), "login by an unknown user");
        }
        let secret = found.unwrap_or_else(|| self.decoy.clone());
        Ok(Password::new(Some(secret.salt.clone()), secret.salted_password.clone()))
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
