"""What both example connectors share: the contract's environment, HTTP with Python's
standard library, the provider's listing, Graph's token, and the message for an item.

Only the decisions the conformance kit judges differ between the two examples; they
live in naive_connector.py and minimal_connector.py.
"""

import base64
import email.policy
import email.utils
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

FOLDER = "WhatsApp Archiver"


def env(name, default=None):
    """A CONNECTOR_* variable of the contract (docs/conformance.md)."""
    value = os.environ.get("CONNECTOR_" + name, default)
    if value is None:
        sys.exit(f"CONNECTOR_{name} is not set: run me through scenarios --connector-cmd")
    return value


def log(*words):
    print(*words, file=sys.stderr, flush=True)


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def http(method, url, body=None, headers=None):
    """One request; every status comes back as an Answer (no exception for 4xx/5xx)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


def wait_after(answer):
    """Honours Retry-After, cut to the harness's cap (its fakes' time stands still)."""
    seconds = float(answer.headers.get("Retry-After") or 1)
    time.sleep(min(seconds, int(env("RETRY_CAP_MS", "1000")) / 1000))


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def window():
    """since and until: the operator's since, else where the last run ended, else the
    day before until."""
    until = parse_time(env("UNTIL"))
    state = os.path.join(env("WORK_DIR"), "state.json")
    since = os.environ.get("CONNECTOR_SINCE")
    if since:
        since = parse_time(since)
    elif os.path.exists(state):
        with open(state) as f:
            since = parse_time(json.load(f)["until"])
    else:
        since = until - timedelta(days=1)
    return since, until


def window_done(until):
    state = os.path.join(env("WORK_DIR"), "state.json")
    with open(state, "w") as f:
        json.dump({"until": until.strftime("%Y-%m-%dT%H:%M:%SZ")}, f)


class Provider:
    def __init__(self):
        self.url = env("PROVIDER_URL")
        body = json.dumps(
            {"username": env("PROVIDER_USERNAME"), "password": env("PROVIDER_PASSWORD")}
        ).encode()
        answer = self.call("POST", "/api/v1/auth/token", body, {"Content-Type": "application/json"})
        self.token = answer.json()["access_token"]

    def call(self, method, path, body=None, headers=None):
        for _ in range(8):
            answer = http(method, self.url + path, body, headers)
            if answer.status in (429, 503):
                wait_after(answer)
                continue
            if answer.status != 200:
                raise RuntimeError(f"provider {path}: {answer.status} {answer.body[:200]!r}")
            return answer
        raise RuntimeError(f"provider {path}: still unavailable")

    def items(self, since, until):
        auth = {"Authorization": "Bearer " + self.token}
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        query = urllib.parse.urlencode(
            {"since": since.strftime(fmt), "until": until.strftime(fmt), "page_size": 100}
        )
        page = self.call("GET", "/api/v1/items?" + query, headers=auth).json()
        while True:
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            query = urllib.parse.urlencode({"cursor": page["next_cursor"]})
            page = self.call("GET", "/api/v1/items?" + query, headers=auth).json()

    def attachment(self, attachment_id):
        auth = {"Authorization": "Bearer " + self.token}
        path = "/api/v1/attachments/" + urllib.parse.quote(attachment_id, safe="")
        return self.call("GET", path, headers=auth).body


class Graph:
    def __init__(self):
        self.url = env("GRAPH_URL")
        form = urllib.parse.urlencode(
            {
                "client_id": env("CLIENT_ID"),
                "client_secret": env("CLIENT_SECRET"),
                "scope": "https://graph.microsoft.com/.default",
                "grant_type": "client_credentials",
            }
        ).encode()
        token_url = f"{env('LOGIN_URL')}/{env('TENANT')}/oauth2/v2.0/token"
        answer = http("POST", token_url, form, {"Content-Type": "application/x-www-form-urlencoded"})
        self.token = answer.json()["access_token"]

    def call(self, method, path, body=None, content_type="application/json"):
        """A Graph request; waits out throttling (429) and brief unavailability (503),
        which Graph answers before it does anything."""
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": content_type}
        while True:
            answer = http(method, self.url + path, body, headers)
            if answer.status in (429, 503):
                wait_after(answer)
                continue
            return answer

    def user_path(self, upn):
        return "/v1.0/users/" + urllib.parse.quote(upn, safe="@")

    def import_mime(self, upn, folder_id, mime):
        path = f"/beta/users/{urllib.parse.quote(upn, safe='@')}/mailFolders/{folder_id}/importMime"
        return self.call("POST", path, base64.b64encode(mime), "text/plain")


def message_id(item_id, host):
    """The Message-ID the item id gives (docs/email-format.md): the id itself when it is
    plain, else x- and its UTF-8 bytes in hex. Only the host is ours to choose."""
    plain = (
        0 < len(item_id) <= 200
        and re.fullmatch(r"[A-Za-z0-9._-]+", item_id)
        and not item_id.startswith("x-")
        and not item_id.startswith(".")
        and not item_id.endswith(".")
        and ".." not in item_id
    )
    local = item_id if plain else "x-" + item_id.encode().hex()
    return f"<{local}@{host}>"


def address(participant):
    """A participant's address in From/To: the email property, else the number."""
    if participant.get("user_email"):
        return participant["user_email"].strip().lower()
    return re.sub(r"\D", "", participant.get("phone") or "") + "@whatsapp.invalid"


def digits(phone):
    d = re.sub(r"\D", "", phone or "")
    return d[2:] if (phone or "").strip().startswith("00") else d


def read_mapping_file():
    """The mapping file (S8): digits of the number -> address."""
    path = os.environ.get("CONNECTOR_MAPPING_FILE")
    mapping = {}
    if path:
        with open(path, encoding="utf-8-sig") as f:
            for line in f.read().splitlines()[1:]:
                if "," in line:
                    number, addr = line.rsplit(",", 1)
                    mapping[digits(number)] = addr.strip().lower()
    return mapping


def build_message(item, host, attachment=None, note=None):
    """The message for one item: sender, recipients, send time, Message-ID, the text."""
    kind = item["type"]
    body = item.get(kind) if isinstance(item.get(kind), dict) else {}
    lines = [item["from"].get("name") or ""]
    if item["conversation"].get("type") == "group" and item["conversation"].get("name"):
        lines.append("Group: " + item["conversation"]["name"])
    if kind == "text":
        lines.append(item.get("text") or "")
    for field in ("caption", "text"):
        if isinstance(body.get(field), str):
            lines.append(body[field])
    if note:
        lines.append(note)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = address(item["from"])
    message["To"] = ", ".join(address(p) for p in item["to"]) or "undisclosed-recipients:;"
    message["Date"] = email.utils.format_datetime(parse_time(item["sent_at"]).replace(microsecond=0))
    message["Message-ID"] = message_id(item["id"], host)
    message["Subject"] = f"WhatsApp {kind} from {item['from'].get('name') or 'unknown'}"
    message.set_content("\n".join(lines))
    if attachment is not None:
        data, meta = attachment
        maintype, _, subtype = (meta.get("content_type") or "application/octet-stream").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=meta.get("file_name") or "file")
    return message.as_bytes()


def the_attachment(item):
    body = item.get(item["type"])
    return body.get("attachment") if isinstance(body, dict) else None
