//! The table options, checked: every bad value is a 22023 naming the option.

use std::collections::BTreeMap;

use bowman_connector::{ConnectorError, ErrorKind};
use scylla::statement::Consistency;

#[derive(Clone)]
pub struct CassandraOptions {
    pub keyspace: String,
    pub table: String,
    pub contact_points: Vec<String>,
    pub local_dc: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub consistency: Consistency,
    pub page_size: i32,
    pub concurrency: usize,
    pub batch_size: usize,
    pub write_nulls: bool,
    pub in_limit: usize,
    pub request_timeout_ms: u64,
}

impl std::fmt::Debug for CassandraOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password
        write!(f, "CassandraOptions({}.{} at {})", self.keyspace, self.table, self.contact_points.join(","))
    }
}

pub(crate) const KNOWN: &[&str] = &[
    "keyspace",
    "table",
    "contact_points",
    "local_dc",
    "username",
    "password",
    "consistency",
    "page_size",
    "concurrency",
    "batch_size",
    "write_nulls",
    "in_limit",
    "request_timeout_ms",
];

fn invalid(msg: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, msg)
}

/// A keyspace or table name Cassandra accepts: 1 to 48 letters, digits and underscores.
fn check_name(v: &str, option: &str, table: &str) -> Result<String, ConnectorError> {
    let v = v.trim();
    if v.is_empty() || v.len() > 48 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let shown: String = v.chars().take(60).collect();
        return Err(invalid(format!(
            "{table}: option {option} '{shown}' is not a Cassandra name (1 to 48 letters, digits or underscores)"
        )));
    }
    Ok(v.to_string())
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    o: &BTreeMap<String, String>,
    key: &str,
    default: T,
    min: T,
    max: T,
    table: &str,
) -> Result<T, ConnectorError> {
    match o.get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(invalid(format!("{table}: option {key} must be a whole number from {min} to {max}, not '{}'", v.chars().take(40).collect::<String>()))),
        },
    }
}

pub fn parse_consistency(v: &str) -> Option<Consistency> {
    Some(match v.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        "SERIAL" => Consistency::Serial,
        "LOCAL_SERIAL" => Consistency::LocalSerial,
        _ => return None,
    })
}

fn check_contact_point(p: &str, table: &str) -> Result<String, ConnectorError> {
    let p = p.trim();
    let bad = || invalid(format!("{table}: contact point '{}' is not host[:port]", p.chars().take(80).collect::<String>()));
    if p.is_empty() || p.len() > 255 {
        return Err(bad());
    }
    // [v6]:port, v6, host:port, host
    let (host, port) = if let Some(rest) = p.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else if p.matches(':').count() > 1 {
        (p, None)
    } else {
        match p.split_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (p, None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '_') {
        return Err(bad());
    }
    let port: u16 = match port {
        Some(s) => s.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => 9042,
    };
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

impl CassandraOptions {
    pub fn parse(o: &BTreeMap<String, String>, table: &str) -> Result<CassandraOptions, ConnectorError> {
        for k in o.keys() {
            if !KNOWN.contains(&k.as_str()) && !k.contains('.') {
                return Err(invalid(format!("{table}: unknown option {k} for USING cassandra (known: {})", KNOWN.join(", "))));
            }
        }
        let keyspace = check_name(
            o.get("keyspace").ok_or_else(|| invalid(format!("{table} needs OPTIONS (keyspace '...', table '...')")))?,
            "keyspace",
            table,
        )?;
        let name = check_name(
            o.get("table").ok_or_else(|| invalid(format!("{table} needs OPTIONS (keyspace '...', table '...')")))?,
            "table",
            table,
        )?;
        let points = o.get("contact_points").map(|s| s.trim().to_string()).unwrap_or_default();
        if points.is_empty() {
            return Err(invalid(format!(
                "{table}: no contact_points: set OPTIONS (contact_points 'host:9042') or the server's [cassandra] contact_points"
            )));
        }
        let contact_points = points.split(',').map(|p| check_contact_point(p, table)).collect::<Result<Vec<_>, _>>()?;
        let consistency = match o.get("consistency") {
            None => Consistency::LocalOne,
            Some(v) => parse_consistency(v).ok_or_else(|| {
                invalid(format!(
                    "{table}: option consistency '{}' is not a consistency level (ONE, LOCAL_ONE, QUORUM, LOCAL_QUORUM, ALL, ...)",
                    v.chars().take(40).collect::<String>()
                ))
            })?,
        };
        let write_nulls = match o.get("write_nulls").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => return Err(invalid(format!("{table}: option write_nulls must be 'true' or 'false', not '{}'", v.chars().take(40).collect::<String>()))),
        };
        let local_dc = o.get("local_dc").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(dc) = &local_dc
            && (dc.len() > 128 || dc.chars().any(|c| c.is_control()))
        {
            return Err(invalid(format!("{table}: option local_dc is not a datacenter name")));
        }
        Ok(CassandraOptions {
            keyspace,
            table: name,
            contact_points,
            local_dc,
            username: o.get("username").cloned().filter(|s| !s.is_empty()),
            password: o.get("password").cloned(),
            consistency,
            page_size: number(o, "page_size", 5000, 1, 1_000_000, table)?,
            concurrency: number(o, "concurrency", 8, 1, 256, table)?,
            batch_size: number(o, "batch_size", 50, 1, 65_535, table)?,
            write_nulls,
            in_limit: number(o, "in_limit", 1000, 1, 100_000, table)?,
            request_timeout_ms: number(o, "request_timeout_ms", 10_000, 100, 3_600_000, table)?,
        })
    }

    /// Sessions are shared by tables with the same cluster, datacenter and credentials.
    pub fn session_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.password.hash(&mut h);
        format!(
            "{}|{}|{}|{:x}|{:?}|{}",
            self.contact_points.join(","),
            self.local_dc.as_deref().unwrap_or(""),
            self.username.as_deref().unwrap_or(""),
            h.finish(),
            self.consistency,
            self.request_timeout_ms
        )
    }

    /// A message with the password (if any) masked.
    pub fn redact(&self, msg: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => msg.replace(p.as_str(), "***"),
            _ => msg.to_string(),
        }
    }
}

const RESERVED: &[&str] = &[
    "add", "aggregate", "all", "allow", "alter", "and", "apply", "as", "asc", "authorize", "batch", "begin", "by", "columnfamily",
    "create", "delete", "desc", "describe", "drop", "entries", "execute", "from", "full", "grant", "if", "in", "index", "infinity",
    "insert", "into", "is", "keyspace", "limit", "materialized", "modify", "nan", "norecursive", "not", "null", "of", "on", "or",
    "order", "primary", "rename", "replace", "revoke", "schema", "select", "set", "table", "to", "token", "truncate", "unlogged",
    "update", "use", "using", "view", "where", "with",
];

/// A CQL identifier, quoted when it has to be (upper case, symbols, reserved words).
pub fn quote_ident(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&s);
    if plain { s.to_string() } else { format!("\"{}\"", s.replace('"', "\"\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> Result<CassandraOptions, ConnectorError> {
        CassandraOptions::parse(&kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), "t")
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("abc_1"), "abc_1");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn hostile_options_are_22023() {
        let base = [("keyspace", "ks"), ("table", "t"), ("contact_points", "127.0.0.1")];
        assert_eq!(opts(&base).unwrap().contact_points, vec!["127.0.0.1:9042"]);
        for bad in [
            ("keyspace", "ks; DROP"),
            ("table", "t\"x"),
            ("contact_points", "h:99999"),
            ("contact_points", "h/x"),
            ("consistency", "MOST"),
            ("page_size", "-1"),
            ("page_size", "1e9"),
            ("write_nulls", "yes"),
            ("bogus", "1"),
        ] {
            let mut kv: Vec<(&str, &str)> = base.iter().filter(|(k, _)| *k != bad.0).cloned().collect();
            kv.push(bad);
            let e = opts(&kv).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.kind, ErrorKind::InvalidOption, "{bad:?}");
        }
        let o = opts(&[("keyspace", "ks"), ("table", "t"), ("contact_points", "[::1]:19042, b:1"), ("password", "s3cr3t")]).unwrap();
        assert_eq!(o.contact_points, vec!["[::1]:19042", "b:1"]);
        assert!(!format!("{o:?}").contains("s3cr3t"));
        assert_eq!(o.redact("x s3cr3t y"), "x *** y");
    }
}
