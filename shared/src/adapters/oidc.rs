//! OpenID Connect providers over the network, with the `openidconnect` crate: discovery and the
//! provider's keys (JWKS) cached per instance (fetched again, at most once a minute, when a token
//! names a key the cache does not hold: the provider rotated its keys), the authorization URL with
//! PKCE S256, the code exchange, and the ID token's issuer, audience, signature, expiry and nonce
//! checks. Client secrets given as a Secrets Manager ARN are read once per instance.
//!
//! Its HTTP client is hyper on rustls (ring), the stack the AWS SDKs already link, with a timeout
//! on every request and its body, no redirects followed, and bodies capped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use tokio::sync::Mutex;

use crate::domain::identity::{ExternalIdentity, OidcProvider};
use crate::ports::{AuthorizationRequest, CodeExchange, ExternalFailure, IdentityProviders};

/// Each request to a provider, and the reading of its body, ends in time: a hung provider gives a
/// clean failure page, not a Lambda timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Discovery documents, key sets and token responses are small.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long a provider's discovery document and keys are kept.
const METADATA_SECS: u64 = 3600;
/// A token signed by a key the cache lacks fetches the keys again, at most this often.
const REFRESH_SECS: u64 = 60;

type Https = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>;

/// The client as `openidconnect` calls it (a boxed `Send` future: the use case's futures are sent
/// between threads).
struct Http(Https);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// The OpenID Connect client of the external-sign-in function.
pub struct OpenIdConnect {
    http: Http,
    secrets: aws_sdk_secretsmanager::Client,
    metadata: Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>,
    client_secrets: Mutex<HashMap<String, String>>,
}

impl OpenIdConnect {
    /// Fails when the system has no root certificates (the function then does not start).
    pub fn new(secrets: aws_sdk_secretsmanager::Client) -> anyhow::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|err| anyhow::anyhow!("no root certificates for the OpenID Connect client: {err}"))?
            // Plain http only for a provider on this machine (parse_providers refuses it elsewhere).
            .https_or_http()
            .enable_http1()
            .build();
        let http = HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(OpenIdConnect { http: Http(http), secrets, metadata: Mutex::default(), client_secrets: Mutex::default() })
    }
}

/// One request to a provider, bounded in time and size.
async fn send(http: &Https, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let request = openidconnect::http::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
    let response = tokio::time::timeout(HTTP_TIMEOUT, http.request(request))
        .await
        .map_err(|_| HttpError("the provider did not answer in time".into()))?
        .map_err(|err| HttpError(format!("the provider could not be reached: {err}")))?;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(HTTP_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect())
        .await
        .map_err(|_| HttpError("the provider's answer did not arrive in time".into()))?
        .map_err(|err| HttpError(format!("the provider's answer was not read: {err}")))?
        .to_bytes();
    Ok(openidconnect::http::Response::from_parts(parts, body.to_vec()))
}

impl OpenIdConnect {
    /// The provider's discovery document and keys: cached, or fetched (`refresh`: fetched again
    /// unless fetched within the last minute).
    async fn metadata(&self, provider: &OidcProvider, refresh: bool) -> Result<CoreProviderMetadata, ExternalFailure> {
        let mut cache = self.metadata.lock().await;
        if let Some((at, metadata)) = cache.get(&provider.id) {
            let age = at.elapsed().as_secs();
            if age < METADATA_SECS && (!refresh || age < REFRESH_SECS) {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|e| ExternalFailure::Provider(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|err| ExternalFailure::Provider(format!("discovery: {}", error_chain(&err))))?;
        cache.insert(provider.id.clone(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// The client secret: given in the settings, or read once from Secrets Manager.
    async fn client_secret(&self, provider: &OidcProvider) -> Result<String, ExternalFailure> {
        if let Some(secret) = &provider.client_secret {
            return Ok(secret.clone());
        }
        let Some(arn) = &provider.client_secret_arn else {
            return Err(ExternalFailure::Provider("no client secret".into()));
        };
        let mut secrets = self.client_secrets.lock().await;
        if let Some(secret) = secrets.get(arn) {
            return Ok(secret.clone());
        }
        let output = self.secrets.get_secret_value().secret_id(arn).send().await.map_err(|err| {
            ExternalFailure::Provider(format!("the client secret was not read: {}", error_chain(&err)))
        })?;
        let secret = output.secret_string().unwrap_or_default().trim().to_string();
        if secret.is_empty() {
            return Err(ExternalFailure::Provider("the client secret is empty".into()));
        }
        secrets.insert(arn.clone(), secret.clone());
        Ok(secret)
    }

    async fn client(
        &self,
        provider: &OidcProvider,
        redirect_uri: &str,
        refresh: bool,
    ) -> Result<ClientOf, ExternalFailure> {
        let metadata = self.metadata(provider, refresh).await?;
        let secret = self.client_secret(provider).await?;
        let redirect =
            RedirectUrl::new(redirect_uri.to_string()).map_err(|e| ExternalFailure::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(redirect))
    }
}

type ClientOf = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

#[async_trait]
impl IdentityProviders for OpenIdConnect {
    async fn authorization_url(
        &self,
        provider: &OidcProvider,
        request: &AuthorizationRequest<'_>,
    ) -> Result<String, ExternalFailure> {
        let client = self.client(provider, request.redirect_uri, false).await?;
        let (state, nonce) = (request.state.to_string(), request.nonce.to_string());
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(request.pkce_verifier.into()));
        let mut authorize = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in provider.scopes.iter().filter(|s| *s != "openid") {
            authorize = authorize.add_scope(Scope::new(scope.clone()));
        }
        Ok(authorize.url().0.to_string())
    }

    async fn identity(
        &self,
        provider: &OidcProvider,
        exchange: &CodeExchange<'_>,
    ) -> Result<ExternalIdentity, ExternalFailure> {
        let client = self.client(provider, exchange.redirect_uri, false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(exchange.code.to_string()))
            .map_err(|e| ExternalFailure::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|err| ExternalFailure::Provider(format!("the code exchange: {}", error_chain(&err))))?;
        let id_token = response.id_token().ok_or_else(|| ExternalFailure::Token("no ID token".into()))?;
        let nonce = Nonce::new(exchange.nonce.to_string());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // A key the cache does not hold: the provider may have rotated its keys.
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let client = self.client(provider, exchange.redirect_uri, true).await?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|err| ExternalFailure::Token(error_chain(&err)))?
                    .clone()
            }
            Err(err) => return Err(ExternalFailure::Token(error_chain(&err))),
        };
        let given = claims.given_name().and_then(|c| c.get(None)).map(|n| n.to_string());
        let family = claims.family_name().and_then(|c| c.get(None)).map(|n| n.to_string());
        Ok(ExternalIdentity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            given_name: given,
            family_name: family,
            mfa: claims.auth_method_refs().is_some_and(|amr| amr.iter().any(|m| m.as_str() == "mfa")),
        })
    }
}

/// An error with its causes, for the audit entry and the log (never the browser).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
