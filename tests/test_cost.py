"""The capacity unit counter of make load (scripts/load.py) against hand-computed cases, and
make cost (scripts/cost.py) on its committed measurement. Fast: no stack, nothing started."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cost  # noqa: E402
import load  # noqa: E402
from load import Tables, Units, apply_update, item_size, read_capacity  # noqa: E402

KB = 1024


def s(text: str) -> dict:
    return {"S": text}


def n(number) -> dict:
    return {"N": str(number)}


def sized(size: int, **attributes) -> dict:
    """An item of exactly `size` bytes: `attributes` (S values) and a `data` string filling up."""
    item = {k: s(v) for k, v in attributes.items()}
    item["data"] = s("")
    item["data"] = s("x" * (size - item_size(item)))
    assert item_size(item) == size
    return item


def table(name: str = "t", *indexes: dict, sort_key: str | None = None) -> dict:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if sort_key:
        keys.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return {"TableName": name, "KeySchema": keys, "GlobalSecondaryIndexes": list(indexes)}


def gsi(name: str, *keys: str, projection: str = "KEYS_ONLY", include=()) -> dict:
    index = {"IndexName": name,
             "KeySchema": [{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"))],
             "Projection": {"ProjectionType": projection}}
    if include:
        index["Projection"]["NonKeyAttributes"] = list(include)
    return index


def units_of(tables: Tables, calls, before=(), after=()) -> Units:
    """Units of recorded calls (operation, request, status, answer), the tables holding `before`
    at first and `after` at the end."""
    state = {tables.key_of(t, i): i for t, i in before}
    end = {tables.key_of(t, i): i for t, i in after}
    units = Units(tables, state, end)
    for operation, request, status, answer in calls:
        units.add(operation, request, status, answer)
    return units


# --- sizes --------------------------------------------------------------------------------------

def test_item_sizes_follow_dynamodb_rules():
    assert item_size({"pk": s("abc")}) == 5  # name and UTF-8 value
    assert item_size({"n": n(123)}) == 1 + 3  # 3 significant digits: 2 bytes, plus 1
    assert item_size({"n": n("0.000120")}) == 1 + 2
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert item_size({"m": {"M": {"a": s("xy")}}}) == 1 + 3 + (1 + 2 + 1)
    assert item_size({"é": s("é")}) == 4


# --- writes: the hand-computed cases ------------------------------------------------------------

def keys_only_table() -> Tables:
    return Tables({"ThingsTable": table("t", gsi("by-g", "gk"))})


def test_a_put_of_2_5_kb_into_a_table_with_one_keys_only_index_is_3_plus_1():
    tables = keys_only_table()
    item = sized(2560, pk="p1", gk="g")
    assert tables.write_capacity("t", None, item) == (3, 1)
    units = units_of(tables, [("PutItem", {"TableName": "t", "Item": item}, 200, {})])
    assert (units.wru, units.index_wru) == (4, 1)


def test_an_update_of_an_attribute_no_index_holds_costs_the_item_units_only():
    tables = keys_only_table()
    old = sized(2560, pk="p1", gk="g")
    update = {"TableName": "t", "Key": {"pk": s("p1")},
              "UpdateExpression": "ADD failures :one SET attempted_at = :now",
              "ExpressionAttributeValues": {":one": n(1), ":now": n(1796600000)}}
    units = units_of(tables, [("UpdateItem", update, 200, {})], before=[("t", old)])
    assert (units.wru, units.index_wru) == (3, 0)  # 2.5 KB and a few bytes more: 3 units
    assert tables.write_capacity("t", old, {**old, "failures": n(1)}) == (3, 0)


def test_a_transaction_item_costs_double_its_index_writes_once():
    tables = keys_only_table()
    item = sized(2560, pk="p1", gk="g")
    assert tables.write_capacity("t", None, item, transactional=True) == (6, 1)
    units = units_of(tables, [("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "t", "Item": item}},
        {"ConditionCheck": {"TableName": "t", "Key": {"pk": s("p2")},
                            "ConditionExpression": "attribute_not_exists(pk)"}}]}, 200, {})])
    assert units.wru == 6 + 1 + 2  # the put, its index entry, the check of a missing item (2 x 1)


def test_an_update_that_changes_an_index_key_is_a_delete_and_a_put_in_that_index():
    tables = keys_only_table()
    old = sized(1500, pk="p1", gk="old")
    update = {"TableName": "t", "Key": {"pk": s("p1")}, "UpdateExpression": "SET gk = :g",
              "ExpressionAttributeValues": {":g": s("new")}}
    units = units_of(tables, [("UpdateItem", update, 200, {})], before=[("t", old)])
    assert (units.wru, units.index_wru) == (2 + 2, 2)
    # Set to the value it had: nothing in the index changes (AWS: "changes the value... from A to B").
    same = {**update, "ExpressionAttributeValues": {":g": s("old")}}
    units = units_of(tables, [("UpdateItem", same, 200, {})], before=[("t", old)])
    assert (units.wru, units.index_wru) == (2, 0)


def test_an_index_entry_is_sized_by_what_the_index_projects():
    big = "k" * 1500  # a 1.5 KB index key: 2 units for each entry written
    tables = Tables({"ThingsTable": table(
        "t", gsi("keys", "gk"), gsi("some", "gk", projection="INCLUDE", include=["shown"]),
        gsi("all", "gk", projection="ALL"))})
    old = {"pk": s("p1"), "gk": s(big), "shown": s("a"), "hidden": s("b" * 2000)}
    # `shown` changes: KEYS_ONLY not written; INCLUDE: its entry (keys and shown, 1.5 KB) once;
    # ALL: the whole item (3.5 KB) once.
    new = {**old, "shown": s("c")}
    assert tables.index_write_units("t", old, new) == 0 + 2 + 4
    # `hidden` changes: only the ALL index holds it.
    assert tables.index_write_units("t", old, {**old, "hidden": s("d")}) == 4
    # The entry is the keys only: a KEYS_ONLY index of a 3.5 KB item writes 2 units for it.
    assert Tables({"T": table("t", gsi("keys", "gk"))}).write_capacity("t", None, old) == (4, 2)


def test_an_item_enters_and_leaves_a_sparse_index_once_each():
    tables = keys_only_table()
    old = {"pk": s("p1"), "x": s("y")}
    entered = {**old, "gk": s("g")}
    assert tables.index_write_units("t", old, entered) == 1
    assert tables.index_write_units("t", entered, old) == 1
    assert tables.index_write_units("t", entered, None) == 1  # deleted
    assert tables.index_write_units("t", old, {**old, "x": s("z")}) == 0  # never in it


def test_a_refused_conditional_write_is_billed_on_the_item_it_looked_at_without_index_writes():
    tables = keys_only_table()
    old = sized(2100, pk="p1", gk="g")
    update = {"TableName": "t", "Key": {"pk": s("p1")}, "UpdateExpression": "SET gk = :g",
              "ConditionExpression": "attribute_not_exists(pk)",
              "ExpressionAttributeValues": {":g": s("h")}}
    units = units_of(tables, [("UpdateItem", update, 400,
                               {"__type": "ConditionalCheckFailedException"})], before=[("t", old)])
    assert (units.wru, units.index_wru) == (3, 0)
    missing = {**update, "Key": {"pk": s("nobody")}}
    assert units_of(tables, [("UpdateItem", missing, 400, {})]).wru == 1


def test_a_write_is_billed_on_the_larger_of_the_item_before_and_after():
    tables = keys_only_table()
    old = sized(3000, pk="p1")
    update = {"TableName": "t", "Key": {"pk": s("p1")}, "UpdateExpression": "REMOVE #d",
              "ExpressionAttributeNames": {"#d": "data"}}
    units = units_of(tables, [("UpdateItem", update, 200, {})], before=[("t", old)])
    assert units.wru == 3
    deleted = units_of(tables, [("DeleteItem", {"TableName": "t", "Key": {"pk": s("p1")}}, 200, {})],
                       before=[("t", old)])
    assert deleted.wru == 3 and deleted.state == {}


def test_an_item_written_twice_in_a_phase_is_followed_from_one_write_to_the_next():
    tables = keys_only_table()
    put = {"pk": s("p1"), "gk": s("a")}
    move = {"TableName": "t", "Key": {"pk": s("p1")}, "UpdateExpression": "SET gk = :g",
            "ExpressionAttributeValues": {":g": s("b")}}
    units = units_of(tables, [("PutItem", {"TableName": "t", "Item": put}, 200, {}),
                              ("UpdateItem", move, 200, {}), ("UpdateItem", move, 200, {})],
                     after=[("t", {**put, "gk": s("b")})])
    # put 1 + entry 1; the move 1 + delete 1 + put 1; the same value again 1 (no index write)
    assert (units.wru, units.index_wru) == (2 + 3 + 1, 3)


# --- reads ----------------------------------------------------------------------------------------

def test_read_units_strongly_and_eventually_consistent_and_transactional():
    assert read_capacity(5 * KB, consistent=True) == 2
    assert read_capacity(9 * KB, consistent=False) == 1.5
    assert read_capacity(0, consistent=False) == 0.5  # a read that finds nothing
    assert read_capacity(4 * KB, consistent=True, transactional=True) == 2


def test_a_strongly_consistent_get_of_5_kb_is_2_units_an_eventually_consistent_query_of_9_kb_1_5():
    tables = keys_only_table()
    item = sized(5 * KB, pk="p1")
    get = units_of(tables, [("GetItem", {"TableName": "t", "Key": {"pk": s("p1")},
                                         "ConsistentRead": True}, 200, {"Item": item})],
                   before=[("t", item)])
    assert get.rru == 2
    # A projection reads the whole item all the same.
    projected = units_of(tables, [("GetItem", {"TableName": "t", "Key": {"pk": s("p1")},
                                               "ProjectionExpression": "pk"}, 200,
                                   {"Item": {"pk": s("p1")}})], before=[("t", item)])
    assert projected.rru == 1  # 5 KB eventually consistent: 2 x 0.5
    items = [sized(3 * KB, pk="a"), sized(3 * KB, pk="b"), sized(3 * KB, pk="c")]
    query = units_of(tables, [("Query", {"TableName": "t", "KeyConditionExpression": "pk = :p"},
                               200, {"Items": items, "Count": 3, "ScannedCount": 3})])
    assert query.rru == 1.5


def test_an_index_query_reads_the_index_entries_not_the_items():
    tables = keys_only_table()
    items = [sized(3 * KB, pk=f"p{i}", gk="g") for i in range(3)]
    entries = [{"pk": i["pk"], "gk": i["gk"]} for i in items]
    query = units_of(tables, [("Query", {"TableName": "t", "IndexName": "by-g",
                                         "ProjectionExpression": "pk",
                                         "KeyConditionExpression": "gk = :g"}, 200,
                               {"Items": [{"pk": e["pk"]} for e in entries], "ScannedCount": 3})],
                     before=[("t", i) for i in items])
    assert query.rru == 0.5
    assert query.by_kind == {"things:by-g": [0.5, 0.0]}


def test_a_session_touch_is_counted_apart():
    tables = Tables({"SessionsTable": table("sessions", gsi("by-contact", "contact_id"))})
    session = {"pk": s("digest"), "contact_id": s("c1"), "last_seen_at": n(1)}
    touch = {"TableName": "sessions", "Key": {"pk": s("digest")},
             "UpdateExpression": "SET last_seen_at = :now",
             "ConditionExpression": "attribute_exists(pk)",
             "ExpressionAttributeValues": {":now": n(100)}}
    units = units_of(tables, [("UpdateItem", touch, 200, {})], before=[("sessions", session)])
    assert (units.wru, units.touches, units.touch_wru) == (0, 1, 1)


# --- apply_update ---------------------------------------------------------------------------------

def test_apply_update_evaluates_set_remove_add_delete():
    old = {"pk": s("p"), "count": n(2), "gone": s("x"), "tags": {"SS": ["a", "b"]},
           "more": {"SS": ["a", "b"]}}
    new = apply_update(
        old, "SET #c = #c + :one, since = if_not_exists(since, :now), kept = if_not_exists(pk, :now) "
             "REMOVE gone ADD hits :one, tags :c DELETE more :a",
        {"#c": "count"}, {":one": n(1), ":now": n(7), ":c": {"SS": ["c"]}, ":a": {"SS": ["a"]}})
    assert new["count"] == n(3) and new["since"] == n(7) and new["kept"] == s("p")
    assert "gone" not in new and new["hits"] == n(1)
    assert new["tags"] == {"SS": ["a", "b", "c"]} and new["more"] == {"SS": ["b"]}
    assert old["count"] == n(2)  # not changed in place
    assert apply_update(old, "SET #c = #c - :one", {"#c": "count"}, {":one": n(2)})["count"] == n(0)


def test_apply_update_takes_what_it_does_not_evaluate_from_the_table_after_the_phase():
    old = {"pk": s("p"), "deliveries": {"M": {"a": s("pending")}}, "n": n(1)}
    after = {"pk": s("p"), "deliveries": {"M": {"a": s("sent")}}, "n": n(5)}
    new = apply_update(old, "SET deliveries.#c = :sent ADD n :one", {"#c": "a"},
                       {":sent": s("sent"), ":one": n(1)}, fallback=after)
    assert new["deliveries"] == after["deliveries"] and new["n"] == n(2)
    # A placeholder named like a clause is not a clause.
    assert apply_update({}, "SET a = :set, b = :remove", None,
                        {":set": n(1), ":remove": n(2)}) == {"a": n(1), "b": n(2)}


# --- the portal's tables ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def portal_tables() -> Tables:
    import local_aws

    resources = local_aws.load_template()["Resources"]
    return Tables({lid: {**res["Properties"], "TableName": lid} for lid, res in resources.items()
                   if res["Type"] == "AWS::DynamoDB::Table"})


def contact(**extra) -> dict:
    item = {"pk": s("CONTACT#c1"), "list_pk": s("CONTACT#3"), "list_sk": s("001796600000#c1"),
            "email_normalized": s("ada@example.com"), "first_name_key": s("ada#998203399999#c1"),
            "last_name_key": s("lovelace#998203399999#c1"), "first_name": s("Ada"),
            "last_name": s("Lovelace"), "password_hash": s("$argon2id$" + "h" * 90)}
    item.update(extra)
    return item


def test_a_contacts_counters_and_password_write_none_of_its_list_indexes(portal_tables):
    old = contact()
    for new in (contact(failed_sign_ins=n(1), write_token=s("t")),
                contact(password_hash=s("$argon2id$" + "k" * 90), session_epoch=s("e"))):
        assert portal_tables.write_capacity("ContactsTable", old, new) == (1, 0)


def test_a_new_contact_enters_its_four_list_indexes(portal_tables):
    # KEYS_ONLY by-created and the three INCLUDE search indexes: one small entry each.
    assert portal_tables.write_capacity("ContactsTable", None, contact()) == (1, 4)


def test_a_first_name_change_moves_one_index_entry_and_updates_two(portal_tables):
    old = contact()
    new = contact(first_name=s("Augusta"), first_name_key=s("augusta#998203399999#c1"))
    # by-first-name: delete and put; by-email and by-last-name hold first_name_key: one write
    # each; by-created (keys only) nothing.
    assert portal_tables.index_write_units("ContactsTable", old, new) == 2 + 1 + 1
    # The same names set again (update_profile sets every list key): no index write.
    assert portal_tables.index_write_units("ContactsTable", old, contact()) == 0


# --- make cost --------------------------------------------------------------------------------------

FIELDS = {"count", "http", "ddb_calls", "ddb_calls_send_email", "rru", "wru", "index_wru",
          "by_kind", "touches", "outbox_items", "events", "emails", "kms", "log_lines",
          "log_bytes"}


def test_the_committed_measurement_covers_every_operation_of_the_profile():
    at = cost.MEASURED["measured_at"]
    assert at["date"] and at["commit"] and at["how"]
    assert set(cost.MEASURED["operations"]) == set(cost.PROFILE) == set(load.KINDS)
    for op, m in cost.MEASURED["operations"].items():
        assert set(m) == FIELDS, op
        assert m["count"] >= 3, op
        assert m["index_wru"] <= m["wru"], op
        assert sum(w for _, w in m["by_kind"].values()) == pytest.approx(m["wru"], abs=0.01), op
    assert cost.MEASURED["stored_bytes_per_user"] > 0 and cost.MEASURED["session_item_bytes"] > 0


def test_the_template_alarms_and_custom_metrics_are_counted():
    tpl = cost.template()
    alarms = cost.alarm_metrics(tpl)
    assert alarms["FunctionErrorsAlarm"] == alarms["FunctionThrottlesAlarm"] == 8  # metric math
    assert alarms["Api5xxAlarm"] == 1
    measured = {(ns, name) for ns, name, _ in cost.MEASURED["custom_metrics"]}
    assert cost.template_custom_metrics(tpl) <= measured  # what the alarms watch is published


def test_session_touches_are_one_a_signed_in_minute_after_the_first():
    visits = sum(cost.PROFILE[op] for op in cost.VISITS)
    touches = cost.session_touches_per_mau()
    assert 0 < touches <= visits * (cost.SIGNED_IN_MINUTES_PER_VISIT - 1)
    assert touches <= sum(cost.PROFILE[op] for op in cost.SIGNED_IN_REQUESTS)


def test_make_cost_prints_every_line(capsys):
    assert cost.main([]) == 0
    out = capsys.readouterr().out
    for line in ("Lambda compute", "DynamoDB writes", "DynamoDB session idle timer",
                 "EventBridge events", "KMS key", "KMS requests", "CloudWatch logs",
                 "CloudWatch alarms", "CloudWatch custom metrics", "portal total",
                 "Amazon Cognito Essentials"):
        assert line in out
    assert cost.total_usd() > 0
