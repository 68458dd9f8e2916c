//! The options of a `USING redis` table, and the key template of `key_parts`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bowman_connector::{ConnectorError, ErrorKind, OptionSpec, resolve_env_refs, split_secret_options};
use redis::{ConnectionInfo, IntoConnectionInfo};

pub const REDIS_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("url", "redis://[user@]host:port[/db]; a password written in it is moved to the password secret"),
    OptionSpec::secret("password", "password (or ${env:NAME}); stored apart, never shown"),
    OptionSpec::new("key_pattern", "SCAN MATCH glob of the table's keys (default: from key_parts)"),
    OptionSpec::new("value_format", "hash (default), string, json, zset or stream"),
    OptionSpec::new("key_column", "the column that holds the whole key (default _key)"),
    OptionSpec::new("key_parts", "key template such as user:{id}:cart; each {name} is a column"),
    OptionSpec::new("value_column", "string tables: the column that holds the value (default: the only other column)"),
    OptionSpec::new("ttl_seconds", "INSERT sets this expiry on every key it writes (1 to 3153600000)"),
    OptionSpec::new("scan_count", "COUNT hint of each SCAN (default 1000, 1 to 100000)"),
    OptionSpec::new("batch_size", "keys per pipelined read, and rows per MULTI/EXEC when writing (default 1000, 1 to 100000)"),
    OptionSpec::new("scan_dedup", "true (default): a key SCAN returns twice is read once; false saves the memory of the seen-key set"),
    OptionSpec::new("strict", "true: a value that does not decode fails the statement even when the table has an _error column"),
    OptionSpec::new("connect_timeout", "seconds to wait for a connection (default 5, 0.1 to 3600)"),
    OptionSpec::new("response_timeout", "seconds to wait for any one answer (default 10, 0.1 to 3600)"),
];

/// How a Redis key's value becomes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Hash,
    String,
    Json,
    Zset,
    Stream,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Hash => "hash",
            Format::String => "string",
            Format::Json => "json",
            Format::Zset => "zset",
            Format::Stream => "stream",
        }
    }

    /// The command that reads one key.
    pub fn read_command(self) -> &'static str {
        match self {
            Format::Hash => "HGETALL",
            Format::String | Format::Json => "GET",
            Format::Zset => "ZRANGE WITHSCORES",
            Format::Stream => "XRANGE",
        }
    }
}

/// One piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Column(String),
}

/// `user:{id}:cart`: literal text and named columns, never two columns side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    pub segments: Vec<Segment>,
}

impl KeyTemplate {
    pub fn parse(template: &str) -> Result<Self, ConnectorError> {
        let bad = |why: &str| invalid(format!("option key_parts '{template}' {why}; write it as e.g. 'user:{{id}}:cart'"));
        let mut segments = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| bad("has a '{' without its '}'"))?;
                let name = after[..end].trim();
                if name.is_empty() || name.contains('{') {
                    return Err(bad("has an empty or nested {} placeholder"));
                }
                if matches!(segments.last(), Some(Segment::Column(_))) {
                    return Err(bad("has two placeholders with nothing between them, so keys cannot be split"));
                }
                if segments.iter().any(|s| matches!(s, Segment::Column(c) if c.eq_ignore_ascii_case(name))) {
                    return Err(bad(&format!("names the column {name} twice")));
                }
                segments.push(Segment::Column(name.to_string()));
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if lit.contains('}') {
                    return Err(bad("has a '}' without its '{'"));
                }
                segments.push(Segment::Literal(lit.to_string()));
                rest = &rest[end..];
            }
        }
        if !segments.iter().any(|s| matches!(s, Segment::Column(_))) {
            return Err(bad("has no {column} placeholder"));
        }
        Ok(KeyTemplate { segments })
    }

    pub fn columns(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Column(c) => Some(c.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// The SCAN MATCH glob: literal text escaped, each placeholder `*`.
    pub fn glob(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => {
                    for c in l.chars() {
                        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                Segment::Column(_) => out.push('*'),
            }
        }
        out
    }

    /// The key's placeholder values in template order, or `None` when the key does not fit.
    /// A placeholder ends at the first occurrence of the literal after it; the last one takes
    /// the rest of the key.
    pub fn split<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        let mut parts = Vec::new();
        let mut rest = key;
        let mut i = 0;
        while i < self.segments.len() {
            match &self.segments[i] {
                Segment::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Segment::Column(_) => match self.segments.get(i + 1) {
                    Some(Segment::Literal(next)) => {
                        let at = rest.find(next.as_str())?;
                        parts.push(&rest[..at]);
                        rest = &rest[at..];
                    }
                    _ => {
                        parts.push(rest);
                        rest = "";
                    }
                },
            }
            i += 1;
        }
        rest.is_empty().then_some(parts)
    }

    /// The key for these placeholder values (template order).
    pub fn format(&self, values: &[&str]) -> String {
        let mut out = String::new();
        let mut v = values.iter();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Column(_) => out.push_str(v.next().copied().unwrap_or("")),
            }
        }
        out
    }
}

/// The parsed options of one table; the password is kept only here.
#[derive(Clone)]
pub struct RedisOptions {
    pub info: ConnectionInfo,
    /// `host:port/db`, never a password: for EXPLAIN and messages.
    pub describe: String,
    pub password: Option<String>,
    pub format: Format,
    pub key_pattern: Option<String>,
    pub key_column: String,
    pub key_parts: Option<KeyTemplate>,
    pub value_column: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub scan_count: usize,
    pub batch_size: usize,
    pub scan_dedup: bool,
    pub strict: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("server", &self.describe)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("format", &self.format)
            .field("key_pattern", &self.key_pattern)
            .field("key_parts", &self.key_parts)
            .finish_non_exhaustive()
    }
}

pub fn invalid(message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, message)
}

/// Longest expiry INSERT may set: a hundred years.
pub const MAX_TTL_SECONDS: u64 = 3_153_600_000;

impl RedisOptions {
    pub fn parse(options: &HashMap<String, String>, table: &str) -> Result<Self, ConnectorError> {
        let mut o: HashMap<String, String> = HashMap::new();
        for (k, v) in options {
            let key = k.to_ascii_lowercase();
            if !REDIS_OPTIONS.iter().any(|s| s.name == key) {
                let known: Vec<&str> = REDIS_OPTIONS.iter().map(|s| s.name).collect();
                return Err(invalid(format!("table {table}: unknown redis option '{k}'; known options: {}", known.join(", "))));
            }
            o.insert(key, resolve_env_refs(k, v)?);
        }
        let url = o.get("url").ok_or_else(|| {
            invalid(format!("table {table} needs OPTIONS (url 'redis://host:6379'), e.g. url 'redis://127.0.0.1:6379/0'"))
        })?;
        let (clean, url_password) = remove_url_password(url);
        let password = o.get("password").cloned().or(url_password);
        let parsed = url::Url::parse(&clean)
            .map_err(|e| invalid(format!("table {table}: option url is not a URL ({e}); write redis://host:port/db")))?;
        match parsed.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(ConnectorError::new(
                    ErrorKind::Unsupported,
                    format!("table {table}: rediss:// (TLS) is not supported by this Bowman build; use redis://"),
                ));
            }
            s => return Err(invalid(format!("table {table}: option url must start with redis://, not {s}://"))),
        }
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| invalid(format!("table {table}: option url has no host")))?;
        let db_path = parsed.path().trim_matches('/');
        if !db_path.is_empty() && db_path.parse::<u16>().is_err() {
            return Err(invalid(format!("table {table}: the database in option url must be a number such as /0, not /{db_path}")));
        }
        if parsed.query().is_some() {
            return Err(invalid(format!("table {table}: option url takes no ?parameters; use the table's OPTIONS")));
        }
        let mut info = clean
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid(format!("table {table}: option url is not a Redis URL ({e})")))?;
        if let Some(p) = &password {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let describe = format!("{host}:{}/{}", parsed.port().unwrap_or(6379), if db_path.is_empty() { "0" } else { db_path });

        let format = match o.get("value_format").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("hash") => Format::Hash,
            Some("string") => Format::String,
            Some("json") => Format::Json,
            Some("zset") => Format::Zset,
            Some("stream") => Format::Stream,
            Some(other) => {
                return Err(invalid(format!(
                    "table {table}: option value_format must be hash, string, json, zset or stream, not '{other}'"
                )));
            }
        };
        let key_parts = o.get("key_parts").map(|t| KeyTemplate::parse(t)).transpose()?;
        let key_pattern = match o.get("key_pattern") {
            Some(p) => Some(check_pattern(p, table)?),
            None => key_parts.as_ref().map(|t| t.glob()),
        };
        let key_column = match o.get("key_column") {
            Some(c) if c.trim().is_empty() => return Err(invalid(format!("table {table}: option key_column is empty"))),
            Some(c) => c.trim().to_string(),
            None => "_key".to_string(),
        };
        let num = |key: &str, min: u64, max: u64, default: u64| -> Result<u64, ConnectorError> {
            match o.get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| invalid(format!("table {table}: option {key} must be a whole number between {min} and {max}, not '{v}'"))),
            }
        };
        let secs = |key: &str, default: f64| -> Result<Duration, ConnectorError> {
            match o.get(key) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && (0.1..=3600.0).contains(s))
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| invalid(format!("table {table}: option {key} must be a number of seconds between 0.1 and 3600, not '{v}'"))),
            }
        };
        let flag = |key: &str, default: bool| -> Result<bool, ConnectorError> {
            match o.get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                None => Ok(default),
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(v) => Err(invalid(format!("table {table}: option {key} must be true or false, not '{v}'"))),
            }
        };
        let ttl_seconds = match o.get("ttl_seconds") {
            None => None,
            Some(_) => Some(num("ttl_seconds", 1, MAX_TTL_SECONDS, 0)?),
        };
        Ok(RedisOptions {
            info,
            describe,
            password,
            format,
            key_pattern,
            key_column,
            key_parts,
            value_column: o.get("value_column").map(|s| s.trim().to_string()),
            ttl_seconds,
            scan_count: num("scan_count", 1, 100_000, 1000)? as usize,
            batch_size: num("batch_size", 1, 100_000, 1000)? as usize,
            scan_dedup: flag("scan_dedup", true)?,
            strict: flag("strict", false)?,
            connect_timeout: secs("connect_timeout", 5.0)?,
            response_timeout: secs("response_timeout", 10.0)?,
        })
    }

    pub fn secrets(&self) -> Vec<String> {
        self.password.iter().cloned().collect()
    }
}

fn check_pattern(p: &str, table: &str) -> Result<String, ConnectorError> {
    if p.is_empty() {
        return Err(invalid(format!("table {table}: option key_pattern is empty; use '*' for every key")));
    }
    if p.len() > 4096 {
        return Err(invalid(format!("table {table}: option key_pattern is longer than 4096 bytes")));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(invalid(format!("table {table}: option key_pattern contains a control character")));
    }
    Ok(p.to_string())
}

/// Split options into (plain, secret): a password inside `url` becomes the `password` secret
/// (an explicit `password` option wins) and the URL is stored without it.
pub fn split_options(
    specs: &[OptionSpec],
    options: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut plain, mut secret) = split_secret_options(specs, options);
    if let Some(key) = plain.keys().find(|k| k.eq_ignore_ascii_case("url")).cloned() {
        let (clean, password) = remove_url_password(&plain[&key]);
        plain.insert(key, clean);
        if let Some(p) = password
            && !secret.keys().any(|k| k.eq_ignore_ascii_case("password")) {
                secret.insert("password".into(), p);
            }
    }
    (plain, secret)
}

/// `redis://user:pw@host/0` -> (`redis://user@host/0`, Some(`pw`)), the password percent-decoded.
pub fn remove_url_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let Some(raw) = parsed.password().map(str::to_string) else {
        return (url.to_string(), None);
    };
    let password = url::form_urlencoded::parse(format!("p={}", raw.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or(raw);
    if parsed.set_password(None).is_err() {
        return (url.to_string(), Some(password));
    }
    (parsed.to_string(), Some(password))
}

/// Remove every occurrence of each secret from a message.
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "********");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_and_format() {
        let t = KeyTemplate::parse("user:{id}:cart").unwrap();
        assert_eq!(t.glob(), "user:*:cart");
        assert_eq!(t.split("user:42:cart"), Some(vec!["42"]));
        assert_eq!(t.split("user:42:wish"), None);
        assert_eq!(t.format(&["7"]), "user:7:cart");
        let t = KeyTemplate::parse("o:{region}:{id}").unwrap();
        assert_eq!(t.split("o:eu:a:b"), Some(vec!["eu", "a:b"]));
        assert_eq!(KeyTemplate::parse("a*[{x}").unwrap().glob(), "a\\*\\[*");
        assert!(KeyTemplate::parse("{a}{b}").is_err());
        assert!(KeyTemplate::parse("user:{id").is_err());
        assert!(KeyTemplate::parse("user:").is_err());
        assert!(KeyTemplate::parse("u:{}").is_err());
    }

    #[test]
    fn url_passwords_move_out() {
        let (u, p) = remove_url_password("redis://:s%40cret@h:6379/1");
        assert_eq!(u, "redis://h:6379/1");
        assert_eq!(p.as_deref(), Some("s@cret"));
        let (u, p) = remove_url_password("redis://h:6379");
        assert_eq!((u.as_str(), p), ("redis://h:6379", None));
    }
}
