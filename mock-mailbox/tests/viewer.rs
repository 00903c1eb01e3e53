//! The web viewer at /ui/, through the router without a socket: who gets in, what the
//! pages show, that everything from a message is escaped, that a message's HTML runs
//! under a sandbox and that attachments download under safe names with their bytes.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use common::*;
use mock_common::AdminToken;
use mock_mailbox::Config;
use sha2::Digest;

/// Logs in with the admin token and returns the `Cookie` header value.
async fn sign_in(fake: &Fake) -> String {
    let answer = login(fake, ADMIN).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap().to_owned();
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn login(fake: &Fake, token: &str) -> Answer {
    fake.send(
        Request::post("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={}", urlencode(token))))
            .unwrap(),
    )
    .await
}

async fn view(fake: &Fake, cookie: Option<&str>, uri: &str) -> Answer {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    fake.send(request.body(Body::empty()).unwrap()).await
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// A message with an encoded subject, a hostile display name and subject, an HTML part
/// with a script and an `onerror` handler, and an attachment with a hostile name.
fn hostile_mime() -> Vec<u8> {
    b"From: \"<script>alert('from')</script>\" <mallory@contoso.example>\r\n\
To: Alice Archer <alice@contoso.example>\r\n\
Subject: =?utf-8?B?Q2Fmw6kgPGltZyBzcmM9eCBvbmVycm9yPWFsZXJ0KDEpPg==?=\r\n\
Date: Sun, 22 Nov 2026 09:00:01 +0000\r\n\
Message-ID: <hostile@x>\r\n\
X-WhatsApp-Revision: 2\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
The quarterly figures are attached.\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>The quarterly figures</p><script>parent.document.title='pwned'</script><img src=x onerror=\"parent.document.title='pwned'\">\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"../../evil\xe2\x80\xaefdp.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n\
--b1--\r\n"
        .to_vec()
}

#[tokio::test]
async fn anonymous_visits_see_the_login_page_and_no_data() {
    let fake = fake();
    let token = fake.token().await;
    fake.import(&token, ALICE, "inbox", &mime("secret@x", "Merger talks"))
        .await;
    let id = fake.state.inspect_messages(ALICE, false).unwrap()[0]
        .id
        .clone();
    let base = format!("/ui/mailboxes/{ALICE}");
    for uri in [
        "/ui/".to_owned(),
        base.clone(),
        format!("{base}/search?q=Merger"),
        format!("{base}/recoverable"),
        format!("{base}/messages/{id}"),
        format!("{base}/messages/{id}/body"),
        format!("{base}/messages/{id}/raw"),
        format!("{base}/messages/{id}/attachments/0"),
    ] {
        for cookie in [None, Some("mock_mailbox_viewer=forged"), Some("other=1")] {
            let answer = view(&fake, cookie, &uri).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri} {cookie:?}");
            let page = text(&answer);
            assert!(page.contains("name=\"token\""), "the login form: {page}");
            for data in ["Merger", "Alice Archer", ALICE, "secret@x"] {
                assert!(!page.contains(data), "{uri} shows {data}");
            }
        }
    }
    // A Graph token is not a viewer session.
    let answer = fake
        .send(
            Request::get("/ui/")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("cookie", format!("mock_mailbox_viewer={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_an_admin_token_the_viewer_is_off() {
    let fake = fake_from(&directory(), Config::default(), AdminToken::disabled());
    for uri in ["/ui/", "/ui/login", &format!("/ui/mailboxes/{ALICE}")] {
        let answer = view(&fake, None, uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(text(&answer).contains("The viewer is off"));
    }
    let answer = login(&fake, "").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(!answer.headers.contains_key("set-cookie"));
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_logout_and_time_end() {
    let fake = fake();
    let wrong = login(&fake, "not-the-admin-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers.contains_key("set-cookie"));
    assert!(text(&wrong).contains("not this mock-mailbox's admin token"));
    let answer = login(&fake, ADMIN).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers["location"], "/ui/");
    let set_cookie = answer.headers["set-cookie"].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains(ADMIN), "the token is not the cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        view(&fake, Some(&cookie), "/ui/").await.status,
        StatusCode::OK
    );

    // Logging out ends that session at once.
    let out = fake
        .send(
            Request::post("/ui/logout")
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        view(&fake, Some(&cookie), "/ui/").await.status,
        StatusCode::UNAUTHORIZED
    );

    // A session lasts eight hours on the fake's clock.
    let cookie = sign_in(&fake).await;
    fake.clock
        .advance(Duration::hours(8) - Duration::seconds(1));
    assert_eq!(
        view(&fake, Some(&cookie), "/ui/").await.status,
        StatusCode::OK
    );
    fake.clock.advance(Duration::seconds(1));
    assert_eq!(
        view(&fake, Some(&cookie), "/ui/").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pages_show_counts_and_decoded_subjects_and_escape_what_messages_say() {
    let fake = fake();
    let token = fake.token().await;
    let archive = fake.folder(&token, ALICE, "WhatsApp Archiver").await;
    for i in 0..3 {
        fake.import(
            &token,
            ALICE,
            &archive,
            &mime(&format!("{i}@x"), &format!("Chat {i}")),
        )
        .await;
    }
    fake.import(&token, ALICE, &archive, &hostile_mime()).await;
    let cookie = sign_in(&fake).await;

    let home = view(&fake, Some(&cookie), "/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    let policy = home.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(!policy.contains("script-src"), "no script at all: {policy}");
    assert!(policy.contains("frame-ancestors 'none'"));
    assert_eq!(home.headers["x-content-type-options"], "nosniff");
    let page = text(&home);
    assert!(page.contains("Alice Archer"));
    assert!(page.contains("data-messages=\"4\""), "{page}");
    assert!(page.contains("no mailbox"), "Frank has none");

    let folders = text(&view(&fake, Some(&cookie), &format!("/ui/mailboxes/{ALICE}")).await);
    assert!(folders.contains("WhatsApp Archiver"));
    assert!(folders.contains(&format!("/folders/{archive}")));

    let list = view(
        &fake,
        Some(&cookie),
        &format!("/ui/mailboxes/{ALICE}/folders/{archive}"),
    )
    .await;
    let list = text(&list);
    assert!(list.contains("4 messages"), "{list}");
    assert!(list.contains("Chat 2"));
    // The subject is decoded, and shown as text.
    assert!(
        list.contains("Café &lt;img src=x onerror=alert(1)&gt;"),
        "{list}"
    );
    assert!(list.contains("revised 2"), "the revision marker");
    assert!(list.contains("1 file<"), "the attachment marker");
    for raw in ["<script", "<img", "onerror=alert(1)>"] {
        assert!(!list.contains(raw), "{raw} is not escaped");
    }

    let hostile = fake
        .state
        .inspect_messages(ALICE, false)
        .unwrap()
        .into_iter()
        .find(|m| m.internet_message_id.as_deref() == Some("<hostile@x>"))
        .unwrap();
    let page = view(
        &fake,
        Some(&cookie),
        &format!("/ui/mailboxes/{ALICE}/messages/{}", hostile.id),
    )
    .await;
    let page = text(&page);
    assert!(
        page.contains("&lt;script&gt;alert('from')&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("The quarterly figures are attached."));
    assert!(!page.contains("<script"));
    assert!(
        page.contains("<iframe class=\"body\" id=\"html-body\" sandbox=\"\""),
        "{page}"
    );
}

#[tokio::test]
async fn an_html_body_is_served_under_a_sandbox_and_attachments_under_safe_names() {
    let fake = fake();
    let token = fake.token().await;
    fake.import(&token, ALICE, "inbox", &hostile_mime()).await;
    let cookie = sign_in(&fake).await;
    let message = fake.state.inspect_messages(ALICE, false).unwrap().remove(0);
    let base = format!("/ui/mailboxes/{ALICE}/messages/{}", message.id);

    let body = view(&fake, Some(&cookie), &format!("{base}/body")).await;
    assert_eq!(body.status, StatusCode::OK);
    let policy = body.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("sandbox;"), "{policy}");
    assert!(policy.contains("default-src 'none'"));
    assert!(!policy.contains("script-src"));
    assert!(
        text(&body).contains("<script>"),
        "the body itself, as it came"
    );

    let download = view(&fake, Some(&cookie), &format!("{base}/attachments/0")).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers["content-type"], "application/octet-stream");
    assert_eq!(download.headers["x-content-type-options"], "nosniff");
    let disposition = download.headers["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition, "attachment; filename=\"evilfdp.exe\"; filename*=UTF-8''evilfdp.exe",
        "no path, no right-to-left override"
    );
    let sha: String = sha2::Sha256::digest(&download.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, message.attachments[0].sha256);
    assert!(download.body.starts_with(b"%PDF-1.4"));

    let raw = view(&fake, Some(&cookie), &format!("{base}/raw")).await;
    assert_eq!(raw.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(raw.body, hostile_mime());

    let missing = view(&fake, Some(&cookie), &format!("{base}/attachments/1")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[test]
fn attachment_names_are_made_safe() {
    use mock_mailbox::ui::content_disposition;
    assert_eq!(
        content_disposition("Q3 figures.pdf", 0),
        "attachment; filename=\"Q3 figures.pdf\"; filename*=UTF-8''Q3%20figures.pdf"
    );
    assert_eq!(
        content_disposition("Ünïcødé 📎.jpg", 0),
        "attachment; filename=\"_n_c_d_ _.jpg\"; filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%F0%9F%93%8E.jpg"
    );
    assert_eq!(
        content_disposition("..\\..\\.bashrc", 2),
        "attachment; filename=\"bashrc\"; filename*=UTF-8''bashrc"
    );
    assert_eq!(
        content_disposition("\"\r\n", 2),
        "attachment; filename=\"attachment-3\"; filename*=UTF-8''%22"
    );
}

#[tokio::test]
async fn search_finds_by_a_word_of_the_body_and_the_hold_view_shows_deleted_items() {
    let fake = fake();
    let token = fake.token().await;
    fake.import(&token, BOB, "inbox", &hostile_mime()).await;
    fake.import(&token, BOB, "inbox", &mime("plain@x", "Lunch"))
        .await;
    let cookie = sign_in(&fake).await;
    let base = format!("/ui/mailboxes/{BOB}");

    let found = text(&view(&fake, Some(&cookie), &format!("{base}/search?q=quarterly")).await);
    assert!(found.contains("1 message<"), "{found}");
    assert!(found.contains("Café"));
    assert!(!found.contains("Lunch"));
    let kql = text(
        &view(
            &fake,
            Some(&cookie),
            &format!("{base}/search?q=subject%3Alunch"),
        )
        .await,
    );
    assert!(kql.contains("Lunch") && !kql.contains("Café"), "{kql}");
    let bad = view(
        &fake,
        Some(&cookie),
        &format!("{base}/search?q=received%3Etomorrow"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(text(&bad).contains("class=\"error\""));

    // Bob is on Litigation Hold: a deleted message stays, in the hold view.
    let lunch = fake
        .state
        .inspect_messages(BOB, false)
        .unwrap()
        .into_iter()
        .find(|m| m.subject == "Lunch")
        .unwrap();
    let deleted = fake
        .send(
            Request::delete(format!("/v1.0/users/{BOB}/messages/{}", lunch.id))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let hold = text(&view(&fake, Some(&cookie), &format!("{base}/recoverable")).await);
    assert!(
        hold.contains("Lunch") && hold.contains(">deleted<"),
        "{hold}"
    );
    let opened = text(
        &view(
            &fake,
            Some(&cookie),
            &format!("{base}/messages/{}", lunch.id),
        )
        .await,
    );
    assert!(opened.contains("Recoverable Items"));
}

#[tokio::test]
async fn a_long_folder_is_paged() {
    let fake = fake();
    let token = fake.token().await;
    for i in 0..60 {
        fake.import(
            &token,
            ALICE,
            "inbox",
            &mime(&format!("{i}@x"), &format!("Note {i}")),
        )
        .await;
    }
    let cookie = sign_in(&fake).await;
    let inbox = fake
        .state
        .inspect_folders(ALICE)
        .unwrap()
        .into_iter()
        .find(|f| f.display_name == "Inbox")
        .unwrap()
        .id;
    let uri = format!("/ui/mailboxes/{ALICE}/folders/{inbox}");
    let rows = |page: &str| page.matches("/messages/").count();
    let first = text(&view(&fake, Some(&cookie), &uri).await);
    assert_eq!(rows(&first), 50);
    assert!(first.contains("Page 1 of 2") && first.contains("page=2"));
    let second = text(&view(&fake, Some(&cookie), &format!("{uri}?page=2")).await);
    assert_eq!(rows(&second), 10);
    let mut seen: Vec<String> = [first, second]
        .iter()
        .flat_map(|p| {
            p.split("Note ")
                .skip(1)
                .map(|s| s.split('<').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60, "every message on exactly one page");
}
