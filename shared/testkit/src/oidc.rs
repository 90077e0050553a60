//! A fake OpenID Connect provider for handler tests: it hands out codes for the identities a test
//! signs in as, and checks at the code exchange what a real provider checks (the code once, the
//! PKCE verifier against its challenge, the redirect URI) and echoes the nonce as a real ID token
//! would; a test can make its next exchange fail as a bad token would.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use portal::domain::identity::{ExternalIdentity, OidcProvider, pkce_challenge};
use portal::ports::{AuthorizationRequest, CodeExchange, ExternalFailure, IdentityProviders};

/// The provider as configured for the tests: `PORTAL_OIDC_PROVIDERS` of [`test_portal`].
pub const PROVIDERS: &str = r#"[{"id":"example","name":"Example ID","issuer":"https://idp.example","client_id":"portal","client_secret":"portal-secret"}]"#;

struct Trip {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Issued {
    trip: Trip,
    identity: ExternalIdentity,
}

#[derive(Default)]
pub struct FakeProvider {
    trips: Mutex<HashMap<String, Trip>>,
    codes: Mutex<HashMap<String, Issued>>,
    fail_next: Mutex<Option<String>>,
    /// Authorization URLs asked for, and code exchanges made.
    pub calls: Mutex<Vec<&'static str>>,
}

/// A verified identity of the fake provider.
pub fn identity(subject: &str, email: &str) -> ExternalIdentity {
    ExternalIdentity {
        subject: subject.to_string(),
        email: Some(email.to_string()),
        email_verified: true,
        given_name: Some("Olive".into()),
        family_name: Some("Ida".into()),
        mfa: false,
    }
}

impl FakeProvider {
    /// The person at the provider (its authorization URL `location`) signs in as `identity`: the
    /// path and query the provider sends the browser back to.
    pub fn sign_in(&self, location: &str, identity: ExternalIdentity) -> String {
        let state = query(location, "state");
        let trip = self.trips.lock().unwrap().remove(&state).expect("a trip begun at the portal");
        let code = portal::domain::secret::random_token();
        let path =
            trip.redirect_uri.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()));
        let path = path.expect("a redirect URI with a path");
        self.codes.lock().unwrap().insert(code.clone(), Issued { trip, identity });
        format!("{path}?code={code}&state={state}")
    }

    /// The person refused at the provider: the path back, with `error=access_denied`.
    pub fn refuse(&self, location: &str) -> String {
        let state = query(location, "state");
        let trip = self.trips.lock().unwrap().remove(&state).expect("a trip begun at the portal");
        let path =
            trip.redirect_uri.split_once("://").and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()));
        format!("{}?error=access_denied&state={state}", path.unwrap())
    }

    /// The next code exchange fails as a token with this fault would (wrong audience, expired...).
    pub fn fail_next(&self, reason: &str) {
        *self.fail_next.lock().unwrap() = Some(reason.to_string());
    }
}

fn query(url: &str, name: &str) -> String {
    let parsed = url::Url::parse(url).expect("an authorization URL");
    parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[async_trait]
impl IdentityProviders for FakeProvider {
    async fn authorization_url(
        &self,
        provider: &OidcProvider,
        request: &AuthorizationRequest<'_>,
    ) -> Result<String, ExternalFailure> {
        self.calls.lock().unwrap().push("authorization_url");
        let trip = Trip {
            nonce: request.nonce.to_string(),
            challenge: pkce_challenge(request.pkce_verifier),
            redirect_uri: request.redirect_uri.to_string(),
        };
        self.trips.lock().unwrap().insert(request.state.to_string(), trip);
        let mut url = url::Url::parse(&format!("{}/authorize", provider.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", &provider.client_id)
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", &pkce_challenge(request.pkce_verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("redirect_uri", request.redirect_uri);
        Ok(url.to_string())
    }

    async fn identity(
        &self,
        _: &OidcProvider,
        exchange: &CodeExchange<'_>,
    ) -> Result<ExternalIdentity, ExternalFailure> {
        self.calls.lock().unwrap().push("identity");
        let issued = self.codes.lock().unwrap().remove(exchange.code);
        let Some(Issued { trip, identity }) = issued else {
            return Err(ExternalFailure::Provider("invalid_grant: an unknown or used code".into()));
        };
        if let Some(reason) = self.fail_next.lock().unwrap().take() {
            return Err(ExternalFailure::Token(reason));
        }
        if pkce_challenge(exchange.pkce_verifier) != trip.challenge || exchange.redirect_uri != trip.redirect_uri {
            return Err(ExternalFailure::Provider("invalid_grant: PKCE or redirect URI".into()));
        }
        if exchange.nonce != trip.nonce {
            return Err(ExternalFailure::Token("Invalid nonce".into()));
        }
        Ok(identity)
    }
}
