//! Structured JSON logs. Audit events carry `audit = "<event>"`; nothing logs a password, code,
//! token or hash (the types that hold them redact their `Debug`).
//!
//! `RUST_LOG` (`target=level` directives and a default level) chooses what is logged, except for the libraries that log what passes through them:
//! those are held at [`QUIET_TARGETS`] by a filter of their own, which no `RUST_LOG` directive (not
//! even a more specific target, or a span or field directive) can lower.

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log targets that write request or response payloads below a level, and the most they may log.
/// - `lambda_runtime`: the raw invocation event ("raw JSON event received from Lambda", at trace in
///   `lambda_runtime::layers::api_response`), i.e. every request body with its passwords, and
///   streamed response metadata (trace, `lambda_runtime::requests`).
/// - `lambda_http`, `lambda_runtime_api_client`: hold the same payloads; they log none today, and
///   are pinned so that an upgrade cannot start to.
/// - `aws_smithy_runtime`, `aws_sigv4`: the AWS SDK's HTTP requests and responses (trace): password
///   hashes read from and written to DynamoDB, and the SES emails with reset links and invitation
///   codes. Their debug logs (attempts, retries) carry no payload.
pub const QUIET_TARGETS: &[(&str, LevelFilter)] = &[
    ("lambda_runtime", LevelFilter::INFO),
    ("lambda_http", LevelFilter::INFO),
    ("lambda_runtime_api_client", LevelFilter::INFO),
    ("aws_smithy_runtime", LevelFilter::DEBUG),
    ("aws_sigv4", LevelFilter::DEBUG),
];

/// Logs to stdout (CloudWatch) at the level `RUST_LOG` asks for (`info` when unset or unreadable).
pub fn init() {
    let _ = subscriber(std::env::var("RUST_LOG").ok().as_deref(), std::io::stdout).try_init();
}

/// The portal's subscriber: JSON lines to `writer`, filtered by the `RUST_LOG` directives `rust_log`
/// and, whatever those say, by [`QUIET_TARGETS`].
pub fn subscriber<W>(rust_log: Option<&str>, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // `target=level` directives and a bare default level, as RUST_LOG is used here; a directive
    // this does not read (a span or field filter) leaves the default, `info`. (`EnvFilter` would
    // read those too, with a regex engine and directive parser in every bootstrap for it.)
    let requested = rust_log.and_then(|directives| directives.parse::<Targets>().ok());
    let requested = requested.unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let quiet =
        QUIET_TARGETS.iter().fold(Targets::new().with_default(LevelFilter::TRACE), |targets, &(target, most)| {
            targets.with_target(target, most)
        });
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer);
    // Global filters in a stack all have to let an event through: `quiet` has the last word.
    tracing_subscriber::registry().with(requested).with(quiet).with(json)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// What the subscriber for `rust_log` writes of one trace and one debug event of each quiet
    /// target, and of one trace event of the portal's own.
    fn logged(rust_log: &str) -> String {
        let captured = Captured::default();
        tracing::subscriber::with_default(subscriber(Some(rust_log), captured.clone()), || {
            tracing::trace!(target: "lambda_runtime::layers::api_response", body = "payload-1", "raw JSON event");
            tracing::trace!(target: "lambda_runtime::requests", body = "payload-2");
            tracing::trace!(target: "lambda_http", body = "payload-3");
            tracing::trace!(target: "lambda_runtime_api_client", body = "payload-4");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", request = "payload-5");
            tracing::trace!(target: "aws_sigv4::http_request::sign", request = "payload-6");
            tracing::debug!(target: "lambda_runtime::layers::api_response", body = "payload-7");
            tracing::trace!(target: "portal::usecases", "own-trace-line");
            tracing::info!(target: "lambda_runtime", "runtime-info-line");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_rust_log_value_lets_a_payload_logging_target_below_its_pinned_level() {
        let values = [
            "trace",
            "debug",
            "lambda_runtime=trace",
            "trace,lambda_runtime=trace,lambda_http=trace,aws_smithy_runtime=trace,aws_sigv4=trace",
            "lambda_runtime::layers::api_response=trace,lambda_runtime::requests=trace",
            "aws_smithy_runtime::client::orchestrator=trace",
            "[{body}]=trace",
            "lambda_runtime[{body}]=trace",
            "[Lambda runtime invoke]=trace",
        ];
        for rust_log in values {
            let text = logged(rust_log);
            assert!(!text.contains("payload-"), "RUST_LOG={rust_log:?} logged a payload:\n{text}");
        }
    }

    #[test]
    fn rust_log_still_chooses_everything_else() {
        let at_trace = logged("trace");
        assert!(at_trace.contains("own-trace-line") && at_trace.contains("runtime-info-line"), "{at_trace}");
        let at_info = logged("info");
        assert!(!at_info.contains("own-trace-line") && at_info.contains("runtime-info-line"), "{at_info}");
        let unreadable = logged("=%not a directive");
        assert!(unreadable.contains("runtime-info-line") && !unreadable.contains("own-trace-line"), "{unreadable}");
    }
}
