//! Envelope encryption of TOTP secrets: AES-256-GCM under a data key, the data key encrypted by a
//! key service. [`KmsSealer`] asks AWS KMS (`GenerateDataKey`, `Decrypt`) for the data keys;
//! [`FixedKeySealer`] (tests) encrypts them under a fixed key of its own, so it still really
//! encrypts and a test can see no secret stored in the clear.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::ids::ContactId;
use crate::domain::two_factor::{SealedSecret, TotpSecret};
use crate::error::Unavailable;
use crate::ports::SecretSealer;

/// Binds a ciphertext to what it is (and the data key to its use at KMS).
const PURPOSE: &str = "portal-totp-secret";

/// What a secret is bound to: its purpose and its contact (the AES-GCM additional data), or the
/// purpose alone for one sealed before secrets were bound to their contact.
fn binding(bound_to: Option<&ContactId>) -> String {
    match bound_to {
        Some(contact_id) => format!("{PURPOSE}#{contact_id}"),
        None => PURPOSE.to_string(),
    }
}

/// The contact a sealed secret may be opened for: the one it is bound to must be this one.
fn check_binding(sealed: &SealedSecret, contact_id: &ContactId) -> anyhow::Result<()> {
    match &sealed.bound_to {
        Some(bound) if bound != contact_id => anyhow::bail!("a sealed secret of another contact"),
        _ => Ok(()),
    }
}

/// AES-256-GCM of `plain` under `key` with `aad`: (ciphertext with tag, nonce).
fn encrypt(key: &[u8], plain: &[u8], aad: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("a data key must be 32 bytes"))?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext =
        cipher.encrypt(&nonce, Payload { msg: plain, aad }).map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
    Ok((ciphertext, nonce.to_vec()))
}

fn decrypt(key: &[u8], ciphertext: &[u8], nonce: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("a data key must be 32 bytes"))?;
    anyhow::ensure!(nonce.len() == 12, "a sealed secret's nonce must be 96 bits");
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| anyhow::anyhow!("opening a sealed secret failed (wrong key, contact or altered)"))
}

fn seal_with(
    data_key: &[u8],
    encrypted_key: &[u8],
    secret: &TotpSecret,
    contact_id: &ContactId,
) -> anyhow::Result<SealedSecret> {
    let (ciphertext, nonce) = encrypt(data_key, secret.as_bytes(), binding(Some(contact_id)).as_bytes())?;
    Ok(SealedSecret {
        ciphertext: STANDARD.encode(ciphertext),
        nonce: STANDARD.encode(nonce),
        encrypted_key: STANDARD.encode(encrypted_key),
        bound_to: Some(contact_id.clone()),
    })
}

fn open_with(data_key: &[u8], sealed: &SealedSecret) -> anyhow::Result<TotpSecret> {
    let ciphertext = STANDARD.decode(&sealed.ciphertext).context("a sealed secret's ciphertext")?;
    let nonce = STANDARD.decode(&sealed.nonce).context("a sealed secret's nonce")?;
    let aad = binding(sealed.bound_to.as_ref());
    Ok(TotpSecret::from_bytes(decrypt(data_key, &ciphertext, &nonce, aad.as_bytes())?))
}

/// Data keys from AWS KMS under one key (the template's, named by `PORTAL_TOTP_KMS_KEY_ID`).
pub struct KmsSealer {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSealer {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsSealer { client, key_id: key_id.into() }
    }
}

fn kms_error<E>(
    what: &str,
    err: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: std::error::Error + aws_sdk_kms::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    let detail = format!("{what}: {}", aws_sdk_kms::error::DisplayErrorContext(&err));
    if crate::aws::is_unavailable(&err) {
        anyhow::Error::new(Unavailable).context(detail)
    } else {
        anyhow::anyhow!(detail)
    }
}

#[async_trait]
impl SecretSealer for KmsSealer {
    async fn seal(&self, secret: &TotpSecret, contact_id: &ContactId) -> anyhow::Result<SealedSecret> {
        anyhow::ensure!(!self.key_id.is_empty(), "PORTAL_TOTP_KMS_KEY_ID is not set: TOTP cannot be sealed");
        let output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("purpose", PURPOSE)
            .encryption_context("contact_id", contact_id.as_str())
            .send()
            .await
            .map_err(|e| kms_error("generating a data key", e))?;
        let plain = output.plaintext.context("KMS returned no data key")?;
        let encrypted = output.ciphertext_blob.context("KMS returned no encrypted data key")?;
        seal_with(plain.as_ref(), encrypted.as_ref(), secret, contact_id)
    }

    async fn open(&self, sealed: &SealedSecret, contact_id: &ContactId) -> anyhow::Result<TotpSecret> {
        check_binding(sealed, contact_id)?;
        let encrypted = STANDARD.decode(&sealed.encrypted_key).context("a sealed secret's data key")?;
        let mut decrypt = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(encrypted))
            .encryption_context("purpose", PURPOSE);
        if let Some(bound) = &sealed.bound_to {
            decrypt = decrypt.encryption_context("contact_id", bound.as_str());
        }
        let output = decrypt.send().await.map_err(|e| kms_error("decrypting a data key", e))?;
        let plain = output.plaintext.context("KMS returned no plaintext")?;
        open_with(plain.as_ref(), sealed)
    }
}

/// Data keys encrypted under a fixed key held in memory (tests and benchmarks): real AES-256-GCM
/// envelope encryption without a key service.
pub struct FixedKeySealer {
    master: [u8; 32],
}

impl FixedKeySealer {
    pub fn new(master: [u8; 32]) -> Self {
        FixedKeySealer { master }
    }

    /// A secret sealed as before secrets were bound to their contact (tests of the re-sealing).
    pub async fn seal_unbound(&self, secret: &TotpSecret) -> anyhow::Result<SealedSecret> {
        let mut data_key = [0u8; 32];
        getrandom::fill(&mut data_key).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let (wrapped, nonce) = encrypt(&self.master, &data_key, PURPOSE.as_bytes())?;
        let (ciphertext, secret_nonce) = encrypt(&data_key, secret.as_bytes(), PURPOSE.as_bytes())?;
        Ok(SealedSecret {
            ciphertext: STANDARD.encode(ciphertext),
            nonce: STANDARD.encode(secret_nonce),
            encrypted_key: STANDARD.encode([nonce, wrapped].concat()),
            bound_to: None,
        })
    }
}

impl Default for FixedKeySealer {
    fn default() -> Self {
        FixedKeySealer::new(*b"portal-test-master-key-32-bytes!")
    }
}

#[async_trait]
impl SecretSealer for FixedKeySealer {
    async fn seal(&self, secret: &TotpSecret, contact_id: &ContactId) -> anyhow::Result<SealedSecret> {
        let mut data_key = [0u8; 32];
        getrandom::fill(&mut data_key).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        // The data key is bound to the contact as KMS binds it to its encryption context.
        let (wrapped, nonce) = encrypt(&self.master, &data_key, binding(Some(contact_id)).as_bytes())?;
        let encrypted_key = [nonce, wrapped].concat();
        seal_with(&data_key, &encrypted_key, secret, contact_id)
    }

    async fn open(&self, sealed: &SealedSecret, contact_id: &ContactId) -> anyhow::Result<TotpSecret> {
        check_binding(sealed, contact_id)?;
        let encrypted = STANDARD.decode(&sealed.encrypted_key).context("a sealed secret's data key")?;
        anyhow::ensure!(encrypted.len() > 12, "a sealed data key is too short");
        let aad = binding(sealed.bound_to.as_ref());
        let data_key = decrypt(&self.master, &encrypted[12..], &encrypted[..12], aad.as_bytes())?;
        open_with(&data_key, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_secret_opens_only_with_its_key_and_holds_no_plain_text() {
        let sealer = FixedKeySealer::default();
        let ada: ContactId = "ada".into();
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let sealed = sealer.seal(&secret, &ada).await.unwrap();
        assert_eq!(sealer.open(&sealed, &ada).await.unwrap(), secret);
        assert!(!sealed.ciphertext.contains(&STANDARD.encode(secret.as_bytes())));
        let other = FixedKeySealer::new([9u8; 32]);
        assert!(other.open(&sealed, &ada).await.is_err(), "another master key cannot open it");
        let mut altered = sealed.clone();
        altered.ciphertext = STANDARD.encode([0u8; 36]);
        assert!(sealer.open(&altered, &ada).await.is_err(), "an altered ciphertext is refused");
        assert_ne!(sealer.seal(&secret, &ada).await.unwrap(), sealed, "a fresh data key and nonce every time");
    }

    #[tokio::test]
    async fn a_sealed_secret_opens_only_for_its_own_contact() {
        let sealer = FixedKeySealer::default();
        let (ada, eve): (ContactId, ContactId) = ("ada".into(), "eve".into());
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let sealed = sealer.seal(&secret, &ada).await.unwrap();
        assert!(sealer.open(&sealed, &eve).await.is_err(), "copied to another contact's item");
        let relabelled = SealedSecret { bound_to: Some(eve.clone()), ..sealed.clone() };
        assert!(sealer.open(&relabelled, &eve).await.is_err(), "its binding rewritten");
        let unbound = SealedSecret { bound_to: None, ..sealed };
        assert!(sealer.open(&unbound, &eve).await.is_err(), "its binding removed");
        let legacy = sealer.seal_unbound(&secret).await.unwrap();
        assert!(!legacy.is_bound());
        assert_eq!(sealer.open(&legacy, &ada).await.unwrap(), secret, "a secret sealed before binding still opens");
    }
}
