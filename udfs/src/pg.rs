//! PostgreSQL session functions.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// The PostgreSQL version Bowman's wire protocol and catalog answer as.
pub const PG_COMPAT_VERSION: &str = "16.6";

/// `version()`: PostgreSQL's shape (`PostgreSQL 16.6 ...`), which drivers such as SQLAlchemy
/// parse, followed by what this really is.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_COMPAT_VERSION} (Bowman {} on Apache DataFusion, {}-{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

macro_rules! nullary_string_udf {
    ($ty:ident, $name:literal, $volatility:expr, |$args:ident| $body:expr) => {
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $ty {
            signature: Signature,
        }

        impl $ty {
            pub fn new() -> Self {
                Self { signature: Signature::nullary($volatility) }
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ScalarUDFImpl for $ty {
            fn name(&self) -> &str {
                $name
            }

            fn signature(&self) -> &Signature {
                &self.signature
            }

            fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
                Ok(DataType::Utf8)
            }

            fn invoke_with_args(&self, $args: ScalarFunctionArgs) -> Result<ColumnarValue> {
                let value: String = $body;
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value))))
            }
        }
    };
}

nullary_string_udf!(VersionFunc, "version", Volatility::Immutable, |_args| version_string());

// The PostgreSQL "database" a client is in is Bowman's catalog; Spark databases are PostgreSQL
// schemas, so `current_schema()` is the database `USE` selected, with the default database
// under its PostgreSQL name, `public` (as pg_namespace and information_schema list it).
nullary_string_udf!(CurrentDatabaseFunc, "current_database", Volatility::Stable, |args| args
    .config_options
    .catalog
    .default_catalog
    .clone());
nullary_string_udf!(CurrentSchemaFunc, "current_schema", Volatility::Stable, |args| {
    match args.config_options.catalog.default_schema.as_str() {
        "default" => "public".to_string(),
        other => other.to_string(),
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_parseable_as_postgres() {
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 16.6 "), "{v}");
        assert!(v.contains("Bowman"));
    }
}
