#!/usr/bin/env python3
"""Release binary size and init time of Lambda functions, before and after a change.

Init time = from just before the binary is spawned to the arrival of its first
`GET /2018-06-01/runtime/invocation/next`: the moment the function is ready for work.
A plain TCP listener on 127.0.0.1 plays the Lambda Runtime API; it records that request and
never answers (the process is then killed). Only binaries and environment variables are used,
so the same script measures any version of the code.

    scripts/cold_start.py --dir target/release -n 20 sign-in register profile ...
    --env NAME=VALUE adds or overrides a variable (e.g. a setting a later version requires).
Exits 1, showing the binary's output, if a binary exits or does not poll within --timeout.
"""
import argparse, math, os, socket, statistics, subprocess, sys, tempfile, time

FUNCTIONS = ["sign-in", "register", "profile", "create-invitation", "redeem-invitation", "external-sign-in",
             "send-email"]
NEXT = b"GET /2018-06-01/runtime/invocation/next"

# The whole environment is given, nothing inherited: results must not depend on the caller's shell.
BASE_ENV = {
    # lambda_runtime's Config::from_env panics without AWS_LAMBDA_FUNCTION_NAME (set per binary
    # below), MEMORY_SIZE and VERSION; it reads the log names too. RUNTIME_API is set per run.
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "cold-start",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/cold-start",
    # The portal's settings (shared/src/config.rs): the table names have no default; the rest are
    # given explicitly so a changed default cannot make start-up fail.
    "PORTAL_CONTACTS_TABLE": "contacts", "PORTAL_SESSIONS_TABLE": "sessions",
    "PORTAL_INVITATIONS_TABLE": "invitations", "PORTAL_OUTBOX_TABLE": "outbox", "PORTAL_AUDIT_TABLE": "audit",
    "PORTAL_BASE_URL": "http://localhost:9000", "PORTAL_EMAIL_SENDER": "no-reply@example.com",
    # The SDK is configured from these alone: static credentials and region, a discard-port
    # endpoint, no instance metadata and no ~/.aws files, so no real network or profile is touched.
    "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "cold-start", "AWS_SECRET_ACCESS_KEY": "cold-start",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


def fail(name, why, out):
    out.seek(0)
    sys.exit(f"{name}: {why}\n--- its stdout+stderr ---\n{out.read().decode(errors='replace')}")


def init_time_ms(path, name, env, timeout):
    """One cold start: returns ms from spawn to the first invocation/next request."""
    with socket.create_server(("127.0.0.1", 0)) as server, tempfile.TemporaryFile() as out:
        env = dict(env, AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.getsockname()[1]}")
        server.settimeout(0.005)  # short waits, so a crashed binary is noticed at once
        start = time.perf_counter_ns()  # CLOCK_MONOTONIC; spawn (fork+exec) is part of what we measure
        # Output goes to a file, not a pipe: a chatty binary can never block on a full pipe.
        proc = subprocess.Popen([path], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        conns, data = [], b""
        try:
            while True:
                if (time.perf_counter_ns() - start) / 1e9 > timeout:
                    fail(name, f"no {NEXT.decode()} within {timeout} s", out)
                try:
                    conn, _ = server.accept()
                    conn.settimeout(timeout)
                    conns.append(conn)
                    data = b""
                    while b"\r\n" not in data:  # the request line is enough
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    arrived = time.perf_counter_ns()
                except socket.timeout:
                    if proc.poll() is not None:
                        fail(name, f"exited with status {proc.returncode} before polling", out)
                    continue
                if data.startswith(NEXT):
                    return (arrived - start) / 1e6
                # Anything else first (e.g. POST /runtime/init/error) means start-up went wrong.
                fail(name, f"first request was {data.splitlines()[0] if data else b'(empty)'!r}", out)
        finally:
            proc.kill()
            proc.wait()
            for conn in conns:
                conn.close()


def p90(values):
    """Nearest-rank 90th percentile: the smallest value at least 90 % of the runs did not exceed."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binaries", nargs="*", default=FUNCTIONS, help="binary names (default: every function)")
    parser.add_argument("--dir", default="target/release", help="directory of release binaries")
    parser.add_argument("-n", "--runs", type=int, default=20, help="measured runs per binary (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first, to load the page cache")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the first poll")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra variable")
    args = parser.parse_args()
    env = dict(BASE_ENV, **dict(item.split("=", 1) for item in args.env))
    paths = {name: os.path.join(args.dir, name) for name in args.binaries}
    for name, path in paths.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"{name}: no executable at {path}")
    for _ in range(args.warmup):
        for name, path in paths.items():
            init_time_ms(path, name, env, args.timeout)
    # Round-robin over the binaries, so drift from other load on the machine hits all alike.
    times = {name: [] for name in paths}
    for _ in range(args.runs):
        for name, path in paths.items():
            times[name].append(init_time_ms(path, name, env, args.timeout))
    print(f"{'binary':<20}{'bytes':>12}{'MiB':>8}{'init median ms':>16}{'init p90 ms':>13}   (N={args.runs})")
    for name, path in paths.items():
        size = os.path.getsize(path)
        print(f"{name:<20}{size:>12}{size / 2**20:>8.2f}{statistics.median(times[name]):>16.2f}{p90(times[name]):>13.2f}")


if __name__ == "__main__":
    main()
