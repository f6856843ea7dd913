//! Errors of the data model. Every malformed input maps to one variant; nothing panics.

use thiserror::Error;

/// A label set that cannot be stored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LabelError {
    /// The name is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}: names must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
    /// The name is reserved (starts with `__` or is a fixed column of the samples table).
    #[error("label name {0:?} is reserved")]
    ReservedName(String),
    /// The name is longer than the limit.
    #[error("label name is {len} bytes, the limit is {max}")]
    NameTooLong {
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A value is longer than the limit.
    #[error("value of label {name:?} is {len} bytes, the limit is {max}")]
    ValueTooLong {
        /// Label name.
        name: String,
        /// Actual length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Too many label names in one series.
    #[error("series has {count} labels, the limit is {max}")]
    TooMany {
        /// Actual count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// The same name twice in one series.
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    /// No `service_name` label (and no application name to fall back to).
    #[error("missing service_name label")]
    MissingServiceName,
}

/// A profile that cannot be decoded or normalized.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is empty.
    #[error("empty profile")]
    Empty,
    /// gzip stream is corrupt or truncated.
    #[error("invalid gzip data: {0}")]
    Gzip(String),
    /// Decompressed (or raw) profile is larger than the limit.
    #[error("profile exceeds {max} bytes uncompressed")]
    TooLarge {
        /// Limit in bytes.
        max: usize,
    },
    /// Not a valid protobuf `perftools.profiles.Profile`.
    #[error("invalid pprof protobuf: {0}")]
    Protobuf(String),
    /// The profile declares no sample types.
    #[error("profile has no sample types")]
    NoSampleTypes,
    /// `string_table[0]` must be the empty string.
    #[error("string table must start with an empty string")]
    BadStringTable,
    /// A string index points outside the string table.
    #[error("string index {index} out of range (string table has {len} entries)")]
    StringIndex {
        /// Offending index.
        index: i64,
        /// String table length.
        len: usize,
    },
    /// A sample references a location that does not exist.
    #[error("sample references unknown location id {0}")]
    UnknownLocation(u64),
    /// A location line references a function that does not exist.
    #[error("location {location} references unknown function id {function}")]
    UnknownFunction {
        /// Location id.
        location: u64,
        /// Function id.
        function: u64,
    },
    /// Ids must be non-zero and unique.
    #[error("{kind} id {id} is zero or duplicated")]
    BadId {
        /// `location`, `function` or `mapping`.
        kind: &'static str,
        /// The id.
        id: u64,
    },
    /// A sample's value count differs from the number of sample types.
    #[error("sample has {got} values, the profile declares {want} sample types")]
    ValueCount {
        /// Values in the sample.
        got: usize,
        /// Sample types declared.
        want: usize,
    },
    /// A negative sample value (pprof deltas are not accepted for storage).
    #[error("negative sample value {0}")]
    NegativeValue(i64),
    /// Values of one stack sum past `i64::MAX`.
    #[error("sample values overflow a 64-bit sum")]
    ValueOverflow,
    /// Too many samples in one profile.
    #[error("profile has {count} samples, the limit is {max}")]
    TooManySamples {
        /// Actual count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// A string in the profile is not UTF-8 (prost rejects it while decoding).
    #[error("invalid UTF-8 in profile strings")]
    InvalidUtf8,
    /// A label in the profile's sample labels is invalid.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// A profile type component contains `:` or is empty where required.
    #[error("invalid profile type: {0}")]
    ProfileType(String),
}
