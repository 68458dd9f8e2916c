//! `SET` / `SHOW` / `RESET`: Bowman's own settings, the PostgreSQL settings drivers and tools
//! send, Spark's names for Bowman's settings, and DataFusion's own `datafusion.*` options.
//!
//! Bowman's settings are one typed definition, [`BowmanOptions`]: a DataFusion config
//! extension under the prefix `bowman`, kept in each session's `SessionConfig`. The same
//! definition parses `SET`, lists `SHOW ALL`, resets to the server's defaults (`bowman.toml`'s
//! `[settings]` and `BOWMAN_SETTING_*`, see [`server_defaults`]) and answers the typed getters
//! the writers and the statement loop read. A name no one knows gets 42704, as in PostgreSQL,
//! so a misspelt setting never looks like it worked. docs/settings.md lists every name.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::common::config::{ConfigExtension, ConfigField, ExtensionOptions, Visit};
use datafusion::error::DataFusionError;

use crate::error::{BowmanError, Result};
use crate::output::Output;
use crate::parser::SetValue;
use crate::session::Session;

datafusion::common::extensions_options! {
    /// Bowman's own settings (`SET file_retention = '10min'` or `SET bowman.file_retention`).
    pub struct BowmanOptions {
        /// What INSERT OVERWRITE replaces in a partitioned table: the partitions the query writes (dynamic) or every partition its PARTITION spec matches, all of them without a spec (static).
        pub partition_overwrite_mode: PartitionOverwriteMode, default = PartitionOverwriteMode::Dynamic
        /// How long files replaced by an overwrite stay for queries still reading them.
        pub file_retention: DurationSetting, default = DurationSetting::from_millis(60_000)
        /// How often long writes report their progress as a NOTICE (0: the default, 2s).
        pub progress_interval: DurationSetting, default = DurationSetting::from_millis(2_000)
        /// How long a statement may run before it is canceled with 57014 (0: no limit).
        pub statement_timeout: DurationSetting, default = DurationSetting::from_millis(0)
        /// The size at which a writer closes a file and starts the next (0: no limit).
        pub target_file_size: SizeSetting, default = SizeSetting(0)
        /// The most rows a writer puts in one file (0: no limit).
        pub max_records_per_file: CountSetting, default = CountSetting(0)
    }
}

impl ConfigExtension for BowmanOptions {
    const PREFIX: &'static str = "bowman";
}

/// How often long writes report progress when `progress_interval` is 0.
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

impl BowmanOptions {
    pub fn partition_overwrite_mode(&self) -> PartitionOverwriteMode {
        self.partition_overwrite_mode
    }

    /// How long replaced files stay before they are deleted.
    pub fn file_retention(&self) -> Duration {
        self.file_retention.0
    }

    /// How often long writes report progress.
    pub fn progress_interval(&self) -> Duration {
        Some(self.progress_interval.0).filter(|d| !d.is_zero()).unwrap_or(DEFAULT_PROGRESS_INTERVAL)
    }

    /// How long a statement may run; `None`: as long as it takes.
    pub fn statement_timeout(&self) -> Option<Duration> {
        Some(self.statement_timeout.0).filter(|d| !d.is_zero())
    }

    /// Bytes after which a writer rolls to a new file; `None`: one file per writer.
    pub fn target_file_size(&self) -> Option<u64> {
        Some(self.target_file_size.0).filter(|n| *n > 0)
    }

    /// Rows after which a writer rolls to a new file; `None`: no limit.
    pub fn max_records_per_file(&self) -> Option<u64> {
        Some(self.max_records_per_file.0).filter(|n| *n > 0)
    }

    /// The setting's value as `SHOW` prints it, by its field name.
    fn shown(&self, field: &str) -> Option<String> {
        self.entries().into_iter().find(|e| e.key == field).map(|e| e.value.unwrap_or_default())
    }
}

/// Why a value does not fit one of Bowman's settings (carried through DataFusion's error type
/// from the setting's parser, and turned into 22023 with the setting's name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Not written as the setting's values are; the hint says how they are.
    #[error("invalid value ({hint})")]
    Invalid { hint: &'static str },
    /// Well-formed but too large.
    #[error("outside the valid range ({range})")]
    OutOfRange { range: &'static str },
}

fn config_error(e: ValueError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A setting's type: how `SET` parses it and `SHOW` prints it (a value `SHOW` prints parses
/// back to the same value).
macro_rules! setting_field {
    ($t:ty) => {
        impl ConfigField for $t {
            fn visit<V: Visit>(&self, v: &mut V, key: &str, description: &'static str) {
                v.some(key, self, description)
            }

            fn set(&mut self, _key: &str, value: &str) -> datafusion::error::Result<()> {
                *self = value.parse().map_err(config_error)?;
                Ok(())
            }
        }
    };
}

/// `partition_overwrite_mode` (Spark's `spark.sql.sources.partitionOverwriteMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionOverwriteMode {
    /// Replace the partitions the query writes (Hive's and Bowman's default).
    #[default]
    Dynamic,
    /// Replace every partition the PARTITION spec matches (Spark's default).
    Static,
}

impl std::str::FromStr for PartitionOverwriteMode {
    type Err = ValueError;

    fn from_str(s: &str) -> std::result::Result<Self, ValueError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dynamic" => Ok(PartitionOverwriteMode::Dynamic),
            "static" => Ok(PartitionOverwriteMode::Static),
            _ => Err(ValueError::Invalid { hint: "use 'dynamic' or 'static'" }),
        }
    }
}

impl std::fmt::Display for PartitionOverwriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionOverwriteMode::Dynamic => "dynamic",
            PartitionOverwriteMode::Static => "static",
        })
    }
}

setting_field!(PartitionOverwriteMode);

/// A duration setting: milliseconds, or a number with a unit (`500ms`, `2s`, `1min`, `3h`,
/// `1d`), at most [`MAX_DURATION_MS`]. Shown in the largest unit that divides it, as
/// PostgreSQL shows `statement_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationSetting(pub Duration);

impl DurationSetting {
    pub const fn from_millis(ms: u64) -> Self {
        DurationSetting(Duration::from_millis(ms))
    }
}

const DURATION_FORM: &str = "use milliseconds or a unit: 500ms, 2s, 1min, 1h, 1d";
const DURATION_RANGE: &str = "0 .. 2147483647ms, about 24 days";

impl std::str::FromStr for DurationSetting {
    type Err = ValueError;

    fn from_str(s: &str) -> std::result::Result<Self, ValueError> {
        let ms = parse_duration_ms(s).ok_or(ValueError::Invalid { hint: DURATION_FORM })?;
        if ms > MAX_DURATION_MS {
            return Err(ValueError::OutOfRange { range: DURATION_RANGE });
        }
        Ok(DurationSetting::from_millis(ms))
    }
}

impl std::fmt::Display for DurationSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0");
        }
        let unit = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s")]
            .into_iter()
            .find(|(n, _)| ms % n == 0);
        match unit {
            Some((n, unit)) => write!(f, "{}{unit}", ms / n),
            None => write!(f, "{ms}ms"),
        }
    }
}

setting_field!(DurationSetting);

/// A size in bytes: a plain number or one with a binary unit (`512kB`, `128MB`, `1GB`, `1TB`;
/// `K`, `M`, `G`, `T` and `MiB`-style spellings too). Shown in the largest unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeSetting(pub u64);

const SIZE_FORM: &str = "use bytes or a unit: 512kB, 128MB, 1GB";
const SIZE_UNITS: [(u64, &str); 4] = [(1 << 40, "TB"), (1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")];

impl std::str::FromStr for SizeSetting {
    type Err = ValueError;

    fn from_str(s: &str) -> std::result::Result<Self, ValueError> {
        let invalid = ValueError::Invalid { hint: SIZE_FORM };
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| invalid.clone())?;
        let unit = unit.trim().to_ascii_uppercase();
        let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
        let factor = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(invalid),
        };
        n.checked_mul(factor)
            .filter(|b| i64::try_from(*b).is_ok())
            .map(SizeSetting)
            .ok_or(ValueError::OutOfRange { range: "0 .. 8388608TB" })
    }
}

impl std::fmt::Display for SizeSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match SIZE_UNITS.into_iter().find(|(n, _)| self.0 > 0 && self.0 % n == 0) {
            Some((n, unit)) => write!(f, "{}{unit}", self.0 / n),
            None => write!(f, "{}", self.0),
        }
    }
}

setting_field!(SizeSetting);

/// A count where 0 means no limit. Negative values mean no limit too, as in Spark's
/// `spark.sql.files.maxRecordsPerFile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountSetting(pub u64);

impl std::str::FromStr for CountSetting {
    type Err = ValueError;

    fn from_str(s: &str) -> std::result::Result<Self, ValueError> {
        let n: i64 = s.trim().parse().map_err(|_| ValueError::Invalid { hint: "use a whole number; 0 means no limit" })?;
        Ok(CountSetting(n.max(0) as u64))
    }
}

impl std::fmt::Display for CountSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

setting_field!(CountSetting);

/// Spark's names for Bowman's settings, as Spark spells them (compared case-insensitively).
const SPARK_ALIASES: &[(&str, &str)] = &[
    ("spark.sql.sources.partitionOverwriteMode", "partition_overwrite_mode"),
    ("spark.sql.files.maxRecordsPerFile", "max_records_per_file"),
];

/// Spark settings that only tune how Spark itself executes (parallelism, join strategies,
/// code generation): accepted and stored so Spark scripts run, with no effect in Bowman.
/// Other `spark.*` names would change results in ways Bowman does not implement, and are
/// refused.
const SPARK_IGNORED: &[&str] = &[
    "spark.sql.shuffle.partitions",
    "spark.sql.adaptive.enabled",
    "spark.sql.adaptive.coalescePartitions.enabled",
    "spark.sql.adaptive.skewJoin.enabled",
    "spark.sql.adaptive.advisoryPartitionSizeInBytes",
    "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.broadcastTimeout",
    "spark.sql.cbo.enabled",
    "spark.sql.codegen.wholeStage",
    "spark.sql.execution.arrow.pyspark.enabled",
    "spark.sql.files.maxPartitionBytes",
    "spark.sql.files.openCostInBytes",
    "spark.sql.hive.convertMetastoreParquet",
    "spark.sql.optimizer.dynamicPartitionPruning.enabled",
    "spark.sql.parquet.filterPushdown",
    "spark.databricks.delta.optimizeWrite.enabled",
    "spark.databricks.delta.autoCompact.enabled",
];

/// Prefixes whose names are checked: any other name with a dot is a custom setting, stored and
/// read back (`SET myapp.tenant = 'x'`, `current_setting('myapp.tenant')`), as in PostgreSQL.
const RESERVED_PREFIXES: &[&str] = &["bowman", "datafusion", "spark"];

/// PostgreSQL settings drivers and tools send on connect or in sessions (pgjdbc, psycopg,
/// SQLAlchemy, npgsql, dbt, Airflow, DBeaver, Metabase, Tableau, pgAdmin, pg_dump), with
/// PostgreSQL's defaults where Bowman behaves so. They are accepted and stored; only
/// `search_path`, `timezone`, `client_encoding`, `application_name`, `datestyle` and
/// `intervalstyle` change what Bowman does or reports.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("array_nulls", "on"),
    ("backslash_quote", "safe_encoding"),
    ("bytea_output", "hex"),
    ("check_function_bodies", "on"),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    // Bowman tables have no access method; SQLAlchemy 2.1 compares pg_am names with this.
    ("default_table_access_method", "heap"),
    ("default_tablespace", ""),
    ("default_transaction_deferrable", "off"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("effective_cache_size", "4GB"),
    ("escape_string_warning", "on"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("idle_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("jit", "off"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("lock_timeout", "0"),
    ("maintenance_work_mem", "64MB"),
    ("max_identifier_length", "63"),
    ("max_parallel_workers_per_gather", "2"),
    ("plan_cache_mode", "auto"),
    ("quote_all_identifiers", "off"),
    ("row_security", "on"),
    ("server_encoding", "UTF8"),
    ("server_version", bowman_udfs::pg::PG_COMPAT_VERSION),
    ("server_version_num", "160006"),
    ("session_replication_role", "origin"),
    ("ssl_renegotiation_limit", "0"),
    ("standard_conforming_strings", "on"),
    ("synchronous_commit", "on"),
    ("temp_buffers", "8MB"),
    ("timezone", "UTC"),
    ("timezone_abbreviations", "Default"),
    ("transaction_deferrable", "off"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
    ("work_mem", "4MB"),
    ("xmlbinary", "base64"),
    ("xmloption", "content"),
];

/// What the parser names `SET TRANSACTION ...` and `SET SESSION CHARACTERISTICS|AUTHORIZATION
/// ...` (accepted: Bowman runs every statement read committed, as its own role).
const STATEMENT_FORMS: &[&str] = &["transaction", "session_characteristics"];

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

/// The PostgreSQL and custom settings a session has set (Bowman's own live in the session's
/// [`BowmanOptions`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    values: BTreeMap<String, String>,
}

fn key(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "time zone" | "time_zone" | "spark.sql.session.timezone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        other => other.to_string(),
    }
}

fn default_of(k: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

/// The field of [`BowmanOptions`] a (lower-cased) name sets: its own name, with or without
/// `bowman.`, or Spark's name for it.
fn bowman_field(k: &str) -> Option<String> {
    if let Some((_, field)) = SPARK_ALIASES.iter().find(|(spark, _)| spark.eq_ignore_ascii_case(k)) {
        return Some(field.to_string());
    }
    let short = k.strip_prefix("bowman.").unwrap_or(k);
    BowmanOptions::default().entries().into_iter().map(|e| e.key).find(|f| f == short)
}

/// Whether `SET` stores a name that is not one of Bowman's own settings.
fn accepted(k: &str) -> bool {
    if default_of(k).is_some() || k == "search_path" || STATEMENT_FORMS.contains(&k) {
        return true;
    }
    if SPARK_IGNORED.iter().any(|s| s.eq_ignore_ascii_case(k)) {
        return true;
    }
    match k.split_once('.') {
        Some((prefix, rest)) => !prefix.is_empty() && !rest.is_empty() && !RESERVED_PREFIXES.contains(&prefix),
        None => false,
    }
}

/// The name a client sees in ParameterStatus for a changed setting, if it is reported.
pub fn reported_name(name: &str) -> Option<&'static str> {
    let k = key(name);
    REPORTED.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
}

fn strip_quotes(v: &str) -> String {
    v.trim().trim_matches('\'').to_string()
}

impl Session {
    /// Bowman's settings as this session has them (the server's defaults, changed by `SET`).
    pub fn bowman_settings(&self) -> BowmanOptions {
        let state = self.ctx.state_ref();
        let state = state.read();
        state.config().options().extensions.get::<BowmanOptions>().cloned().unwrap_or_else(|| self.engine.setting_defaults())
    }

    fn update_bowman_settings<R>(&self, f: impl FnOnce(&mut BowmanOptions) -> R) -> R {
        let defaults = self.engine.setting_defaults();
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let extensions = &mut state.config_mut().options_mut().extensions;
        if extensions.get::<BowmanOptions>().is_none() {
            extensions.insert(defaults);
        }
        f(extensions.get_mut::<BowmanOptions>().expect("inserted above"))
    }
}

/// The 22023 for a value a setting does not take.
fn invalid_value(name: &str, value: &str, e: &DataFusionError) -> BowmanError {
    let problem = match e {
        DataFusionError::External(inner) => inner.downcast_ref::<ValueError>().cloned(),
        _ => None,
    };
    match problem {
        Some(ValueError::OutOfRange { range }) => BowmanError::InvalidParameterValue {
            message: format!("{value} is outside the valid range for parameter \"{name}\" ({range})"),
            hint: None,
        },
        Some(ValueError::Invalid { hint }) => BowmanError::InvalidParameterValue {
            message: format!("invalid value for parameter \"{name}\": \"{value}\""),
            hint: Some(hint.to_string()),
        },
        None => BowmanError::InvalidParameterValue {
            message: format!("invalid value for parameter \"{name}\": \"{value}\""),
            hint: Some(e.to_string()),
        },
    }
}

pub(crate) fn set(session: &mut Session, name: &str, value: SetValue) -> Result<Output> {
    let k = key(name);
    if k.starts_with("datafusion.") {
        return set_datafusion(session, name, &k, value);
    }
    if let Some(field) = bowman_field(&k) {
        return set_bowman(session, &k, &field, value);
    }
    if !accepted(&k) {
        return Err(BowmanError::UnknownSetting(k));
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

fn set_datafusion(session: &mut Session, name: &str, k: &str, value: SetValue) -> Result<Output> {
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
        .set(k, &value)
        .map_err(|_| BowmanError::UnknownSetting(name.to_string()))?;
    Ok(Output::Set { name: k.to_string(), value })
}

/// `SET` of one of Bowman's settings, under any of its names; `DEFAULT` is the server's.
fn set_bowman(session: &mut Session, k: &str, field: &str, value: SetValue) -> Result<Output> {
    let value = match value {
        SetValue::Value(v) => strip_quotes(&v),
        SetValue::Default => session.engine.setting_defaults().shown(field).unwrap_or_default(),
    };
    session.update_bowman_settings(|o| ExtensionOptions::set(o, field, &value)).map_err(|e| invalid_value(k, &value, &e))?;
    let shown = session.bowman_settings().shown(field).unwrap_or(value);
    Ok(Output::Set { name: k.to_string(), value: shown })
}

pub(crate) fn reset(session: &mut Session, name: Option<&str>) -> Result<Output> {
    match name {
        None => {
            session.settings.values.clear();
            let defaults = session.engine.setting_defaults();
            session.update_bowman_settings(|o| *o = defaults);
        }
        Some(n) => {
            let k = key(n);
            if let Some(field) = bowman_field(&k) {
                set_bowman(session, &k, &field, SetValue::Default)?;
            } else if accepted(&k) || k.starts_with("datafusion.") {
                session.settings.values.remove(&k);
            } else {
                return Err(BowmanError::UnknownSetting(k));
            }
        }
    }
    Ok(Output::command("RESET"))
}

pub(crate) fn show_value(session: &Session, name: &str) -> Option<String> {
    let k = key(name);
    if k.starts_with("datafusion.") {
        let state = session.ctx.state_ref();
        let state = state.read();
        return state
            .config()
            .options()
            .entries()
            .into_iter()
            .find(|e| e.key == k)
            .map(|e| e.value.unwrap_or_default());
    }
    if let Some(field) = bowman_field(&k) {
        return session.bowman_settings().shown(&field);
    }
    if let Some(v) = session.settings.values.get(&k) {
        return Some(v.clone());
    }
    match k.as_str() {
        "search_path" => Some(search_path(session)),
        _ => default_of(&k).map(str::to_string),
    }
}

/// Every setting with its current value, by name: PostgreSQL's, Bowman's (by their short
/// names) and what the session set.
fn all_values(session: &Session, bowman: &BowmanOptions) -> BTreeMap<String, String> {
    // Every statement reads this (for `current_setting`), so no name goes through `show_value`.
    let mut values: BTreeMap<String, String> = DEFAULTS.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    values.insert("search_path".into(), search_path(session));
    for e in bowman.entries() {
        values.insert(e.key, e.value.unwrap_or_default());
    }
    for (k, v) in &session.settings.values {
        values.insert(k.clone(), v.clone());
    }
    values
}

/// Every setting's current value, by its lower-case name (what `current_setting(name)` reads
/// when the name is only known at execution, as a bound parameter).
pub(crate) fn snapshot(session: &Session) -> std::collections::HashMap<String, String> {
    let bowman = session.bowman_settings();
    let mut values: std::collections::HashMap<String, String> = all_values(session, &bowman).into_iter().collect();
    for e in bowman.entries() {
        values.insert(format!("bowman.{}", e.key), e.value.unwrap_or_default());
    }
    for (spark, field) in SPARK_ALIASES {
        values.insert(spark.to_ascii_lowercase(), bowman.shown(field).unwrap_or_default());
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
        let rows = all_values(session, &session.bowman_settings()).into_iter().map(|(k, v)| vec![Some(k), Some(v)]).collect();
        return Output::text_rows(&["name", "setting"], rows);
    }
    let value = show_value(session, name).ok_or_else(|| BowmanError::UnknownSetting(name.to_string()))?;
    let column = key(name);
    Output::text_rows(&[column.as_str()], vec![vec![Some(value)]])
}

/// The server-wide defaults of Bowman's settings: `pairs` (bowman.toml's `[settings]`, then
/// `BOWMAN_SETTING_*`) over the built-in defaults, under any name `SET` takes.
pub fn server_defaults<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<BowmanOptions> {
    let mut options = BowmanOptions::default();
    for (name, value) in pairs {
        let k = key(name);
        let field = bowman_field(&k).ok_or_else(|| BowmanError::UnknownSetting(k.clone()))?;
        ExtensionOptions::set(&mut options, &field, value.trim()).map_err(|e| invalid_value(&k, value.trim(), &e))?;
    }
    Ok(options)
}

/// The detail of a 42704 for `name`: why a name under a checked prefix is refused.
pub(crate) fn unknown_detail(name: &str) -> Option<String> {
    let k = key(name);
    if k.starts_with("spark.") {
        return Some(format!(
            "Bowman honours {} and spark.sql.session.timeZone, and accepts Spark's tuning settings (listed in \
             docs/settings.md) without effect; other spark.* settings change results in ways Bowman does not implement.",
            SPARK_ALIASES.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
        ));
    }
    None
}

/// The hint of a 42704 for `name`: the closest known setting, else where settings are listed.
pub(crate) fn unknown_hint(name: &str) -> String {
    let k = key(name);
    let mut known: Vec<String> = if k.starts_with("datafusion.") {
        datafusion::config::ConfigOptions::default().entries().into_iter().map(|e| e.key).collect()
    } else {
        let bowman = BowmanOptions::default().entries();
        let mut names: Vec<String> = DEFAULTS.iter().map(|(n, _)| n.to_string()).collect();
        names.push("search_path".into());
        names.extend(bowman.iter().map(|e| e.key.clone()));
        names.extend(bowman.iter().map(|e| format!("bowman.{}", e.key)));
        names.extend(SPARK_ALIASES.iter().map(|(s, _)| s.to_string()));
        names.extend(SPARK_IGNORED.iter().map(|s| s.to_string()));
        names
    };
    known.sort();
    match closest(&k, &known) {
        Some(best) => format!("Perhaps you meant \"{best}\"."),
        None => "SHOW ALL lists the settings; a name with a dot (myapp.tenant) is a custom setting, as in PostgreSQL."
            .to_string(),
    }
}

/// The name in `known` nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(name, &k.to_ascii_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The largest duration a setting takes: PostgreSQL's limit for `statement_timeout`
/// (`INT_MAX` milliseconds), far from where deadlines overflow.
pub const MAX_DURATION_MS: u64 = i32::MAX as u64;

/// A duration setting in milliseconds (a number of milliseconds or a number with a unit);
/// `None` when it does not parse, or overflows.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_parse_back() {
        for text in ["0", "1ms", "1500ms", "2s", "1min", "90s", "3h", "24d"] {
            let d: DurationSetting = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<DurationSetting>().unwrap(), d, "{text}");
        }
        assert_eq!("60s".parse::<DurationSetting>().unwrap().to_string(), "1min");
        assert_eq!("1500".parse::<DurationSetting>().unwrap().to_string(), "1500ms");
        assert_eq!("25d".parse::<DurationSetting>(), Err(ValueError::OutOfRange { range: DURATION_RANGE }));
        assert!(matches!("soon".parse::<DurationSetting>(), Err(ValueError::Invalid { .. })));
        for (text, bytes, shown) in [
            ("128MB", 128 << 20, "128MB"),
            ("1GB", 1 << 30, "1GB"),
            ("1GiB", 1 << 30, "1GB"),
            ("512kB", 512 << 10, "512kB"),
            ("1000", 1000, "1000"),
            ("2048", 2048, "2kB"),
            ("0", 0, "0"),
            (" 64 m ", 64 << 20, "64MB"),
        ] {
            let s: SizeSetting = text.parse().unwrap();
            assert_eq!((s.0, s.to_string().as_str()), (bytes, shown), "{text}");
            assert_eq!(s.to_string().parse::<SizeSetting>().unwrap(), s);
        }
        assert!(matches!("1.5GB".parse::<SizeSetting>(), Err(ValueError::Invalid { .. })));
        assert!(matches!("big".parse::<SizeSetting>(), Err(ValueError::Invalid { .. })));
        assert!(matches!("99999999TB".parse::<SizeSetting>(), Err(ValueError::OutOfRange { .. })));
        assert_eq!("-1".parse::<CountSetting>().unwrap(), CountSetting(0));
        assert_eq!("STATIC".parse::<PartitionOverwriteMode>().unwrap(), PartitionOverwriteMode::Static);
    }

    #[test]
    fn names() {
        assert_eq!(bowman_field("file_retention").as_deref(), Some("file_retention"));
        assert_eq!(bowman_field("bowman.target_file_size").as_deref(), Some("target_file_size"));
        assert_eq!(bowman_field("spark.sql.sources.partitionoverwritemode").as_deref(), Some("partition_overwrite_mode"));
        assert_eq!(bowman_field("spark.sql.files.maxrecordsperfile").as_deref(), Some("max_records_per_file"));
        assert_eq!(bowman_field("bowman.nope"), None);
        assert!(accepted("extra_float_digits") && accepted("myapp.tenant") && accepted("spark.sql.shuffle.partitions"));
        assert!(!accepted("no_such_setting") && !accepted("spark.sql.ansi.enabled") && !accepted("bowman.nope"));
        assert!(!accepted(".x") && !accepted("x."));
        assert_eq!(unknown_hint("file_retension"), "Perhaps you meant \"file_retention\".");
        assert_eq!(unknown_hint("spark.sql.sources.partitionOverwriteMod"), "Perhaps you meant \"spark.sql.sources.partitionOverwriteMode\".");
        assert!(unknown_hint("datafusion.execution.batch_sise").contains("datafusion.execution.batch_size"));
        assert!(unknown_hint("zzz").starts_with("SHOW ALL"));
    }

    #[test]
    fn server_defaults_use_the_names_set_takes() {
        let o = server_defaults([("file_retention", "10min"), ("spark.sql.files.maxRecordsPerFile", "1000"), ("BOWMAN.TARGET_FILE_SIZE", "1GB")])
            .unwrap();
        assert_eq!(o.file_retention(), Duration::from_secs(600));
        assert_eq!(o.max_records_per_file(), Some(1000));
        assert_eq!(o.target_file_size(), Some(1 << 30));
        assert_eq!(o.statement_timeout(), None);
        assert_eq!(o.progress_interval(), Duration::from_secs(2));
        assert_eq!(server_defaults([("no_such", "1")]).unwrap_err().sqlstate(), "42704");
        assert_eq!(server_defaults([("statement_timeout", "25d")]).unwrap_err().sqlstate(), "22023");
    }
}
