//! Secret options encrypted at rest.
//!
//! The options a connector marks secret (passwords, S3 secret keys, Redshift's temporary keys,
//! passwords found inside URLs) are kept in the catalog as one AES-256-GCM ciphertext per table
//! or function, never as text: `{"bowman:encrypted": "v1:<key id>:<base64 nonce|ciphertext|tag>"}`.
//! [`crate::Catalog`] encrypts them before they reach a store and decrypts them when it loads
//! one, so both stores (SQLite and PostgreSQL) keep only ciphertext.
//!
//! Keys are 32 random bytes, written as base64, one per line: the first encrypts, the others
//! only decrypt (what rotation needs). Rows written with an older key or before encryption
//! existed are rewritten with the first key when the catalog opens.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The single option key under which a table's or function's encrypted secret options are kept.
pub const ENCRYPTED_OPTION: &str = "bowman:encrypted";
const FORMAT: &str = "v1";
const AAD: &[u8] = b"bowman secret options v1";

struct Key {
    id: String,
    key: RandomizedNonceKey,
}

impl Key {
    fn new(bytes: &[u8]) -> Result<Key, String> {
        if bytes.len() != 32 {
            return Err(format!("a secret key is 32 bytes (44 base64 characters), not {}", bytes.len()));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let id = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| "invalid secret key".to_string())?;
        Ok(Key { id, key })
    }
}

/// The keys secret options are encrypted with: the first (current) one encrypts, all decrypt.
pub struct SecretKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys").field("ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>()).finish()
    }
}

/// How a stored set of secret options was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// Nothing to keep (no secret options).
    Empty,
    /// Encrypted with the current key.
    Current,
    /// Plain text (written before encryption) or encrypted with an older key: rewrite it.
    Stale,
}

impl SecretKeys {
    /// Keys from text: base64 keys separated by newlines or commas, the current one first;
    /// blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<SecretKeys, String> {
        let mut keys = Vec::new();
        for item in text.lines().map(|l| l.split('#').next().unwrap_or("")).flat_map(|l| l.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let bytes = STANDARD.decode(item).map_err(|_| "a secret key is 32 bytes written as base64".to_string())?;
            keys.push(Key::new(&bytes)?);
        }
        if keys.is_empty() {
            return Err("no secret key given".into());
        }
        Ok(SecretKeys { keys })
    }

    /// A new random key, as base64 (as `openssl rand -base64 32` makes one).
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
        STANDARD.encode(bytes)
    }

    /// The keys in the file at `path`, which is created (mode 0600, with a fresh key) when it
    /// does not exist. A file others may read is made private.
    pub fn load_or_create(path: &Path) -> Result<SecretKeys, String> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut f) => {
                let text = format!(
                    "# Bowman's key for the secret options in its catalog (base64, 32 bytes).\n\
                     # The first key encrypts; further lines are older keys, kept to decrypt during a rotation.\n{}\n",
                    Self::generate()
                );
                f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "created a secret key for the catalog's secret options");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the secret key file was readable by others; making it private (0600)");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The current key's id (the first 8 hex digits of its SHA-256).
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// `options` as they are stored: one ciphertext under [`ENCRYPTED_OPTION`] (nothing when empty).
    pub fn seal(&self, options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        if options.is_empty() {
            return BTreeMap::new();
        }
        let key = &self.keys[0];
        let mut data = serde_json::to_vec(options).expect("options serialize");
        let nonce = key.key.seal_in_place_append_tag(Aad::from(AAD), &mut data).expect("AES-GCM encryption");
        let mut blob = nonce.as_ref().to_vec();
        blob.extend_from_slice(&data);
        BTreeMap::from([(ENCRYPTED_OPTION.to_string(), format!("{FORMAT}:{}:{}", key.id, STANDARD.encode(blob)))])
    }

    /// Stored options as they were given, and how they were stored. Plain options (from before
    /// encryption) come back as they are.
    pub fn open(&self, stored: &BTreeMap<String, String>) -> Result<(BTreeMap<String, String>, Sealed), String> {
        let Some(sealed) = sealed_value(stored) else {
            let state = if stored.is_empty() { Sealed::Empty } else { Sealed::Stale };
            return Ok((stored.clone(), state));
        };
        let mut parts = sealed.splitn(3, ':');
        let (Some(FORMAT), Some(id), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("secret options in an unknown format".into());
        };
        let key = self.keys.iter().position(|k| k.id == id).ok_or_else(|| {
            format!(
                "the secret options were encrypted with key {id}, which is not among the configured keys ({}); \
                 give that key (BOWMAN_SECRET_KEY or --secret-key-file)",
                self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        let mut blob = STANDARD.decode(blob).map_err(|_| "corrupt encrypted secret options".to_string())?;
        if blob.len() < NONCE_LEN {
            return Err("corrupt encrypted secret options".into());
        }
        let mut data = blob.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&blob).map_err(|_| "corrupt encrypted secret options".to_string())?;
        let plain = self.keys[key]
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut data)
            .map_err(|_| format!("the secret options do not decrypt with key {id}: the key or the catalog was changed"))?;
        let options = serde_json::from_slice(plain).map_err(|_| "corrupt encrypted secret options".to_string())?;
        Ok((options, if key == 0 { Sealed::Current } else { Sealed::Stale }))
    }
}

/// The ciphertext of encrypted stored options, if they are encrypted.
pub fn sealed_value(stored: &BTreeMap<String, String>) -> Option<&str> {
    match (stored.len(), stored.get(ENCRYPTED_OPTION)) {
        (1, Some(v)) => Some(v.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotate() {
        let old = SecretKeys::generate();
        let new = SecretKeys::generate();
        let keys = SecretKeys::parse(&old).unwrap();
        let options = BTreeMap::from([("password".to_string(), "hunter2".to_string())]);
        let sealed = keys.seal(&options);
        assert!(!format!("{sealed:?}").contains("hunter2"));
        assert_eq!(keys.open(&sealed).unwrap(), (options.clone(), Sealed::Current));
        // Two seals of the same options differ (random nonces).
        assert_ne!(keys.seal(&options), sealed);
        // Rotation: the new key first, the old one still decrypts (and marks the row stale).
        let rotated = SecretKeys::parse(&format!("{new}\n# old\n{old}\n")).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), (options.clone(), Sealed::Stale));
        // Without the old key the error names the key id, never the options.
        let only_new = SecretKeys::parse(&new).unwrap();
        let err = only_new.open(&sealed).unwrap_err();
        assert!(err.contains(keys.current_id()) && !err.contains("hunter2"), "{err}");
        // Plain options from before encryption open as they are, stale.
        assert_eq!(keys.open(&options).unwrap(), (options.clone(), Sealed::Stale));
        assert_eq!(keys.open(&BTreeMap::new()).unwrap(), (BTreeMap::new(), Sealed::Empty));
        // A tampered ciphertext is refused.
        let mut tampered = sealed.clone();
        let v = tampered.get_mut(ENCRYPTED_OPTION).unwrap();
        let last = v.pop().unwrap();
        v.push(if last == 'A' { 'B' } else { 'A' });
        assert!(keys.open(&tampered).is_err());
        assert!(SecretKeys::parse("not base64!").is_err());
        assert!(SecretKeys::parse("").is_err());
    }
}
