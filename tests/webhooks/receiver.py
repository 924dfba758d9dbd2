#!/usr/bin/env python3
"""A webhook receiver for the tests, written with the Standard Webhooks
specification's own library (`standardwebhooks`), not ours.

    receiver.py SECRET FAIL_RATE STALL_RATE STALL_SECONDS

It listens on a free loopback port and prints {"port": N} first. For each
request it verifies the signature, then, at random, answers 500
(FAIL_RATE), or answers only after STALL_SECONDS (STALL_RATE: past the
sender's timeout), or answers 200 at once; and prints one JSON line per
request: its path, whether it verified, the `webhook-id`, the body and the
outcome ("fail", "stall" or "ok"). An "ok" line is printed before the answer
is sent.
"""
import http.server
import json
import random
import sys
import threading
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET, FAIL, STALL, STALL_SECONDS = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
HOOK = Webhook(SECRET)
LOCK = threading.Lock()


def emit(record):
    with LOCK:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = dict(self.headers.items())
        try:
            event = HOOK.verify(body, headers)
        except WebhookVerificationError as e:
            emit({"path": self.path, "verified": False, "error": str(e)})
            self.send_response(400)
            self.end_headers()
            return
        roll = random.random()
        outcome = "fail" if roll < FAIL else "stall" if roll < FAIL + STALL else "ok"
        if outcome == "stall":
            time.sleep(STALL_SECONDS)
        emit({"path": self.path, "verified": True, "id": headers.get("webhook-id"),
              "event": event, "outcome": outcome})
        try:
            self.send_response(500 if outcome == "fail" else 200)
            self.end_headers()
        except OSError:
            pass  # the sender gave up (a stall)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
