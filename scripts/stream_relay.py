"""Lambda's event source mapping for a DynamoDB stream, locally: StreamRelay reads a table's
stream from the local endpoint and invokes a function through cargo lambda's invoke API.
FilterCriteria patterns are matched by moto's EventBridge pattern matcher (Lambda's event
filtering uses the EventBridge pattern language)."""

from __future__ import annotations

import base64
import datetime
import itertools
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


def lambda_shape(value):
    """A get_records record as Lambda delivers it: epoch seconds, base64 binaries."""
    if isinstance(value, dict):
        return {k: lambda_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lambda_shape(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


def iso(t) -> str | None:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z") if isinstance(t, (int, float)) else None


class StreamRelay(threading.Thread):
    """Reads one table's stream and invokes a function with batches of records as Lambda's event
    source mapping does:
      - records that match none of the FilterCriteria are skipped (never sent);
      - a batch holds up to BatchSize records of one shard, in order, each with eventSourceARN;
      - with ReportBatchItemFailures, the records before the lowest reported sequence number are
        done and the batch is retried from that record; a function error (or an unusable answer)
        retries the whole batch, halved first if BisectBatchOnFunctionError is set;
      - after MaximumRetryAttempts retries, or past MaximumRecordAgeInSeconds, the records are
        discarded and, with an OnFailure queue, their batch info is sent to it.
    Retries wait 1, 2, 4, 8, then 10 s; an idle stream is polled every POLL_SECONDS. `stack` gives
    aws_endpoint, portal_port (cargo lambda's) and _stopping (an Event that ends the relay)."""

    POLL_SECONDS = 0.5

    def __init__(self, stack, function: str, table: str, batch_size: int = 100,
                 report_failures: bool = False, max_retries: int = 10, bisect: bool = False,
                 max_record_age: int = -1, filters: list | None = None,
                 on_failure_url: str | None = None):
        super().__init__(name=f"relay-{table}", daemon=True)
        self.stack, self.function, self.table = stack, function, table
        self.batch_size, self.max_retries = max(1, batch_size), max_retries
        self.max_record_age, self.report_failures = max_record_age, report_failures
        self.bisect, self.filters, self.on_failure_url = bisect, filters or [], on_failure_url
        self.invoke_url = (f"http://127.0.0.1:{stack.portal_port}/2015-03-31/functions/"
                           f"{function}/invocations")
        self.function_arn = (f"arn:aws:lambda:{local_aws.REGION}:{local_aws.ACCOUNT_ID}:"
                             f"function:{function}")
        self.stream_arn = ""
        self.invocations = self.delivered = self.discarded = 0  # for tests and logs

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
        iterators: dict[str, str | None] = {}
        pending: list[tuple[str, dict]] = []  # (shard id, record), in stream order
        next_shard_scan, attempts, limit = 0.0, 0, self.batch_size  # bisection lowers the limit
        while not stopping.is_set():
            if time.monotonic() >= next_shard_scan:
                for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                    if shard["ShardId"] not in iterators:
                        iterators[shard["ShardId"]] = streams.get_shard_iterator(
                            StreamArn=arn, ShardId=shard["ShardId"],
                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                next_shard_scan = time.monotonic() + 10
            for shard_id, iterator in list(iterators.items()):
                if iterator is not None and len(pending) < self.batch_size:
                    resp = streams.get_records(ShardIterator=iterator, Limit=1000)
                    iterators[shard_id] = resp.get("NextShardIterator")
                    for record in map(lambda_shape, resp.get("Records", [])):
                        record["eventSourceARN"] = arn  # moto's records lack it
                        if record_passes_filters(self.filters, record):
                            pending.append((shard_id, record))
            pending = self._drop_expired(pending)
            if not pending:
                stopping.wait(self.POLL_SECONDS)
                continue
            shard_id = pending[0][0]
            batch = [r for _, r in itertools.takewhile(lambda p: p[0] == shard_id, pending[:limit])]
            done, function_error = self._invoke(batch)
            self.delivered += done
            pending = pending[done:]
            if done == len(batch):
                attempts, limit = 0, self.batch_size
                continue
            attempts += 1
            left = len(batch) - done
            if attempts > self.max_retries:
                self._discard(shard_id, [r for _, r in pending[:left]], "RetryAttemptsExhausted",
                              attempts)
                pending, attempts, limit = pending[left:], 0, self.batch_size
                continue
            if function_error and self.bisect and left > 1:
                limit = (left + 1) // 2
            stopping.wait(min(0.5 * 2 ** attempts, 10))

    def _drop_expired(self, pending: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        if self.max_record_age < 0:
            return pending
        oldest_allowed, kept, expired = time.time() - self.max_record_age, [], []
        for sid, record in pending:
            created = record["dynamodb"].get("ApproximateCreationDateTime", oldest_allowed)
            (expired if created < oldest_allowed else kept).append((sid, record))
        for sid in dict.fromkeys(s for s, _ in expired):
            self._discard(sid, [r for s, r in expired if s == sid], "RecordAgeExceeded", 0)
        return kept

    def _discard(self, shard_id: str, records: list[dict], condition: str, invokes: int) -> None:
        """Give up on records; with an OnFailure queue, send it Lambda's invocation record."""
        self.discarded += len(records)
        seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
        created = [r["dynamodb"].get("ApproximateCreationDateTime") for r in records]
        where = ""
        if self.on_failure_url:
            message = {
                "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": self.function_arn,
                                   "condition": condition, "approximateInvokeCount": invokes},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                    "functionError": "Unhandled"},
                "version": "1.0", "timestamp": iso(time.time()),
                "DDBStreamBatchInfo": {
                    "shardId": shard_id, "startSequenceNumber": seqs[0],
                    "endSequenceNumber": seqs[-1], "batchSize": len(records),
                    "approximateArrivalOfFirstRecord": iso(created[0]),
                    "approximateArrivalOfLastRecord": iso(created[-1]), "streamArn": self.stream_arn}}
            try:
                local_aws.client("sqs", self.stack.aws_endpoint).send_message(
                    QueueUrl=self.on_failure_url, MessageBody=json.dumps(message))
                where = f"; their batch info is in the queue {self.on_failure_url}"
            except Exception as e:  # noqa: BLE001
                where = f"; sending their batch info to {self.on_failure_url} failed: {e!r}"
        reason = (f"after {self.max_retries} retries" if condition == "RetryAttemptsExhausted"
                  else f"older than {self.max_record_age}s")
        say(f"{self.function}: discarded {len(records)} stream record(s) of {self.table} {reason} "
            f"(sequence numbers {seqs[0]}..{seqs[-1]}){where}")

    def _invoke(self, batch: list[dict]) -> tuple[int, bool]:
        """(how many records of the batch, from its start, count as processed; whether the
        function failed as a whole)."""
        self.invocations += 1
        try:
            r = requests.post(self.invoke_url, json={"Records": batch}, timeout=1800)
        except requests.RequestException as e:
            say(f"{self.function}: invoke failed: {e}")
            return 0, True
        try:
            result = r.json() if r.content.strip() else None
        except ValueError:
            result = None
        # cargo lambda watch answers a function error with 500 and the error as the body.
        if (r.status_code >= 300 or r.headers.get("X-Amz-Function-Error")
                or (isinstance(result, dict) and "errorType" in result)):
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
