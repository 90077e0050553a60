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
import iam_coverage  # noqa: E402
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
    # Without EdgeProtection (with it, the distribution takes the domain: the edge tests below).
    for lid in ("ApiDomain", "ApiDomainMapping"):
        assert not exists(lid) and exists(lid, **CUSTOM_DOMAIN), lid
    assert RESOURCES["ApiDomainMapping"]["Properties"]["ApiId"] == {"Ref": "PortalApi"}
    assert not exists("ApiDnsRecords", **CUSTOM_DOMAIN) and exists("ApiDnsRecords", **CUSTOM_DOMAIN_AND_ZONE)
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
    assert {lid for lid, _ in grants} == {role_of(lid) for lid in (
        "SignInFunction", "ProfileFunction", "RedeemInvitationFunction", "ExternalSignInFunction")}
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


def role_of(function: str) -> str:
    """The role of the template's own a function runs with (its `Role: !GetAtt <role>.Arn`)."""
    return RESOURCES[function]["Properties"]["Role"]["Fn::GetAtt"][0]


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
    assert set(readers) == {role_of("ExternalSignInFunction")}, readers
    (st,) = readers[role_of("ExternalSignInFunction")]
    assert st["Action"] == ["secretsmanager:GetSecretValue"] and st["Effect"] == "Allow"
    assert st["Resource"] == expected and "Condition" not in st
    # No SAM policy template (e.g. AWSSecretsManagerGetSecretValuePolicy) or managed policy either:
    # no function has Policies, and a role's only managed policy is X-Ray's, with tracing.
    for lid, fn in of_type("AWS::Serverless::Function").items():
        assert "Policies" not in fn["Properties"], lid
    for lid, role in of_type("AWS::IAM::Role").items():
        assert role["Properties"].get("ManagedPolicyArns") == [XRAY_WITH_TRACING], lid


def test_external_sign_in_may_do_what_sign_in_and_redemption_may():
    """Its grants are the union of sign-in's and redeem-invitation's (plus the secrets), its own
    logs apart."""
    def grants(lid):
        return {(a, json.dumps(r, sort_keys=True), json.dumps(st.get("Condition"), sort_keys=True))
                for st in statements_of(role_of(lid)) for a in as_list(st["Action"])
                for r in as_list(st["Resource"]) if not a.startswith("logs:")}
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


# --- deliverable mail (issue 19, item 5) ------------------------------------------------------------

def holds(condition: str, **given: str) -> bool:
    """A condition of the template, for the parameters given (the others at their defaults)."""
    values = {name: str(p.get("Default", "")) for name, p in PARAMS.items()}
    values.update(given)

    def ev(x):
        if not isinstance(x, dict):
            return x
        ((fn, arg),) = x.items()
        if fn == "Ref":
            return values[arg]
        if fn == "Condition":
            return ev(T["Conditions"][arg])
        if fn == "Fn::Equals":
            return str(ev(arg[0])) == str(ev(arg[1]))
        if fn == "Fn::Not":
            return not ev(arg[0])
        if fn == "Fn::And":
            return all(ev(a) for a in arg)
        if fn == "Fn::Or":
            return any(ev(a) for a in arg)
        raise ValueError(f"condition function {fn}")
    return bool(ev(T["Conditions"][condition]))


def exists(lid: str, **given: str) -> bool:
    return "Condition" not in RESOURCES[lid] or holds(RESOURCES[lid]["Condition"], **given)


def as_sub(value) -> str:
    """A string, a Fn::Sub or a Fn::GetAtt as Fn::Sub text (`${Resource.Attribute}`)."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return value["Fn::Sub"]
    if "Fn::GetAtt" in value:
        return "${%s}" % ".".join(value["Fn::GetAtt"])
    raise ValueError(value)


DOMAIN = {"EmailDomain": "example.com"}
DOMAIN_AND_ZONE = {"EmailDomain": "example.com", "EmailHostedZoneId": "Z0123456789ABCDEFGHIJ"}
EMAIL_RECORD_OUTPUTS = ("EmailDkimRecord1", "EmailDkimRecord2", "EmailDkimRecord3",
                        "EmailMailFromMxRecord", "EmailMailFromSpfRecord", "EmailDmarcRecord")


def test_a_domain_identity_with_dkim_2048_and_a_mail_from_subdomain_exists_only_with_a_domain():
    assert PARAMS["EmailDomain"]["Default"] == "" and PARAMS["EmailHostedZoneId"]["Default"] == ""
    for good in ("", "example.com", "mail.example.co.uk"):
        assert allowed("EmailDomain", good), good
    for bad in ("example", "no-reply@example.com", "https://example.com", "example.com.", "-x.com"):
        assert not allowed("EmailDomain", bad), bad
    assert "EmailSender must be an address at this domain" in " ".join(PARAMS["EmailDomain"]["Description"].split())
    (lid,) = [lid for lid, r in of_type("AWS::SES::EmailIdentity").items()
              if r["Properties"]["EmailIdentity"] == {"Ref": "EmailDomain"}]
    props = RESOURCES[lid]["Properties"]
    assert props["DkimSigningAttributes"] == {"NextSigningKeyLength": "RSA_2048_BIT"}
    assert props["MailFromAttributes"] == {"MailFromDomain": {"Fn::Sub": "mail.${EmailDomain}"},
                                           "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}
    assert props["ConfigurationSetAttributes"] == {"ConfigurationSetName": {"Ref": "EmailConfigurationSet"}}
    assert "DkimAttributes" not in props, "Easy DKIM: no key of our own, signing on by default"
    assert not exists(lid) and exists(lid, **DOMAIN)


def test_the_address_identity_is_made_only_without_a_domain():
    """The domain identity covers every address at the domain: never both, and with a domain
    CreateSenderIdentity does not matter."""
    identities = of_type("AWS::SES::EmailIdentity")

    def made(**given):
        return sorted(str(r["Properties"]["EmailIdentity"]["Ref"]) for lid, r in identities.items()
                      if exists(lid, **given))
    assert made() == ["EmailSender"]
    assert made(CreateSenderIdentity="false") == []
    assert made(**DOMAIN) == made(**DOMAIN, CreateSenderIdentity="false") == ["EmailDomain"]


def test_the_domains_dns_records_are_made_only_with_a_hosted_zone_dkim_mx_and_spf_never_dmarc():
    assert allowed("EmailHostedZoneId", "Z0123456789ABCDEFGHIJ") and allowed("EmailHostedZoneId", "")
    assert not allowed("EmailHostedZoneId", "example.com")
    records = {lid: r for lid, r in of_type("AWS::Route53::RecordSet").items()
               if r["Properties"].get("HostedZoneId") == {"Ref": "EmailHostedZoneId"}}
    for lid in records:
        assert exists(lid, **DOMAIN_AND_ZONE), lid
        for given in ({}, DOMAIN, {"EmailHostedZoneId": "Z0123456789ABCDEFGHIJ"}):
            assert not exists(lid, **given), (lid, given)
    seen = sorted((r["Properties"]["Type"], as_sub(r["Properties"]["Name"]),
                   tuple(map(as_sub, r["Properties"]["ResourceRecords"]))) for r in records.values())
    assert seen == sorted([
        *(("CNAME", "${EmailDomainIdentity.DkimDNSTokenName%d}" % i,
           ("${EmailDomainIdentity.DkimDNSTokenValue%d}" % i,)) for i in (1, 2, 3)),
        ("MX", "mail.${EmailDomain}", ("10 feedback-smtp.${AWS::Region}.amazonses.com",)),
        ("TXT", "mail.${EmailDomain}", ('"v=spf1 include:amazonses.com ~all"',))])
    assert {r["Properties"]["TTL"] for r in records.values()} == {"1800"}
    # DMARC is the domain owner's policy: recommended in an output, never created.
    assert "_dmarc" not in json.dumps(RESOURCES)


def test_the_outputs_print_every_record_the_domain_needs_and_a_dmarc_policy():
    outputs = T["Outputs"]
    for name in EMAIL_RECORD_OUTPUTS:
        assert outputs[name]["Condition"] == "HasEmailDomain", name
    # What the hosted zone gets is what the outputs print, "<name> <type> <value>".
    printed = {as_sub(outputs[name]["Value"]) for name in EMAIL_RECORD_OUTPUTS}
    for lid, r in of_type("AWS::Route53::RecordSet").items():
        if r["Properties"].get("HostedZoneId") == {"Ref": "EmailHostedZoneId"}:
            p = r["Properties"]
            assert f"{as_sub(p['Name'])} {p['Type']} {as_sub(p['ResourceRecords'][0])}" in printed, lid
    dmarc = as_sub(outputs["EmailDmarcRecord"]["Value"])
    assert re.fullmatch(r'_dmarc\.\$\{EmailDomain\} TXT "v=DMARC1; p=(none|quarantine); rua=mailto:[^"]+"', dmarc)


def test_the_send_grant_covers_the_domain_identity_from_the_sender_alone():
    """Without an address identity SES authorises the send against the domain's identity."""
    (st,) = [st for st in statements_of("SendEmailRole") if st.get("Sid") == "SendFromTheSender"]
    arns = [as_sub(r).replace("${AWS::Partition}", "aws").replace("${AWS::Region}", "eu-west-1")
            .replace("${AWS::AccountId}", "123456789012") for r in as_list(st["Resource"])]

    def granted(arn):
        return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), arn) for p in arns)
    assert granted("arn:aws:ses:eu-west-1:123456789012:identity/example.com")
    assert granted("arn:aws:ses:eu-west-1:123456789012:identity/no-reply@example.com")
    assert st["Condition"]["StringEquals"]["ses:FromAddress"] == {"Ref": "EmailSender"}


def test_the_feedback_function_handles_the_topics_bounces_and_complaints():
    fn = RESOURCES["EmailFeedbackFunction"]
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "email-feedback"}}
    props = fn["Properties"]
    assert props["Description"]
    assert props["Events"] == {"Feedback": {"Type": "SNS", "Properties": {"Topic": {"Ref": "EmailFeedbackTopic"}}}}
    # The topic the configuration set publishes bounces and complaints to.
    dest = RESOURCES["EmailFeedbackDestination"]["Properties"]["EventDestination"]
    assert dest["SnsDestination"]["TopicARN"] == {"Ref": "EmailFeedbackTopic"}
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "EmailFeedbackLogGroup"}}
    assert props["Role"] == {"Fn::GetAtt": ["EmailFeedbackRole", "Arn"]} and "Policies" not in props
    # The Globals' environment names the tables it writes (and SAM merges it into the function's).
    variables = T["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PORTAL_CONTACTS_TABLE"] == {"Ref": "ContactsTable"}
    assert variables["PORTAL_AUDIT_TABLE"] == {"Ref": "AuditTable"}
    for alarm in ("FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
        watched = [m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
                   for m in RESOURCES[alarm]["Properties"]["Metrics"] if "MetricStat" in m]
        assert {"Ref": "EmailFeedbackFunction"} in watched, alarm


def test_a_notification_the_feedback_function_fails_on_lands_in_a_queue_that_alarms_at_once():
    config = RESOURCES["EmailFeedbackFunction"]["Properties"]["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": ["EmailFeedbackFailuresQueue", "Arn"]}}
    queue = RESOURCES["EmailFeedbackFailuresQueue"]
    assert queue["Properties"] == RESOURCES["SendEmailFailuresQueue"]["Properties"] == {
        "MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True}
    assert queue["DeletionPolicy"] == "RetainExceptOnCreate" and queue["UpdateReplacePolicy"] == "Retain"
    # Every failure queue: an alarm on its first message.
    for lid in of_type("AWS::SQS::Queue"):
        alarms = [a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()
                  if a["Properties"].get("Dimensions") == [
                      {"Name": "QueueName", "Value": {"Fn::GetAtt": [lid, "QueueName"]}}]]
        assert len(alarms) == 1, lid
        (p,) = alarms
        assert (p["Namespace"], p["MetricName"], p["Statistic"]) == (
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"), lid
        assert (p["Threshold"], p["ComparisonOperator"], p["EvaluationPeriods"]) == (
            0, "GreaterThanThreshold", 1), lid
        assert p["AlarmActions"] == p["OKActions"] == [ALARM_TARGET], lid


def test_the_feedback_role_grants_only_what_marking_an_address_needs():
    role = RESOURCES["EmailFeedbackRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    # X-Ray only with tracing, as send-email's role.
    assert role["ManagedPolicyArns"] == RESOURCES["SendEmailRole"]["Properties"]["ManagedPolicyArns"] == [
        {"Fn::If": ["TracingEnabled", {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"},
                    {"Ref": "AWS::NoValue"}]}]
    grants = set()
    for st in statements_of("EmailFeedbackRole"):
        assert st["Effect"] == "Allow" and st.get("Sid") and "Condition" not in st, st
        for action in as_list(st["Action"]):
            for resource in as_list(st["Resource"]):
                assert resource != "*" and "*" not in as_sub(resource), st["Sid"]
                grants.add((action, json.dumps(resource, sort_keys=True)))

    def arn(lid):
        return json.dumps({"Fn::GetAtt": [lid, "Arn"]})
    assert grants == {
        ("logs:CreateLogStream", arn("EmailFeedbackLogGroup")), ("logs:PutLogEvents", arn("EmailFeedbackLogGroup")),
        ("sqs:SendMessage", arn("EmailFeedbackFailuresQueue")),
        ("dynamodb:GetItem", arn("ContactsTable")), ("dynamodb:PutItem", arn("ContactsTable")),
        ("dynamodb:UpdateItem", arn("ContactsTable")), ("dynamodb:PutItem", arn("AuditTable"))}


def test_make_package_builds_every_function_the_template_deploys():
    script = (Path(local_aws.ROOT) / "scripts" / "package.sh").read_text()
    (line,) = re.findall(r"^ALL=\((.*)\)$", script, re.M)
    binaries = {fn["Metadata"]["BuildProperties"]["Binary"] for fn in of_type("AWS::Serverless::Function").values()}
    assert sorted(line.split()) == sorted(binaries)


# --- every function's role its own; X-Ray only with tracing (issue 19, item 9) ---------------------

# SAM attaches AWSXrayWriteOnlyAccess to every role it makes for a function with Tracing set, even
# through an intrinsic that resolves to PassThrough: only a role of the template's own can leave it
# out when tracing is off.
XRAY_WITH_TRACING = {"Fn::If": ["TracingEnabled", {
    "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}, {"Ref": "AWS::NoValue"}]}
FUNCTIONS = sorted(of_type("AWS::Serverless::Function"))


@pytest.fixture(scope="module")
def translated() -> dict[str, dict]:
    """The template as SAM translates it (scripts/sam_translate.py), with tracing off and on: one
    translation each per test process (iam_coverage.sam_translated caches them)."""
    return {tracing: iam_coverage.sam_translated(Tracing=tracing) for tracing in ("false", "true")}


def test_every_function_runs_with_a_role_of_the_templates_own(translated):
    roles = of_type("AWS::IAM::Role")
    for lid in FUNCTIONS:
        props = RESOURCES[lid]["Properties"]
        assert props["Role"] == {"Fn::GetAtt": [role_of(lid), "Arn"]} and role_of(lid) in roles, lid
        assert "Policies" not in props, f"{lid}: its grants belong in {role_of(lid)}"
    # One role per function, used by no other.
    assert sorted(map(role_of, FUNCTIONS)) == sorted(set(map(role_of, FUNCTIONS))) == sorted(roles)
    for role in roles.values():
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    # SAM makes no role of its own, whether tracing is on or not.
    for tracing, template in translated.items():
        made = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
        assert made == set(roles), (tracing, made - set(roles))


def xray_grants(statements) -> list:
    return [st for st in statements if any(str(a).lower().startswith("xray:") or a == "*"
                                           for a in as_list(st["Action"]))]


@pytest.mark.parametrize("tracing", ["false", "true"])
def test_x_ray_write_access_only_with_tracing(translated, tracing):
    """Through SAM's translation: with tracing off no role may write to X-Ray, with it on every
    function's role may (what the Lambda runtime sends: segments and telemetry)."""
    template = translated[tracing]
    resolver = iam_coverage.Resolver(template, "pytest-template", {"Tracing": tracing})
    # Tracing stays on every function (Globals), as the parameter says.
    assert T["Globals"]["Function"]["Tracing"] == {"Fn::If": ["TracingEnabled", "Active", "PassThrough"]}
    for lid in FUNCTIONS:
        mode = resolver.resolve(template["Resources"][lid]["Properties"]["TracingConfig"]["Mode"])
        assert mode == ("Active" if tracing == "true" else "PassThrough"), lid
    for lid, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        managed = [arn.rsplit("/", 1)[-1] for arn in resolver.resolve(res["Properties"].get("ManagedPolicyArns") or [])]
        inline = [st for p in res["Properties"].get("Policies") or [] for st in p["PolicyDocument"]["Statement"]]
        assert set(managed) <= {"AWSXrayWriteOnlyAccess"}, (lid, managed)
        assert not xray_grants(inline), f"{lid}: X-Ray belongs to the managed policy, with tracing"
        assert ("AWSXrayWriteOnlyAccess" in managed) == (tracing == "true"), (lid, tracing)
    for lid in FUNCTIONS:
        role = iam_coverage.Role(lid, resolver, template)
        for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords"):
            assert bool(role.allowing(action, "*", {})) == (tracing == "true"), (lid, action)


def test_every_roles_logs_grant_is_its_own_functions_log_group(translated):
    """Logs on the function's own group, never on every group (SAM's AWSLambdaBasicExecutionRole):
    CreateLogStream and PutLogEvents, and no CreateLogGroup (the group is the template's)."""
    for tracing, template in translated.items():
        resolver = iam_coverage.Resolver(template, "pytest-template", {"Tracing": tracing})
        for lid in FUNCTIONS:
            group = RESOURCES[lid]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            role = iam_coverage.Role(lid, resolver, template)
            logs = [(a, r) for _, st in role.statements for a in as_list(st["Action"])
                    for r in as_list(st["Resource"]) if str(a).lower().startswith("logs:") or a == "*"]
            assert sorted(logs) == sorted((a, resolver.get_att([group, "Arn"]))
                                          for a in ("logs:CreateLogStream", "logs:PutLogEvents")), (lid, logs)
    # As written: one Logs statement per role, on the function's group by GetAtt.
    for lid in FUNCTIONS:
        (st,) = [st for st in statements_of(role_of(lid)) if any(a.startswith("logs:") for a in st["Action"])]
        group = RESOURCES[lid]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert (st["Sid"], st["Resource"]) == ("Logs", {"Fn::GetAtt": [group, "Arn"]}), lid


# --- edge protection: CloudFront and AWS WAF in front of the API (issue 19, item 4) ----------------

CUSTOM_DOMAIN = {"DomainName": "portal.example.com",
                 "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d"}
CUSTOM_DOMAIN_AND_ZONE = {**CUSTOM_DOMAIN, "HostedZoneId": "Z0123456789ABCDEFGHIJ"}
EDGE = {"EdgeProtection": "true"}
EDGE_RESOURCES = ("EdgeWebAcl", "EdgeOriginRequestPolicy", "EdgeDistribution")
EDGE_TYPES = ("AWS::WAFv2::WebACL", "AWS::CloudFront::Distribution", "AWS::CloudFront::OriginRequestPolicy")
# The paths whose requests hash a password, send mail or check a code (and their pages).
GUARDED_PATHS = {"/signin", "/register", "/forgot-password", "/reset-password", "/redeem", "/confirm-email"}
MANAGED_GROUPS = {"AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesCommonRuleSet",
                  "AWSManagedRulesKnownBadInputsRuleSet"}
# The edge secret as the functions get it and as CloudFront sends it: the UUID of the stack's id.
STACK_UUID = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
NO_VALUE = object()


def picked(value, **given):
    """A value with every Fn::If decided for the parameters given (the others at their defaults),
    AWS::NoValue dropped; other functions are left as they are."""
    if isinstance(value, list):
        return [v for v in (picked(v, **given) for v in value) if v is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        condition, yes, no = value["Fn::If"]
        return picked(yes if holds(condition, **given) else no, **given)
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    return {k: v for k, v in ((k, picked(v, **given)) for k, v in value.items()) if v is not NO_VALUE}


def edge_secret_variable():
    return T["Globals"]["Function"]["Environment"]["Variables"]["PORTAL_EDGE_SECRET"]


def distribution(**given) -> dict:
    return picked(RESOURCES["EdgeDistribution"]["Properties"]["DistributionConfig"], **EDGE, **given)


def web_acl_rules() -> list[dict]:
    return RESOURCES["EdgeWebAcl"]["Properties"]["Rules"]


def test_without_edge_protection_nothing_of_the_edge_exists_and_the_secret_is_empty():
    """EdgeProtection=false (the default) is the template as it was: no edge resource, output or
    DNS change, API Gateway's custom domain as before, and PORTAL_EDGE_SECRET empty (no check)."""
    assert PARAMS["EdgeProtection"]["Default"] == "false"
    assert PARAMS["EdgeProtection"]["AllowedValues"] == ["true", "false"]
    edge = {lid for kind in EDGE_TYPES for lid in of_type(kind)}
    assert edge == set(EDGE_RESOURCES)
    for given in ({}, CUSTOM_DOMAIN, CUSTOM_DOMAIN_AND_ZONE, {"EdgeProtection": "false", **CUSTOM_DOMAIN_AND_ZONE}):
        for lid in edge:
            assert not exists(lid, **given), (lid, given)
        assert picked(edge_secret_variable(), **given) == "", given
        assert not holds(T["Outputs"]["EdgeUrl"]["Condition"], **given)
    # The custom domain stays API Gateway's, and its record points to it.
    for lid in ("ApiDomain", "ApiDomainMapping", "ApiDnsRecords"):
        assert exists(lid, **CUSTOM_DOMAIN_AND_ZONE), lid
    (record,) = picked(RESOURCES["ApiDnsRecords"]["Properties"]["RecordSets"], **CUSTOM_DOMAIN_AND_ZONE)
    assert record["AliasTarget"] == {"DNSName": {"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]},
                                     "HostedZoneId": {"Fn::GetAtt": ["ApiDomain", "RegionalHostedZoneId"]}}
    assert picked(T["Outputs"]["CustomDomainTarget"]["Value"], **CUSTOM_DOMAIN) == {
        "Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]}


def test_with_edge_protection_the_web_acl_and_the_distribution_exist():
    for given in ({}, CUSTOM_DOMAIN, CUSTOM_DOMAIN_AND_ZONE):
        for lid in EDGE_RESOURCES:
            assert exists(lid, **EDGE, **given), (lid, given)
        assert holds(T["Outputs"]["EdgeUrl"]["Condition"], **EDGE, **given)
    acl = RESOURCES["EdgeWebAcl"]["Properties"]
    assert acl["Scope"] == "CLOUDFRONT" and acl["DefaultAction"] == {"Allow": {}}
    for config in [acl["VisibilityConfig"]] + [rule["VisibilityConfig"] for rule in acl["Rules"]]:
        assert config["CloudWatchMetricsEnabled"] is True and config["SampledRequestsEnabled"] is True
    assert distribution()["WebACLId"] == {"Fn::GetAtt": ["EdgeWebAcl", "Arn"]}


def test_the_rate_rule_limits_each_ip_on_exactly_the_guarded_paths_with_429_before_the_managed_groups():
    (rate,) = [rule for rule in web_acl_rules() if "RateBasedStatement" in rule["Statement"]]
    statement = rate["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP"
    assert statement["Limit"] == {"Ref": "EdgeRateLimit"} and statement["EvaluationWindowSec"] == 300
    assert PARAMS["EdgeRateLimit"]["Default"] == 100 and PARAMS["EdgeRateLimit"]["MinValue"] == 10
    matches = [s["ByteMatchStatement"] for s in statement["ScopeDownStatement"]["OrStatement"]["Statements"]]
    assert sorted(m["SearchString"] for m in matches) == sorted(GUARDED_PATHS)
    for m in matches:
        assert m["FieldToMatch"] == {"UriPath": {}} and m["PositionalConstraint"] == "STARTS_WITH", m
        kinds = [t["Type"] for t in sorted(m["TextTransformations"], key=lambda t: t["Priority"])]
        assert kinds[-1] == "LOWERCASE" and "URL_DECODE" in kinds, m  # decoded, then lower-cased
        assert m["SearchString"] == m["SearchString"].lower()
    assert rate["Action"] == {"Block": {"CustomResponse": {"ResponseCode": 429}}}
    managed = [rule for rule in web_acl_rules() if "ManagedRuleGroupStatement" in rule["Statement"]]
    assert managed and all(rate["Priority"] < rule["Priority"] for rule in managed)
    assert len({rule["Priority"] for rule in web_acl_rules()}) == len(web_acl_rules())
    # Every route the stage throttles for its hashing is under a guarded path.
    for route in RESOURCES["PortalApi"]["Properties"]["RouteSettings"]:
        path = route.split(" ", 1)[1]
        assert any(path.startswith(p) for p in GUARDED_PATHS), route


def test_the_managed_rule_groups_and_the_import_sized_bodies_only_counted():
    managed = {rule["Statement"]["ManagedRuleGroupStatement"]["Name"]: rule for rule in web_acl_rules()
               if "ManagedRuleGroupStatement" in rule["Statement"]}
    assert set(managed) == MANAGED_GROUPS
    for name, rule in managed.items():
        assert rule["Statement"]["ManagedRuleGroupStatement"]["VendorName"] == "AWS", name
        assert rule["OverrideAction"] == {"None": {}}, f"{name}: its rules must act, not only count"
        overrides = rule["Statement"]["ManagedRuleGroupStatement"].get("RuleActionOverrides", [])
        expected = ([{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
                    if name == "AWSManagedRulesCommonRuleSet" else [])
        assert overrides == expected, name


def test_cloudfront_sends_the_functions_edge_secret_to_the_origin():
    variable = edge_secret_variable()
    assert variable == {"Fn::If": ["EdgeProtectionOn", STACK_UUID, ""]}
    assert T["Conditions"]["EdgeProtectionOn"] == {"Fn::Equals": [{"Ref": "EdgeProtection"}, "true"]}
    assert picked(variable, **EDGE) == STACK_UUID
    (origin,) = distribution()["Origins"]
    assert origin["OriginCustomHeaders"] == [{"HeaderName": "X-Portal-Edge", "HeaderValue": STACK_UUID}]
    # Every function gets it from the Globals, and none overrides it.
    for lid, fn in of_type("AWS::Serverless::Function").items():
        assert "PORTAL_EDGE_SECRET" not in fn["Properties"].get("Environment", {}).get("Variables", {}), lid


def test_the_origin_is_the_http_api_over_https_only_and_nothing_is_cached():
    config = distribution()
    (origin,) = config["Origins"]
    api_url = T["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    assert origin["DomainName"] == {"Fn::Sub": api_url.removeprefix("https://")}
    assert "${PortalApi}" in api_url
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    behaviour = config["DefaultCacheBehavior"]
    assert "CacheBehaviors" not in config, "one behaviour: every path through the same rules"
    assert behaviour["TargetOriginId"] == origin["Id"]
    assert behaviour["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # Managed-CachingDisabled
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https" and behaviour["Compress"] is True
    assert set(behaviour["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
    assert (config["HttpVersion"], config["PriceClass"], config["Enabled"]) == ("http2and3", "PriceClass_100", True)
    assert config["IPV6Enabled"] is False, "one IPv6 client would hold a /64 of per-IP allowances"


def test_the_origin_gets_the_viewers_address_and_the_portals_headers_but_never_its_host():
    assert distribution()["DefaultCacheBehavior"]["OriginRequestPolicyId"] == {"Ref": "EdgeOriginRequestPolicy"}
    config = RESOURCES["EdgeOriginRequestPolicy"]["Properties"]["OriginRequestPolicyConfig"]
    headers = config["HeadersConfig"]
    assert headers["HeaderBehavior"] == "whitelist", "only the listed headers: never the viewer's Host"
    names = {h.lower() for h in headers["Headers"]}
    assert "host" not in names
    assert names == {"cloudfront-viewer-address", "accept", "accept-language", "content-type", "origin",
                     "referer", "user-agent", "idempotency-key", "sec-fetch-site"}
    assert "x-portal-edge" not in names, "CloudFront sets it (an origin custom header), never the viewer"
    assert config["CookiesConfig"] == {"CookieBehavior": "all"}
    assert config["QueryStringsConfig"] == {"QueryStringBehavior": "all"}


def test_edge_protection_needs_the_stack_in_us_east_1():
    rule = T["Rules"]["EdgeProtectionNeedsUsEast1"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EdgeProtection"}, "true"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    assert "us-east-1" in assertion["AssertDescription"] and "us-east-1" in PARAMS["EdgeProtection"]["Description"]


def test_with_a_domain_cloudfront_takes_it_and_api_gateway_makes_no_custom_domain():
    for lid in ("ApiDomain", "ApiDomainMapping"):
        assert not exists(lid, **EDGE, **CUSTOM_DOMAIN_AND_ZONE), lid
    config = distribution(**CUSTOM_DOMAIN)
    assert config["Aliases"] == [{"Ref": "DomainName"}]
    assert config["ViewerCertificate"] == {"AcmCertificateArn": {"Ref": "CertificateArn"},
                                           "SslSupportMethod": "sni-only", "MinimumProtocolVersion": "TLSv1.2_2021"}
    # The hosted zone's record is the same resource (updated in place when EdgeProtection changes),
    # an A alias to the distribution.
    assert exists("ApiDnsRecords", **EDGE, **CUSTOM_DOMAIN_AND_ZONE)
    (record,) = picked(RESOURCES["ApiDnsRecords"]["Properties"]["RecordSets"], **EDGE, **CUSTOM_DOMAIN_AND_ZONE)
    assert (record["Name"], record["Type"]) == ({"Ref": "DomainName"}, "A")
    assert record["AliasTarget"] == {"DNSName": {"Fn::GetAtt": ["EdgeDistribution", "DomainName"]},
                                     "HostedZoneId": "Z2FDTNDATAQYW2"}  # CloudFront's
    assert picked(T["Outputs"]["CustomDomainTarget"]["Value"], **EDGE, **CUSTOM_DOMAIN) == {
        "Fn::GetAtt": ["EdgeDistribution", "DomainName"]}
    # Without a domain: CloudFront's own name and certificate.
    config = distribution()
    assert "Aliases" not in config and config["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}


def test_the_edge_url_output_is_a_base_url_the_parameter_takes():
    """With EdgeProtection and no custom domain, the second deploy takes EdgeUrl as PortalBaseUrl."""
    output = T["Outputs"]["EdgeUrl"]
    assert output["Value"] == {"Fn::Sub": "https://${EdgeDistribution.DomainName}"}
    url = output["Value"]["Fn::Sub"].replace("${EdgeDistribution.DomainName}", "d111111abcdef8.cloudfront.net")
    assert allowed("PortalBaseUrl", url)
    assert "EdgeUrl" in PARAMS["PortalBaseUrl"]["Description"]
    assert "EdgeUrl" in T["Outputs"]["ApiUrl"]["Description"], "ApiUrl refuses every request with the edge"
