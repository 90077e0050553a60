"""A session in use has its idle timer refreshed (at most once a minute): the one AWS call of the
functions that only a session older than a minute makes (sessions UpdateItem by profile and by
create-invitation). Here so that the IAM coverage check of make test sees it made."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from support import Portal, session_token, with_session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import local_aws  # noqa: E402

TOUCH_INTERVAL = 60  # seconds: shared/src/domain/session.rs TOUCH_INTERVAL_SECS


def session_key(token: str) -> dict:
    return {"pk": {"S": hashlib.sha256(token.encode()).hexdigest()}}


def last_seen(stack, token: str) -> int:
    item = local_aws.client("dynamodb", stack.aws_endpoint).get_item(
        TableName=stack.tables["SessionsTable"], ConsistentRead=True, Key=session_key(token))["Item"]
    return int(item["last_seen_at"]["N"])


def idle_for_a_minute(stack, token: str) -> int:
    """Moves the session's last use a minute and a bit into the past (as if it had been idle that
    long, without waiting for it): the time set."""
    then = int(time.time()) - TOUCH_INTERVAL - 2
    local_aws.client("dynamodb", stack.aws_endpoint).update_item(
        TableName=stack.tables["SessionsTable"], Key=session_key(token),
        UpdateExpression="SET last_seen_at = :then", ExpressionAttributeValues={":then": {"N": str(then)}})
    return then


def test_a_session_used_after_a_minute_is_refreshed_by_profile_and_by_the_admin_pages(stack, base_url):
    signed_in = Portal(base_url).signin(stack.admin_email, stack.admin_password)
    assert signed_in.status_code == 200, signed_in.text
    token = session_token(signed_in)
    client = Portal(base_url)
    # Used again within the minute: not refreshed (no write).
    started = last_seen(stack, token)
    assert client.get_json("/profile", headers=with_session(token)).status_code == 200
    assert last_seen(stack, token) == started
    idle_since = idle_for_a_minute(stack, token)
    assert client.get_json("/profile", headers=with_session(token)).status_code == 200
    assert last_seen(stack, token) > idle_since, "GET /profile did not refresh a session idle for a minute"
    idle_since = idle_for_a_minute(stack, token)
    assert client.get_json("/admin/contacts", headers=with_session(token)).status_code == 200
    assert last_seen(stack, token) > idle_since, "GET /admin/contacts did not refresh the session"
