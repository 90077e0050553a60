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


def last_seen(stack, token: str) -> int:
    item = local_aws.client("dynamodb", stack.aws_endpoint).get_item(
        TableName=stack.tables["SessionsTable"], ConsistentRead=True,
        Key={"pk": {"S": hashlib.sha256(token.encode()).hexdigest()}})["Item"]
    return int(item["last_seen_at"]["N"])


def test_a_session_used_after_a_minute_is_refreshed_by_profile_and_by_the_admin_pages(stack, base_url):
    signed_in = Portal(base_url).signin(stack.admin_email, stack.admin_password)
    assert signed_in.status_code == 200, signed_in.text
    token = session_token(signed_in)
    started = last_seen(stack, token)
    time.sleep(TOUCH_INTERVAL + 1.5)
    client = Portal(base_url)
    assert client.get_json("/profile", headers=with_session(token)).status_code == 200
    after_profile = last_seen(stack, token)
    assert after_profile > started, "GET /profile did not refresh a session idle for a minute"
    time.sleep(TOUCH_INTERVAL + 1.5)
    assert client.get_json("/admin/contacts", headers=with_session(token)).status_code == 200
    assert last_seen(stack, token) > after_profile, "GET /admin/contacts did not refresh the session"
