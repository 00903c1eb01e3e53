"""Microsoft's own Graph SDK for Python against mock-mailbox: a manual faithfulness check.

Not part of CI (which needs only the Rust toolchain). To run it:

    python3 -m venv /tmp/sdk && /tmp/sdk/bin/pip install msgraph-sdk msgraph-beta-sdk
    cargo build -p mock-mailbox
    /tmp/sdk/bin/python docs/sdk-check/graph_sdk_check.py target/debug/mock-mailbox

The token is fetched with a plain POST (MSAL insists on Microsoft's https login hosts);
every Graph call goes through the SDK's own request builders, models and error types.
"""

import asyncio
import base64
import subprocess
import sys

import httpx
from kiota_abstractions.authentication import AnonymousAuthenticationProvider
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.mail_folder import MailFolder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.mail_folders.mail_folders_request_builder import MailFoldersRequestBuilder
from msgraph.generated.users.item.messages.messages_request_builder import MessagesRequestBuilder
from msgraph_beta import GraphServiceClient as BetaClient
from msgraph_beta.generated.models.message import Message as BetaMessage

USER = "alice.archer@contoso.example"


def client(cls, base, token, version):
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider(), client=http)
    adapter.base_url = f"{base}/{version}"
    return cls(request_adapter=adapter)


async def main(binary):
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--directory", "docs/examples/mailbox-directory.json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = proc.stdout.readline().strip().removeprefix("listening on ")
        token = httpx.post(f"{base}/contoso.example/oauth2/v2.0/token", data={
            "client_id": "7c1e5a9b-2f4d-4e8a-b6c3-91d0e2f4a8b5", "client_secret": "example-only-client-secret",
            "scope": "https://graph.microsoft.com/.default", "grant_type": "client_credentials"}).json()["access_token"]
        graph = client(GraphServiceClient, base, token, "v1.0")
        beta = client(BetaClient, base, token, "beta")
        me = graph.users.by_user_id(USER)

        user = await me.get()
        print("user:", user.display_name, user.id)

        folder = await me.mail_folders.post(MailFolder(display_name="WhatsApp Archiver"))
        print("created folder:", folder.display_name, folder.id)
        try:
            await me.mail_folders.post(MailFolder(display_name="WhatsApp Archiver"))
            raise SystemExit("a duplicate folder must be refused")
        except ODataError as e:
            print("duplicate folder refused:", e.response_status_code, e.error.code)

        query = MailFoldersRequestBuilder.MailFoldersRequestBuilderGetQueryParameters(
            filter="displayName eq 'WhatsApp Archiver'")
        found = await me.mail_folders.get(RequestConfiguration(query_parameters=query))
        print("filtered folders:", [f.display_name for f in found.value])

        page = await me.mail_folders.get(RequestConfiguration(
            query_parameters=MailFoldersRequestBuilder.MailFoldersRequestBuilderGetQueryParameters(top=3)))
        names = [f.display_name for f in page.value]
        while page.odata_next_link:
            page = await me.mail_folders.with_url(page.odata_next_link).get()
            names += [f.display_name for f in page.value]
        print("all folders by following @odata.nextLink:", len(names))

        mime = (b"From: Alice Archer <alice.archer@contoso.example>\r\nTo: Bob Baker <bob.baker@contoso.example>\r\n"
                b"Subject: SDK check \xc3\xa9\r\nDate: Sun, 22 Nov 2026 09:00:01 +0000\r\n"
                b"Message-ID: <sdk-check@whatsapp-archiver.invalid>\r\n\r\nhello from the SDK\r\n")
        builder = beta.users.by_user_id(USER).mail_folders.by_mail_folder_id(folder.id).import_mime
        request = builder.to_post_request_information()
        request.set_stream_content(base64.b64encode(mime), "text/plain")
        imported = await builder.request_adapter.send_async(request, BetaMessage, {"XXX": ODataError})
        print("imported:", imported.subject, "isDraft =", imported.is_draft)

        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter="internetMessageId eq '<sdk-check@whatsapp-archiver.invalid>'", select=["id", "subject"])
        hits = await me.messages.get(RequestConfiguration(query_parameters=query))
        print("found by internetMessageId:", [m.subject for m in hits.value])

        raw = await me.messages.by_message_id(imported.id).content.get()
        print("$value is byte for byte what was imported:", raw == mime)

        try:
            await graph.users.by_user_id("nobody@contoso.example").get()
            raise SystemExit("an unknown user must be 404")
        except ODataError as e:
            print("unknown user:", e.response_status_code, e.error.code)
    finally:
        proc.terminate()


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "target/debug/mock-mailbox"))
