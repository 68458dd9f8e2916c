//! TLS to remote databases: the options as PostgreSQL (libpq, pgjdbc) and MySQL (the mysql
//! client, Connector/J) spell them, and the rustls client configuration they ask for.
//!
//! | mode | encrypts | checks the CA | checks the host name |
//! | --- | --- | --- | --- |
//! | `disable` / `DISABLED` | no | | |
//! | `prefer` / `allow` / `PREFERRED` | when the server offers it (PostgreSQL) | no | no |
//! | `require` / `REQUIRED` | yes | only when a CA file is given (as libpq does) | no |
//! | `verify-ca` / `VERIFY_CA` | yes | yes | no |
//! | `verify-full` / `VERIFY_IDENTITY` | yes | yes | yes |
//!
//! The CA comes from `sslrootcert` (aliases `serverSslCert`, `sslca`, `ssl-ca` and Connector/J's
//! `trustCertificateKeyStoreUrl` when it names a PEM file), or from the system's trust store
//! (`sslrootcert 'system'`, or no CA option at all).

use std::collections::HashMap;
use std::sync::Arc;

use bowman_connector::{ConnectorError, ErrorKind};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How much TLS a connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Option<TlsMode> {
        Some(match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" | "disabled" => TlsMode::Disable,
            "allow" | "prefer" | "preferred" => TlsMode::Prefer,
            // MariaDB Connector/J's `trust`: encrypted, any certificate.
            "require" | "required" | "trust" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" | "verify-identity" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the connection is refused without TLS.
    pub fn required(self) -> bool {
        matches!(self, TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// The TLS options of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// `None`: not given; each connector has its own default (PostgreSQL's is `prefer`, as in
    /// libpq and pgjdbc; MySQL's is `disable`).
    pub mode: Option<TlsMode>,
    /// A PEM file of CA certificates; `None` means the system's trust store.
    pub root_cert: Option<String>,
}

/// Option names (lower case) that configure TLS, in the URL's query or the table's OPTIONS.
pub const TLS_KEYS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "ssl_mode",
    "ssl",
    "usessl",
    "requiressl",
    "verifyservercertificate",
    "sslrootcert",
    "serversslcert",
    "sslca",
    "ssl-ca",
    "trustcertificatekeystoreurl",
];

fn invalid(message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, message)
}

fn boolean(key: &str, v: &str) -> Result<bool, ConnectorError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!("option {key} must be true or false, not '{v}'"))),
    }
}

impl TlsOptions {
    /// Read the TLS options out of `o` (keys lower case; the URL's query parameters first, the
    /// table's OPTIONS over them).
    pub fn parse(o: &HashMap<String, String>, table: &str) -> Result<TlsOptions, ConnectorError> {
        let get = |k: &str| o.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut mode = None;
        for key in ["sslmode", "ssl-mode", "ssl_mode"] {
            if let Some(v) = get(key) {
                mode = Some(TlsMode::parse(v).ok_or_else(|| {
                    invalid(format!(
                        "table {table}: {key} '{v}' is not a TLS mode; use disable, prefer, require, verify-ca or verify-full \
                         (MySQL: DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)"
                    ))
                })?);
            }
        }
        if mode.is_none() {
            // pgjdbc: `ssl=true` alone means verify-full.
            if let Some(v) = get("ssl") {
                mode = Some(if boolean("ssl", v)? { TlsMode::VerifyFull } else { TlsMode::Disable });
            }
            // Connector/J: useSSL, requireSSL, verifyServerCertificate.
            let verify = get("verifyservercertificate").map(|v| boolean("verifyServerCertificate", v)).transpose()?;
            if let Some(v) = get("usessl") {
                mode = Some(match (boolean("useSSL", v)?, verify) {
                    (false, _) => TlsMode::Disable,
                    (true, Some(true)) => TlsMode::VerifyCa,
                    (true, _) => TlsMode::Require,
                });
            }
            if let Some(v) = get("requiressl") {
                if boolean("requireSSL", v)? && !mode.is_some_and(TlsMode::required) {
                    mode = Some(if verify == Some(true) { TlsMode::VerifyCa } else { TlsMode::Require });
                }
            }
        }
        let mut root_cert = None;
        for key in ["trustcertificatekeystoreurl", "sslca", "ssl-ca", "serversslcert", "sslrootcert"] {
            if let Some(v) = get(key) {
                let path = v.strip_prefix("file://").or_else(|| v.strip_prefix("file:")).unwrap_or(v);
                root_cert = if path.eq_ignore_ascii_case("system") { None } else { Some(path.to_string()) };
            }
        }
        // libpq: `require` with a CA file verifies the chain, as verify-ca does.
        if mode == Some(TlsMode::Require) && root_cert.is_some() {
            mode = Some(TlsMode::VerifyCa);
        }
        let tls = TlsOptions { mode, root_cert };
        if tls.root_cert.is_some() && tls.mode.is_some_and(|m| m != TlsMode::Disable) {
            // A missing or unreadable CA file is a mistake in the table's options, said when
            // the table is created rather than at the first connection.
            tls.roots(table)?;
        }
        Ok(tls)
    }

    /// The mode, or `default` when none was given.
    pub fn mode_or(&self, default: TlsMode) -> TlsMode {
        self.mode.unwrap_or(default)
    }

    /// The CA certificates to trust.
    pub fn roots(&self, table: &str) -> Result<RootCertStore, ConnectorError> {
        let mut store = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        invalid(format!("table {table}: sslrootcert '{path}' is not a readable PEM file of CA certificates ({e})"))
                    })?;
                if certs.is_empty() {
                    return Err(invalid(format!("table {table}: sslrootcert '{path}' holds no PEM certificate")));
                }
                for c in certs {
                    store.add(c).map_err(|e| invalid(format!("table {table}: sslrootcert '{path}': {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
            }
        }
        Ok(store)
    }

    /// The rustls configuration for `mode` (anything but `Disable`).
    pub fn client_config(&self, mode: TlsMode, table: &str) -> Result<Arc<ClientConfig>, ConnectorError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::new(ErrorKind::Unsupported, format!("TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Arc::new(AnyCertificate(provider)),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let roots = self.roots(table)?;
                if roots.is_empty() {
                    return Err(invalid(format!(
                        "table {table}: TLS verification needs CA certificates: set sslrootcert to a PEM file (the system trust store is empty)"
                    )));
                }
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid(format!("table {table}: sslrootcert: {e}")))?;
                Arc::new(ChainVerifier { webpki, check_name: mode == TlsMode::VerifyFull })
            }
        };
        Ok(Arc::new(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()))
    }
}

/// The crypto provider Bowman's TLS uses (aws-lc-rs, as for S3), also installed as the
/// process default for drivers that build their own configuration.
pub fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// `require` / `prefer`: encrypted, but any certificate (libpq's meaning); the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (the chain) and `verify-full` (the chain and the host name).
#[derive(Debug)]
struct ChainVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first, so a name error means the chain was trusted.
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }))
                if !self.check_name =>
            {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The URL without its TLS query parameters, and those parameters (keys lower case), so the
/// driver's own URL parser never sees spellings it does not know.
pub fn split_url_tls(url: &str) -> (String, HashMap<String, String>) {
    let jdbc = url.starts_with("jdbc:");
    let Ok(mut parsed) = url::Url::parse(crate::options::strip_jdbc(url)) else {
        return (url.to_string(), HashMap::new());
    };
    let mut found = HashMap::new();
    let mut kept = Vec::new();
    for (k, v) in parsed.query_pairs() {
        let lower = k.to_ascii_lowercase();
        if TLS_KEYS.contains(&lower.as_str()) {
            found.insert(lower, v.into_owned());
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if found.is_empty() {
        return (url.to_string(), found);
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let s = parsed.to_string();
    (if jdbc { format!("jdbc:{s}") } else { s }, found)
}

/// A hint for a failed TLS handshake, added to the connection error.
pub fn handshake_hint(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some("the server's certificate does not name this host: connect by a name the certificate holds, or use sslmode verify-ca")
    } else if e.contains("unknownissuer") || e.contains("unknown issuer") || e.contains("badsignature") {
        Some("the server's certificate is not signed by a trusted CA: set sslrootcert to the CA's PEM file")
    } else if e.contains("expired") {
        Some("the server's certificate has expired")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<TlsOptions, ConnectorError> {
        TlsOptions::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), "t")
    }

    #[test]
    fn spellings_of_postgres_and_mysql_clients() {
        assert_eq!(parse(&[]).unwrap().mode, None);
        assert_eq!(parse(&[("sslmode", "verify-full")]).unwrap().mode, Some(TlsMode::VerifyFull));
        assert_eq!(parse(&[("ssl-mode", "VERIFY_IDENTITY")]).unwrap().mode, Some(TlsMode::VerifyFull));
        assert_eq!(parse(&[("sslmode", "REQUIRED")]).unwrap().mode, Some(TlsMode::Require));
        assert_eq!(parse(&[("sslmode", "VERIFY_CA")]).unwrap().mode, Some(TlsMode::VerifyCa));
        assert_eq!(parse(&[("sslmode", "disable")]).unwrap().mode, Some(TlsMode::Disable));
        assert_eq!(parse(&[("usessl", "true")]).unwrap().mode, Some(TlsMode::Require));
        assert_eq!(parse(&[("usessl", "true"), ("verifyservercertificate", "true")]).unwrap().mode, Some(TlsMode::VerifyCa));
        assert_eq!(parse(&[("usessl", "false")]).unwrap().mode, Some(TlsMode::Disable));
        assert_eq!(parse(&[("requiressl", "true")]).unwrap().mode, Some(TlsMode::Require));
        assert_eq!(parse(&[("ssl", "true")]).unwrap().mode, Some(TlsMode::VerifyFull));
        let e = parse(&[("sslmode", "sometimes")]).unwrap_err();
        assert!(e.message.contains("verify-full"), "{}", e.message);
        let e = parse(&[("sslmode", "require"), ("sslrootcert", "/no/such/ca.pem")]).unwrap_err();
        assert!(e.message.contains("/no/such/ca.pem"), "{}", e.message);
        assert_eq!(parse(&[("sslmode", "verify-full"), ("sslrootcert", "system")]).unwrap().root_cert, None);
    }

    #[test]
    fn tls_parameters_leave_the_url() {
        let (u, p) = split_url_tls("postgres://h:5432/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&application_name=x");
        assert_eq!(u, "postgres://h:5432/db?application_name=x");
        assert_eq!(p["sslmode"], "require");
        assert_eq!(p["sslrootcert"], "/tmp/ca.pem");
        let (u, p) = split_url_tls("jdbc:mysql://h:3306/db?useSSL=true&requireSSL=true");
        assert_eq!(u, "jdbc:mysql://h:3306/db");
        assert_eq!(p["usessl"], "true");
        let (u, p) = split_url_tls("postgres://h/db");
        assert_eq!((u.as_str(), p.len()), ("postgres://h/db", 0));
    }
}
