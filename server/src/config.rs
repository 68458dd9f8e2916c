//! Configuration: `bowman.toml`, then `BOWMAN_*` environment variables, then command-line flags.
//!
//! Server-wide defaults of the session settings (docs/settings.md) come from bowman.toml's
//! `[settings]` table and `BOWMAN_SETTING_<NAME>` variables, e.g. `BOWMAN_SETTING_FILE_RETENTION=10min`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(name = "bowman", version, about = "Bowman: a SQL-first federated query server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for `serve`, also accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Read a password on standard input and print the hash to put in `[[users]]` of bowman.toml.
    HashPassword,
}

#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BOWMAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded catalog and the warehouse of managed tables [default: ./bowman-data].
    #[arg(long, env = "BOWMAN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL wire protocol address [default: 127.0.0.1:5433]. Port 0 picks a free port.
    #[arg(long, env = "BOWMAN_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// Arrow Flight SQL address [default: 127.0.0.1:32010]. Port 0 picks a free port.
    #[arg(long, env = "BOWMAN_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,
    /// HTTP address for /health [default: 127.0.0.1:9433].
    #[arg(long, env = "BOWMAN_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Catalog store: postgres://user@host:port/db for a shared catalog [default: SQLite in the data dir].
    #[arg(long, env = "BOWMAN_CATALOG")]
    pub catalog: Option<String>,
    /// Where managed tables live: an absolute path or s3://bucket/prefix [default: <data-dir>/warehouse].
    #[arg(long, env = "BOWMAN_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Log format: compact or json [default: compact].
    #[arg(long, env = "BOWMAN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Seconds SIGTERM waits for running statements before closing their connections [default: 30].
    #[arg(long, env = "BOWMAN_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Memory for query execution before sorts and aggregations spill to disk, e.g. 4G or 512M
    /// [default: half of the machine's memory].
    #[arg(long, env = "BOWMAN_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// PEM certificate chain for TLS on pgwire (with --tls-key); clients may then use sslmode=require.
    #[arg(long, env = "BOWMAN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "BOWMAN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// File with the keys that encrypt secret options in the catalog (created with a fresh key,
    /// mode 0600, when missing) [default: <data-dir>/secret.key]. BOWMAN_SECRET_KEY, when set,
    /// gives the keys themselves instead.
    #[arg(long, env = "BOWMAN_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Most pgwire connections at once; more get SQLSTATE 53300 [default: 100; 0: no limit].
    #[arg(long, env = "BOWMAN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most pgwire connections one user may have at once [default: 0, no limit].
    #[arg(long, env = "BOWMAN_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Milliseconds a failed login waits before it is answered, doubling with each further
    /// failure for the same user name [default: 500].
    #[arg(long, env = "BOWMAN_AUTH_FAILURE_DELAY_MS")]
    pub auth_failure_delay_ms: Option<u64>,
    /// The longest that delay gets, in milliseconds [default: 30000].
    #[arg(long, env = "BOWMAN_AUTH_FAILURE_DELAY_MAX_MS")]
    pub auth_failure_delay_max_ms: Option<u64>,
    /// This server's name in system.queries [default: the host name, else "bowman"].
    #[arg(long, env = "BOWMAN_NODE")]
    pub node: Option<String>,
}

/// A `[[users]]` entry of bowman.toml: a name and either a password or its hash.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    /// A superuser: may do anything. Without any flagged user, the first user is the
    /// superuser.
    #[serde(default)]
    pub superuser: bool,
}

/// The `bowman.toml` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub pg_addr: Option<SocketAddr>,
    pub flight_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub catalog: Option<String>,
    pub warehouse: Option<String>,
    pub log_format: Option<String>,
    pub shutdown_timeout: Option<u64>,
    pub memory_limit: Option<String>,
    /// Server-wide S3 settings (`endpoint`, `region`, `access_key_id`, `secret_access_key`,
    /// `allow_http`, ...), overridden per table by OPTIONS.
    #[serde(default)]
    pub s3: BTreeMap<String, String>,
    /// Server-wide Cassandra connection settings (`contact_points`, `local_dc`, `username`,
    /// `password`, `consistency`, `page_size`), as Spark's `spark.cassandra.connection.host`:
    /// tables whose OPTIONS leave them out use these.
    #[serde(default)]
    pub cassandra: BTreeMap<String, String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Who may connect (SCRAM-SHA-256 on pgwire, basic auth on Flight SQL). None: anyone, on
    /// loopback only.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    pub secret_key_file: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub auth_failure_delay_ms: Option<u64>,
    pub auth_failure_delay_max_ms: Option<u64>,
    pub node: Option<String>,
    /// Server-wide defaults of Bowman's session settings (`file_retention = "10min"`,
    /// `target_file_size = "512MB"`, `max_records_per_file = 1000000`), under any name `SET`
    /// takes for them; sessions start with these and `RESET` returns to them.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// The merged configuration the server runs with.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub catalog: String,
    pub warehouse: String,
    pub log_format: String,
    pub shutdown_timeout: std::time::Duration,
    /// Bytes of memory for query execution.
    pub memory_limit: usize,
    pub s3: BTreeMap<String, String>,
    /// `[cassandra]`, then `BOWMAN_CASSANDRA_<KEY>`: connection defaults for `USING cassandra`.
    pub cassandra: BTreeMap<String, String>,
    /// TLS certificate and key files for pgwire.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub users: crate::auth::Users,
    /// Where the keys for secret options come from.
    pub secret_keys: SecretKeySource,
    /// `max_connections` and `max_connections_per_user` (0: no limit).
    pub max_connections: usize,
    pub max_connections_per_user: usize,
    /// The first failed-login delay and its cap.
    pub auth_failure_delay: (std::time::Duration, std::time::Duration),
    /// bowman.toml's superusers: those flagged `superuser = true`, else the first user.
    pub superusers: std::collections::BTreeSet<String>,
    /// This server's name in system.queries (`None`: the host name).
    pub node: Option<String>,
    /// Where every session's Bowman settings start (`[settings]`, then `BOWMAN_SETTING_*`).
    pub settings: bowman_sql::BowmanOptions,
}

/// Where the keys that encrypt secret options come from.
#[derive(Clone)]
pub enum SecretKeySource {
    /// A key file (created when missing).
    File(PathBuf),
    /// The keys themselves (`BOWMAN_SECRET_KEY`).
    Given(String),
}

impl std::fmt::Debug for SecretKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretKeySource::File(p) => write!(f, "File({})", p.display()),
            SecretKeySource::Given(_) => f.write_str("BOWMAN_SECRET_KEY"),
        }
    }
}

impl SecretKeySource {
    pub fn load(&self) -> Result<bowman_catalog::SecretKeys, String> {
        match self {
            SecretKeySource::File(path) => bowman_catalog::SecretKeys::load_or_create(path),
            SecretKeySource::Given(text) => {
                bowman_catalog::SecretKeys::parse(text).map_err(|e| format!("BOWMAN_SECRET_KEY: {e}"))
            }
        }
    }
}

/// Create `dir` private to its owner (0700). An existing directory holding a Bowman catalog
/// is made private too; any other existing directory is left as it is, with a warning when
/// others may read it.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    match std::fs::DirBuilder::new().recursive(false).mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            return std::fs::DirBuilder::new().mode(0o700).create(dir);
        }
        Err(e) => return Err(e),
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        if dir.join("catalog.db").exists() || dir.join("secret.key").exists() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        } else {
            tracing::warn!(dir = %dir.display(), "the data directory may be read by other users; make it private with chmod 700");
        }
    }
    Ok(())
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The catalog URL and S3 settings may carry credentials: show neither.
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("pg_addr", &self.pg_addr)
            .field("flight_addr", &self.flight_addr)
            .field("http_addr", &self.http_addr)
            .field("warehouse", &self.warehouse)
            .field("s3_keys", &self.s3.keys().collect::<Vec<_>>())
            .field("cassandra_keys", &self.cassandra.keys().collect::<Vec<_>>())
            .field("tls", &self.tls)
            .field("users", &!self.users.is_empty())
            .field("secret_keys", &self.secret_keys)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Config {
    /// Merge file < environment < flags (clap already ranks flags over environment).
    pub fn load(args: &ServeArgs) -> anyhow_like::Result<Config> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow_like::err(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| anyhow_like::err(format!("invalid config file {}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./bowman-data"));
        make_private_dir(&data_dir)
            .map_err(|e| anyhow_like::err(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| anyhow_like::err(format!("cannot resolve {}: {e}", data_dir.display())))?;
        let catalog = args
            .catalog
            .clone()
            .or(file.catalog)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
        let warehouse = args
            .warehouse
            .clone()
            .or(file.warehouse)
            .unwrap_or_else(|| data_dir.join("warehouse").display().to_string());
        if !warehouse.starts_with("s3://") {
            let path = Path::new(warehouse.strip_prefix("file://").unwrap_or(&warehouse));
            std::fs::create_dir_all(path)
                .map_err(|e| anyhow_like::err(format!("cannot create warehouse {}: {e}", path.display())))?;
        }
        let mut s3 = file.s3;
        for (k, v) in std::env::vars() {
            if let Some(rest) = k.strip_prefix("BOWMAN_S3_") {
                s3.insert(rest.to_ascii_lowercase(), v);
            }
        }
        let mut cassandra = file.cassandra;
        for (k, v) in std::env::vars() {
            if let Some(rest) = k.strip_prefix("BOWMAN_CASSANDRA_") {
                cassandra.insert(rest.to_ascii_lowercase(), v);
            }
        }
        let secret_keys = match std::env::var("BOWMAN_SECRET_KEY") {
            Ok(text) if !text.trim().is_empty() => SecretKeySource::Given(text),
            _ => SecretKeySource::File(
                args.secret_key_file.clone().or(file.secret_key_file).unwrap_or_else(|| data_dir.join("secret.key")),
            ),
        };
        let auth_failure_delay = std::time::Duration::from_millis(
            args.auth_failure_delay_ms.or(file.auth_failure_delay_ms).unwrap_or(crate::auth::DEFAULT_AUTH_FAILURE_DELAY.as_millis() as u64),
        );
        let auth_failure_delay_max = std::time::Duration::from_millis(
            args.auth_failure_delay_max_ms
                .or(file.auth_failure_delay_max_ms)
                .unwrap_or(crate::auth::DEFAULT_AUTH_FAILURE_DELAY_MAX.as_millis() as u64),
        );
        let settings = setting_defaults(&file.settings)?;
        Ok(Config {
            node: args.node.clone().or(file.node).filter(|n| !n.trim().is_empty()),
            settings,
            secret_keys,
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(100),
            max_connections_per_user: args.max_connections_per_user.or(file.max_connections_per_user).unwrap_or(0),
            auth_failure_delay: (auth_failure_delay, auth_failure_delay_max),
            data_dir,
            pg_addr: args.pg_addr.or(file.pg_addr).unwrap_or_else(|| "127.0.0.1:5433".parse().expect("valid")),
            flight_addr: args.flight_addr.or(file.flight_addr).unwrap_or_else(|| "127.0.0.1:32010".parse().expect("valid")),
            http_addr: args.http_addr.or(file.http_addr).unwrap_or_else(|| "127.0.0.1:9433".parse().expect("valid")),
            catalog,
            warehouse,
            log_format: args.log_format.clone().or(file.log_format).unwrap_or_else(|| "compact".into()),
            shutdown_timeout: std::time::Duration::from_secs(args.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30)),
            memory_limit: match args.memory_limit.clone().or(file.memory_limit) {
                Some(text) => parse_size(&text)
                    .ok_or_else(|| anyhow_like::err(format!("invalid memory limit '{text}': use a size such as 4G or 512M")))?,
                None => default_memory_limit(),
            },
            s3,
            cassandra,
            tls: match (args.tls_cert.clone().or(file.tls_cert), args.tls_key.clone().or(file.tls_key)) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err(anyhow_like::err("TLS needs both --tls-cert and --tls-key".into())),
            },
            superusers: {
                let flagged: std::collections::BTreeSet<String> = file.users.iter().filter(|u| u.superuser).map(|u| u.name.clone()).collect();
                if flagged.is_empty() { file.users.first().map(|u| u.name.clone()).into_iter().collect() } else { flagged }
            },
            users: {
                let mut users = crate::auth::Users::default();
                for u in file.users {
                    let secret = match (u.password, u.password_hash) {
                        (Some(p), None) => crate::auth::ScramSecret::from_password(&p),
                        (None, Some(h)) => crate::auth::ScramSecret::parse(&h)
                            .map_err(|e| anyhow_like::err(format!("user {}: {e}", u.name)))?,
                        _ => {
                            return Err(anyhow_like::err(format!(
                                "user {}: give exactly one of password and password_hash",
                                u.name
                            )));
                        }
                    };
                    users.insert(&u.name, secret);
                }
                users
            },
        })
    }
}

/// The settings' server-wide defaults: bowman.toml's `[settings]`, then `BOWMAN_SETTING_<NAME>`
/// variables over them. An unknown name or a bad value stops the start, naming where it was.
fn setting_defaults(file: &BTreeMap<String, toml::Value>) -> anyhow_like::Result<bowman_sql::BowmanOptions> {
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for (name, value) in file {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
            other => {
                return Err(anyhow_like::err(format!(
                    "[settings] {name}: expected a string or a number, found a {}",
                    other.type_str()
                )));
            }
        };
        pairs.push((format!("[settings] {name}"), name.clone(), text));
    }
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(SETTING_ENV_PREFIX)).collect();
    env.sort();
    for (var, value) in env {
        let name = var[SETTING_ENV_PREFIX.len()..].to_ascii_lowercase();
        pairs.push((var, name, value));
    }
    // Each pair alone first, so the error names the one place that is wrong.
    for (origin, name, value) in &pairs {
        bowman_sql::server_defaults([(name.as_str(), value.as_str())]).map_err(|e| {
            let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            anyhow_like::err(format!("{origin}: {}{hint}", e.message()))
        })?;
    }
    bowman_sql::server_defaults(pairs.iter().map(|(_, n, v)| (n.as_str(), v.as_str())))
        .map_err(|e| anyhow_like::err(format!("settings: {}", e.message())))
}

/// Environment variables that set a setting's server-wide default: `BOWMAN_SETTING_` and the
/// setting's name in upper case.
const SETTING_ENV_PREFIX: &str = "BOWMAN_SETTING_";

/// `4G`, `512M`, `1.5GiB`, `1048576` (bytes); binary units.
pub fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * factor;
    (bytes >= 1.0).then_some(bytes as usize)
}

/// Half of the machine's memory (from /proc/meminfo), or 2 GiB where that cannot be read.
fn default_memory_limit() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<usize>().ok())
        })
        .map(|kib| kib * 1024 / 2)
        .unwrap_or(2 << 30)
}

/// A minimal error type for start-up problems, which are reported and end the process.
pub mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    pub type Result<T> = std::result::Result<T, Error>;

    pub fn err(msg: String) -> Error {
        Error(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file() {
        let dir = std::env::temp_dir().join(format!("bowman-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bowman.toml");
        std::fs::write(
            &file,
            "pg_addr = \"127.0.0.1:7000\"\nhttp_addr = \"127.0.0.1:7001\"\n[s3]\nregion = \"eu-west-1\"\n\
             [cassandra]\ncontact_points = \"10.0.0.1,10.0.0.2:9043\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            data_dir: Some(dir.join("data")),
            pg_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.pg_addr.port(), 0);
        assert_eq!(c.http_addr.port(), 7001);
        assert_eq!(c.s3.get("region").map(String::as_str), Some("eu-west-1"));
        assert_eq!(c.cassandra.get("contact_points").map(String::as_str), Some("10.0.0.1,10.0.0.2:9043"));
        // The keys are shown, never the values.
        let shown = format!("{c:?}");
        assert!(shown.contains("contact_points") && !shown.contains("hunter2"), "{shown}");
        assert!(c.catalog.starts_with("sqlite://"));
        assert!(c.memory_limit > 0);
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("lots"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_table() {
        let dir = std::env::temp_dir().join(format!("bowman-config-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bowman.toml");
        let args = ServeArgs { config: Some(file.clone()), data_dir: Some(dir.join("data")), ..Default::default() };
        std::fs::write(
            &file,
            "[settings]\nfile_retention = \"10min\"\nmax_records_per_file = 5000\n\"spark.sql.sources.partitionOverwriteMode\" = \"STATIC\"\n",
        )
        .unwrap();
        let c = Config::load(&args).unwrap();
        assert_eq!(c.settings.file_retention(), std::time::Duration::from_secs(600));
        assert_eq!(c.settings.max_records_per_file(), Some(5000));
        assert_eq!(c.settings.partition_overwrite_mode(), bowman_sql::PartitionOverwriteMode::Static);
        assert_eq!(c.settings.statement_timeout(), None);

        std::fs::write(&file, "[settings]\nfile_retension = \"10min\"\n").unwrap();
        let e = Config::load(&args).unwrap_err().0;
        assert!(e.contains("[settings] file_retension") && e.contains("\"file_retention\""), "{e}");
        std::fs::write(&file, "[settings]\nstatement_timeout = \"soon\"\n").unwrap();
        let e = Config::load(&args).unwrap_err().0;
        assert!(e.contains("[settings] statement_timeout") && e.contains("\"soon\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
