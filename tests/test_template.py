"""What infra/template.yaml promises a deployment, read from the template itself (cfn-lint and
sam validate check its syntax; these check the decisions): no local default a deployment could
keep, operations wired to an alarm topic, state that survives a stack's deletion."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import local_aws  # noqa: E402

T = local_aws.load_template()
RESOURCES, PARAMS = T["Resources"], T["Parameters"]


def of_type(kind: str) -> dict:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == kind}


def allowed(param: str, value: str) -> bool:
    return re.fullmatch(PARAMS[param]["AllowedPattern"], value) is not None


def test_the_base_url_and_the_sender_are_required_and_must_be_real():
    for name in ("PortalBaseUrl", "EmailSender"):
        assert "Default" not in PARAMS[name], f"{name} must have no default"
    assert allowed("PortalBaseUrl", "https://portal.example.com")
    for bad in ("http://localhost:9000", "http://portal.example.com", "https://portal.example.com/",
                "https://portal.example.com/path", "portal.example.com"):
        assert not allowed("PortalBaseUrl", bad), bad
    assert allowed("EmailSender", "no-reply@mail.example.com")
    assert not allowed("EmailSender", "no-reply") and not allowed("EmailSender", "a@localhost")
    # The local stack supplies them itself.
    assert set(local_aws.LOCAL_PARAMETERS) == {"PortalBaseUrl", "EmailSender"}


def test_the_api_url_output_is_a_base_url_the_parameter_takes():
    """Without a custom domain, the second deploy takes ApiUrl as PortalBaseUrl as it is."""
    value = T["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    url = (value.replace("${PortalApi}", "a1b2c3d4e5").replace("${AWS::Region}", "eu-west-1")
           .replace("${AWS::URLSuffix}", "amazonaws.com"))
    assert url == "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    assert allowed("PortalBaseUrl", url)


def test_a_custom_domain_makes_the_domain_its_mapping_and_dns_records():
    assert RESOURCES["ApiDomain"]["Condition"] == "HasCustomDomain"
    assert RESOURCES["ApiDomainMapping"]["Properties"]["ApiId"] == {"Ref": "PortalApi"}
    assert RESOURCES["ApiDnsRecords"]["Condition"] == "HasDnsRecords"
    assert [r["Type"] for r in RESOURCES["ApiDnsRecords"]["Properties"]["RecordSets"]] == ["A"]
    assert "CustomDomainNeedsCertificate" in T["Rules"]
    for name in ("DomainName", "CertificateArn", "HostedZoneId"):
        assert PARAMS[name]["Default"] == ""


STATEFUL = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::KMS::Key")


def test_every_stateful_resource_survives_the_stack_but_not_a_failed_first_create():
    """Retained when the stack is deleted or the resource replaced, and deleted when the stack's
    first create fails (RetainExceptOnCreate): a failed first deploy leaves nothing behind that the
    next attempt would collide with."""
    stateful = {lid: res for kind in STATEFUL for lid, res in of_type(kind).items()}
    assert {"ContactsTable", "SessionsTable", "InvitationsTable", "OutboxTable", "TotpKey",
            "SendEmailFailuresQueue"} <= set(stateful)
    for lid, res in stateful.items():
        assert res["DeletionPolicy"] == "RetainExceptOnCreate", lid
        assert res["UpdateReplacePolicy"] == "Retain", lid
        # A name the template fixes would collide with what an earlier stack of the name retained.
        props = res.get("Properties") or {}
        assert not {"TableName", "QueueName", "LogGroupName"} & set(props), lid
    assert not [lid for lid, res in RESOURCES.items()
                if res.get("DeletionPolicy") == "Retain"], "Retain strands a failed first create"


def test_tables_are_deletion_protected_only_once_the_stack_exists():
    # A protected table cannot be deleted by a failed first create's rollback: the protection is
    # a parameter, off by default, for the deploys after the first (README, "Deploying to AWS").
    assert PARAMS["TableDeletionProtection"]["Default"] == "false"
    assert T["Conditions"]["ProtectTables"] == {"Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]}
    for lid, table in of_type("AWS::DynamoDB::Table").items():
        assert table["Properties"]["DeletionProtectionEnabled"] == {
            "Fn::If": ["ProtectTables", True, False]}, lid


def test_the_functions_and_the_admin_tool_take_the_generated_table_names_from_the_stack():
    variables = T["Globals"]["Function"]["Environment"]["Variables"]
    for lid in of_type("AWS::DynamoDB::Table"):
        assert {"Ref": lid} in variables.values(), f"no function setting names {lid}"
        assert any(out["Value"] == {"Ref": lid} for out in T["Outputs"].values()), \
            f"no output names {lid} (portal-admin --stack reads the outputs)"


def test_every_function_logs_to_a_group_with_the_retention_parameter():
    for lid, fn in of_type("AWS::Serverless::Function").items():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, lid
    assert PARAMS["LogRetentionDays"]["Default"] == 30


def test_access_logs_are_json_without_query_strings():
    settings = RESOURCES["PortalApi"]["Properties"]["AccessLogSettings"]
    line = json.loads(settings["Format"].replace("\n", ""))
    assert line["path"] == "$context.path" and line["status"] == "$context.status"
    assert "query" not in settings["Format"].lower()


def test_the_hashing_routes_have_their_own_throttle_and_functions_their_reserved_concurrency():
    routes = RESOURCES["PortalApi"]["Properties"]["RouteSettings"]
    assert set(routes) == {"POST /signin", "POST /register", "POST /forgot-password", "POST /redeem"}
    events = {f"{e['Properties']['Method']} {e['Properties']['Path']}"
              for fn in of_type("AWS::Serverless::Function").values()
              for e in fn["Properties"].get("Events", {}).values() if e["Type"] == "HttpApi"}
    assert set(routes) <= events
    assert "ThrottlingRateLimit" in RESOURCES["PortalApi"]["Properties"]["DefaultRouteSettings"]
    for lid in ("SignInFunction", "RegisterFunction", "RedeemInvitationFunction", "ProfileFunction",
                "ExternalSignInFunction"):
        assert "ReservedConcurrentExecutions" in RESOURCES[lid]["Properties"], lid


@pytest.mark.parametrize("namespace,metric", [
    ("AWS/Lambda", "IteratorAge"), ("AWS/ApiGateway", "5xx"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("Portal", "OldestMessageAgeSeconds"),
    ("AWS/SES", "Reputation.BounceRate"), ("AWS/SES", "Reputation.ComplaintRate"),
    ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")])
def test_an_alarm_watches_each_metric_and_notifies_the_topic(namespace, metric):
    def watches(alarm):
        p = alarm["Properties"]
        if p.get("MetricName") == metric and p.get("Namespace") == namespace:
            return True
        return any(m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric
                   for m in p.get("Metrics", []))
    alarms = [a for a in of_type("AWS::CloudWatch::Alarm").values() if watches(a)]
    assert alarms, f"no alarm on {namespace} {metric}"
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == alarm["Properties"]["OKActions"] == [ALARM_TARGET]


ALARM_TARGET = {"Fn::If": ["UseExistingAlarmTopic", {"Ref": "ExistingAlarmTopicArn"}, {"Ref": "AlarmTopic"}]}


def test_alarms_reach_someone_an_address_or_a_topic_of_ones_own():
    assertion = T["Rules"]["AlarmsReachSomeone"]["Assertions"][0]["Assert"]
    assert assertion == {"Fn::Or": [{"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
                                    {"Fn::Not": [{"Fn::Equals": [{"Ref": "ExistingAlarmTopicArn"}, ""]}]}]}
    assert "RuleCondition" not in T["Rules"]["AlarmsReachSomeone"], "it holds for every deploy"
    assert RESOURCES["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert RESOURCES["AlarmEmailSubscription"]["Properties"]["TopicArn"] == ALARM_TARGET
    assert T["Outputs"]["AlarmTopicArn"]["Value"] == ALARM_TARGET
    for lid, alarm in of_type("AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == [ALARM_TARGET], lid
    pattern = PARAMS["ExistingAlarmTopicArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "arn:aws:sns:eu-west-1:123456789012:on-call")
    assert not re.fullmatch(pattern, "on-call") and re.fullmatch(pattern, "")


def test_every_custom_metric_and_its_alarm_carry_the_stack():
    """Two stacks in one account keep their metrics, and their alarms, apart."""
    variables = RESOURCES["SendEmailFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["PORTAL_METRICS_STACK"] == {"Ref": "AWS::StackName"}
    custom = [a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()
              if not str(a["Properties"].get("Namespace", "AWS/")).startswith("AWS/")]
    assert custom, "an alarm on a custom metric"
    for props in custom:
        assert props["Dimensions"] == [{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}], props


def test_the_stream_reader_role_grants_nothing_on_every_resource():
    role = RESOURCES["SendEmailRole"]["Properties"]
    assert RESOURCES["SendEmailFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["SendEmailRole", "Arn"]}
    for policy in role["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            # Actions with no resource-level permissions accept "*" only; nothing else may have it.
            if set(actions) <= ACTIONS_WITHOUT_RESOURCES:
                continue
            assert "*" not in resources, st.get("Sid")


# IAM's service authorization reference lists no resource type for these: "*" is their only form.
ACTIONS_WITHOUT_RESOURCES = {"ses:GetSendQuota"}


def test_reading_the_sending_rate_is_the_only_grant_on_every_resource():
    role = RESOURCES["SendEmailRole"]["Properties"]
    everywhere = [
        st for policy in role["Policies"] for st in policy["PolicyDocument"]["Statement"] if st["Resource"] == "*"
    ]
    assert [st["Action"] for st in everywhere] == [["ses:GetSendQuota"]]


def test_ses_events_of_bounces_and_complaints_reach_a_topic():
    dest = RESOURCES["EmailFeedbackDestination"]["Properties"]["EventDestination"]
    assert set(dest["MatchingEventTypes"]) == {"bounce", "complaint"}
    assert dest["SnsDestination"]["TopicARN"] == {"Ref": "EmailFeedbackTopic"}
    attrs = RESOURCES["SenderIdentity"]["Properties"]["ConfigurationSetAttributes"]
    assert attrs["ConfigurationSetName"] == {"Ref": "EmailConfigurationSet"}


def test_every_grant_on_the_totp_key_is_for_totp_secrets_only():
    """A role that may use the key may use it only with the TOTP purpose in the encryption context
    (shared/src/adapters/sealing.rs), never for anything else the key could protect."""
    grants = []
    for lid, res in RESOURCES.items():
        for policy in (res.get("Properties") or {}).get("Policies") or []:
            document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else {}
            for st in document.get("Statement") or []:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if any(str(a).startswith("kms:") for a in actions):
                    grants.append((lid, st))
    assert {lid for lid, _ in grants} == {"SignInFunction", "ProfileFunction", "RedeemInvitationFunction",
                                          "ExternalSignInFunction"}
    for lid, st in grants:
        assert st["Resource"] == {"Fn::GetAtt": ["TotpKey", "Arn"]}, lid
        assert st["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": "portal-totp-secret"}}, lid


# --- external sign-in (OpenID Connect; CONTRACT.md "External sign-in", issue 21) -------------------

def http_routes(lid: str) -> set[tuple[str, str]]:
    return {(e["Properties"]["Method"], e["Properties"]["Path"])
            for e in RESOURCES[lid]["Properties"].get("Events", {}).values() if e["Type"] == "HttpApi"}


def statements_of(lid: str) -> list[dict]:
    """Every statement of a resource's inline policies (a function's SAM Policies, a role's)."""
    found = []
    for policy in (RESOURCES[lid].get("Properties") or {}).get("Policies") or []:
        document = policy.get("PolicyDocument", policy) if isinstance(policy, dict) else {}
        statements = document.get("Statement") or []
        found += statements if isinstance(statements, list) else [statements]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_external_sign_in_is_a_function_of_its_own_with_its_four_routes():
    fn = RESOURCES["ExternalSignInFunction"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "external-sign-in"}}
    assert http_routes("ExternalSignInFunction") == {
        ("GET", "/signin/external/{provider}"), ("GET", "/signin/external/{provider}/callback"),
        ("POST", "/redeem/external/{provider}"), ("POST", "/profile/identities/{provider}/link")}
    assert {("GET", "/profile/identities"), ("POST", "/profile/identities/{provider}/unlink")} <= \
        http_routes("ProfileFunction")
    # As sign-in: a whole vCPU, its own log group, reserved concurrency as a parameter, the alarms.
    props, sign_in = fn["Properties"], RESOURCES["SignInFunction"]["Properties"]
    assert props["MemorySize"] == sign_in["MemorySize"]
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "ExternalSignInLogGroup"}}
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": [
        "ReserveExternalSignIn", {"Ref": "ExternalSignInReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    for alarm in ("FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
        watched = [m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
                   for m in RESOURCES[alarm]["Properties"]["Metrics"] if "MetricStat" in m]
        assert sorted(watched, key=str) == sorted(
            ({"Ref": lid} for lid in of_type("AWS::Serverless::Function")), key=str), alarm


def test_no_route_is_served_by_two_functions():
    seen: dict = {}
    for lid in of_type("AWS::Serverless::Function"):
        for route in http_routes(lid):
            assert route not in seen, f"{route} in {lid} and {seen.get(route)}"
            seen[route] = lid


def test_the_local_router_sends_every_route_to_the_function_the_template_does():
    """`cargo lambda watch` routes by path (the workspace Cargo.toml) what API Gateway routes by
    route key (the template): the same function for each of the template's paths, locally too."""
    import tomllib

    with open(local_aws.ROOT + "/Cargo.toml", "rb") as f:
        router = tomllib.load(f)["workspace"]["metadata"]["lambda"]["watch"]["router"]
    for lid, fn in of_type("AWS::Serverless::Function").items():
        binary = fn["Metadata"]["BuildProperties"]["Binary"]
        for method, path in http_routes(lid):
            assert router.get(path) == binary, f"{method} {path}: {router.get(path)} locally, {binary} in AWS"


def test_only_external_sign_in_reads_secrets_and_only_the_stacks_provider_secrets():
    expected = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                           ":secret:${AWS::StackName}/oidc/*"}
    readers = {}
    for lid in RESOURCES:
        for st in statements_of(lid):
            actions = [str(a).lower() for a in as_list(st.get("Action", []))]
            if any(a.startswith("secretsmanager:") or a == "*" for a in actions):
                assert "*" not in as_list(st.get("Resource")), f"{lid} {st.get('Sid')}: secrets on *"
                readers.setdefault(lid, []).append(st)
    assert set(readers) == {"ExternalSignInFunction"}, readers
    (st,) = readers["ExternalSignInFunction"]
    assert st["Action"] == ["secretsmanager:GetSecretValue"] and st["Effect"] == "Allow"
    assert st["Resource"] == expected and "Condition" not in st
    # No SAM policy template (e.g. AWSSecretsManagerGetSecretValuePolicy) or managed policy either.
    for lid, fn in of_type("AWS::Serverless::Function").items():
        for policy in as_list(fn["Properties"].get("Policies") or []):
            assert not isinstance(policy, str) and "Statement" in policy, (lid, policy)


def test_external_sign_in_may_do_what_sign_in_and_redemption_may():
    """Its grants are the union of sign-in's and redeem-invitation's (plus the secrets)."""
    def grants(lid):
        return {(a, json.dumps(r, sort_keys=True), json.dumps(st.get("Condition"), sort_keys=True))
                for st in statements_of(lid) for a in as_list(st["Action"]) for r in as_list(st["Resource"])}
    union = grants("SignInFunction") | grants("RedeemInvitationFunction")
    external = grants("ExternalSignInFunction")
    assert union <= external, union - external
    assert {a for a, _, _ in external - union} == {"secretsmanager:GetSecretValue"}


PROVIDER_LISTING_FUNCTIONS = ("SignInFunction", "RedeemInvitationFunction", "ProfileFunction",
                              "ExternalSignInFunction")


def test_the_providers_reach_every_function_that_lists_them():
    """OidcProviders is PORTAL_OIDC_PROVIDERS of every function (Globals), and no function
    overrides it; its default is no provider."""
    assert T["Globals"]["Function"]["Environment"]["Variables"]["PORTAL_OIDC_PROVIDERS"] == {"Ref": "OidcProviders"}
    for lid in PROVIDER_LISTING_FUNCTIONS:
        own = RESOURCES[lid]["Properties"].get("Environment", {}).get("Variables", {})
        assert "PORTAL_OIDC_PROVIDERS" not in own, lid
    assert PARAMS["OidcProviders"]["Type"] == "String" and PARAMS["OidcProviders"]["Default"] == "[]"
    assert "<stack name>/oidc/<provider id>" in PARAMS["OidcProviders"]["Description"]
    assert "client_secret_arn" in PARAMS["OidcProviders"]["Description"]


def test_the_providers_parameter_takes_a_list_and_refuses_a_plain_client_secret():
    good = json.dumps([{"id": "entra", "name": "Contoso", "issuer": "https://login.microsoftonline.com/t/v2.0",
                        "client_id": "c", "scopes": ["openid", "email"], "link_verified_email": False,
                        "client_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:portal/oidc/entra",
                        "trust_mfa": True}], indent=1)
    for value in ("[]", good, good.replace("\n", "")):
        assert allowed("OidcProviders", value), value
    for bad in ('[{"id": "entra", "client_secret": "s3cret"}]', '[{"client_secret":"s"}]', "{}", "", "entra"):
        assert not allowed("OidcProviders", bad), bad
