"""Lambda's event source mapping for a DynamoDB stream, locally: StreamRelay reads a table's
stream from the local endpoint and invokes a function through cargo lambda's invoke API.
FilterCriteria patterns are matched by moto's EventBridge pattern matcher (Lambda's event
filtering uses the EventBridge pattern language)."""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid

import requests
from moto.events.models import EventPattern

import local_aws
from local_aws import StackError, say

# Lambda's filter rules (moto's matcher would take an unknown one as matching everything).
OPERATORS = {"exists", "prefix", "suffix", "anything-but", "numeric", "equals-ignore-case"}


def parse_filters(criteria: dict, where: str) -> list[dict]:
    """The patterns of an event source mapping's FilterCriteria; StackError for one that Lambda
    would refuse."""

    def check(pattern):
        for key, value in pattern.items():
            if key == "$or" or isinstance(value, dict):
                for sub in value if key == "$or" else [value]:
                    check(sub)
            elif any(isinstance(rule, dict) and (len(rule) != 1 or not set(rule) <= OPERATORS)
                     for rule in value):
                raise ValueError(f"unsupported filter rule under {key!r}: {value!r}")

    patterns = []
    for f in criteria.get("Filters") or []:
        try:
            pattern = json.loads(f["Pattern"])
            if not isinstance(pattern, dict) or not pattern:
                raise ValueError("a pattern must be a non-empty JSON object")
            EventPattern.load(f["Pattern"])  # moto's check: each value an object or a list
            check(pattern)
        except Exception as e:  # noqa: BLE001 - moto's InvalidEventPatternException, ValueError...
            raise StackError(f"{where} has a filter the local relay cannot apply: "
                             f"{getattr(e, 'message', e)}") from None
        patterns.append(pattern)
    return patterns


def record_passes_filters(filters: list[dict], record: dict) -> bool:
    """Lambda's rule: no filters pass every record; otherwise any one filter must match."""
    return not filters or any(EventPattern(None, p).matches_event(record) for p in filters)


def lambda_shape(record: dict) -> dict:
    """A get_records record as Lambda delivers it: epoch seconds, base64 binaries."""

    def encode(value):  # what json cannot encode: botocore's datetimes and bytes
        if isinstance(value, datetime.datetime):
            return int(value.timestamp())
        return base64.b64encode(value).decode()

    return json.loads(json.dumps(record, default=encode))


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


class StreamRelay(threading.Thread):
    """Reads one table's stream and invokes a function with batches of records as Lambda's event
    source mapping does: records that match none of the filters are never sent; a batch holds up
    to batch_size records, in order, each with its eventSourceARN; with report_failures
    (ReportBatchItemFailures) the batch is retried from the lowest reported sequence number, and
    a function error (or an unusable answer) retries the whole batch, halved first with bisect;
    records are discarded after max_retries retries (MaximumRecordAgeInSeconds is not applied
    locally) and their batch info goes to the on_failure_queue. Retries wait 1, 2, 4, 8, then
    10 s. `stack` gives aws_endpoint, portal_port (cargo lambda's) and _stopping (an Event that
    ends the relay)."""

    def __init__(self, stack, function: str, table: str, batch_size: int = 100,
                 report_failures: bool = False, max_retries: int = 10, bisect: bool = False,
                 filters: list | None = None, on_failure_queue: str | None = None):
        super().__init__(name=f"relay-{table}", daemon=True)
        self.stack, self.function, self.table = stack, function, table
        self.batch_size, self.max_retries = max(1, batch_size), max_retries
        self.report_failures, self.bisect = report_failures, bisect
        self.filters, self.on_failure_queue = filters or [], on_failure_queue
        self.invoke_url = (f"http://127.0.0.1:{stack.portal_port}/2015-03-31/functions/"
                           f"{function}/invocations")
        self.stream_arn = self.shard_id = ""
        self.invocations = self.delivered = self.discarded = 0  # for tests and logs
        # For wait_settled: the stream polls begun, and the last one after which nothing was left
        # to deliver.
        self._progress, self._poll_now = threading.Condition(), threading.Event()
        self._polls_begun = self._settled_after = 0

    def wait_settled(self, timeout: float) -> bool:
        """Waits until every record written to the stream before this call has been delivered
        (or discarded), retries included: a poll begun after this call found nothing left to
        deliver. So every email and event those records cause is out. False after `timeout`."""
        with self._progress:
            after = self._polls_begun + 1
            self._poll_now.set()  # an idle relay polls at once
            return self._progress.wait_for(lambda: self._settled_after >= after, timeout)

    def run(self) -> None:
        stopping = self.stack._stopping
        while not stopping.is_set():
            try:
                return self._relay()
            except Exception as e:  # noqa: BLE001 - a hiccup of the endpoint: start over
                if not stopping.is_set():
                    say(f"stream relay for {self.table}: {e!r}; retrying in 2s")
                    stopping.wait(2)

    def _relay(self) -> None:
        stopping, endpoint = self.stack._stopping, self.stack.aws_endpoint
        streams = local_aws.client("dynamodbstreams", endpoint)
        arn = self.stream_arn = local_aws.client("dynamodb", endpoint).describe_table(
            TableName=self.table)["Table"]["LatestStreamArn"]
        # moto gives a table's stream one shard, which stays open.
        (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        self.shard_id = shard["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=self.shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        pending: list[dict] = []  # records neither delivered nor discarded, in stream order
        attempts, limit = 0, self.batch_size  # bisection lowers the limit
        while not stopping.is_set():
            if len(pending) < self.batch_size:
                with self._progress:
                    self._polls_begun += 1
                    poll = self._polls_begun
                resp = streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = resp["NextShardIterator"]
                # moto's records lack the eventSourceARN that Lambda's have
                records = [{**lambda_shape(r), "eventSourceARN": arn} for r in resp["Records"]]
                pending += [r for r in records if record_passes_filters(self.filters, r)]
            if not pending:  # (then this turn polled: that poll found nothing left)
                with self._progress:
                    self._settled_after = poll
                    self._progress.notify_all()
                # An idle stream is polled twice a second, at once for wait_settled.
                self._poll_now.wait(0.5)
                self._poll_now.clear()
                continue
            batch = pending[:limit]
            done, function_error = self._invoke(batch)
            self.delivered += done
            pending = pending[done:]
            if done == len(batch):
                attempts, limit = 0, self.batch_size
                continue
            attempts += 1
            left = len(batch) - done
            if attempts > self.max_retries:
                self._discard(pending[:left], "RetryAttemptsExhausted", attempts)
                pending, attempts, limit = pending[left:], 0, self.batch_size
                continue
            if function_error and self.bisect and left > 1:
                limit = (left + 1) // 2
            stopping.wait(min(0.5 * 2 ** attempts, 10))

    def _discard(self, records: list[dict], condition: str, invokes: int) -> None:
        """Give up on records; with an OnFailure queue, send it Lambda's invocation record."""
        self.discarded += len(records)
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        say(f"{self.function}: discarded {len(records)} stream record(s) of {self.table} "
            f"({condition}; sequence numbers {first['SequenceNumber']}..{last['SequenceNumber']})")
        if not self.on_failure_queue:
            return
        function_arn = f"arn:aws:lambda:{local_aws.REGION}:{local_aws.ACCOUNT_ID}:function:"
        message = {
            "requestContext": {"requestId": str(uuid.uuid4()), "condition": condition,
                               "functionArn": function_arn + self.function,
                               "approximateInvokeCount": invokes},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                "functionError": "Unhandled"},
            "version": "1.0", "timestamp": iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": self.shard_id, "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"], "batchSize": len(records),
                "approximateArrivalOfFirstRecord": iso(first["ApproximateCreationDateTime"]),
                "approximateArrivalOfLastRecord": iso(last["ApproximateCreationDateTime"]),
                "streamArn": self.stream_arn}}
        sqs = local_aws.client("sqs", self.stack.aws_endpoint)
        try:
            queue_url = sqs.get_queue_url(QueueName=self.on_failure_queue)["QueueUrl"]
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
        except Exception as e:  # noqa: BLE001
            say(f"{self.function}: sending their batch info to {self.on_failure_queue} failed: "
                f"{e!r}")

    def _invoke(self, batch: list[dict]) -> tuple[int, bool]:
        """(how many records of the batch, from its start, count as processed; whether the
        function failed as a whole)."""
        self.invocations += 1
        try:
            r = requests.post(self.invoke_url, json={"Records": batch}, timeout=1800)
            result = r.json() if r.ok and r.content.strip() else None
        except (requests.RequestException, ValueError) as e:  # ValueError: not JSON
            say(f"{self.function}: invoke failed: {e}")
            return 0, True
        if not r.ok:  # cargo lambda watch answers a function error with 500, the error its body
            say(f"{self.function}: function error (HTTP {r.status_code}): {r.text[:500]}")
            return 0, True
        if not (self.report_failures and isinstance(result, dict)
                and result.get("batchItemFailures")):
            return len(batch), False
        ids = [f.get("itemIdentifier") if isinstance(f, dict) else None
               for f in result["batchItemFailures"]]
        seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
        if any(i not in seqs for i in ids):
            # Lambda treats an empty or unknown identifier as a failure of the whole batch.
            say(f"{self.function}: batchItemFailures names a record not in the batch: {ids}")
            return 0, True
        done = min(map(seqs.index, ids))
        say(f"{self.function}: {len(batch) - done} of {len(batch)} record(s) reported failed; "
            f"retrying from sequence number {seqs[done]}")
        return done, False
