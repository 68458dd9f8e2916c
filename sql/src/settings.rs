//! `SET` / `SHOW` / `RESET`: PostgreSQL session settings clients send on connect, Spark's
//! `SET key=value`, and DataFusion's own `datafusion.*` options.

use std::collections::BTreeMap;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::SetValue;
use crate::session::Session;

/// Settings with PostgreSQL's defaults (as far as Bowman's behaviour matches them).
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    // Bowman tables have no access method; SQLAlchemy 2.1 compares pg_am names with this.
    ("default_table_access_method", "heap"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("max_identifier_length", "63"),
    // How often long writes send progress (NOTICE over pgwire).
    ("progress_interval", "2s"),
    // INSERT OVERWRITE replaces the partitions it writes (dynamic) or all it matches (static).
    ("partition_overwrite_mode", "dynamic"),
    // How long files replaced by an overwrite stay for queries still reading them.
    ("file_retention", "60s"),
    ("server_encoding", "UTF8"),
    ("server_version", bowman_udfs::pg::PG_COMPAT_VERSION),
    ("server_version_num", "160006"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// Parameters PostgreSQL reports to the client (ParameterStatus) when they change.
const REPORTED: &[(&str, &str)] = &[
    ("application_name", "application_name"),
    ("client_encoding", "client_encoding"),
    ("datestyle", "DateStyle"),
    ("intervalstyle", "IntervalStyle"),
    ("timezone", "TimeZone"),
    ("standard_conforming_strings", "standard_conforming_strings"),
    ("search_path", "search_path"),
];

#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    values: BTreeMap<String, String>,
}

fn key(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        other => other.to_string(),
    }
}

fn default_of(k: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

/// The name a client sees in ParameterStatus for a changed setting, if it is reported.
pub fn reported_name(name: &str) -> Option<&'static str> {
    let k = key(name);
    REPORTED.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

fn strip_quotes(v: &str) -> String {
    v.trim().trim_matches('\'').to_string()
}

pub(crate) fn set(session: &mut Session, name: &str, value: SetValue) -> Result<Output> {
    let k = key(name);
    if k.starts_with("datafusion.") {
        let value = match value {
            SetValue::Value(v) => strip_quotes(&v),
            SetValue::Default => {
                return Err(BowmanError::NotSupported(format!("SET {name} TO DEFAULT; use RESET {name}")));
            }
        };
        session
            .ctx
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set(&k, &value)
            .map_err(|_| BowmanError::UnknownSetting(name.to_string()))?;
        return Ok(Output::Set { name: k, value });
    }
    let value = match value {
        SetValue::Default => {
            session.settings.values.remove(&k);
            show_value(session, &k).unwrap_or_default()
        }
        SetValue::Value(v) => {
            let v = strip_quotes(&v);
            match k.as_str() {
                "search_path" => {
                    // The first schema that is a Bowman database becomes the current database.
                    let snapshot = session.engine.catalog.snapshot();
                    let first = v
                        .split(',')
                        .map(|s| s.trim().trim_matches('"').trim_matches('\'').to_string())
                        .find(|s| snapshot.database(s).is_some());
                    if let Some(db) = first {
                        session.set_current_database(&db);
                    }
                }
                "partition_overwrite_mode" => {
                    if !matches!(v.to_ascii_lowercase().as_str(), "dynamic" | "static") {
                        return Err(BowmanError::InvalidValue(format!(
                            "partition_overwrite_mode is '{v}'; use 'dynamic' or 'static'"
                        )));
                    }
                }
                "statement_timeout" | "progress_interval" | "file_retention" => {
                    let ms = parse_duration_ms(&v).ok_or_else(|| {
                        BowmanError::InvalidValue(format!("invalid value for parameter \"{k}\": \"{v}\" (use milliseconds or a unit: 500ms, 2s, 1min)"))
                    })?;
                    if ms > MAX_DURATION_MS {
                        return Err(BowmanError::InvalidValue(format!(
                            "{v} is outside the valid range for parameter \"{k}\" (0 .. {MAX_DURATION_MS}ms, about 24 days)"
                        )));
                    }
                }
                "timezone" => {
                    session.ctx.state_ref().write().config_mut().options_mut().execution.time_zone = Some(v.clone());
                }
                _ => {}
            }
            session.settings.values.insert(k.clone(), v.clone());
            v
        }
    };
    Ok(Output::Set { name: k, value })
}

pub(crate) fn reset(session: &mut Session, name: Option<&str>) -> Result<Output> {
    match name {
        None => {
            session.settings.values.clear();
            Ok(Output::command("RESET"))
        }
        Some(n) => {
            session.settings.values.remove(&key(n));
            Ok(Output::command("RESET"))
        }
    }
}

pub(crate) fn show_value(session: &Session, name: &str) -> Option<String> {
    let k = key(name);
    if k.starts_with("datafusion.") {
        let state = session.ctx.state();
        return state
            .config()
            .options()
            .entries()
            .into_iter()
            .find(|e| e.key == k)
            .map(|e| e.value.unwrap_or_default());
    }
    if let Some(v) = session.settings.values.get(&k) {
        return Some(v.clone());
    }
    match k.as_str() {
        "search_path" => Some(search_path(session)),
        _ => default_of(&k).map(str::to_string),
    }
}

/// Every setting's current value, by its lower-case name (what `current_setting(name)` reads
/// when the name is only known at execution, as a bound parameter).
pub(crate) fn snapshot(session: &Session) -> std::collections::HashMap<String, String> {
    let mut values: std::collections::HashMap<String, String> =
        DEFAULTS.iter().map(|(n, _)| (n.to_string(), show_value(session, n).unwrap_or_default())).collect();
    values.insert("search_path".into(), search_path(session));
    for (k, v) in &session.settings.values {
        values.insert(k.clone(), v.clone());
    }
    values
}

/// The name `current_setting` looks up for `name`.
pub(crate) fn setting_key(name: &str) -> String {
    key(name.trim())
}

/// The search path a PostgreSQL client sees: the current database, the default one under its
/// PostgreSQL name `public`.
fn search_path(session: &Session) -> String {
    let db = session.current_database();
    if db == bowman_catalog::DEFAULT_DATABASE { bowman_catalog::PUBLIC_SCHEMA.to_string() } else { db }
}

pub(crate) fn show(session: &Session, name: &str) -> Result<Output> {
    if name == "all" {
        let mut rows: BTreeMap<String, String> =
            DEFAULTS.iter().map(|(n, _)| (n.to_string(), show_value(session, n).unwrap_or_default())).collect();
        rows.insert("search_path".into(), search_path(session));
        for (k, v) in &session.settings.values {
            rows.insert(k.clone(), v.clone());
        }
        let rows = rows.into_iter().map(|(k, v)| vec![Some(k), Some(v)]).collect();
        return Output::text_rows(&["name", "setting"], rows);
    }
    let value = show_value(session, name).ok_or_else(|| BowmanError::UnknownSetting(name.to_string()))?;
    let column = key(name);
    Output::text_rows(&[column.as_str()], vec![vec![Some(value)]])
}

/// `statement_timeout` values: a number of milliseconds or a number with a unit.
/// The largest duration a setting takes: PostgreSQL's limit for `statement_timeout`
/// (`INT_MAX` milliseconds), far from where deadlines overflow.
pub const MAX_DURATION_MS: u64 = i32::MAX as u64;

/// A duration setting in milliseconds; `None` when it does not parse, or overflows.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}
