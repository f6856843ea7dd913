//! Where the tables live: a storage URL plus object-store options.

use std::collections::HashMap;
use std::path::Path;

use url::Url;

use crate::error::StorageError;

/// Storage location and options, independent of how they were configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    /// `file:///abs/dir`, a plain path (`./data`), `s3://bucket/prefix`, `gs://bucket/prefix`
    /// or `az://container/prefix`.
    pub url: String,
    /// Object-store options passed to delta-rs (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, ...). Options not
    /// given here are read by the object store from the usual environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`, ...).
    pub options: HashMap<String, String>,
}

/// How long the object store retries one request before it gives up (see
/// [`StorageConfig::delta_options`]).
pub const DEFAULT_RETRY_TIMEOUT: &str = "10s";

impl StorageConfig {
    /// A local directory.
    pub fn local(path: impl AsRef<Path>) -> Self {
        Self {
            url: path.as_ref().display().to_string(),
            options: HashMap::new(),
        }
    }

    /// Resolves the base URL of the table root; local directories are created.
    pub fn base_url(&self) -> Result<Url, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let raw = self.url.trim();
        if raw.is_empty() {
            return Err(invalid("empty".into()));
        }
        let url = if raw.contains("://") {
            Url::parse(raw).map_err(|e| invalid(e.to_string()))?
        } else {
            let path = Path::new(raw);
            std::fs::create_dir_all(path).map_err(|source| StorageError::CreateDir {
                path: raw.to_owned(),
                source,
            })?;
            let abs = path
                .canonicalize()
                .map_err(|source| StorageError::CreateDir {
                    path: raw.to_owned(),
                    source,
                })?;
            Url::from_directory_path(&abs).map_err(|()| invalid("not an absolute path".into()))?
        };
        match url.scheme() {
            "file" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "memory" => {}
            other => return Err(invalid(format!("unsupported scheme {other:?}"))),
        }
        let mut url = url;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(url)
    }

    /// The options handed to delta-rs: [`StorageConfig::options`], plus, for object stores
    /// reached over the network, a bound on retrying one request (`retry_timeout`, 10 s
    /// unless given). The object store retries failed requests with exponential backoff;
    /// its own default keeps at it for 3 minutes, which during an outage would hold every
    /// push and query that long. With the bound, an unreachable store fails a commit
    /// (pushes get 503 with `Retry-After`) or a query (503) within seconds.
    pub fn delta_options(&self) -> HashMap<String, String> {
        let mut options = self.options.clone();
        let remote = !matches!(
            self.base_url().map(|u| u.scheme().to_owned()).as_deref(),
            Ok("file" | "memory")
        );
        if remote {
            options
                .entry("retry_timeout".to_owned())
                .or_insert_with(|| DEFAULT_RETRY_TIMEOUT.to_owned());
        }
        options
    }

    /// URL of one table under the root; local table directories are created (delta-rs
    /// refuses to write into a missing local directory).
    pub fn table_url(&self, table: &str) -> Result<Url, StorageError> {
        let url =
            self.base_url()?
                .join(&format!("{table}/"))
                .map_err(|e| StorageError::InvalidUrl {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|source| StorageError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_local_paths_and_remote_urls() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig::local(dir.path().join("x"));
        let url = cfg.table_url("samples").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/x/samples/"));
        assert!(dir.path().join("x/samples").is_dir());

        let s3 = StorageConfig {
            url: "s3://bucket/prefix".into(),
            options: HashMap::new(),
        };
        assert_eq!(
            s3.table_url("stacks").unwrap().as_str(),
            "s3://bucket/prefix/stacks/"
        );
        assert_eq!(
            s3.delta_options().get("retry_timeout").map(String::as_str),
            Some(DEFAULT_RETRY_TIMEOUT)
        );
        let given = StorageConfig {
            url: "s3://bucket/prefix".into(),
            options: HashMap::from([("retry_timeout".to_owned(), "2m".to_owned())]),
        };
        assert_eq!(given.delta_options()["retry_timeout"], "2m");
        assert!(!cfg.delta_options().contains_key("retry_timeout"));
        let bad = StorageConfig {
            url: "ftp://x/y".into(),
            options: HashMap::new(),
        };
        assert!(matches!(
            bad.base_url(),
            Err(StorageError::InvalidUrl { .. })
        ));
    }
}
