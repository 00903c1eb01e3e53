#!/usr/bin/env python3
"""A minimal connector that meets the core rules on the kit's planted-mistakes scenario:
naive_connector.py with its five mistakes mended, and nothing more.

  1. every distinct mailbox of the sender and the recipients gets the message;
  2. a mapping-file address counts only if it names a user with a mailbox; else the
     email property; else the participant has none (S9);
  3. the mailbox is searched for the Message-ID before a message is sent, and again
     after any answer but 201 (a window taken twice, a lost answer: nothing twice);
  4. a file above the limit, or one whose message would be above it, is left out with a
     note in the body, and the rest of the item is imported (S11);
  5. an existing archive folder is found by name; the Inbox is never used.

What it leaves out, and a production connector needs: revisions of an id, the look-back
for items the provider shows late, the quarantine of unreadable items, a run report,
crash-safe state beyond the last window's end, throttling budgets, large messages by
upload session. The kit's other scenarios show each of them.

  scenarios run scenarios/conformance/planted-mistakes.json \\
      --connector-cmd 'python3 scenarios/conformance/examples/minimal_connector.py'
"""

import sys
import urllib.parse

import common
from common import FOLDER, log

HOST = "minimal-connector.invalid"


def main():
    since, until = common.window()
    provider, graph = common.Provider(), common.Graph()
    mapping = common.read_mapping_file()
    automatic = common.env("AUTOMATIC_MAPPING") == "true"
    limit = int(common.env("SIZE_LIMIT_BYTES"))
    has_mailbox, folders = {}, {}
    failed = 0

    def mailbox_ok(upn):
        if upn not in has_mailbox:
            answer = graph.call("GET", graph.user_path(upn) + "/mailFolders/inbox")
            has_mailbox[upn] = answer.status == 200
        return has_mailbox[upn]

    def mailbox_of(participant):
        candidates = [mapping.get(common.digits(participant.get("phone")))]
        if automatic:
            candidates.append((participant.get("user_email") or "").strip().lower())
        return next((c for c in candidates if c and mailbox_ok(c)), None)

    def folder_of(upn):
        if upn not in folders:
            quoted = urllib.parse.quote(f"displayName eq '{FOLDER}'")
            path = graph.user_path(upn) + "/mailFolders?$filter=" + quoted
            found = graph.call("GET", path).json().get("value", [])
            if found:
                folders[upn] = found[0]["id"]
            else:
                body = common.json.dumps({"displayName": FOLDER}).encode()
                created = graph.call("POST", graph.user_path(upn) + "/mailFolders", body)
                if created.status == 409:  # made meanwhile by another run: look again
                    del folders[upn]
                    return folder_of(upn)
                folders[upn] = created.json()["id"]
        return folders[upn]

    def landed(upn, message_id):
        quoted = urllib.parse.quote(f"internetMessageId eq '{message_id}'")
        path = f"{graph.user_path(upn)}/mailFolders/{folder_of(upn)}/messages?$filter={quoted}"
        answer = graph.call("GET", path)
        return answer.status == 200 and bool(answer.json().get("value"))

    def deliver(upn, mime, message_id):
        # A window taken again (or a run after a lost state) must not import twice.
        if landed(upn, message_id):
            return True
        for _ in range(4):
            answer = graph.import_mime(upn, folder_of(upn), mime)
            if answer.status == 201 or landed(upn, message_id):
                return True
            log(f"{message_id} to {upn}: {answer.status}, not there: sending again")
        return False

    def deliver_item(item):
        """Delivers one item to each of its mailboxes: how many deliveries failed."""
        participants = [item["from"], *item["to"]]
        mailboxes = sorted({m for m in map(mailbox_of, participants) if m})
        if not mailboxes:
            log(f"{item['id']}: no participant has a mailbox (unmapped)")
            return 0
        attachment, fetched, note = common.the_attachment(item), None, None
        if attachment:
            # base64 makes a file a third larger, and its lines end in CRLF.
            encoded = (attachment["size"] + 2) // 3 * 4 * 78 // 76
            if attachment["size"] > limit or encoded + 64 * 1024 > limit:
                note = f"[Attachment left out: {attachment.get('file_name')}, {attachment['size']} bytes, above the size limit]"
            else:
                fetched = (provider.attachment(attachment["id"]), attachment)
        mime = common.build_message(item, HOST, fetched, note)
        message_id = common.message_id(item["id"], HOST)
        return sum(not deliver(upn, mime, message_id) for upn in mailboxes)

    for item in provider.items(since, until):
        try:
            failed += deliver_item(item)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # One item that cannot be read is no reason to stop reading the others.
            name = item.get("id") if isinstance(item, dict) else repr(item)[:80]
            log(f"{name}: unreadable ({e!r}), left for a person")
    if failed:
        log(f"{failed} deliveries failed: the window stays open for the next run")
        sys.exit(4)
    common.window_done(until)

if __name__ == "__main__":
    main()
