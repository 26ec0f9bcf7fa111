//! The error type of `ekvae-envs`.
//!
//! Every variant that concerns a file names the file, so that a command line tool can
//! print the error as one line that says which file is wrong and how.

use std::path::PathBuf;

/// Everything that can go wrong in `ekvae-envs`: invalid arguments and dataset file I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is outside its valid range (zero episodes, an image smaller than 8 pixels, ...).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument, e.g. `"image size"`.
        what: &'static str,
        /// Why it is invalid, and what is allowed.
        reason: String,
    },
    /// An operating-system error while reading or writing a file.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done, e.g. `"open the dataset"`.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An output path that must not be written: not a regular file, or one of the inputs.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// What it is and what to do.
        reason: String,
    },
    /// The file is not a readable `.npz` (zip) archive: truncated, corrupt or not a zip at all.
    #[error("{}: not a readable .npz archive (truncated or corrupt?): {reason}", path.display())]
    Archive {
        /// The file concerned.
        path: PathBuf,
        /// What the zip reader reported.
        reason: String,
    },
    /// A required array is absent from the archive.
    #[error("{}: array '{name}' is missing (found: {found}); is this an ekvae dataset?", path.display())]
    MissingArray {
        /// The file concerned.
        path: PathBuf,
        /// The missing array.
        name: &'static str,
        /// The arrays that are present, comma separated.
        found: String,
    },
    /// An array has the wrong element type.
    #[error("{}: array '{name}' has dtype {found}, expected {expected}", path.display())]
    WrongDtype {
        /// The file concerned.
        path: PathBuf,
        /// The array.
        name: &'static str,
        /// The numpy type string expected, e.g. `<f4`.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// An array has the wrong number of dimensions or extents inconsistent with the others.
    #[error("{}: array '{name}' has shape {found:?}, expected {expected}", path.display())]
    WrongShape {
        /// The file concerned.
        path: PathBuf,
        /// The array.
        name: &'static str,
        /// The expected shape, in words (e.g. `[N, T, 1] = [10, 50, 1]`).
        expected: String,
        /// The shape found.
        found: Vec<u64>,
    },
    /// An array's data could not be read completely or fails its checksum.
    #[error("{}: array '{name}' is truncated or corrupt: {reason}", path.display())]
    CorruptArray {
        /// The file concerned.
        path: PathBuf,
        /// The array.
        name: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A value that must be finite (a state, action or reward) is NaN or infinite.
    #[error("{}: {name}[{index}] is {value}, but every value must be finite", path.display())]
    NonFinite {
        /// The file concerned.
        path: PathBuf,
        /// The array.
        name: &'static str,
        /// Flat index of the first bad value.
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// The `meta` array is not valid UTF-8 JSON of the expected form, or disagrees with the arrays.
    #[error("{}: bad metadata: {reason}", path.display())]
    BadMeta {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The dataset was written in a format version this build cannot read.
    #[error("{}: dataset format version {found} is not supported (this build reads versions 1 to {supported}); re-collect it with this version of ekvae", path.display())]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An in-memory dataset whose arrays do not fit its declared extents.
    #[error("inconsistent dataset: {0}")]
    Inconsistent(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
