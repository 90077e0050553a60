"""The administrators' lists end to end over HTTP against the running local stack: every invitation
newest first, filtered and paged with an opaque cursor; an invitation's inviter and redeemers; the
contacts list and its prefix search from indexes; and the pages linking them."""

from __future__ import annotations

import time
import uuid

from support import ADMIN_EMAIL, Page, Portal, describe, error_body, strong_password

from test_invitations import (  # noqa: F401 (the admin fixture)
    admin,
    await_delivery,
    create_contact,
    emailed_code,
    get_invitation,
    invite,
)


def into_the_next_second() -> None:
    """Waits for the clock's next whole second: the lists order rows by their creation second,
    so a row created from now on sorts after every row created before."""
    time.sleep(int(time.time()) + 1 - time.time())


def listed(admin, path: str) -> dict:
    resp = admin.get_json(path)
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert set(body) >= {"next_cursor"}, body
    return body


def every_page(admin, path: str) -> list[list[dict]]:
    """Each page of the list at `path` (which has a query string), following the cursors."""
    pages, cursor = [], None
    while True:
        body = listed(admin, path + (f"&cursor={cursor}" if cursor else ""))
        pages.append(body["invitations"] if "invitations" in body else body["contacts"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def ids(rows: list[dict]) -> list[str]:
    return [row["invitation_id"] for row in rows]


def three_invitations(admin) -> tuple[dict, list[dict]]:
    """A contact with three invitations, a second apart (oldest first)."""
    contact = create_contact(admin)
    made = []
    for _ in range(3):
        made.append(invite(admin, contact_id=contact["contact_id"]))
        into_the_next_second()
    return contact, made


def test_invitations_are_listed_newest_first_in_pages_and_filtered(admin):
    contact, made = three_invitations(admin)
    newest_first = ids(made)[::-1]
    cid = contact["contact_id"]
    pages = every_page(admin, f"/admin/invitations?contact_id={cid}&limit=2")
    assert [len(p) for p in pages] == [2, 1]
    assert ids(sum(pages, [])) == newest_first
    row = pages[0][0]
    assert row["created_by"]["email"] == ADMIN_EMAIL
    assert (row["email"], row["first_name"], row["type"]) == (contact["email"], "Grace", "single")
    assert (row["redemptions"], row["max_redemptions"]) == (0, 1)
    # The whole list holds them in the same order (others' invitations may come between).
    everyone = ids(listed(admin, "/admin/invitations?limit=200")["invitations"])
    assert [i for i in everyone if i in newest_first] == newest_first
    assert everyone.index(newest_first[0]) < 10, "the newest are at the top"

    revoked = made[0]["invitation_id"]
    assert admin.post_json(f"/admin/invitations/{revoked}/revoke", {}).status_code == 200
    by_status = lambda s: ids(listed(admin, f"/admin/invitations?contact_id={cid}&status={s}")["invitations"])
    assert by_status("revoked") == [revoked]
    assert by_status("active") == newest_first[:2]
    assert by_status("expired") == [] and by_status("redeemed") == []
    revoked_anywhere = ids(sum(every_page(admin, "/admin/invitations?status=revoked&limit=200"), []))
    assert revoked in revoked_anywhere and newest_first[0] not in revoked_anywhere
    for invitation in made:
        await_delivery(admin, invitation["invitation_id"], "sent")
    assert ids(listed(admin, f"/admin/invitations?contact_id={cid}&delivery=sent")["invitations"]) == newest_first
    assert listed(admin, f"/admin/invitations?contact_id={cid}&delivery=failed")["invitations"] == []
    sent = ids(listed(admin, "/admin/invitations?delivery=sent&limit=200")["invitations"])
    assert newest_first[0] in sent


def test_bad_limits_cursors_and_filters_are_a_clear_400(admin):
    for query, field in [
        ("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"), ("cursor=%7B%7D", "cursor"),
        ("status=gone", "status"), ("delivery=lost", "delivery"), ("contact_id=a%23b", "contact_id"),
    ]:
        resp = admin.get_json(f"/admin/invitations?{query}")
        assert resp.status_code == 400, describe(resp)
        body = error_body(resp)
        assert body["error"] == "validation_failed" and field in body["fields"], body
    resp = admin.get_json("/admin/contacts?limit=201")
    assert resp.status_code == 400 and "limit" in error_body(resp)["fields"]
    assert len(listed(admin, "/admin/invitations?limit=1")["invitations"]) <= 1


def test_the_invitation_shows_its_inviter_and_its_redeemers(stack, admin):
    contact = create_contact(admin, first_name="Katherine", last_name="Johnson")
    invitation = invite(admin, contact_id=contact["contact_id"])
    code = emailed_code(stack, contact["email"])
    redeemed = Portal(stack.portal_url).post_json("/redeem", {"code": code, "password": strong_password()})
    assert redeemed.status_code == 201, describe(redeemed)
    detail = get_invitation(admin, invitation["invitation_id"])
    assert detail["created_by"]["email"] == ADMIN_EMAIL and detail["created_by"]["contact_id"]
    assert detail["created_at"].endswith("Z")
    [redeemer] = detail["redeemed_by"]
    assert (redeemer["contact_id"], redeemer["email"]) == (contact["contact_id"], contact["email"])
    assert (redeemer["first_name"], redeemer["last_name"]) == ("Katherine", "Johnson")
    assert redeemer["redeemed_at"].endswith("Z")
    assert detail["status"] == "redeemed"
    redeemed_list = ids(listed(admin, f"/admin/invitations?status=redeemed&contact_id={contact['contact_id']}")["invitations"])
    assert redeemed_list == [invitation["invitation_id"]]
    page = admin.get_page(f"/admin/invitations/{invitation['invitation_id']}")
    assert page.status_code == 200
    assert ADMIN_EMAIL in page.text and "Katherine Johnson" in page.text
    assert f"/admin/contacts?contact_id={contact['contact_id']}" in page.text
    assert f"/admin/contacts?contact_id={detail['created_by']['contact_id']}" in page.text


def test_the_list_page_filters_and_links_to_each_invitation_and_the_contacts(admin):
    contact = create_contact(admin)
    invitation = invite(admin, contact_id=contact["contact_id"])
    await_delivery(admin, invitation["invitation_id"], "sent")
    resp = admin.get_page("/admin/invitations?delivery=sent")
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    assert page.link_href("Contacts") == "/admin/contacts"
    assert f'href="/admin/invitations/{invitation["invitation_id"]}"' in resp.text
    assert contact["email"] in resp.text and ADMIN_EMAIL in resp.text
    assert Page(admin.get_page("/admin/contacts").text).link_href("All invitations") == "/admin/invitations"


def test_contacts_are_listed_from_an_index_and_searched_by_prefix(admin):
    tag = "Zq" + uuid.uuid4().hex[:8]
    made = []
    for first in ("Alma", "Bruno", "Cleo"):
        made.append(create_contact(admin, first_name=first, last_name=tag))
        into_the_next_second()
    emails = [c["email"] for c in made]
    pages = every_page(admin, f"/admin/contacts?q={tag.upper()}%20&limit=2")
    assert [len(p) for p in pages] == [2, 1]
    assert [c["email"] for c in sum(pages, [])] == emails[::-1], "the same name: newest first"
    everyone = [c["email"] for c in listed(admin, "/admin/contacts?limit=200")["contacts"]]
    assert [e for e in everyone if e in emails] == emails[::-1]
    by_email = listed(admin, f"/admin/contacts?q={emails[1][:-4]}")["contacts"]
    assert [c["email"] for c in by_email] == [emails[1]]
    assert listed(admin, f"/admin/contacts?q={tag[2:]}")["contacts"] == [], "a prefix, not a part"
    other = listed(admin, f"/admin/contacts?q={tag}&limit=1")["next_cursor"]
    resp = admin.get_json(f"/admin/contacts?q=someone-else&cursor={other}")
    assert resp.status_code == 400 and "cursor" in error_body(resp)["fields"]
