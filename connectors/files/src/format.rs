use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;

use crate::errors::{FilesError, Result};

/// The file formats of file tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormatKind {
    Parquet,
    Json,
    Csv,
}

impl FileFormatKind {
    /// Accepts the `USING` names and the Hive `STORED AS` names (`PARQUET`, `JSONFILE`, `TEXTFILE`
    /// is not a format here), and Spark's fully qualified source names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" | "org.apache.spark.sql.parquet" => Some(FileFormatKind::Parquet),
            "json" | "jsonfile" | "org.apache.spark.sql.json" => Some(FileFormatKind::Json),
            "csv" | "org.apache.spark.sql.csv" => Some(FileFormatKind::Csv),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            FileFormatKind::Parquet => "parquet",
            FileFormatKind::Json => "json",
            FileFormatKind::Csv => "csv",
        }
    }
}

fn flag(options: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool> {
    match options.get(key) {
        None => Ok(default),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(FilesError::InvalidOption(key.into(), v.clone(), "expected true or false".into())),
        },
    }
}

fn single_byte(options: &BTreeMap<String, String>, key: &str) -> Result<Option<u8>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => {
            let unescaped = match v.as_str() {
                "\\t" => "\t",
                other => other,
            };
            match unescaped.as_bytes() {
                [b] => Ok(Some(*b)),
                _ => Err(FilesError::InvalidOption(key.into(), v.clone(), "expected a single ASCII character".into())),
            }
        }
    }
}

fn compression(options: &BTreeMap<String, String>) -> Result<FileCompressionType> {
    match options.get("compression").map(|s| s.to_ascii_lowercase()) {
        None => Ok(FileCompressionType::UNCOMPRESSED),
        Some(c) => match c.as_str() {
            "none" | "uncompressed" => Ok(FileCompressionType::UNCOMPRESSED),
            "gzip" | "gz" => Ok(FileCompressionType::GZIP),
            "bzip2" | "bz2" => Ok(FileCompressionType::BZIP2),
            "xz" => Ok(FileCompressionType::XZ),
            "zstd" => Ok(FileCompressionType::ZSTD),
            _ => Err(FilesError::InvalidOption(
                "compression".into(),
                c.clone(),
                "expected gzip, bzip2, xz, zstd or uncompressed".into(),
            )),
        },
    }
}

/// Listing options (format and file extension) for a table's options.
pub(crate) fn listing_options(kind: FileFormatKind, options: &BTreeMap<String, String>) -> Result<ListingOptions> {
    let format: Arc<dyn FileFormat> = match kind {
        FileFormatKind::Parquet => {
            if let Some(c) = options.get("compression") {
                let mut opts = datafusion::config::TableParquetOptions::default();
                opts.global.compression = Some(c.to_ascii_lowercase());
                Arc::new(ParquetFormat::default().with_options(opts))
            } else {
                Arc::new(ParquetFormat::default())
            }
        }
        FileFormatKind::Json => Arc::new(JsonFormat::default().with_file_compression_type(compression(options)?)),
        FileFormatKind::Csv => {
            let mut csv = CsvFormat::default()
                .with_has_header(flag(options, "header", false)?)
                .with_file_compression_type(compression(options)?);
            if let Some(d) = single_byte(options, "delimiter")?.or(single_byte(options, "sep")?) {
                csv = csv.with_delimiter(d);
            }
            if let Some(q) = single_byte(options, "quote")? {
                csv = csv.with_quote(q);
            }
            if let Some(e) = single_byte(options, "escape")? {
                csv = csv.with_escape(Some(e));
            }
            Arc::new(csv)
        }
    };
    let extension = match options.get("file_extension") {
        Some(ext) => ext.clone(),
        None => format.get_ext_with_compression(&compression_for_ext(kind, options)?).unwrap_or_else(|_| format.get_ext()),
    };
    Ok(ListingOptions::new(format).with_file_extension(extension))
}

fn compression_for_ext(kind: FileFormatKind, options: &BTreeMap<String, String>) -> Result<FileCompressionType> {
    match kind {
        FileFormatKind::Parquet => Ok(FileCompressionType::UNCOMPRESSED),
        _ => compression(options),
    }
}
