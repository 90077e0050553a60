//! What every function's router gets once, as tower layers: client negotiation, security headers,
//! the body limit (413 in the contract's JSON shape, through [`super::extract::Submission`]), request
//! tracing with the Lambda request id, and the contract's 404 for unknown routes and methods.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::http::header::{self, HeaderName};
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tower::Layer;
use tower::util::MapRequestLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use super::AppState;
use super::client::negotiate;
use super::reply::ThroughTheDoor;
use super::request::session_cookie_name;
use crate::error::PortalError;
use axum::extract::State;
use axum::response::IntoResponse;

/// An HTTP-triggered Lambda function: its routes.
pub trait HttpFunction: Send + Sync {
    fn routes(&self) -> Router<AppState>;

    /// The routes with every layer applied and the state given: what `lambda_http::run` serves.
    /// The request's path is made stage-free before routing (see [`without_stage`]).
    fn router(&self, state: AppState) -> Router {
        let app = finish(self.routes(), state);
        Router::new().fallback_service(MapRequestLayer::new(without_stage).layer(app))
    }
}

/// HSTS for a year, subdomains included: once a browser has seen the portal over https it never
/// sends a request (or a cookie) to it over plain http again.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// Scripts only from the portal's own files (the passkey pages' script, see `web::assets`), never
/// inline; they may call the portal's own routes (`connect-src 'self'`) and nothing else. Styles
/// only from the stylesheet (`web::assets`), never inline. Forms post to the portal only, and may
/// be sent on to the site's OpenID Connect providers (redeeming or linking with one answers a form
/// with a redirect to it, which `form-action` governs too).
fn content_security_policy(settings: &crate::config::Settings) -> HeaderValue {
    let providers: std::collections::BTreeSet<String> = settings
        .oidc_providers
        .iter()
        .filter_map(|p| url::Url::parse(&p.issuer).ok())
        .map(|issuer| issuer.origin().ascii_serialization())
        .collect();
    let form_action: String = providers.iter().map(|origin| format!(" {origin}")).collect();
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; \
         form-action 'self'{form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// Applies the layers every route needs and gives the routes their state.
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    // Only a portal served over https may pin browsers to https (a local http one would lock
    // `localhost` out of http for a year).
    let served_over_https = state.settings.base_origin.starts_with("https://");
    let hsts = served_over_https.then(|| HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    let policy = content_security_policy(&state.settings);
    let fixed = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), with_current_settings))
        .layer(axum::middleware::map_response_with_state(state.clone(), only_the_door_sets_the_session))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), only_through_the_edge))
        .layer(axum::middleware::from_fn(negotiate))
        .layer(fixed(header::CACHE_CONTROL, "no-store"))
        .layer(fixed(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(fixed(header::REFERRER_POLICY, "same-origin"))
        .layer(fixed(header::X_FRAME_OPTIONS, "DENY"))
        .layer(SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, move |_: &Response| hsts.clone()))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, move |r: &Response| {
            is_html(r).then(|| policy.clone())
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Gives the request the portal with the site settings as they stand ([`crate::Portal::current`]:
/// read at most once a minute per instance); every extractor takes it from there.
async fn with_current_settings(
    State(state): State<AppState>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    match state.current().await {
        Ok(portal) => {
            req.extensions_mut().insert(super::extract::Current(portal));
            next.run(req).await
        }
        Err(err) => {
            err.log();
            err.into_response()
        }
    }
}

/// With edge protection (`PORTAL_EDGE_SECRET`: CloudFront and AWS WAF in front of the API), a
/// request without CloudFront's secret header did not pass WAF's rules: 403 `forbidden`, whatever
/// the route. One that has it gets the caller's address from `CloudFront-Viewer-Address` (the
/// request context's would be CloudFront's own, shared by every client of that edge location).
async fn only_through_the_edge(
    State(state): State<AppState>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(secret) = &state.settings.edge_secret else { return next.run(req).await };
    let offered = req.headers().get(EDGE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !secret.matches(offered) {
        tracing::warn!(path = req.uri().path(), "a request that did not come through the edge was refused");
        return PortalError::Forbidden("not through the edge").into_response();
    }
    let viewer = req.headers().get("cloudfront-viewer-address").and_then(|v| v.to_str().ok());
    if let Some(viewer) = viewer.and_then(super::extract::ViewerAddress::parse) {
        req.extensions_mut().insert(viewer);
    }
    next.run(req).await
}

/// The header CloudFront adds to every request it sends the API (its origin custom header).
pub const EDGE_HEADER: &str = "x-portal-edge";

/// A REST API (v1) event's path as lambda_http gives it starts with the stage (`/Prod/signin`),
/// whether the browser used the execute-api URL or a custom domain; the portal's routes and links
/// are the paths at the root of its domain, so the stage is taken off. HTTP API, function URL and
/// ALB paths are left as they are.
fn without_stage(mut req: Request) -> Request {
    let Some(RequestContext::ApiGatewayV1(context)) = req.extensions().get::<RequestContext>() else {
        return req;
    };
    let Some(stage) = context.stage.as_deref().filter(|s| !s.is_empty() && *s != "$default") else {
        return req;
    };
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    let rest = match path.strip_prefix(&prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return req,
    };
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(value) = path_and_query.parse() {
        parts.path_and_query = Some(value);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The content security policy, for HTML pages.
fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// One span per request, with the Lambda request id, so every log line of a request can be found.
fn request_span(req: &Request) -> tracing::Span {
    let request_id = req.lambda_context_ref().map(|c| c.request_id.as_str()).unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id)
}

/// The one door's guard, on every route of every function: a response may set the session cookie
/// only for a session the door began ([`ThroughTheDoor`], which only `Reply::with_session` of the
/// door's `Entered` puts on it). Any other is refused as our own fault, however the handler built
/// the header: no route can become a second door.
async fn only_the_door_sets_the_session(State(state): State<AppState>, response: Response) -> Response {
    let name = session_cookie_name(&state.settings);
    let sets_session = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|cookie| sets_cookie(cookie, name));
    if sets_session && response.extensions().get::<ThroughTheDoor>().is_none() {
        return PortalError::Internal(anyhow::anyhow!("a session cookie set without the door: refused"))
            .into_response();
    }
    response
}

/// Whether `set_cookie` gives the cookie `name` a value (clearing it is not setting it).
pub fn sets_cookie(set_cookie: &str, name: &str) -> bool {
    set_cookie
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .is_some_and(|value| !value.is_empty() && !value.starts_with(';'))
}

async fn not_found() -> PortalError {
    PortalError::NotFound
}
