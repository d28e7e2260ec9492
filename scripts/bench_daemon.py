"""Daemon benchmark against moto; see scripts/bench-daemon."""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3

REGION, ACCOUNT, ELB = "us-east-1", "123456789012", "bench"
IDLE_SECONDS = 20

RULE = """
[[rule]]
name = "bench-terminate"
[rule.match]
alarm_name = "bench-unhealthy-hosts"
new_state = "ALARM"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_instances = 1
max_percent = 100
min_in_service = 1
min_instance_age = "0s"
require_tag = { key = "reflex:managed", value = "true" }
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU of a process so far, all its threads (10 ms ticks)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LogFollower:
    """reflex's JSON log lines, read as the file grows."""

    def __init__(self, path):
        self.file = open(path)
        self.partial = ""

    def next_record(self):
        """The next whole JSON record, or None when none is written yet."""
        while True:
            line = self.file.readline()
            if not line:
                return None
            line = self.partial + line
            if not line.endswith("\n"):
                self.partial = line
                return None
            self.partial = ""
            try:
                return json.loads(line)
            except ValueError:
                continue


def log_time(record):
    """A log record's timestamp, as seconds since the epoch."""
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def rss_mib(pid, field="VmRSS"):
    return int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(field + ":"))) / 1024


def drain(a, env, work, sqs, sns, dlq, level, messages):
    """CPU per message drained: `messages` alarm notifications that match no
    rule, published to a topic whose queue fills before reflex starts, then
    drained by a fresh reflex at log level `level`. CPU is reflex's own
    (/proc/PID/stat, all threads), from its first ReceiveMessage until the
    queue is empty, divided by the messages."""
    tag = f"drain-{level}"
    topic = sns.create_topic(Name=tag)["TopicArn"]
    queue = sqs.create_queue(QueueName=tag, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    now = datetime.now(timezone.utc)
    for k in range(0, messages, 10):
        entries = []
        for j in range(k, min(k + 10, messages)):
            note = {"AlarmName": f"nomatch-{j}", "AWSAccountId": ACCOUNT, "NewStateValue": "ALARM",
                    "OldStateValue": "OK", "NewStateReason": "drain", "StateChangeTime": cw_time(now),
                    "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:nomatch-{j}",
                    "Trigger": {"MetricName": "UnHealthyHostCount", "Namespace": "AWS/ELB",
                                "Dimensions": [{"value": "other", "name": "LoadBalancerName"}], "Threshold": 1.0}}
            entries.append({"Id": str(j), "Message": json.dumps(note), "Subject": "ALARM"})
        sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)

    def left():
        at = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(at["ApproximateNumberOfMessages"]) + int(at["ApproximateNumberOfMessagesNotVisible"])

    if left() != messages:
        sys.exit(f"{tag}: {left()} messages queued, expected {messages}")
    cfg = os.path.join(work, f"{tag}.toml")
    open(cfg, "w").write(f'queue_url = "{queue}"\ndead_letter_queue_url = "{dlq}"\n'
                         f'rules_dir = "{work}/rules"\ntrusted_topic_arns = ["{topic}"]\n')
    log_path = os.path.join(work, f"{tag}.log")
    reflex = subprocess.Popen([a.reflex, "--log-format", "json", "run", "--config", cfg], stdout=subprocess.DEVNULL,
                              stderr=open(log_path, "w"), env=dict(env, REFLEX_LOG=level), cwd=work)
    try:
        # Start-up is not drain work: CPU is counted from the first receive
        # (or, where the level hides that line, from the first message gone).
        base, t0 = None, time.time()
        while base is None and time.time() - t0 < 30:
            if any("Sending the first ReceiveMessage." in l for l in open(log_path)) or left() < messages:
                base = cpu_seconds(reflex.pid)
            time.sleep(0.002)
        started = time.time()
        while left() > 0:
            if time.time() - started > 120:
                sys.exit(f"{tag}: {left()} messages still queued after 120 s; log: {log_path}")
            time.sleep(0.02)
        cpu = cpu_seconds(reflex.pid) - base
        wall = time.time() - started
        calls = aws_calls()
        dead = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        lines = sum(1 for _ in open(log_path))
        return cpu, wall, lines, int(dead["Attributes"]["ApproximateNumberOfMessages"]), calls
    finally:
        reflex.send_signal(signal.SIGTERM)
        reflex.wait(timeout=40)


def aws_calls():
    """reflex's AWS calls so far by operation, from its /metrics (the
    default listen address), e.g. {"ReceiveMessage": 100, ...}."""
    text = urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode()
    calls = {}
    for line in text.splitlines():
        if line.startswith("reflex_aws_calls_total{"):
            labels, value = line[len("reflex_aws_calls_total{"):].rsplit("} ", 1)
            op = dict(kv.split("=", 1) for kv in labels.split(","))["operation"].strip('"')
            calls[op] = calls.get(op, 0) + int(float(value))
    return calls


def cw_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reflex", required=True)
    ap.add_argument("--alarms", type=int, default=50)
    ap.add_argument("--drain", type=int, default=1000)
    ap.add_argument("--moto-certificates", action="store_true",
                    help="let moto issue a new signing certificate per message (a fetch per message)")
    a = ap.parse_args()
    a.reflex = os.path.abspath(a.reflex)  # reflex runs in the bench's directory (its state file goes there)
    work = tempfile.mkdtemp(prefix="reflex-bench-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    # AWS serves one certificate per signing key; moto a new one per message
    server = [".venv/bin/moto_server"] if a.moto_certificates else [".venv/bin/python", "scripts/moto_stable_signer.py"]
    moto = subprocess.Popen(server + ["-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(os.path.join(work, "moto.log"), "w"), stderr=subprocess.STDOUT)
    reflex = None
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        c = lambda s: boto3.client(s, endpoint_url=endpoint, region_name=REGION)
        sqs, sns, ec2, elb, cw = c("sqs"), c("sns"), c("ec2"), c("elb"), c("cloudwatch")
        topic = sns.create_topic(Name="bench")["TopicArn"]
        dlq = sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
        qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
        n = a.alarms + 10
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=ami, MinCount=n, MaxCount=n, TagSpecifications=[{"ResourceType": "instance",
            "Tags": [{"Key": "reflex:managed", "Value": "true"}]}])["Instances"]]
        elb.create_load_balancer(LoadBalancerName=ELB, AvailabilityZones=[f"{REGION}a"],
                                 Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 80}])
        elb.register_instances_with_load_balancer(LoadBalancerName=ELB, Instances=[{"InstanceId": i} for i in ids])
        cw.put_metric_alarm(AlarmName="bench-unhealthy-hosts", Namespace="AWS/ELB", MetricName="UnHealthyHostCount",
                            Dimensions=[{"Name": "LoadBalancerName", "Value": ELB}], Statistic="Maximum", Period=60,
                            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName="bench-unhealthy-hosts", StateValue="ALARM", StateReason="bench")
        os.makedirs(os.path.join(work, "rules"))
        open(os.path.join(work, "rules", "bench.toml"), "w").write(RULE)
        cfg = os.path.join(work, "reflex.toml")
        open(cfg, "w").write(f'queue_url = "{queue}"\ndead_letter_queue_url = "{dlq}"\n'
                             f'rules_dir = "{work}/rules"\ntrusted_topic_arns = ["{topic}"]\n'
                             f'[limits]\ninstance_changes = "10000/hour"\n')
        log_path = os.path.join(work, "reflex.log")
        reflex = subprocess.Popen([a.reflex, "--log-format", "json", "run", "--config", cfg],
                                  stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), env=env, cwd=work)

        follow = LogFollower(log_path)
        deadline = time.time() + 30
        startup = None
        while time.time() < deadline and startup is None:
            r = follow.next_record()
            if r is None:
                time.sleep(0.005)
            elif r.get("message") == "Sending the first ReceiveMessage.":
                startup = r.get("since_start_ms")
        time.sleep(3)
        rss = rss_mib(reflex.pid)
        rss_split = (rss_mib(reflex.pid, "RssAnon"), rss_mib(reflex.pid, "RssFile"))
        # Idle: the queue is empty and a long poll is out.
        idle_cpu = cpu_seconds(reflex.pid)
        time.sleep(IDLE_SECONDS)
        idle_cpu = cpu_seconds(reflex.pid) - idle_cpu

        latencies, own = [], []
        base = datetime.now(timezone.utc)
        for k in range(a.alarms):
            victim = ids[k]
            ec2.stop_instances(InstanceIds=[victim])
            note = {"AlarmName": "bench-unhealthy-hosts", "AWSAccountId": ACCOUNT, "NewStateValue": "ALARM",
                    "OldStateValue": "OK", "NewStateReason": "bench",
                    "StateChangeTime": cw_time(base + timedelta(milliseconds=k)),
                    "Region": "US East (N. Virginia)",
                    "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:bench-unhealthy-hosts",
                    "Trigger": {"MetricName": "UnHealthyHostCount", "Namespace": "AWS/ELB",
                                "Dimensions": [{"value": ELB, "name": "LoadBalancerName"}], "Threshold": 1.0}}
            t0 = time.time()
            sns.publish(TopicArn=topic, Message=json.dumps(note), Subject="ALARM")
            # reflex's own log says when the terminate was done and when the
            # message was handled: read as it grows, so the bench does not
            # load moto (or the two cores reflex shares with it) while it
            # measures. The next alarm waits for the message to be handled.
            done_at = None
            while True:
                r = follow.next_record()
                if r is None:
                    if time.time() - t0 > 30:
                        sys.exit(f"alarm {k}: {victim} not terminated after 30s; log: {log_path}")
                    time.sleep(0.002)
                elif r.get("message") == "Action finished." and r.get("outcome") == "done":
                    done_at = log_time(r)
                elif r.get("message") == "Message handled.":
                    if "own_us" in r:
                        own.append(r["own_us"] / 1000)
                    if done_at is not None:
                        break
            st = ec2.describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]["State"]["Name"]
            if st != "terminated":
                sys.exit(f"alarm {k}: reflex logged the terminate done, but {victim} is {st}; log: {log_path}")
            latencies.append((done_at - t0) * 1000)
            # What the Auto Scaling group would do: the terminated instance
            # leaves the load balancer (moto keeps it as OutOfService, and
            # the max_unhealthy guard would stop the run half-way).
            elb.deregister_instances_from_load_balancer(LoadBalancerName=ELB, Instances=[{"InstanceId": victim}])
        print(f"alarms:                          {a.alarms}")
        print(f"start-up to first ReceiveMessage: {startup} ms")
        print(f"idle RSS:                        {rss:.1f} MiB "
              f"(private {rss_split[0]:.1f} MiB, file-backed {rss_split[1]:.1f} MiB: mostly the binary's code)")
        print(f"idle CPU over {IDLE_SECONDS} s:              {idle_cpu * 1000:.0f} ms")
        print(f"published -> terminated (reflex's log, checked on EC2): "
              f"p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")
        if os.environ.get("REFLEX_BENCH_SHOW"):
            print("own_ms (in order):", [round(x, 3) for x in own])
        if own:
            print(f"reflex own processing per message (excl. AWS calls): "
                  f"p50 {pct(own, 50):.3f} ms, p99 {pct(own, 99):.3f} ms, max {max(own):.3f} ms over {len(own)} messages")
        if a.drain:
            reflex.send_signal(signal.SIGTERM)
            reflex.wait(timeout=40)
            for level in ("info", "warn"):
                cpu, wall, lines, dead, calls = drain(a, env, work, sqs, sns, dlq, level, a.drain)
                print(f"drain {a.drain} messages matching no rule, log level {level} ({lines} log lines): "
                      f"CPU {cpu * 1e6 / a.drain:.0f} us per message ({cpu:.2f} s), wall {wall:.2f} s, "
                      f"{a.drain / wall:.0f} msgs/s, dead-lettered {dead}")
                print("  AWS calls: " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items())))
    finally:
        if reflex and reflex.poll() is None:
            reflex.send_signal(signal.SIGTERM)
            reflex.wait(timeout=40)
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
