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
