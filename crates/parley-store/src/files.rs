//! Parley's own files are private: the data directory is 0700, the database files and keys
//! 0600. New ones are created so; existing ones are tightened at start (an install from
//! before this rule gets the same modes). Elsewhere than Unix these are no-ops.

use std::path::Path;

/// Creates `dir` (and its parents) if missing and makes `dir` itself 0700. Parents that
/// already exist are left as they are.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        set_mode(dir, 0o700)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates the directory a file of Parley's goes into: 0700 when Parley creates it; an
/// existing directory (perhaps the user's own) is left alone.
pub fn create_parent_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    ensure_private_dir(dir)
}

/// Makes `path` 0600 when it exists (a missing file is not an error).
pub fn tighten_file(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => set_mode(path, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty file with mode 0600 unless `path` exists. SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so creating the database file first keeps them
/// private too.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn a_fresh_database_and_key_are_private_and_old_ones_are_tightened() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        let cipher = crate::SecretCipher::load_or_create(&dir).expect("key");
        let db = dir.join("parley.db");
        let store = crate::SqliteStore::open(&db, cipher).await.expect("open");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("master.key")), 0o600);
        for name in ["parley.db", "parley.db-wal", "parley.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        drop(store);

        // An install from before: everything world-readable; the next start tightens it.
        for name in ["master.key", "parley.db", "parley.db-wal", "parley.db-shm"] {
            let path = dir.join(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).expect("dir");
        let cipher = crate::SecretCipher::load_or_create(&dir).expect("key");
        let _store = crate::SqliteStore::open(&db, cipher).await.expect("reopen");
        assert_eq!(mode(&dir), 0o700);
        for name in ["master.key", "parley.db", "parley.db-wal", "parley.db-shm"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
    }
}
