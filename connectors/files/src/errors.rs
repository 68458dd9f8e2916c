use bowman_connector::{ConnectorError, ErrorKind};
use datafusion::error::DataFusionError;
use thiserror::Error;

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum FilesError {
    #[error("unknown file format '{0}'")]
    UnknownFormat(String),
    #[error("a file table needs a LOCATION")]
    MissingLocation,
    #[error("invalid LOCATION '{0}': {1}")]
    InvalidLocation(String, String),
    #[error("LOCATION '{0}' does not exist, nor does the directory it would be made in; create that first, or omit LOCATION to make a managed table")]
    LocationNotFound(String),
    #[error("cannot infer the schema: no data files at '{0}'; list the columns in CREATE TABLE, or add files first")]
    NothingToInfer(String),
    #[error("partition column '{0}' is not among the table's columns")]
    UnknownPartitionColumn(String),
    #[error("option {0} = '{1}' is invalid: {2}")]
    InvalidOption(String, String, String),
    #[error("S3 location '{location}' is not reachable: {reason}")]
    S3Unreachable { location: String, reason: String },
    #[error("S3 refused access to '{location}': {reason}; check the access key, secret and region")]
    S3AccessDenied { location: String, reason: String },
    #[error("S3 bucket of '{0}' does not exist")]
    S3BucketNotFound(String),
}

impl FilesError {
    fn kind(&self) -> ErrorKind {
        match self {
            FilesError::UnknownFormat(_) => ErrorKind::Unsupported,
            FilesError::MissingLocation
            | FilesError::InvalidLocation(..)
            | FilesError::UnknownPartitionColumn(_)
            | FilesError::InvalidOption(..) => ErrorKind::InvalidOption,
            FilesError::LocationNotFound(_) | FilesError::S3BucketNotFound(_) => {
                ErrorKind::NotFound
            }
            FilesError::NothingToInfer(_) => ErrorKind::NotFound,
            FilesError::S3Unreachable { .. } => ErrorKind::Unreachable,
            FilesError::S3AccessDenied { .. } => ErrorKind::AccessDenied,
        }
    }
}

impl From<FilesError> for DataFusionError {
    fn from(e: FilesError) -> Self {
        ConnectorError::new(e.kind(), e.to_string()).into()
    }
}
