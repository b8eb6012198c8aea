"""A webhook receiver for the tests.

Verifies every delivery with the PyPI `standardwebhooks` package (an
implementation of the specification independent of Roster's signer), and
checks that a forged copy (one byte of the body changed) fails
verification. Listens on PORT (default: any free port) and prints
`listening PORT` once, then one JSON line per request:
{id, type, verified, forged_verified, status}. The secret is read from the
file named by WEBHOOK_SECRET_FILE at each request (the test writes it once
the endpoint exists); the first FAIL_FIRST requests are answered 500.
With HOLD_FILE set, each request is held until that file exists (a slow
receiver); each line then also says how many requests were in hand at once
at most so far (`max_in_flight`); with ANNOUNCE_HELD set too, a line
{"arrived": webhook-id} is printed as each request comes in, before it is
held. Each line carries the parsed body too.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRET_FILE = os.environ["WEBHOOK_SECRET_FILE"]
FAIL_FIRST = int(os.environ.get("FAIL_FIRST", "0"))
HOLD_FILE = os.environ.get("HOLD_FILE")
ANNOUNCE_HELD = bool(os.environ.get("ANNOUNCE_HELD"))
lock = threading.Lock()
seen = 0
in_flight = 0
max_in_flight = 0


def verified(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
        return True
    except Exception:  # the library raises WebhookVerificationError
        return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen, in_flight, max_in_flight
        with lock:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
        try:
            self.answer()
        finally:
            with lock:
                in_flight -= 1

    def answer(self):
        global seen
        if HOLD_FILE:
            if ANNOUNCE_HELD:
                with lock:
                    print(json.dumps({"arrived": self.headers.get("webhook-id")}), flush=True)
            while not os.path.exists(HOLD_FILE):
                time.sleep(0.01)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with open(SECRET_FILE) as f:
            secret = f.read().strip()
        forged = body.replace(b"\"", b"'", 1)
        with lock:
            seen += 1
            status = 500 if seen <= FAIL_FIRST else 200
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        kind = parsed.get("type")
        line = {
            "id": headers.get("webhook-id"),
            "type": kind,
            "verified": verified(secret, body, headers),
            "forged_verified": verified(secret, forged, headers),
            "status": status,
            "max_in_flight": max_in_flight,
            "body": parsed,
        }
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"try again later")
        with lock:
            print(json.dumps(line), flush=True)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
