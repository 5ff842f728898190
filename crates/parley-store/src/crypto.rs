//! Secrets at rest: AES-256-GCM under a master key kept outside the database (a file in the
//! data directory, mode 0600, or `PARLEY_MASTER_KEY`). A stolen database alone reveals no token.

use std::path::Path;

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the master key must be 64 hexadecimal characters (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    BadFormat,
    #[error("could not read or create the master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
#[error(
    "a stored secret could not be decrypted: the master key is not the one it was encrypted with, or the data is damaged"
)]
pub struct DecryptError;

/// Encrypts and decrypts secrets. Debug never shows the key.
#[derive(Clone)]
pub struct SecretCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(..)")
    }
}

impl SecretCipher {
    pub fn from_key(key: &[u8; 32]) -> Self {
        SecretCipher {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// `hex` is 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| KeyError::BadFormat)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadFormat)?;
        Ok(Self::from_key(&key))
    }

    /// Reads `<dir>/master.key`, creating it (mode 0600) with a fresh random key on first run.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join("master.key");
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                // An install from before the file-mode rule gets it tightened here.
                crate::files::tighten_file(&path).map_err(io)?;
                Self::from_hex(&s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::files::create_parent_dir(dir).map_err(io)?;
                let key: [u8; 32] = rand::random();
                write_private(&path, hex::encode(key).as_bytes()).map_err(io)?;
                Ok(Self::from_key(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// nonce (12 bytes) || ciphertext+tag.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt(&self, blob: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if blob.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| DecryptError)?;
        self.cipher.decrypt(&nonce, ct).map_err(|_| DecryptError)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = SecretCipher::from_key(&[7u8; 32]);
        let blob = c.encrypt(b"EAAtoken");
        assert_ne!(&blob[12..], b"EAAtoken");
        assert_eq!(c.decrypt(&blob).expect("decrypts"), b"EAAtoken");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(c.decrypt(&bad).is_err());
        assert!(SecretCipher::from_key(&[8u8; 32]).decrypt(&blob).is_err());
        assert!(c.decrypt(b"short").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SecretCipher::load_or_create(dir.path()).expect("create");
        let b = SecretCipher::load_or_create(dir.path()).expect("reuse");
        assert_eq!(b.decrypt(&a.encrypt(b"x")).expect("same key"), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(SecretCipher::from_hex("abc").is_err());
    }
}
