#!/usr/bin/env python3
"""A deliberately naive connector: it runs, it imports, and it makes five mistakes real
connectors make. The conformance kit must find each one (scenarios/tests/conformance.rs):

  1. one message per item, to the sender's mailbox only (every recipient's copy is lost);
  2. a number in the mapping file wins even when its address is no Microsoft 365 user:
     no fall-through to the participant's email property (S9);
  3. a 5xx answer to an import is sent again without looking first: an import that was
     stored but whose answer was lost (a 504) lands twice;
  4. an item whose file is above the size limit is dropped whole, text and all (S11);
  5. when the archive folder already exists (409), the message goes to the Inbox.

Run it as scenarios does:
  scenarios run scenarios/conformance/planted-mistakes.json \\
      --connector-cmd 'python3 scenarios/conformance/examples/naive_connector.py'
"""

import common
from common import FOLDER, log


def main():
    since, until = common.window()
    provider, graph = common.Provider(), common.Graph()
    mapping = common.read_mapping_file()
    limit = int(common.env("SIZE_LIMIT_BYTES"))
    folders = {}

    def folder_of(upn):
        if upn not in folders:
            answer = graph.call("POST", graph.user_path(upn) + "/mailFolders",
                                common.json.dumps({"displayName": FOLDER}).encode())
            # Mistake 5: "it exists" is taken as "use the Inbox".
            folders[upn] = answer.json()["id"] if answer.status == 201 else "inbox"
        return folders[upn]

    for item in provider.items(since, until):
        sender = item["from"]
        # Mistake 2: the file's address, whatever it names; the email property otherwise.
        upn = mapping.get(common.digits(sender.get("phone"))) or sender.get("user_email")
        if not upn:
            continue
        attachment = common.the_attachment(item)
        fetched = None
        if attachment:
            if attachment["size"] > limit:
                # Mistake 4: the whole item goes with its file.
                log(f"{item['id']}: file too large, item skipped")
                continue
            fetched = (provider.attachment(attachment["id"]), attachment)
        mime = common.build_message(item, "naive-connector.invalid", fetched)
        # Mistake 1: the sender's mailbox only.
        for attempt in range(3):
            answer = graph.import_mime(upn, folder_of(upn), mime)
            if answer.status == 201:
                break
            # Mistake 3: sent again without looking whether the last one landed.
            log(f"{item['id']} to {upn}: {answer.status}, sending again")
    common.window_done(until)


if __name__ == "__main__":
    main()
