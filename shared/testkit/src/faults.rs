//! Faults injected at the AWS SDK's HTTP layer: an HTTP client, put under the portal's one SDK
//! configuration through `portal::aws::SdkHooks`, that passes every request to a real client
//! except the chosen one, which it answers with a fault as the service or the network would.
//!
//! A call is counted per operation (DynamoDB's `X-Amz-Target`, SES v2's path) and per SDK
//! invocation (`amz-sdk-invocation-id`), so the SDK's retries of one call are attempts of the same
//! call: a fault for one attempt is what a retry can absorb, a fault for every attempt is what the
//! portal itself must handle.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// A fault, as the service or the network gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// DynamoDB `ThrottlingException` (400).
    Throttling,
    /// DynamoDB `ProvisionedThroughputExceededException` (400).
    ProvisionedThroughputExceeded,
    /// DynamoDB `InternalServerError` (500), SES `InternalFailure` (500).
    ServerError,
    /// The connection timed out before an answer.
    Timeout,
    /// The connection was reset.
    ConnectionReset,
    /// SES `TooManyRequestsException` (429): the sending rate.
    SesThrottling,
    /// SES `MessageRejected` (400).
    SesMessageRejected,
    /// DynamoDB `TransactionCanceledException` whose reason is `ThrottlingError` (an item's
    /// partition was throttled): not retried by the SDK.
    TransactionThrottled,
    /// The service did the work and its answer was lost (the attempt timed out after the write
    /// committed): the SDK retries a call whose effect is already there.
    AnswerLost,
}

impl Fault {
    pub const DYNAMODB: [Fault; 5] = [
        Fault::Throttling,
        Fault::ProvisionedThroughputExceeded,
        Fault::ServerError,
        Fault::Timeout,
        Fault::ConnectionReset,
    ];
    pub const SES: [Fault; 5] =
        [Fault::SesThrottling, Fault::SesMessageRejected, Fault::ServerError, Fault::Timeout, Fault::ConnectionReset];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Throttling => "ThrottlingException",
            Fault::ProvisionedThroughputExceeded => "ProvisionedThroughputExceeded",
            Fault::ServerError => "500",
            Fault::Timeout => "timeout",
            Fault::ConnectionReset => "connection reset",
            Fault::SesThrottling => "TooManyRequests",
            Fault::SesMessageRejected => "MessageRejected",
            Fault::TransactionThrottled => "cancelled: ThrottlingError",
            Fault::AnswerLost => "answer lost",
        }
    }

    fn answer(self, operation: &str) -> Result<HttpResponse, ConnectorError> {
        let ses = operation == "SendEmail";
        let (status, code, message) = match self {
            Fault::Timeout | Fault::AnswerLost => return Err(ConnectorError::timeout("injected: timed out".into())),
            Fault::ConnectionReset => {
                let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected: connection reset");
                return Err(ConnectorError::io(reset.into()));
            }
            Fault::Throttling => (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
            Fault::ProvisionedThroughputExceeded => (
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput was exceeded.",
            ),
            Fault::ServerError if ses => (500, "InternalFailure", "injected"),
            Fault::ServerError => (500, "InternalServerError", "Internal server error"),
            Fault::SesThrottling => (429, "TooManyRequestsException", "Maximum sending rate exceeded."),
            Fault::SesMessageRejected => (400, "MessageRejected", "Email address is not verified."),
            Fault::TransactionThrottled => {
                let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]","CancellationReasons":[{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity of your table or index."}]}"#;
                let mut response = HttpResponse::new(400.try_into().unwrap(), SdkBody::from(body));
                response.headers_mut().insert("content-type", "application/x-amz-json-1.0");
                return Ok(response);
            }
        };
        let (body, content_type) = if ses {
            (format!(r#"{{"message":"{message}"}}"#), "application/json")
        } else {
            (
                format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#),
                "application/x-amz-json-1.0",
            )
        };
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        response.headers_mut().insert("content-type", content_type);
        response.headers_mut().insert("x-amzn-errortype", code);
        Ok(response)
    }
}

/// Which call gets the fault: the `call`th call (from 1) of `operation`, for its first `attempts`
/// attempts.
#[derive(Clone, Debug)]
pub struct Injection {
    pub operation: String,
    pub call: usize,
    pub fault: Fault,
    pub attempts: u32,
}

#[derive(Default, Debug)]
struct State {
    injection: Option<Injection>,
    /// Each call as it was first attempted: (operation, invocation id).
    calls: Vec<(String, String)>,
    injected: u32,
    /// SES SendEmail calls that succeeded.
    emails_sent: u32,
}

/// The fault-injecting HTTP client; clones share their state.
#[derive(Clone, Debug)]
pub struct FaultyHttp {
    inner: SharedHttpClient,
    state: Arc<Mutex<State>>,
}

impl Default for FaultyHttp {
    fn default() -> Self {
        FaultyHttp::new()
    }
}

impl FaultyHttp {
    pub fn new() -> Self {
        FaultyHttp { inner: aws_smithy_http_client::Builder::new().build_http(), state: Arc::default() }
    }

    pub fn shared(&self) -> SharedHttpClient {
        SharedHttpClient::new(self.clone())
    }

    pub fn inject(&self, injection: Injection) {
        let mut state = self.state.lock().unwrap();
        state.injection = Some(injection);
        state.injected = 0;
    }

    /// No more faults.
    pub fn clear(&self) {
        self.state.lock().unwrap().injection = None;
    }

    /// How many attempts got the fault.
    pub fn injected(&self) -> u32 {
        self.state.lock().unwrap().injected
    }

    /// The operations called so far, in order (one per call, not per attempt).
    pub fn operations(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.iter().map(|(op, _)| op.clone()).collect()
    }

    pub fn forget_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    pub fn emails_sent(&self) -> u32 {
        self.state.lock().unwrap().emails_sent
    }
}

fn operation_of(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        let operation = target.rsplit('.').next().unwrap_or(target);
        // The sending pacer's writes are counted apart: how many a send makes depends on timing
        // (a slot another run took, or one missed on a busy machine), and counted with the other
        // updates they would shift the positions of the writes after them from run to run.
        if operation == "UpdateItem" && request.body().bytes().is_some_and(|body| contains(body, PACER_KEY)) {
            return SENDING_SLOT.into();
        }
        return operation.to_string();
    }
    let path = request.uri().split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
    match (request.method(), path.split('?').next().unwrap_or("")) {
        ("POST", "/v2/email/outbound-emails") => "SendEmail".into(),
        (method, path) => format!("{method} {path}"),
    }
}

/// The operation name of the sending pacer's writes (its item's key is [`PACER_KEY`]).
pub const SENDING_SLOT: &str = "UpdateItem (sending slot)";
const PACER_KEY: &[u8] = b"PACE#email";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

impl HttpClient for FaultyHttp {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(FaultyConnector { inner, state: self.state.clone() })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    state: Arc<Mutex<State>>,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = operation_of(&request);
        let invocation = request.headers().get("amz-sdk-invocation-id").unwrap_or_default().to_string();
        let fault = {
            let mut state = self.state.lock().unwrap();
            let key = (operation.clone(), invocation);
            if !state.calls.contains(&key) {
                state.calls.push(key.clone());
            }
            let call = state.calls.iter().filter(|(op, _)| *op == operation).position(|c| *c == key).unwrap() + 1;
            let attempts = state.injected;
            match &state.injection {
                Some(i) if i.operation == operation && i.call == call && attempts < i.attempts => {
                    let fault = i.fault;
                    state.injected += 1;
                    Some(fault)
                }
                _ => None,
            }
        };
        if fault == Some(Fault::AnswerLost) {
            let sent = self.inner.call(request);
            return HttpConnectorFuture::new(async move {
                sent.await?;
                Fault::AnswerLost.answer(&operation)
            });
        }
        if let Some(fault) = fault {
            return HttpConnectorFuture::ready(fault.answer(&operation));
        }
        let state = self.state.clone();
        let sent = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = sent.await?;
            if operation == "SendEmail" && response.status().is_success() {
                state.lock().unwrap().emails_sent += 1;
            }
            Ok(response)
        })
    }
}

/// The operations a run made, counted: `["GetItem#1", "TransactWriteItems#1", "GetItem#2"]`.
pub fn positions(operations: &[String]) -> Vec<(String, usize)> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for op in operations {
        let n = seen.iter().filter(|(o, _)| o == op).count() + 1;
        seen.push((op.clone(), n));
    }
    seen
}
