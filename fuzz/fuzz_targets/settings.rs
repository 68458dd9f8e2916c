//! Session settings as a client sets them: `SET name = 'value'` (and `TO`, bare values and
//! `DEFAULT`) through a real Bowman session, then `SHOW name` and a statement that runs under
//! the setting (statement_timeout's deadline is computed for every statement). The duration
//! settings (`statement_timeout`, `progress_interval`, `file_retention`) and the others Bowman
//! checks (`partition_overwrite_mode`, `search_path`, `timezone`) must take a value or refuse
//! it with a SQLSTATE (22023 for a bad value), never panic or answer XX000.
//!
//! Input: the first byte picks the setting and how the value is written; the rest is the value.
#![no_main]

use std::sync::{Arc, LazyLock};

use bowman_sql::{Engine, EngineConfig, S3Settings};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "statement_timeout",
    "progress_interval",
    "file_retention",
    "partition_overwrite_mode",
    "search_path",
    "timezone",
    "application_name",
    "datestyle",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = runtime.block_on(async {
        let store = bowman_catalog::open_store(dir.path().join("catalog.db").to_str().expect("UTF-8 path"))
            .await
            .expect("catalog store");
        let catalog = Arc::new(bowman_catalog::Catalog::open(store).await.expect("catalog"));
        Engine::new(catalog, EngineConfig {
            warehouse: format!("file://{}", dir.path().join("warehouse").display()),
            s3: S3Settings::default(),
            memory_limit: 256 << 20,
            password_hasher: None,
            compose: bowman_sql::Compose::new(bowman_sql::Components::none),
        })
        .expect("engine")
    });
    Fixture { runtime, engine, _dir: dir }
});

fn check(result: &bowman_sql::Result<Vec<bowman_sql::Output>>, sql: &str) {
    if let Err(e) = result {
        let code = e.code();
        assert_ne!(code, "XX000", "{sql:?} -> {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, value)) = data.split_first() else { return };
    let Ok(value) = std::str::from_utf8(value) else { return };
    let name = NAMES[pick as usize % NAMES.len()];
    let set = match (pick as usize / NAMES.len()) % 4 {
        0 => format!("SET {name} = '{}'", value.replace('\'', "''")),
        1 => format!("SET {name} TO '{}'", value.replace('\'', "''")),
        2 => format!("SET {name} = {value}"),
        _ => format!("SET {name} TO DEFAULT"),
    };
    let f = &*FIXTURE;
    let mut session = f.engine.new_session();
    f.runtime.block_on(async {
        let result = session.execute_sql(&set).await;
        check(&result, &set);
        if let Err(e) = &result {
            let duration = NAMES[..3].contains(&name);
            if duration && e.code() != "42601" {
                assert_eq!(e.code(), "22023", "{set:?} -> {e:?}");
            }
        }
        let show = format!("SHOW {name}");
        let shown = session.execute_sql(&show).await;
        assert!(shown.is_ok(), "{show:?} after {set:?} -> {:?}", shown.err());
        // The value the readers of the setting see, clamped as they clamp it.
        if let Some(ms) = session.setting(name).and_then(|v| bowman_sql::parse_duration_ms(&v)) {
            let _ = std::time::Instant::now() + std::time::Duration::from_millis(ms.min(i32::MAX as u64));
        }
    });
});
