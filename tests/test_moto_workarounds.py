"""One pair of tests per workaround in scripts/moto_workarounds.py, on a moto server in this process.

A `test_moto_still_...` test shows that the pinned moto, unpatched, still behaves as the workaround
says. When one fails after a moto upgrade, moto no longer needs that workaround: delete it, with
its tests. The `test_workaround_...` tests show that the workaround does its job."""

from __future__ import annotations

import copy
import json
import socket
import threading

import boto3
import pytest
import requests
from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

import moto_workarounds
from conftest import free_port

KW = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
CANCELLED = [  # a Put that is applied, then a failed condition: moto rolls the Put back
    {"Put": {"TableName": "t", "Item": {"pk": {"S": "rolled-back"}}}},
    {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "missing"}},
                        "ConditionExpression": "attribute_exists(pk)"}},
]


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    KW["endpoint_url"] = f"http://{host}:{port}"
    yield KW["endpoint_url"]
    server.stop()


@pytest.fixture
def ddb(endpoint):
    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    client = boto3.client("dynamodb", **KW)
    client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    return client


def cancel_a_transaction(ddb):
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=CANCELLED)


# --- keep_streams_across_cancelled_transactions -----------------------------------------------------

def keys_a_stream_reader_sees(ddb) -> list[str]:
    """A reader holds a shard iterator; a transaction is cancelled, then an item is written."""
    streams = boto3.client("dynamodbstreams", **KW)
    arn = ddb.describe_table(TableName="t")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                          ShardIteratorType="LATEST")["ShardIterator"]
    cancel_a_transaction(ddb)
    ddb.put_item(TableName="t", Item={"pk": {"S": "after"}})
    return [r["dynamodb"]["Keys"]["pk"]["S"]
            for r in streams.get_records(ShardIterator=iterator)["Records"]]


def test_moto_still_detaches_the_stream_when_a_transaction_is_cancelled(ddb):
    assert keys_a_stream_reader_sees(ddb) == ["rolled-back"], (
        "moto no longer detaches the stream of a cancelled transaction: delete "
        "keep_streams_across_cancelled_transactions")


def test_workaround_keeps_the_stream_across_a_cancelled_transaction(ddb, monkeypatch):
    moto_workarounds.keep_streams_across_cancelled_transactions(patch=monkeypatch.setattr)
    assert keys_a_stream_reader_sees(ddb) == ["after"]


# --- serialize_dynamodb_calls -----------------------------------------------------------------------

def during_a_cancelled_transaction(ddb, monkeypatch, call):
    """Runs `call` on another thread while a cancelled transaction is under way (its Put applied,
    its rollback to come), as moto's threaded server may; returns what `call` returned."""
    original = DynamoDBBackend.get_item
    done = {}

    def get_item(self, table_name, keys, *args, **kwargs):
        if keys == {"pk": {"S": "missing"}} and "thread" not in done:
            done["thread"] = threading.Thread(target=lambda: done.setdefault("result", call()))
            done["thread"].start()
            done["thread"].join(3)  # unserialized: it runs now; serialized: it waits for the lock
        return original(self, table_name, keys, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
    cancel_a_transaction(ddb)
    done["thread"].join(10)
    return done["result"]


def write_meanwhile(ddb, monkeypatch) -> bool:
    """Whether a write made during a cancelled transaction is still there after it."""
    other = boto3.client("dynamodb", **KW)
    during_a_cancelled_transaction(ddb, monkeypatch, lambda: other.put_item(
        TableName="t", Item={"pk": {"S": "concurrent"}}))
    return "Item" in ddb.get_item(TableName="t", Key={"pk": {"S": "concurrent"}})


def read_meanwhile(ddb, monkeypatch) -> bool:
    """Whether a read during a cancelled transaction sees the transaction's Put."""
    other = boto3.client("dynamodb", **KW)
    return "Item" in during_a_cancelled_transaction(ddb, monkeypatch, lambda: other.get_item(
        TableName="t", Key={"pk": {"S": "rolled-back"}}))


def test_moto_still_loses_a_write_made_during_a_cancelled_transaction(ddb, monkeypatch):
    assert not write_meanwhile(ddb, monkeypatch), (
        "moto no longer loses a concurrent write in a transaction's rollback: if reads cannot see a "
        "cancelled transaction either, delete serialize_dynamodb_calls")


def test_moto_still_lets_a_read_see_a_cancelled_transaction(ddb, monkeypatch):
    assert read_meanwhile(ddb, monkeypatch), (
        "moto no longer lets a concurrent read see a cancelled transaction's writes: if no write is "
        "lost in a rollback either, delete serialize_dynamodb_calls")


def test_workaround_keeps_a_write_made_during_a_cancelled_transaction(ddb, monkeypatch):
    moto_workarounds.serialize_dynamodb_calls(patch=monkeypatch.setattr)
    assert write_meanwhile(ddb, monkeypatch)


def test_workaround_hides_a_cancelled_transaction_from_reads(ddb, monkeypatch):
    moto_workarounds.serialize_dynamodb_calls(patch=monkeypatch.setattr)
    assert not read_meanwhile(ddb, monkeypatch)


# --- honour_transaction_client_request_tokens ------------------------------------------------------

CREATE_ONCE = [{"Put": {"TableName": "t", "Item": {"pk": {"S": "once"}},
                        "ConditionExpression": "attribute_not_exists(pk)"}}]


def repeat_with_the_same_token(ddb):
    """The SDK's retry of a committed call whose answer was lost: the same call, the same token."""
    ddb.transact_write_items(TransactItems=CREATE_ONCE, ClientRequestToken="retried-token")
    ddb.transact_write_items(TransactItems=CREATE_ONCE, ClientRequestToken="retried-token")


def test_moto_still_runs_a_transaction_again_under_a_token_it_answered(ddb):
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        repeat_with_the_same_token(ddb)
    # (No assertion message fits pytest.raises; if this fails, moto honours ClientRequestToken:
    # delete honour_transaction_client_request_tokens and its tests.)


def test_workaround_answers_a_repeated_token_as_the_first_time_and_changes_nothing(ddb, monkeypatch):
    moto_workarounds.honour_transaction_client_request_tokens(patch=monkeypatch.setattr)
    repeat_with_the_same_token(ddb)
    assert ddb.get_item(TableName="t", Key={"pk": {"S": "once"}})["Item"]["pk"] == {"S": "once"}
    other = [{"Put": {"TableName": "t", "Item": {"pk": {"S": "other"}}}}]
    with pytest.raises(ddb.exceptions.IdempotentParameterMismatchException):
        ddb.transact_write_items(TransactItems=other, ClientRequestToken="retried-token")
    assert "Item" not in ddb.get_item(TableName="t", Key={"pk": {"S": "other"}})
    # Without a token, or with a new one, a transaction runs as before.
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=CREATE_ONCE, ClientRequestToken="a-new-token")


# --- share_stream_shards_in_table_copies ------------------------------------------------------------

def a_table_copy(ddb):
    """moto's rollback copy of the table, and the table."""
    import copy
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables["t"]
    return copy.deepcopy(table), table


def test_moto_still_copies_the_stream_shard_with_a_table(ddb):
    copied, table = a_table_copy(ddb)
    assert copied.stream_shard is not table.stream_shard, (
        "moto no longer copies a table's stream shard for a transaction: delete "
        "share_stream_shards_in_table_copies")


def test_workaround_copies_a_table_sharing_its_stream_shard_and_rolls_back_cleanly(ddb, monkeypatch):
    moto_workarounds.share_stream_shards_in_table_copies(
        patch=lambda obj, name, value: monkeypatch.setattr(obj, name, value, raising=False))
    ddb.put_item(TableName="t", Item={"pk": {"S": "kept"}})
    copied, table = a_table_copy(ddb)
    assert copied.stream_shard is table.stream_shard
    assert copied.items.keys() == table.items.keys() and copied.items is not table.items
    # With the stream workaround, a cancelled transaction still leaves the stream as it was.
    moto_workarounds.keep_streams_across_cancelled_transactions(patch=monkeypatch.setattr)
    assert keys_a_stream_reader_sees(ddb) == ["after"]


# --- roll_back_transactions_item_by_item ------------------------------------------------------------

def table_copies_of_a_cancelled_transaction(ddb, monkeypatch) -> int:
    """Writes two items, then cancels a transaction that adds one, changes one and deletes the
    other; returns how many table copies the transaction took, and checks that nothing it did
    stayed."""
    from moto.dynamodb.models.table import Table
    copies = []
    copy_table = Table.__dict__.get("__deepcopy__")

    def counted(self, memo):
        if copy_table is not None:
            clone = copy_table(self, memo)
        else:
            clone = self.__class__.__new__(self.__class__)
            memo[id(self)] = clone
            for name, value in self.__dict__.items():
                setattr(clone, name, copy.deepcopy(value, memo))
        if clone is not self:
            copies.append(self.name)
        return clone

    monkeypatch.setattr(Table, "__deepcopy__", counted, raising=False)
    for pk in ("changed", "deleted"):
        ddb.put_item(TableName="t", Item={"pk": {"S": pk}, "a": {"N": "1"}})
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "rolled-back"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "changed"}},
                        "UpdateExpression": "SET a = :two", "ExpressionAttributeValues": {
                            ":two": {"N": "2"}}}},
            {"Delete": {"TableName": "t", "Key": {"pk": {"S": "deleted"}}}},
            CANCELLED[1]])
    items = {i["pk"]["S"]: i for i in ddb.scan(TableName="t")["Items"]}
    assert items == {pk: {"pk": {"S": pk}, "a": {"N": "1"}} for pk in ("changed", "deleted")}
    return len(copies)


def test_moto_still_copies_every_table_a_transaction_touches(ddb, monkeypatch):
    assert table_copies_of_a_cancelled_transaction(ddb, monkeypatch) > 0, (
        "moto no longer copies whole tables for a transaction's rollback: delete "
        "roll_back_transactions_item_by_item")


def test_workaround_copies_no_table_and_puts_the_items_back(ddb, monkeypatch):
    moto_workarounds.roll_back_transactions_item_by_item(
        patch=lambda obj, name, value: monkeypatch.setattr(obj, name, value, raising=False))
    assert table_copies_of_a_cancelled_transaction(ddb, monkeypatch) == 0
    # A transaction that succeeds is applied, and with the stream workaround a cancelled one
    # leaves the stream as it was.
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}}])
    assert "Item" in ddb.get_item(TableName="t", Key={"pk": {"S": "new"}})
    moto_workarounds.keep_streams_across_cancelled_transactions(patch=monkeypatch.setattr)
    assert keys_a_stream_reader_sees(ddb) == ["after"]


# --- start_server -----------------------------------------------------------------------------------

@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_moto_still_waits_forever_when_its_server_cannot_bind(taken_port):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=taken_port, verbose=False)
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(3)
    hung = starter.is_alive()
    server._server_ready_event.set()  # let the starter go
    assert hung, ("ThreadedMotoServer.start() no longer hangs when the port is taken: "
                  "delete start_server and call server.start()")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_workaround_gives_up_on_a_server_that_cannot_bind(taken_port):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=taken_port, verbose=False)
    assert moto_workarounds.start_server(server, timeout=2) is False
    server._server_ready_event.set()


# --- stop_tracking_items_and_stream_records --------------------------------------------------------

def dumped_after_writes_a_transaction_and_a_stream_read(ddb, endpoint) -> dict[str, int]:
    """How many instances of each model of UNTRACKED_MODELS moto's state dump lists after three
    writes, a transaction and a stream reader's reads; also checks that the table works."""
    for key in ("a", "b", "c"):
        ddb.put_item(TableName="t", Item={"pk": {"S": key}})
    ddb.transact_write_items(TransactItems=[{"Update": {
        "TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :n",
        "ExpressionAttributeValues": {":n": {"N": "1"}}}}])
    streams = boto3.client("dynamodbstreams", **KW)
    arn = ddb.describe_table(TableName="t")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records] == [
        ("INSERT", "a"), ("INSERT", "b"), ("INSERT", "c"), ("MODIFY", "a")]
    assert ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    dump = requests.get(f"{endpoint}/moto-api/data.json", timeout=60).json()
    return {model.__name__: len(dump[model.__module__.split(".")[1]].get(model.__name__, []))
            for model in moto_workarounds.UNTRACKED_MODELS}


def test_moto_still_tracks_every_item_table_copy_stream_record_and_shard_iterator(ddb, endpoint):
    dumped = dumped_after_writes_a_transaction_and_a_stream_read(ddb, endpoint)
    # Beyond the 3 items and the one table: their copies in the transaction's rollback copy.
    leaks = {"Item": dumped["Item"] > 3, "Table": dumped["Table"] > 1,
             "StreamRecord": dumped["StreamRecord"] >= 4, "ShardIterator": dumped["ShardIterator"] >= 1}
    assert all(leaks.values()), (
        f"moto no longer tracks (and dumps) every one of these: {dumped}; take those it no longer "
        f"keeps out of UNTRACKED_MODELS (all of them: delete stop_tracking_items_and_stream_records)")


@pytest.fixture
def untracked(monkeypatch):
    """The workaround, applied before the `ddb` fixture makes its table."""
    moto_workarounds.stop_tracking_items_and_stream_records(patch=monkeypatch.setattr)


def test_workaround_tracks_no_item_table_stream_record_or_shard_iterator(untracked, ddb, endpoint):
    dumped = dumped_after_writes_a_transaction_and_a_stream_read(ddb, endpoint)
    assert dumped == {"Item": 0, "Table": 0, "StreamRecord": 0, "ShardIterator": 0}


# --- serialize_attribute_values_as_they_are ----------------------------------------------------------

EVERY_TYPE = {  # every AttributeValue type, nested; and a long list (as an import's rejected rows)
    "pk": {"S": "every-type"}, "n": {"N": "1.50"}, "b": {"B": b"\x00\xffbin"}, "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x01", b"\x02"]}, "null": {"NULL": True},
    "yes": {"BOOL": True}, "no": {"BOOL": False}, "empty": {"S": ""},
    "m": {"M": {"inner": {"L": [{"S": "deep"}, {"N": "0"}, {"B": b"\x03"}, {"M": {}}, {"L": []}]}}},
    "rows": {"L": [{"M": {"row": {"N": str(i)}, "reason": {"S": "not an address"}}}
                   for i in range(500)]},
}


def answers_with_every_attribute_type(ddb) -> list[bytes]:
    """The raw bodies of GetItem, Query, UpdateItem (ALL_NEW) and GetRecords' images of an item
    holding every AttributeValue type."""
    bodies = []
    answers = ("GetItem", "Query", "UpdateItem", "GetRecords")

    def grab(response_dict, operation_model, **kw):
        if operation_model.name in answers:
            bodies.append(response_dict["body"])
    streams = boto3.client("dynamodbstreams", **KW)
    for client in (ddb, streams):
        client.meta.events.register("before-parse", grab)
    ddb.put_item(TableName="t", Item=EVERY_TYPE)
    key = {"pk": {"S": "every-type"}}
    del bodies[:]
    ddb.get_item(TableName="t", Key=key)
    ddb.query(TableName="t", KeyConditionExpression="pk = :p",
              ExpressionAttributeValues={":p": {"S": "every-type"}})
    ddb.update_item(TableName="t", Key=key, UpdateExpression="SET z = :z",
                    ExpressionAttributeValues={":z": {"B": b"\x09"}}, ReturnValues="ALL_NEW")
    arn = ddb.describe_table(TableName="t")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    streams.get_records(ShardIterator=iterator)
    for client in (ddb, streams):
        client.meta.events.unregister("before-parse", grab)
    assert len(bodies) == 4, bodies
    records = json.loads(bodies[-1])["Records"]  # ids and times differ from run to run
    bodies[-1] = json.dumps([r["dynamodb"]["NewImage"] for r in records], sort_keys=True).encode()
    return bodies


def attribute_value_members_walked(ddb, monkeypatch) -> int:
    """How many members of AttributeValues moto's serializer looks up one by one to answer a
    GetItem of EVERY_TYPE (12 attributes, one a list of 500 maps of 2)."""
    from moto.core.serialize import ResponseSerializer
    walked = []
    original = ResponseSerializer._serialize_structure_member

    def counting(self, serialized, value, shape, key):
        if getattr(getattr(shape, "parent", None), "name", None) == "AttributeValue":
            walked.append(key)
        return original(self, serialized, value, shape, key)

    ddb.put_item(TableName="t", Item=EVERY_TYPE)
    monkeypatch.setattr(ResponseSerializer, "_serialize_structure_member", counting)
    ddb.get_item(TableName="t", Key={"pk": {"S": "every-type"}})
    return len(walked)


def test_moto_still_walks_each_attribute_value_member_by_member(ddb, monkeypatch):
    walked = attribute_value_members_walked(ddb, monkeypatch)
    assert walked >= 10 * 1_500, (
        f"moto's serializer no longer looks up each member of every AttributeValue ({walked} "
        f"lookups for about 1,500 values): delete serialize_attribute_values_as_they_are")


def test_workaround_writes_attribute_values_as_they_are_with_the_same_answers(ddb, monkeypatch):
    before = answers_with_every_attribute_type(ddb)
    requests.post(f"{KW['endpoint_url']}/moto-api/reset", timeout=30).raise_for_status()
    ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    moto_workarounds.serialize_attribute_values_as_they_are(patch=monkeypatch.setattr)
    assert answers_with_every_attribute_type(ddb) == before
    assert attribute_value_members_walked(ddb, monkeypatch) == 0
