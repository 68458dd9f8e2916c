//! The options of a `USING kafka` table, parsed and checked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bowman_connector::{ConnectorError, ErrorKind, resolve_env_refs};

/// How a message's value (or key) becomes columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// A JSON object per message; declared columns are its fields.
    Json,
    /// The whole value as one column (STRING or BINARY).
    Raw,
    /// One CSV record per message; declared columns in order.
    Csv,
}

/// How `_key` is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// UTF-8 text: `_key STRING` (a key that is not UTF-8 sets `_error`).
    String,
    /// Bytes as they are: `_key BINARY`.
    Binary,
    /// JSON text, checked: `_key STRING`.
    Json,
}

/// Where a partition's read starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    At(i64),
}

/// `earliest`, `latest`, or per-partition offsets (Spark's form: `{"topic":{"0":23,"1":-2}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offsets {
    Earliest,
    Latest,
    PerPartition(BTreeMap<i32, OffsetSpec>),
}

impl Offsets {
    /// The bound of one partition; partitions the JSON does not name take `default`.
    pub fn for_partition(&self, p: i32, default: OffsetSpec) -> OffsetSpec {
        match self {
            Offsets::Earliest => OffsetSpec::Earliest,
            Offsets::Latest => OffsetSpec::Latest,
            Offsets::PerPartition(m) => m.get(&p).copied().unwrap_or(default),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub bootstrap_servers: String,
    pub topic: String,
    pub value_format: ValueFormat,
    pub key_format: KeyFormat,
    pub starting: Offsets,
    pub ending: Offsets,
    pub read_committed: bool,
    pub fail_on_data_loss: bool,
    pub strict: bool,
    pub key_column: Option<String>,
    /// How far a message's CreateTime may lag behind the order of the log, for an upper bound on
    /// `_timestamp` (0 when the topic uses LogAppendTime).
    pub timestamp_slack: Duration,
    /// Metadata and connection requests (a broker that is down is reported after this).
    pub connect_timeout: Duration,
    /// A scan that gets nothing from the broker for this long fails (08006).
    pub read_timeout: Duration,
    /// librdkafka properties given with the `kafka.` prefix (prefix removed).
    pub client: BTreeMap<String, String>,
    /// Values that must never appear in a message.
    pub secrets: Vec<String>,
}

pub const OPTION_NAMES: &[&str] = &[
    "bootstrap_servers",
    "topic",
    "value_format",
    "key_format",
    "starting_offsets",
    "ending_offsets",
    "isolation_level",
    "fail_on_data_loss",
    "strict",
    "key_column",
    "timestamp_slack_ms",
    "connect_timeout_ms",
    "read_timeout_ms",
];

/// librdkafka properties Bowman sets itself: the connector's own options say them, or they
/// would give an ad-hoc SELECT side effects on the cluster.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use the bootstrap_servers option"),
    ("metadata.broker.list", "use the bootstrap_servers option"),
    ("group.id", "Bowman reads without a consumer group (it assigns partitions itself)"),
    ("group.instance.id", "Bowman reads without a consumer group"),
    ("enable.auto.commit", "Bowman never commits offsets"),
    ("enable.auto.offset.store", "Bowman never commits offsets"),
    ("auto.offset.reset", "use starting_offsets and fail_on_data_loss"),
    ("isolation.level", "use the isolation_level option"),
    ("enable.partition.eof", "Bowman needs partition EOF events to end a scan"),
    ("transactional.id", "each INSERT uses its own transaction"),
    ("enable.idempotence", "INSERT always uses an idempotent, transactional producer"),
    // Properties that make librdkafka load or run code on the Bowman server: a table's OPTIONS
    // come from SQL users, who must not get to run programs as the server.
    ("plugin.library.paths", "it loads shared libraries into the Bowman server"),
    ("sasl.kerberos.kinit.cmd", "it runs a shell command on the Bowman server"),
    ("ssl.engine.location", "it loads an OpenSSL engine into the Bowman server"),
    ("ssl.providers", "it loads OpenSSL providers into the Bowman server"),
    ("ssl_engine_callback_data", "it is for programs that embed librdkafka"),
    ("opaque", "it is for programs that embed librdkafka"),
];

fn invalid(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidOption, msg)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConnectorError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!("option '{name}' must be 'true' or 'false', not '{}'", excerpt(v)))),
    }
}

fn parse_ms(name: &str, v: &str, max: u64) -> Result<Duration, ConnectorError> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(format!("option '{name}' must be a whole number of milliseconds, not '{}'", excerpt(v))))?;
    if n > max {
        return Err(invalid(format!("option '{name}' is at most {max} ms")));
    }
    Ok(Duration::from_millis(n))
}

/// At most 60 characters of a user's value, for messages.
pub fn excerpt(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// Parse `starting_offsets` / `ending_offsets`.
pub fn parse_offsets(name: &str, v: &str, topic: &str, ending: bool) -> Result<Offsets, ConnectorError> {
    let t = v.trim();
    match t.to_ascii_lowercase().as_str() {
        "earliest" if !ending => return Ok(Offsets::Earliest),
        "earliest" => return Err(invalid(format!("option '{name}' cannot be 'earliest'; use 'latest' or per-partition offsets"))),
        "latest" => return Ok(Offsets::Latest),
        _ => {}
    }
    if !t.starts_with('{') {
        return Err(invalid(format!(
            "option '{name}' must be 'earliest', 'latest' or JSON like {{\"{topic}\":{{\"0\":23,\"1\":-2}}}}, not '{}'",
            excerpt(v)
        )));
    }
    let json: serde_json::Value = serde_json::from_str(t)
        .map_err(|e| invalid(format!("option '{name}' is not valid JSON ({e}); write {{\"{topic}\":{{\"0\":23,\"1\":-2}}}}")))?;
    let obj = json.as_object().ok_or_else(|| invalid(format!("option '{name}' must be a JSON object keyed by topic")))?;
    let mut out = BTreeMap::new();
    for (k, parts) in obj {
        if k != topic {
            return Err(invalid(format!("option '{name}' names topic '{}', but this table reads topic '{topic}'", excerpt(k))));
        }
        let parts = parts
            .as_object()
            .ok_or_else(|| invalid(format!("option '{name}': the value for topic '{topic}' must be an object of partition: offset")))?;
        for (p, o) in parts {
            let partition: i32 = p
                .parse()
                .ok()
                .filter(|p: &i32| *p >= 0)
                .ok_or_else(|| invalid(format!("option '{name}': '{}' is not a partition number", excerpt(p))))?;
            let off = o
                .as_i64()
                .ok_or_else(|| invalid(format!("option '{name}': the offset of partition {partition} must be a whole number (-2 earliest, -1 latest)")))?;
            let spec = match off {
                -2 if ending => {
                    return Err(invalid(format!("option '{name}': -2 (earliest) is not an ending offset (partition {partition})")));
                }
                -2 => OffsetSpec::Earliest,
                -1 => OffsetSpec::Latest,
                n if n >= 0 => OffsetSpec::At(n),
                n => return Err(invalid(format!("option '{name}': offset {n} of partition {partition} is negative (-2 earliest, -1 latest)"))),
            };
            out.insert(partition, spec);
        }
    }
    Ok(Offsets::PerPartition(out))
}

impl KafkaOptions {
    pub fn parse(raw: &HashMap<String, String>) -> Result<KafkaOptions, ConnectorError> {
        let mut opts: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in raw {
            let key = k.to_ascii_lowercase();
            let key = key.strip_prefix("option.").unwrap_or(&key).to_string();
            opts.insert(key, v.clone());
        }
        let mut client = BTreeMap::new();
        let mut secrets = Vec::new();
        for (k, v) in &opts {
            if let Some(prop) = k.strip_prefix("kafka.") {
                if prop.is_empty() {
                    return Err(invalid("option 'kafka.' names no librdkafka property"));
                }
                if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == prop) {
                    return Err(invalid(format!("option '{k}' cannot be set: {why}")));
                }
                let value = resolve_env_refs(k, v)?;
                if bowman_connector::is_secret_option(crate::OPTIONS, k) {
                    secrets.push(value.clone());
                }
                client.insert(prop.to_string(), value);
            } else if !OPTION_NAMES.contains(&k.as_str()) {
                return Err(invalid(format!(
                    "unknown option '{}' for a kafka table; known options are {} and librdkafka properties prefixed with 'kafka.'",
                    excerpt(k),
                    OPTION_NAMES.join(", ")
                )));
            }
        }
        let get = |n: &str| opts.get(n).map(|s| s.trim().to_string());
        let bootstrap_servers = get("bootstrap_servers")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("a kafka table needs option bootstrap_servers 'host:port[,host:port...]'"))?;
        for b in bootstrap_servers.split(',') {
            let b = b.trim();
            let b = b.rsplit_once("://").map(|(_, r)| r).unwrap_or(b);
            let ok = match b.rsplit_once(':') {
                Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
                None => false,
            };
            if !ok {
                return Err(invalid(format!("bootstrap_servers entry '{}' is not host:port", excerpt(b))));
            }
        }
        let topic = get("topic").filter(|s| !s.is_empty()).ok_or_else(|| invalid("a kafka table needs option topic"))?;
        if topic.len() > 249 || !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(invalid(format!(
                "topic '{}' is not a Kafka topic name (at most 249 of a-z A-Z 0-9 . _ -)",
                excerpt(&topic)
            )));
        }
        let value_format = match get("value_format").unwrap_or_else(|| "json".into()).to_ascii_lowercase().as_str() {
            "json" => ValueFormat::Json,
            "raw" => ValueFormat::Raw,
            "csv" => ValueFormat::Csv,
            other => return Err(invalid(format!("value_format must be 'json', 'raw' or 'csv', not '{}'", excerpt(other)))),
        };
        let key_format = match get("key_format").unwrap_or_else(|| "string".into()).to_ascii_lowercase().as_str() {
            "string" | "raw" | "text" => KeyFormat::String,
            "binary" => KeyFormat::Binary,
            "json" => KeyFormat::Json,
            other => return Err(invalid(format!("key_format must be 'string', 'binary' or 'json', not '{}'", excerpt(other)))),
        };
        let starting = match get("starting_offsets") {
            Some(v) => parse_offsets("starting_offsets", &v, &topic, false)?,
            None => Offsets::Earliest,
        };
        let ending = match get("ending_offsets") {
            Some(v) => parse_offsets("ending_offsets", &v, &topic, true)?,
            None => Offsets::Latest,
        };
        let read_committed = match get("isolation_level").unwrap_or_else(|| "read_committed".into()).to_ascii_lowercase().as_str() {
            "read_committed" => true,
            "read_uncommitted" => false,
            other => {
                return Err(invalid(format!(
                    "isolation_level must be 'read_committed' or 'read_uncommitted', not '{}'",
                    excerpt(other)
                )));
            }
        };
        let fail_on_data_loss = match get("fail_on_data_loss") {
            Some(v) => parse_bool("fail_on_data_loss", &v)?,
            None => true,
        };
        let strict = match get("strict") {
            Some(v) => parse_bool("strict", &v)?,
            None => false,
        };
        let key_column = get("key_column").filter(|s| !s.is_empty());
        let timestamp_slack = match get("timestamp_slack_ms") {
            Some(v) => parse_ms("timestamp_slack_ms", &v, 30 * 24 * 3600 * 1000)?,
            None => Duration::from_secs(300),
        };
        let connect_timeout = match get("connect_timeout_ms") {
            Some(v) => parse_ms("connect_timeout_ms", &v, 600_000)?,
            None => Duration::from_secs(5),
        };
        if connect_timeout < Duration::from_millis(100) {
            return Err(invalid("connect_timeout_ms must be at least 100"));
        }
        let read_timeout = match get("read_timeout_ms") {
            Some(v) => parse_ms("read_timeout_ms", &v, 3_600_000)?,
            None => Duration::from_secs(30),
        };
        if read_timeout < Duration::from_millis(100) {
            return Err(invalid("read_timeout_ms must be at least 100"));
        }
        Ok(KafkaOptions {
            bootstrap_servers,
            topic,
            value_format,
            key_format,
            starting,
            ending,
            read_committed,
            fail_on_data_loss,
            strict,
            key_column,
            timestamp_slack,
            connect_timeout,
            read_timeout,
            client,
            secrets,
        })
    }

    /// `message` without any secret value.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for s in self.secrets.iter().filter(|s| s.len() >= 3) {
            out = out.replace(s.as_str(), "********");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<KafkaOptions, ConnectorError> {
        let mut m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        m.entry("bootstrap_servers".into()).or_insert("127.0.0.1:9092".into());
        m.entry("topic".into()).or_insert("t".into());
        KafkaOptions::parse(&m)
    }

    #[test]
    fn offsets_json() {
        let o = opts(&[("starting_offsets", r#"{"t":{"0":23,"1":-2}}"#)]).unwrap();
        assert_eq!(o.starting.for_partition(0, OffsetSpec::Earliest), OffsetSpec::At(23));
        assert_eq!(o.starting.for_partition(1, OffsetSpec::Latest), OffsetSpec::Earliest);
        assert_eq!(o.starting.for_partition(2, OffsetSpec::Earliest), OffsetSpec::Earliest);
        for bad in [r#"{"other":{"0":1}}"#, r#"{"t":{"x":1}}"#, r#"{"t":{"0":-3}}"#, r#"{"t":{"0":1.5}}"#, "{", "[1]", r#"{"t":{"0":99999999999999999999}}"#] {
            let e = opts(&[("starting_offsets", bad)]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidOption, "{bad}");
        }
        assert!(opts(&[("ending_offsets", r#"{"t":{"0":-2}}"#)]).is_err());
        assert!(opts(&[("ending_offsets", "earliest")]).is_err());
    }

    #[test]
    fn hostile_options_are_refused() {
        for (k, v) in [
            ("value_format", "xml"),
            ("isolation_level", "dirty"),
            ("fail_on_data_loss", "maybe"),
            ("kafka.group.id", "g"),
            ("kafka.enable.auto.commit", "true"),
            ("kafka.plugin.library.paths", "/tmp/evil.so"),
            ("kafka.sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("KAFKA.SSL.ENGINE.LOCATION", "/tmp/engine.so"),
            ("bootstrap_servers", "nohost"),
            ("bootstrap_servers", "h:99999"),
            ("topic", "a/b"),
            ("read_timeout_ms", "-1"),
            ("whatever", "1"),
        ] {
            assert_eq!(opts(&[(k, v)]).unwrap_err().kind, ErrorKind::InvalidOption, "{k}={v}");
        }
        let o = opts(&[("kafka.sasl.password", "hunter22")]).unwrap();
        assert_eq!(o.redact("bad password hunter22"), "bad password ********");
    }
}
