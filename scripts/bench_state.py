"""The state store's cost per message, for each backend (see scripts/bench-state).

Starts a single-threaded moto for DynamoDB on 127.0.0.1, creates the table
with the store's layout, and runs the state_cost example once per backend.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import boto3

SINGLE_THREADED_MOTO = """import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False, request_handler=MotoRequestHandler)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--messages", type=int, default=500)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="reflex-bench-moto-", suffix=".log", delete=False)
    recording = tempfile.NamedTemporaryFile(prefix="reflex-bench-recording-", delete=False).name
    moto = subprocess.Popen([".venv/bin/python", "-c", SINGLE_THREADED_MOTO, "127.0.0.1", str(port)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, MOTO_RECORDER_FILEPATH=recording))
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or moto.poll() is not None:
                    sys.exit(f"moto did not start; see {log.name}")
                time.sleep(0.2)
        env = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB=endpoint, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, REFLEX_STATE_TABLE="reflex-bench")
        env.pop("AWS_PROFILE", None)
        env.pop("AWS_ENDPOINT_URL", None)
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        ddb.create_table(
            TableName="reflex-bench", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        import json
        import urllib.request
        for backend in ("memory", "local", "dynamodb"):
            if backend == "dynamodb":
                urllib.request.urlopen(urllib.request.Request(
                    f"{endpoint}/moto-api/recorder/start-recording", data=b"", method="POST"), timeout=5)
            subprocess.run([args.bin, backend, str(args.messages)], env=env, check=True)
        # DynamoDB API calls, from moto's record of the requests it served
        # (the example also handles 20 warm-up messages).
        ops = {}
        for line in open(recording):
            try:
                target = json.loads(line).get("headers", {}).get("X-Amz-Target", "")
            except ValueError:
                continue
            op = target.rsplit(".", 1)[-1] or "?"
            ops[op] = ops.get(op, 0) + 1
        handled = args.messages + 20
        print(f"DynamoDB API calls per message: {sum(ops.values()) / handled:.1f} "
              f"({', '.join(f'{k} {v / handled:.1f}' for k, v in sorted(ops.items()))})")
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        os.unlink(log.name)
        os.unlink(recording)


if __name__ == "__main__":
    main()
