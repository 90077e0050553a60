"""Every workaround of a moto behaviour that the local stack needs, in one place.

Each names the upstream behaviour it works around (seen in moto 5.2.5) and has a test in
tests/test_moto_workarounds.py that runs the unpatched moto and fails once moto no longer behaves
so: then delete the workaround and its test. `local_aws.py serve` calls apply() before starting."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time

from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamRecord, Table
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.models import ShardIterator
from moto.core.serialize import BaseJSONSerializer
from moto.server import ThreadedMotoServer
from moto.ses.models import SESQuota


def keep_streams_across_cancelled_transactions(patch=setattr) -> None:
    """moto: a cancelled TransactWriteItems rolls back by replacing each table with a deep copy
    taken before it started. The copy has a copy of the stream shard, so a stream reader's shard
    iterator stays on the old shard: it sees the records of the rolled-back writes (real DynamoDB
    writes none) and never a record written after. Here the old shard, without the rolled-back
    records, is attached to the restored table."""
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        shards = {}
        for item in transact_items:
            table = self.tables.get(next(iter(item.values())).get("TableName"))
            if table is not None and table.stream_shard is not None:
                shards[table.name] = (table.stream_shard, len(table.stream_shard.items))
        try:
            return original(self, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                restored = self.tables.get(name)
                if restored is not None:
                    del shard.items[length:]
                    shard.table, restored.stream_shard = restored, shard
            raise

    patch(DynamoDBBackend, "transact_write_items", transact_write_items)


def share_stream_shards_in_table_copies(patch=setattr) -> None:
    """moto: TransactWriteItems deep-copies every table it touches (its rollback copy), stream shard
    included, which holds every stream record written since the table was made; so a transaction
    costs more the longer the server runs (measured: 10 ms on an empty table, 266 ms at 4,000
    items and records, seconds late in the pytest session, past the SDK's timeouts). The copy shares
    the live shard instead; keep_streams_across_cancelled_transactions takes the rolled-back
    records off it and puts it on the restored table."""

    def __deepcopy__(self, memo):
        shard = self.__dict__.get("stream_shard")
        if shard is not None:
            memo[id(shard)] = shard
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            setattr(clone, name, copy.deepcopy(value, memo))
        return clone

    patch(Table, "__deepcopy__", __deepcopy__)


def roll_back_transactions_item_by_item(patch=setattr) -> None:
    """moto: TransactWriteItems deep-copies every table it touches, with all its items, before it
    starts (its rollback copy), so a transaction takes time in proportion to the tables' size
    (measured with the workarounds above: 12 ms on an empty table, 57 ms at 1,000 items, 170 ms at
    3,000, 430 ms at 6,000). With `make load`'s 1,000 users every registration's transaction cost
    more than the one before, and the calls queued behind them (one at a time) ran into the SDK's
    5 s timeout. Here a transaction copies only the items it names (at most 100), before it starts;
    its copy of a table is the table itself, and a cancelled transaction puts those items back as
    they were (keep_streams_across_cancelled_transactions takes its stream records off). Sound
    because DynamoDB calls run one at a time (serialize_dynamodb_calls): nothing else writes while
    a transaction runs. A table's deep copy outside a transaction is as before."""
    original = DynamoDBBackend.transact_write_items
    copy_table = Table.__dict__.get("__deepcopy__")
    running = threading.local()

    def __deepcopy__(self, memo):
        if getattr(running, "transaction", False):
            return self  # the rollback copy: the items are copied one by one instead
        if copy_table is not None:
            return copy_table(self, memo)
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            setattr(clone, name, copy.deepcopy(value, memo))
        return clone

    def saved_item(backend, op):
        """(table, hash, range, a copy of the item or None) of a transaction item's key."""
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        attrs = (op.get("Key") or op.get("Item") or {}) if table is not None else {}
        if table is None or table.hash_key_attr not in attrs or (
                table.range_key_attr is not None and table.range_key_attr not in attrs):
            return None  # moto refuses it before it writes anything
        hash_value = DynamoType(attrs[table.hash_key_attr])
        range_value = (DynamoType(attrs[table.range_key_attr])
                       if table.range_key_attr is not None else None)
        current = table.get_item(hash_value, range_value)
        return table, hash_value, range_value, copy.deepcopy(current)

    def put_back(table, hash_value, range_value, item):
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
        elif item is None:
            if hash_value in table.items:
                table.items[hash_value].pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item

    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items if isinstance(transact_items, list) else []:
            for op in entry.values() if isinstance(entry, dict) else []:
                try:
                    found = saved_item(self, op)
                except Exception:  # noqa: BLE001 - a malformed item: moto refuses it itself
                    found = None
                if found is not None:
                    saved.append(found)
        running.transaction = True
        try:
            return original(self, transact_items)
        except Exception:
            for found in reversed(saved):
                put_back(*found)
            raise
        finally:
            running.transaction = False

    patch(Table, "__deepcopy__", __deepcopy__)
    patch(DynamoDBBackend, "transact_write_items", transact_write_items)


def serialize_dynamodb_calls(patch=setattr) -> None:
    """moto's server answers requests on threads, and its TransactWriteItems checks and applies
    items one by one, then rolls a cancelled one back by restoring whole tables copied when it
    started: a write made meanwhile by another request is lost, and a read meanwhile sees the
    cancelled transaction's writes. Real DynamoDB transactions are serializable: running moto's
    reads and writes one at a time gives the race tests (parallel redemptions, registrations) the
    same guarantees."""
    lock = threading.RLock()

    def serialized(method):
        def run(self, *args, **kwargs):
            with lock:
                return method(self, *args, **kwargs)
        return run

    for name in ("put_item", "update_item", "delete_item", "batch_write_item",
                 "transact_write_items", "get_item", "query", "scan"):
        patch(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name)))


def honour_transaction_client_request_tokens(patch=setattr) -> None:
    """moto ignores TransactWriteItems' ClientRequestToken. Real DynamoDB answers a call whose token
    it saw succeed in the last 10 minutes with success, changing nothing (other parameters under
    the same token: IdempotentParameterMismatchException). The AWS SDKs give every call a token
    and keep it across their retries, so on AWS the retry of an attempt whose answer was lost
    (timed out after the commit) succeeds; on moto it ran again and its own conditions refused it.
    Here a successful call's answer is kept under its token and given again."""
    original = DynamoHandler.transact_write_items
    window_secs = 600
    answered: dict[str, tuple[str, float, object]] = {}
    # One at a time: a retry arriving while its first attempt still runs waits for its answer.
    lock = threading.Lock()

    def transact_write_items(self):
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        parameters = json.dumps({k: v for k, v in self.body.items() if k != "ClientRequestToken"},
                                sort_keys=True)
        with lock:
            now = time.monotonic()
            for old in [t for t, (_, at, _) in answered.items() if now - at > window_secs]:
                del answered[old]
            if token in answered:
                seen, _, answer = answered[token]
                if seen != parameters:
                    raise DynamodbException(ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                                            "The request uses the same client token as a previous, "
                                            "but non-identical request.")
                return answer
            answer = original(self)
            answered[token] = (parameters, now, answer)
            return answer

    patch(DynamoHandler, "transact_write_items", transact_write_items)


# What moto tracks without bound: every item and each deep copy of it, every table's rollback
# copy (a transaction deep-copies each table it touches, with all its items), every stream record,
# every shard iterator a reader asks for.
UNTRACKED_MODELS = (Item, Table, StreamRecord, ShardIterator)


def _untracked_new(cls, *args, **kwargs):
    return object.__new__(cls)


def stop_tracking_items_and_stream_records(patch=setattr) -> None:
    """moto: BaseModel.__new__ appends every model instance to its class's `instances_tracked`
    list, for /moto-api/data.json (its dashboard) to serialise, and drops none until a reset. So
    each DynamoDB item and each deep copy of it, each table copy a transaction takes for its
    rollback, each stream record and shard iterator stays in memory after moto let go of it, and
    one dump serialises them all (measured here: 1,000 items, 200 transactions and a stream
    reader left 202,632 tracked instances and 1.17 million live objects; a dump took 8.5 to 66 s
    for 4.5 MB; a `make run` of an hour held 4.1 GB). Here those classes are untracked (live ones
    stay reachable through their backend; the dashboard no longer lists tables or items); queues,
    SES messages and the rest are tracked as before."""
    for model in UNTRACKED_MODELS:
        patch(model, "__new__", staticmethod(_untracked_new))


def serialize_attribute_values_as_they_are(patch=setattr) -> None:
    """moto: its response serializer walks every DynamoDB AttributeValue of an answer as a
    structure of ten members, looking each member up through its shape (about 20 calls a value),
    although moto already holds items in DynamoDB's JSON form: reading one item with a list of
    8,000 small maps (an import's rejected rows) took 4 s here, 8 s under load, past the SDK's 5 s
    timeout (a 503). Here an AttributeValue of DynamoDB or DynamoDB Streams that moto gives as a
    dict is written as it is, binaries in base64 (as the serializer writes blobs); the answers
    stay byte for byte the same."""
    original = BaseJSONSerializer._serialize_type_structure
    services = {"dynamodb", "dynamodbstreams"}

    def wire(value):
        if isinstance(value, dict):
            return {k: wire(v) for k, v in value.items()}
        if isinstance(value, list):
            return [wire(v) for v in value]
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(value).decode()
        return value

    def _serialize_type_structure(self, serialized, value, shape, key):
        if (shape.name == "AttributeValue" and isinstance(value, dict)
                and self.operation_model.service_model.service_name in services):
            if key:
                self._default_serialize(serialized, wire(value), shape, key)
            else:
                serialized.update(wire(value))
            return
        original(self, serialized, value, shape, key)

    patch(BaseJSONSerializer, "_serialize_type_structure", _serialize_type_structure)


def start_server(server: ThreadedMotoServer, timeout: float = 30) -> bool:
    """moto: ThreadedMotoServer.start() waits for a ready event that its server thread sets only
    after binding, so a failed bind (port taken) makes it wait forever. Here it is started from a
    helper thread; False if it did not start within the timeout."""
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(timeout)
    return not starter.is_alive()


def apply() -> None:
    stop_tracking_items_and_stream_records()
    keep_streams_across_cancelled_transactions()
    share_stream_shards_in_table_copies()
    roll_back_transactions_item_by_item()
    honour_transaction_client_request_tokens()
    serialize_dynamodb_calls()
    serialize_attribute_values_as_they_are()


# --- A setting, not a workaround ------------------------------------------------------------------

def report_ses_max_send_rate(rate: float, patch=setattr) -> None:
    """moto's SES reports a sending rate (v1 GetSendQuota `MaxSendRate`) of 1 email a second; a new
    SES account's production default is 14. `local_aws.py serve --ses-max-send-rate N` reports N
    instead: the Rust tests' moto says 14, so that their paced emails go out at the production
    rate; `make run` and pytest keep moto's 1."""
    original = SESQuota.__init__

    def __init__(self, sent):
        original(self, sent)
        self.max_send_rate = rate

    patch(SESQuota, "__init__", __init__)
