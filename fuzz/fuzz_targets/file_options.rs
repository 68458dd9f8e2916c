//! The OPTIONS and LOCATION of a file table (`USING parquet | json | csv`, `STORED AS ...`), as
//! Bowman's files connector turns them into a table: the format's options (`header`,
//! `delimiter`/`sep`, `quote`, `escape`, `compression`, `file_extension`), the location (local
//! path, `file://`, `s3://`), and the table's S3 client settings (`endpoint`, `region`,
//! `allow_http`, keys, and every other `object_store` S3 key a user may write). Any options
//! must give a table or an error, never a panic. Nothing here touches the network: the table
//! is given a schema (so no files are listed to infer one) and no location is checked.
//!
//! Input: the first line names the format and the location (`parquet s3://fuzz/t`); then one
//! `key=value` option per line; the key `partitioned_by` lists partition columns.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use bowman_connector_files::{FilesTableProviderFactory, S3Settings, StoreCalls};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProviderFactory;
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::CreateExternalTable;
use datafusion::prelude::SessionContext;
use libfuzzer_sys::fuzz_target;

static CTX: LazyLock<SessionContext> = LazyLock::new(SessionContext::new);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    let (format, location) = head.split_once(' ').unwrap_or((head, "/tmp/bowman-fuzz/t"));
    let mut options: HashMap<String, String> = HashMap::new();
    let mut partition_cols = Vec::new();
    for line in lines {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        if k == "partitioned_by" {
            partition_cols = v.split(',').map(|c| c.trim().to_string()).collect();
        } else {
            options.insert(k.to_string(), v.to_string());
        }
    }
    let schema = Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("dt", DataType::Utf8, true),
    ]);
    let Ok(schema) = DFSchema::try_from(schema) else { return };
    let cmd = CreateExternalTable::builder(TableReference::partial("default", "t"), location.to_string(), format.to_string(), Arc::new(schema))
        .with_partition_cols(partition_cols)
        .with_options(options.clone())
        .build();
    // A new connector each time: its S3 clients are cached by settings.
    let files = FilesTableProviderFactory::new(S3Settings::default(), Arc::new(StoreCalls::default()));
    let state = CTX.state();
    let _ = futures::executor::block_on(files.create(&state, &cmd)).map_err(|e| e.to_string());
    // Redshift hands UNLOAD the credentials of the bucket, built from the same options.
    let lowered = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let _ = files.s3_credential_provider(location, &lowered).map_err(|e| e.to_string());
});
