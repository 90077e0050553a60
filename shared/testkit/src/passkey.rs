//! A software passkey authenticator for the passkey tests: it creates ES256 credentials with
//! packed self-attestation and signs assertions, as a security key does, from the options the
//! portal sends and the page's origin (it builds the client data a browser would).
//!
//! Like a roaming security key (and unlike a platform passkey) it keeps no resident credential: a
//! test tells it which credential to use (`allowCredentials`) and adds the user handle itself.
//! The portal checks what it makes with webauthn-rs: origin, RP id, challenge, signature, user
//! verification and counter.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crypto_glue::ecdsa_p256::{self, EcdsaP256PublicSec1Point, EcdsaP256Signature, EcdsaP256SigningKey};
use crypto_glue::traits::Signer;
use serde_cbor_2::value::Value as Cbor;
use sha2::{Digest, Sha256};
use url::Url;
use webauthn_rs_proto::{
    AuthenticationExtensionsClientOutputs, AuthenticatorAssertionResponseRaw, AuthenticatorAttestationResponseRaw,
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationExtensionsClientOutputs,
    RequestChallengeResponse, UserVerificationPolicy,
};

/// Flags of authenticator data: user present, user verified, attested credential data included.
const USER_PRESENT: u8 = 0b0000_0001;
const USER_VERIFIED: u8 = 0b0000_0100;
const ATTESTED_DATA: u8 = 0b0100_0000;

/// An authenticator holding the credentials it created; one signature counter for all of them.
pub struct SoftPasskey {
    keys: HashMap<Vec<u8>, EcdsaP256SigningKey>,
    counter: u32,
    verifies_user: bool,
}

impl SoftPasskey {
    /// `verifies_user`: it reports user verification (a screen lock, a PIN) as done when asked;
    /// otherwise it refuses a ceremony that requires it.
    pub fn new(verifies_user: bool) -> Self {
        SoftPasskey { keys: HashMap::new(), counter: 0, verifies_user }
    }

    /// A new credential for `options`, created on a page of `origin`.
    pub fn do_registration(
        &mut self,
        origin: Url,
        options: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, String> {
        let options = options.public_key;
        if !options.pub_key_cred_params.iter().any(|p| p.type_ == "public-key" && p.alg == -7) {
            return Err("no ES256 (alg -7) among the accepted algorithms".into());
        }
        let selection = options.authenticator_selection.as_ref();
        if selection.is_some_and(|s| s.require_resident_key) {
            return Err("this authenticator keeps no resident credentials".into());
        }
        let verified = self.user_verification(selection.map(|s| &s.user_verification))?;
        let client_data = client_data("webauthn.create", options.challenge.as_ref(), &origin);
        let key = ecdsa_p256::new_key();
        let point = EcdsaP256PublicSec1Point::from(key.public_key());
        let x = point.x().map(|bytes| bytes.to_vec()).ok_or("a public key without x")?;
        let y = point.y().map(|bytes| bytes.to_vec()).ok_or("a public key without y")?;
        let cose_key = Cbor::Map(
            [
                (Cbor::Integer(1), Cbor::Integer(2)),  // kty: EC2
                (Cbor::Integer(3), Cbor::Integer(-7)), // alg: ES256
                (Cbor::Integer(-1), Cbor::Integer(1)), // crv: P-256
                (Cbor::Integer(-2), Cbor::Bytes(x)),
                (Cbor::Integer(-3), Cbor::Bytes(y)),
            ]
            .into(),
        );
        let mut credential_id = vec![0u8; 32];
        getrandom::fill(&mut credential_id).map_err(|e| e.to_string())?;
        let mut auth_data = authenticator_data(&options.rp.id, ATTESTED_DATA | flags(verified), 0);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&(credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&credential_id);
        auth_data.extend(serde_cbor_2::to_vec(&cose_key).map_err(|e| e.to_string())?);
        let signer = EcdsaP256SigningKey::from(&key);
        let signature = sign(&signer, &auth_data, &client_data)?;
        let statement = Cbor::Map(
            [(Cbor::Text("alg".into()), Cbor::Integer(-7)), (Cbor::Text("sig".into()), Cbor::Bytes(signature))].into(),
        );
        let attestation = Cbor::Map(
            [
                (Cbor::Text("fmt".into()), Cbor::Text("packed".into())),
                (Cbor::Text("attStmt".into()), statement),
                (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
            ]
            .into(),
        );
        self.keys.insert(credential_id.clone(), signer);
        Ok(RegisterPublicKeyCredential {
            id: URL_SAFE_NO_PAD.encode(&credential_id),
            raw_id: credential_id,
            response: AuthenticatorAttestationResponseRaw {
                attestation_object: serde_cbor_2::to_vec(&attestation).map_err(|e| e.to_string())?,
                client_data_json: client_data,
                transports: None,
            },
            type_: "public-key".into(),
            extensions: RegistrationExtensionsClientOutputs::default(),
        })
    }

    /// An assertion for `options` with the first allowed credential it holds, on a page of
    /// `origin` (without a user handle: a test sets the one a resident credential would return).
    pub fn do_authentication(
        &mut self,
        origin: Url,
        options: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, String> {
        let options = options.public_key;
        let verified = self.user_verification(Some(&options.user_verification))?;
        let (credential_id, signer) = options
            .allow_credentials
            .iter()
            .find_map(|allowed| self.keys.get_key_value(allowed.id.as_slice()))
            .ok_or("none of the allowed credentials is held here")?;
        let client_data = client_data("webauthn.get", options.challenge.as_ref(), &origin);
        self.counter += 1;
        let auth_data = authenticator_data(&options.rp_id, flags(verified), self.counter);
        let signature = sign(signer, &auth_data, &client_data)?;
        Ok(PublicKeyCredential {
            id: URL_SAFE_NO_PAD.encode(credential_id),
            raw_id: credential_id.clone(),
            response: AuthenticatorAssertionResponseRaw {
                authenticator_data: auth_data,
                client_data_json: client_data,
                signature,
                user_handle: None,
            },
            extensions: AuthenticationExtensionsClientOutputs::default(),
            type_: "public-key".into(),
        })
    }

    /// Whether the ceremony gets user verification: required ones only if this authenticator
    /// verifies users.
    fn user_verification(&self, policy: Option<&UserVerificationPolicy>) -> Result<bool, String> {
        match policy {
            Some(UserVerificationPolicy::Required) if !self.verifies_user => {
                Err("user verification required, and this authenticator does none".into())
            }
            Some(UserVerificationPolicy::Required) => Ok(true),
            _ => Ok(false),
        }
    }
}

fn flags(verified: bool) -> u8 {
    if verified { USER_PRESENT | USER_VERIFIED } else { USER_PRESENT }
}

/// The client data a browser gives the authenticator (as JSON bytes).
fn client_data(kind: &str, challenge: &[u8], origin: &Url) -> Vec<u8> {
    serde_json::json!({
        "type": kind,
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": origin.origin().ascii_serialization(),
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes()
}

/// The RP id's hash, the flags and the signature counter.
fn authenticator_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data
}

/// The DER signature over the authenticator data and the client data's hash.
fn sign(signer: &EcdsaP256SigningKey, auth_data: &[u8], client_data: &[u8]) -> Result<Vec<u8>, String> {
    let mut signed = auth_data.to_vec();
    signed.extend_from_slice(&Sha256::digest(client_data));
    let signature: EcdsaP256Signature = signer.try_sign(&signed).map_err(|e| e.to_string())?;
    Ok(signature.to_der().to_bytes().to_vec())
}
