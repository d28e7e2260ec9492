"""reflex demo: the classic rule, end to end, against moto's server.

Run through scripts/demo, which installs the pinned emulator and builds reflex.
Everything talks to 127.0.0.1 only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"
ELB = "web"
ALARM = "web-unhealthy-hosts"

RULE = """\
# The demo's copy of rules/elb-terminate-out-of-service.toml. One change:
# min_instance_age is 0s, because the emulator's instances are seconds old.
[[rule]]
name = "terminate-out-of-service"
description = "Terminate the nodes a classic ELB reports OutOfService; the ASG replaces them."

[rule.match]
alarm_name = { suffix = "-unhealthy-hosts" }
new_state = "ALARM"
old_state = { anything_but = "ALARM" }
namespace = "AWS/ELB"
metric_name = "UnHealthyHostCount"
dimensions.LoadBalancerName = { exists = true }

[[rule.actions]]
type = "terminate_out_of_service"
load_balancer = "{{ dimension.LoadBalancerName }}"
max_instances = 1
max_percent = 25
min_in_service = 2
min_instance_age = "0s"
require_tag = { key = "reflex:managed", value = "true" }
confirm_after = "2s"

[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:reflex-demo-notifications"
subject = "reflex: {{ alarm.name }} on {{ dimension.LoadBalancerName }}"
message = "reflex acted on {{ dimension.LoadBalancerName }} because {{ alarm.name }} is {{ alarm.new_state }}."

[rule.limits]
cooldown = "10m"
rate = "5/hour"
max_event_age = "15m"
"""


def step(n, text):
    print(f"[{n}/8] {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloudwatch_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def create_pipeline(sqs, sns, max_receive_count):
    """The alarm topic feeding the alarm queue (with a DLQ and redrive after
    max_receive_count receives), and the on-call topic feeding an inbox
    queue (raw delivery). Returns (topic, notify_topic, queue, dlq, inbox)."""
    arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="reflex-demo-alarms")["TopicArn"]
    notify_topic = sns.create_topic(Name="reflex-demo-notifications")["TopicArn"]
    dlq = sqs.create_queue(QueueName="reflex-demo-dlq")["QueueUrl"]
    queue = sqs.create_queue(
        QueueName="reflex-demo",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": str(max_receive_count)})},
    )["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(queue))
    notes = sqs.create_queue(QueueName="reflex-demo-notifications")["QueueUrl"]
    sns.subscribe(TopicArn=notify_topic, Protocol="sqs", Endpoint=arn(notes), Attributes={"RawMessageDelivery": "true"})
    return topic, notify_topic, queue, dlq, notes


def run_tagged_instances(ec2, n):
    """n running instances tagged Name=web and reflex:managed=true."""
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return [
        i["InstanceId"]
        for i in ec2.run_instances(
            ImageId=ami, MinCount=n, MaxCount=n, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": "web"}, {"Key": "reflex:managed", "Value": "true"}]}],
        )["Instances"]
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reflex", required=True)
    ap.add_argument("--keep", action="store_true", help="leave moto running")
    ap.add_argument("--replicas", type=int, default=0,
                    help="run N reflex processes sharing a DynamoDB state table, under a storm of duplicate deliveries")
    args = ap.parse_args()
    if args.replicas:
        return replicas_demo(args)

    work = tempfile.mkdtemp(prefix="reflex-demo-")
    port = free_port()
    metrics_port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    env.pop("AWS_PROFILE", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})

    print("reflex demo: CloudWatch alarm -> SNS -> SQS -> reflex -> EC2, on a local emulator\n")
    step(1, "Python tools ready in .venv (moto[server] 5.2.5)")
    step(2, f"reflex built: {args.reflex}")

    moto_log = open(os.path.join(work, "moto.log"), "w")
    moto = subprocess.Popen(
        [".venv/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=moto_log, stderr=subprocess.STDOUT,
    )
    reflex = None
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or moto.poll() is not None:
                    sys.exit(f"moto did not start; see {moto_log.name}")
                time.sleep(0.2)
        step(3, f"moto server listening on {endpoint}")

        c = lambda svc: boto3.client(svc, endpoint_url=endpoint, region_name=REGION)
        sqs, sns, ec2, elb, cw = c("sqs"), c("sns"), c("ec2"), c("elb"), c("cloudwatch")

        topic, notify_topic, queue, dlq, notes = create_pipeline(sqs, sns, max_receive_count=5)

        ids = run_tagged_instances(ec2, 4)
        elb.create_load_balancer(
            LoadBalancerName=ELB,
            Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 80}],
            AvailabilityZones=[f"{REGION}a"],
        )
        elb.register_instances_with_load_balancer(LoadBalancerName=ELB, Instances=[{"InstanceId": i} for i in ids])
        cw.put_metric_alarm(
            AlarmName=ALARM, Namespace="AWS/ELB", MetricName="UnHealthyHostCount",
            Dimensions=[{"Name": "LoadBalancerName", "Value": ELB}], Statistic="Maximum",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
            AlarmActions=[topic],
        )
        rules_dir = os.path.join(work, "rules")
        os.makedirs(rules_dir)
        with open(os.path.join(rules_dir, "elb-terminate-out-of-service.toml"), "w") as f:
            f.write(RULE)
        config = os.path.join(work, "reflex.toml")
        with open(config, "w") as f:
            f.write(
                f'queue_url = "{queue}"\ndead_letter_queue_url = "{dlq}"\nrules_dir = "{rules_dir}"\n'
                f'trusted_topic_arns = ["{topic}"]\n[receive]\nwait = "2s"\n'
                f'[state]\npath = "{work}/reflex-state.redb"\n'
                f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            )
        step(4, f"created topic, queue + DLQ (redrive after 5 receives), ELB '{ELB}' with 4 tagged instances, alarm '{ALARM}'")

        reflex_log = open(os.path.join(work, "reflex.log"), "w")
        reflex = subprocess.Popen(
            [args.reflex, "--log-format", "json", "run", "--config", config],
            stdout=reflex_log, stderr=subprocess.STDOUT, env=env,
        )
        step(5, f"reflex run started (pid {reflex.pid}), long-polling the queue")

        victim = ids[0]
        ec2.stop_instances(InstanceIds=[victim])
        health = {s["InstanceId"]: s["State"] for s in elb.describe_instance_health(LoadBalancerName=ELB)["InstanceStates"]}
        cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint [1.0] >= 1.0")
        now = datetime.now(timezone.utc)
        notification = {
            "AlarmName": ALARM, "AlarmDescription": None, "AWSAccountId": ACCOUNT,
            "AlarmConfigurationUpdatedTimestamp": cloudwatch_time(now),
            "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] >= 1.0",
            "StateChangeTime": cloudwatch_time(now), "Region": "US East (N. Virginia)",
            "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{ALARM}", "OldStateValue": "OK",
            "OKActions": [], "AlarmActions": [topic], "InsufficientDataActions": [],
            "Trigger": {"MetricName": "UnHealthyHostCount", "Namespace": "AWS/ELB", "StatisticType": "Statistic",
                        "Statistic": "MAXIMUM", "Unit": None,
                        "Dimensions": [{"value": ELB, "name": "LoadBalancerName"}], "Period": 60,
                        "EvaluationPeriods": 1, "DatapointsToAlarm": 1,
                        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0,
                        "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": ""},
        }
        sns.publish(TopicArn=topic, Subject=f'ALARM: "{ALARM}" in US East (N. Virginia)', Message=json.dumps(notification))
        published = time.time()
        step(6, f"broke {victim} (stopped; the ELB reports it {health[victim]}), alarm -> ALARM, notification published")

        deadline = time.time() + 60
        state = None
        while time.time() < deadline:
            state = ec2.describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]["State"]["Name"]
            if state == "terminated":
                break
            if reflex.poll() is not None:
                break
            time.sleep(0.25)
        if state != "terminated":
            print(open(reflex_log.name).read())
            sys.exit(f"FAILED: {victim} is {state}, not terminated")
        step(7, f"reflex terminated {victim} {time.time() - published:.1f}s after the alarm (including the 2s confirm_after re-check)")

        def depth(url):
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

        deadline = time.time() + 15
        while depth(queue) and time.time() < deadline:
            time.sleep(0.25)

        # Trust: what did not come from SNS moves nothing. Both go straight
        # to the queue with SendMessage, as anyone with sqs:SendMessage could.
        forged = {
            "Type": "Notification", "MessageId": "00000000-0000-4000-8000-000000000000", "TopicArn": topic,
            "Subject": f'ALARM: "{ALARM}" in US East (N. Virginia)', "Message": json.dumps(notification),
            "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SignatureVersion": "1", "Signature": "bm90IGEgc2lnbmF0dXJl",
            "SigningCertURL": f"https://sns.{REGION}.amazonaws.com.evil.example/SimpleNotificationService-0.pem",
        }
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(forged))
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(notification))
        deadline = time.time() + 30
        while depth(dlq) < 2 and time.time() < deadline:
            time.sleep(0.25)
        refused = []
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                     VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", []):
            a = m.get("MessageAttributes", {})
            refused.append(f'{a.get("ReasonCode", {}).get("StringValue")}: {a.get("ReasonText", {}).get("StringValue")}')
        if len(refused) != 2:
            print(open(reflex_log.name).read())
            sys.exit(f"FAILED: expected the forged envelope and the raw alarm in the DLQ, found {refused}")
        step(8, "a forged SNS envelope and a raw alarm sent straight to the queue were dead-lettered, not acted on:")
        for r in sorted(refused):
            print(f"     {r}")

        print("\nThe fleet now:")
        states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
        for i in ids:
            print(f"  {i}  {states[i]:<11}{'  <- was OutOfService' if i == victim else ''}")
        print(f"\nalarm queue: {depth(queue)} messages; dead-letter queue: {depth(dlq)} messages")
        msgs = sqs.receive_message(QueueUrl=notes, WaitTimeSeconds=1).get("Messages", [])
        if msgs:
            print("notification sent to the on-call topic:")
            for line in msgs[0]["Body"].splitlines():
                print(f"  | {line}")

        import urllib.request
        ready = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5).read().decode().strip()
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        print(f"\nhttp://127.0.0.1:{metrics_port}/readyz: {ready}")
        print(f"http://127.0.0.1:{metrics_port}/metrics (some of it):")
        for line in scraped.splitlines():
            if line.startswith(("reflex_actions_total", "reflex_messages_received_total", "reflex_messages_deleted_total",
                                "reflex_rule_matches_total", "reflex_rules_info")):
                print(f"  {line}")

        print("\nreflex's decisions (from its JSON log):")
        for line in open(reflex_log.name):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("message") in ("Alarm event evaluated.", "Action finished.", "Action suppressed by a guard.", "Message handled."):
                keep = {k: rec[k] for k in ("message", "rule", "kind", "outcome", "targets", "matched", "disposition", "request_ids") if k in rec}
                span = rec.get("span", {})
                keep["sqs_message_id"] = span.get("sqs_message_id")
                print("  " + json.dumps(keep))
    finally:
        if reflex is not None and reflex.poll() is None:
            reflex.send_signal(signal.SIGTERM)
            try:
                code = reflex.wait(timeout=40)
                print(f"\nreflex stopped on SIGTERM (exit {code})")
            except subprocess.TimeoutExpired:
                reflex.kill()
        if args.keep:
            print(f"\nmoto is still running at {endpoint} (pid {moto.pid}); inspect with e.g.\n"
                  f"  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
                  f"aws --region {REGION} ec2 describe-instances\nstop it with: kill {moto.pid}")
            print(f"logs: {work}")
        else:
            moto.terminate()
            moto.wait(timeout=10)
            shutil.rmtree(work, ignore_errors=True)
            print("cleaned up: moto stopped, temporary files removed")


SINGLE_THREADED_MOTO = """import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False, request_handler=MotoRequestHandler)
"""

REPLACE_RULE = """\
[[rule]]
name = "replace-failed-instance"
description = "Terminate an instance whose system status check fails; the ASG replaces it."

[rule.match]
namespace = "AWS/EC2"
metric_name = "StatusCheckFailed_System"
new_state = "ALARM"
dimensions.InstanceId = { exists = true }

[[rule.actions]]
type = "terminate_instance"
require_tag = { key = "reflex:managed", value = "true" }
min_instance_age = "0s"

[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:reflex-demo-notifications"
subject = "reflex replaced {{ instance_id }}"
message = "reflex terminated {{ instance_id }} because {{ alarm.name }} is {{ alarm.new_state }}."
"""


def wait_port(port, proc, log, what):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                sys.exit(f"{what} did not start; see {log}")
            time.sleep(0.2)


def replicas_demo(args):
    """N reflex processes on one queue, sharing their state in DynamoDB."""
    n = args.replicas
    total = 8
    work = tempfile.mkdtemp(prefix="reflex-demo-replicas-")
    port, ddb_port = free_port(), free_port()
    endpoint, ddb_endpoint = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ddb_port}"
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        # DynamoDB from a moto that serves one request at a time: moto's
        # threaded DynamoDB is not atomic under concurrent conditional writes.
        AWS_ENDPOINT_URL_DYNAMODB=ddb_endpoint,
        AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    env.pop("AWS_PROFILE", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_") and k != "AWS_ENDPOINT_URL_DYNAMODB"})
    print(f"reflex demo: {n} replicas on one queue, sharing DynamoDB, under a storm of duplicate deliveries\n")
    step(1, "Python tools ready in .venv (moto[server] 5.2.5)")
    step(2, f"reflex built: {args.reflex}")

    recording = os.path.join(work, "moto-recording")
    moto_log = os.path.join(work, "moto.log")
    moto = subprocess.Popen(
        [".venv/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(moto_log, "w"), stderr=subprocess.STDOUT,
        env=dict(env, MOTO_RECORDER_FILEPATH=recording),
    )
    ddb_log = os.path.join(work, "moto-dynamodb.log")
    ddb = subprocess.Popen(
        [".venv/bin/python", "-c", SINGLE_THREADED_MOTO, "127.0.0.1", str(ddb_port)],
        stdout=open(ddb_log, "w"), stderr=subprocess.STDOUT,
    )
    replicas = []
    try:
        wait_port(port, moto, moto_log, "moto")
        wait_port(ddb_port, ddb, ddb_log, "moto (DynamoDB)")
        step(3, f"moto listening on {endpoint}; DynamoDB on a single-threaded moto at {ddb_endpoint}")

        c = lambda svc: boto3.client(svc, endpoint_url=endpoint, region_name=REGION)
        sqs, sns, ec2, cw = c("sqs"), c("sns"), c("ec2"), c("cloudwatch")
        dynamodb = boto3.client("dynamodb", endpoint_url=ddb_endpoint, region_name=REGION)
        table = "reflex-demo-state"
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})

        topic, notify_topic, queue, dlq, notes = create_pipeline(sqs, sns, max_receive_count=10)
        ids = run_tagged_instances(ec2, 3)
        victim = ids[0]
        alarm = f"{victim}-system-check"
        cw.put_metric_alarm(
            AlarmName=alarm, Namespace="AWS/EC2", MetricName="StatusCheckFailed_System",
            Dimensions=[{"Name": "InstanceId", "Value": victim}], Statistic="Maximum",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
            AlarmActions=[topic],
        )
        cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint [1.0] >= 1.0")
        rules_dir = os.path.join(work, "rules")
        os.makedirs(rules_dir)
        with open(os.path.join(rules_dir, "replace-failed-instance.toml"), "w") as f:
            f.write(REPLACE_RULE)
        step(4, f"created DynamoDB table '{table}', topic, queue + DLQ, 3 tagged instances, alarm '{alarm}' in ALARM")

        for r in range(n):
            metrics_port = free_port()
            config = os.path.join(work, f"reflex-{r}.toml")
            with open(config, "w") as f:
                f.write(
                    f'queue_url = "{queue}"\ndead_letter_queue_url = "{dlq}"\nrules_dir = "{rules_dir}"\n'
                    f'trusted_topic_arns = ["{topic}"]\n[receive]\nwait = "1s"\nvisibility_timeout = "10s"\n'
                    f'[retry]\nbase = "1s"\nmax = "2s"\n'
                    f'[state]\nbackend = "dynamodb"\ntable = "{table}"\nlease = "10s"\n'
                    f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
                )
            log = os.path.join(work, f"reflex-{r}.log")
            audit = os.path.join(work, f"reflex-{r}.audit.jsonl")
            proc = subprocess.Popen(
                [args.reflex, "--log-format", "json", "run", "--config", config],
                stdout=open(audit, "w"), stderr=open(log, "w"), env=env,
            )
            replicas.append((proc, metrics_port, log, audit))
        for proc, metrics_port, log, _ in replicas:
            wait_port(metrics_port, proc, log, f"reflex (pid {proc.pid})")
        step(5, f"{n} reflex processes started (pids {', '.join(str(p.pid) for p, *_ in replicas)}), one queue, one state table")

        urllib_request(f"{endpoint}/moto-api/recorder/start-recording", post=True)
        now = datetime.now(timezone.utc)
        notification = {
            "AlarmName": alarm, "AlarmDescription": None, "AWSAccountId": ACCOUNT,
            "AlarmConfigurationUpdatedTimestamp": cloudwatch_time(now),
            "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] >= 1.0",
            "StateChangeTime": cloudwatch_time(now), "Region": "US East (N. Virginia)",
            "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}", "OldStateValue": "OK",
            "OKActions": [], "AlarmActions": [topic], "InsufficientDataActions": [],
            "Trigger": {"MetricName": "StatusCheckFailed_System", "Namespace": "AWS/EC2", "StatisticType": "Statistic",
                        "Statistic": "MAXIMUM", "Unit": None,
                        "Dimensions": [{"value": victim, "name": "InstanceId"}], "Period": 60,
                        "EvaluationPeriods": 1, "DatapointsToAlarm": 1,
                        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0,
                        "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": ""},
        }
        # The storm: SNS delivers the same transition many times (its
        # at-least-once delivery, a retried publish, a second subscription).
        for _ in range(total):
            sns.publish(TopicArn=topic, Subject=f'ALARM: "{alarm}" in US East (N. Virginia)', Message=json.dumps(notification))
        step(6, f"one alarm transition on {victim}, delivered {total} times at once")

        def depth(url):
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

        deadline = time.time() + 90
        while depth(queue) and time.time() < deadline:
            if any(p.poll() is not None for p, *_ in replicas):
                break
            time.sleep(0.25)
        left = depth(queue)
        if left:
            for _, _, log, _ in replicas:
                print(open(log).read()[-4000:])
            sys.exit(f"FAILED: {left} message(s) still on the queue")
        step(7, f"the queue drained: {total} deliveries handled by {n} replicas")

        # Read back from AWS: the TerminateInstances calls moto served, the
        # instances, the pages, the claim in DynamoDB.
        calls = []
        for line in open(recording):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            body = rec.get("body") or ""
            if rec.get("body_encoded"):
                import base64
                body = base64.b64decode(body).decode("utf-8", "replace")
            if "Action=TerminateInstances" in body and "DryRun=true" not in body:
                calls.append(body)
        states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
        pages = []
        while True:
            got = sqs.receive_message(QueueUrl=notes, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not got:
                break
            pages.extend(got)
        claims = dynamodb.query(TableName=table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": "claim"}}, ConsistentRead=True)["Items"]

        print()
        step(8, "read back from AWS:")
        print(f"  TerminateInstances calls (moto's request record): {len(calls)}")
        for i in ids:
            print(f"  {i}  {states[i]:<11}{'  <- its alarm fired' if i == victim else ''}")
        print(f"  notifications on the on-call topic: {len(pages)}")
        for c in claims:
            print(f"  claim {c['sk']['S'].split('#', 1)[1]:<28} {c['st']['S']:<10} by {c['owner']['S']} -> {c.get('outcome', {}).get('S')}")

        print("\nEach replica (its /metrics):")
        import urllib.request
        for r, (proc, metrics_port, _, audit) in enumerate(replicas):
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            got = {"received": 0, "done": 0, "duplicate": 0, "busy": 0}
            for line in scraped.splitlines():
                if line.startswith("reflex_messages_received_total "):
                    got["received"] = int(float(line.split()[-1]))
                for outcome in ("done", "duplicate", "busy"):
                    if line.startswith("reflex_actions_total{") and f'outcome="{outcome}"' in line:
                        got[outcome] += int(float(line.split()[-1]))
            print(f"  replica {r} (pid {proc.pid}): received {got['received']}, actions done {got['done']}, "
                  f"duplicate {got['duplicate']}, busy (another replica held it) {got['busy']}")

        ok = len(calls) == 1 and states[victim] == "terminated" and len(pages) == 1 and \
            all(states[i] == "running" for i in ids if i != victim)
        if not ok:
            sys.exit("FAILED: expected exactly one TerminateInstances, one terminated instance and one page")
        print(f"\nexactly one action: {total} deliveries, {n} replicas, 1 TerminateInstances, 1 page")
    finally:
        for proc, *_ in replicas:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, *_ in replicas:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        if replicas:
            print(f"reflex replicas stopped on SIGTERM (exit {', '.join(str(p.returncode) for p, *_ in replicas)})")
        if args.keep:
            print(f"\nmoto is still running at {endpoint} (pid {moto.pid}), DynamoDB at {ddb_endpoint} (pid {ddb.pid})")
            print(f"logs: {work}")
        else:
            for p in (moto, ddb):
                p.terminate()
                p.wait(timeout=10)
            shutil.rmtree(work, ignore_errors=True)
            print("cleaned up: moto stopped, temporary files removed")


def urllib_request(url, post=False):
    import urllib.request
    req = urllib.request.Request(url, data=b"" if post else None, method="POST" if post else "GET")
    return urllib.request.urlopen(req, timeout=5).read()


if __name__ == "__main__":
    main()
