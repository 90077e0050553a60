//! The built `sign-in` binary, run as Lambda runs it (its events from a Runtime API) at
//! `RUST_LOG=trace`, writes no password to its log: the runtime logs every raw event at trace,
//! and the portal's subscriber holds that target above it whatever `RUST_LOG` says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PASSWORD: &str = "Sesame-Password-Typed-1843";

/// An HTTP API (2.0) event for `POST /signin` with `body`.
fn sign_in_event(content_type: &str, body: &str) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/signin",
        "rawQueryString": "",
        "headers": {"content-type": content_type, "accept": "application/json", "origin": "http://localhost:9000"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": "POST", "path": "/signin", "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7", "userAgent": "test"},
            "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "27/Nov/2026:09:00:00 +0000", "timeEpoch": 1_800_000_000_000i64
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// A request as the runtime sends it: method, path and body.
struct Received {
    method: String,
    path: String,
    body: String,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { method, path, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A minimal Lambda Runtime API on a local port: hands out `events` in turn, then keeps the
/// runtime waiting; sends each function response (or error) to the returned channel.
fn runtime_api(events: Vec<String>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (events_tx, events_rx) = mpsc::channel::<String>();
    for event in events {
        events_tx.send(event).unwrap();
    }
    let events_rx = std::sync::Arc::new(std::sync::Mutex::new(events_rx));
    let (results_tx, results_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let (events, results) = (events_rx.clone(), results_tx.clone());
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(request) = read_request(&mut reader) {
                    let answer = if request.method == "GET" && request.path.ends_with("/invocation/next") {
                        // No more events: the runtime waits for the next one until the test ends.
                        let Ok(event) = events.lock().unwrap().recv() else { return };
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             lambda-runtime-aws-request-id: request-{n}\r\n\
                             lambda-runtime-deadline-ms: 99999999999999\r\n\
                             lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:sign-in\r\n\
                             content-length: {}\r\n\r\n{event}",
                            event.len()
                        )
                    } else {
                        let _ = results.send(format!("{} {}: {}", request.method, request.path, request.body));
                        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}".into()
                    };
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, results_rx)
}

#[test]
fn at_rust_log_trace_a_sign_in_leaves_no_password_in_the_log() {
    let events = vec![
        sign_in_event("application/json", &format!(r#"{{"login":"ada@example.com","password":"{PASSWORD}"}}"#)),
        sign_in_event("application/x-www-form-urlencoded", &format!("login=ada%40example.com&password={PASSWORD}")),
    ];
    let (runtime_api, results) = runtime_api(events);
    // Nothing listens on port 9 (discard): DynamoDB calls fail at once, after the event was read.
    let mut function = Command::new(env!("CARGO_BIN_EXE_sign-in"))
        .env_clear()
        .envs([
            ("RUST_LOG", "trace"),
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "sign-in"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("PORTAL_CONTACTS_TABLE", "contacts"),
            ("PORTAL_SESSIONS_TABLE", "sessions"),
            ("PORTAL_INVITATIONS_TABLE", "invitations"),
            ("PORTAL_OUTBOX_TABLE", "outbox"),
            ("PORTAL_AUDIT_TABLE", "audit"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sign-in binary starts");
    let answers: Vec<String> = (0..2).map_while(|_| results.recv_timeout(Duration::from_secs(60)).ok()).collect();
    function.kill().unwrap();
    let output = function.wait_with_output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    assert_eq!(answers.len(), 2, "the function answered both events: {answers:?}\n{log}");
    assert!(answers.iter().all(|a| a.contains("/invocation/request-")), "{answers:?}");
    // RUST_LOG=trace was in force: tower-http's request lines are at debug.
    assert!(log.contains("started processing request"), "no debug lines: RUST_LOG was not applied\n{log}");
    assert!(!log.contains(PASSWORD), "the password reached the log:\n{log}");
}
