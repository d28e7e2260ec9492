"""Writes the inputs of the replay benchmark (see scripts/bench-replay).

- DIR/rules-N/bench.toml for N in 10, 1000, 10000: rule sets shaped like a
  large deployment's, the same shapes as benches/decode_match.rs (exact alarm
  names, name prefixes and globs, namespace + metric + dimension, a
  catch-all notify rule).
- DIR/messages.jsonl: MESSAGES SNS-wrapped CloudWatch alarm notifications,
  one per line, about 2 KB each, built from the ELB fixture with a different
  alarm, load balancer and message id on each line.
"""
import json
import sys
from pathlib import Path

METRICS = [
    ("AWS/ELB", "UnHealthyHostCount", "LoadBalancerName"),
    ("AWS/ELB", "HTTPCode_Backend_5XX", "LoadBalancerName"),
    ("AWS/ELB", "Latency", "LoadBalancerName"),
    ("AWS/EC2", "StatusCheckFailed_System", "InstanceId"),
    ("AWS/EC2", "StatusCheckFailed_Instance", "InstanceId"),
    ("AWS/EC2", "CPUUtilization", "InstanceId"),
    ("AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup"),
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName"),
    ("AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier"),
    ("AWS/Lambda", "Errors", "FunctionName"),
    ("AWS/DynamoDB", "ThrottledRequests", "TableName"),
]

HEAD = '''
[[rule]]
name = "terminate-web"
[rule.match]
alarm_name = { suffix = "-unhealthy-hosts" }
new_state = "ALARM"
old_state = { anything_but = "ALARM" }
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_percent = 25
min_in_service = 2
require_tag = { key = "reflex:managed", value = "true" }
confirm_after = "30s"
[rule.limits]
cooldown = "10m"
rate = "5/hour"

[[rule]]
name = "notify-all"
[rule.match]
account = "123456789012"
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
'''


def rule(i):
    kind = i % 20
    if kind <= 14:
        if i % 3 == 0:
            return f'''
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = "svc-{i}-unhealthy-hosts"
new_state = "ALARM"
dimensions.LoadBalancerName = {{ exists = true }}
[[rule.actions]]
type = "terminate_out_of_service"
[rule.limits]
cooldown = "10m"
'''
        if i % 3 == 1:
            return f'''
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = ["status-i-{i:017x}", "status-i-{i + 1_000_000:017x}"]
metric_name = "StatusCheckFailed_System"
dimensions.InstanceId = {{ exists = true }}
[[rule.actions]]
type = "reboot_instance"
'''
        return f'''
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = "queue-{i}-backlog"
new_state = ["ALARM", "OK"]
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:team-{i}"
subject = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
'''
    if kind == 15:
        return f'''
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = {{ prefix = "team{i}-" }}
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:team-{i}"
'''
    if kind == 16:
        return f'''
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = {{ glob = "svc{i}-*-unhealthy-*" }}
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:svc-{i}"
'''
    ns, metric, dim = METRICS[i % len(METRICS)]
    return f'''
[[rule]]
name = "r{i}"
[rule.match]
namespace = "{ns}"
metric_name = "{metric}"
dimensions.{dim} = "res-{i}"
new_state = "ALARM"
[[rule.actions]]
type = "put_metric"
namespace = "Reflex/Bench"
metric_name = "Matched"
'''


def main():
    out = Path(sys.argv[1])
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    root = Path(__file__).resolve().parent.parent
    for n in (10, 1000, 10000):
        d = out / f"rules-{n}"
        d.mkdir(parents=True, exist_ok=True)
        text = HEAD + "".join(rule(i) for i in range(n - 2))
        (d / "bench.toml").write_text(text)
    envelope = json.loads((root / "tests/fixtures/sns/elb-unhealthy-hosts.json").read_text())
    alarm = json.loads(envelope["Message"])
    with open(out / "messages.jsonl", "w") as f:
        for i in range(messages):
            name = f"web{i % 5000}-unhealthy-hosts"
            alarm["AlarmName"] = name
            alarm["AlarmArn"] = f"arn:aws:cloudwatch:eu-south-1:123456789012:alarm:{name}"
            alarm["Trigger"]["Dimensions"] = [{"value": f"web{i % 5000}", "name": "LoadBalancerName"}]
            envelope["MessageId"] = f"{i:08x}-b1f0-42c0-89ee-ff89935c1296"
            envelope["Subject"] = f'ALARM: "{name}" in EU (Milan)'
            envelope["Message"] = json.dumps(alarm, separators=(",", ":"))
            f.write(json.dumps(envelope) + "\n")


if __name__ == "__main__":
    main()
