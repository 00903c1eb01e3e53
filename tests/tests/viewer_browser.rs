//! The mailbox viewer in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini). The connector imports a recorded scenario, a hostile
//! message is imported beside it, and the test looks as a person would: an anonymous
//! visit sees no data; after signing in, the mailbox list shows what landed; a message
//! opens with its decoded subject; a message's HTML cannot run a script; search finds a
//! message by a word of its body; an attachment downloads with the provider's SHA-256.
//! Each page is saved as a PNG under `target/viewer-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and `chromium-driver`);
//! `.ci/run` installs them. Where they are missing the test says so and passes, unless
//! `CI` is set or `VIEWER_BROWSER=required`: then it fails.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use connector::Connector;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use scenarios::Scenario;
use serde_json::{Value, json};
use tests::{Fakes, fixed_clock, temp_dir};

const ADMIN: &str = "viewer-browser-test-admin-token";
const PAGE_TITLE: &str = "mock-mailbox viewer";

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn required() -> bool {
    std::env::var_os("CI").is_some()
        || std::env::var("VIEWER_BROWSER").is_ok_and(|v| v == "required")
}

/// chromedriver on a port it picks itself (`--port=0`), read from the line it prints
/// once it listens; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(chromedriver: &Path) -> Driver {
    let mut child = Command::new(chromedriver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("chromedriver says which port it listens on before it exits")
            .expect("chromedriver's output is text");
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            break rest.trim_end_matches('.').trim().to_owned();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--no-first-run", "--disable-extensions"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/viewer-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn eval(client: &Client, script: &str) -> Value {
    client.execute(script, Vec::new()).await.unwrap()
}

/// Waits for the element (the page it is on may still be loading), then clicks it.
async fn click(client: &Client, locator: Locator<'_>) {
    client
        .wait()
        .for_element(locator)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the element, once it is there.
async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Types into the element.
async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// A message whose HTML tries to run a script two ways, and whose subject (encoded, as
/// non-ASCII subjects are) and sender name are markup.
fn hostile_mime() -> Vec<u8> {
    b"From: \"<b>Mallory</b>\" <mallory@partner.example>\r\n\
To: Alice Archer <alice@contoso.example>\r\n\
Subject: =?utf-8?B?UmVjaG51bmcgZsO8ciBab8OrIDxpbWcgc3JjPXggb25lcnJvcj1hbGVydCgxKT4=?=\r\n\
Date: Sun, 22 Nov 2026 18:00:00 +0000\r\n\
Message-ID: <hostile-html@partner.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Please find the invoice.\r\n\
--b\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><head><title>body</title></head><body><p>Please find the invoice.</p>\
<script>document.title='pwned by script';try{parent.document.title='pwned by script'}catch(e){}</script>\
<img src=\"x\" onerror=\"document.title='pwned by onerror';try{parent.document.title='pwned by onerror'}catch(e){}\">\
</body></html>\r\n\
--b--\r\n"
        .to_vec()
}

/// Alice's user id, which the viewer's links use.
fn alice_id(fakes: &Fakes) -> String {
    fakes.mailbox.tenants()[0]
        .users
        .iter()
        .find(|u| u.user_principal_name == "alice@contoso.example")
        .unwrap()
        .id
        .clone()
}

/// Imports `mime` into `user`'s Inbox through Graph, as any client would.
async fn import(fakes: &Fakes, user: &str, mime: &[u8]) {
    let token = tests::graph_token(&fakes.mailbox_url, &fakes.tenant)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let answer = http
        .post(format!(
            "{}/beta/users/{user}/mailFolders/inbox/importMime",
            fakes.mailbox_url
        ))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(base64::engine::general_purpose::STANDARD.encode(mime))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_what_landed_and_no_script_from_a_message_runs() {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
    else {
        assert!(
            !required(),
            "chromium and chromedriver are needed for the viewer's browser test: \
             apt-get install -y chromium chromium-driver"
        );
        eprintln!(
            "NOT RUN: the viewer's browser test needs chromium and chromedriver \
             (apt-get install -y chromium chromium-driver); .ci/run installs them"
        );
        return;
    };

    // What the connector delivers for a recorded day, and one hostile message.
    let scenario = Scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/recorded/rule-capture-modes-and-kinds.json"),
    )
    .unwrap();
    let fakes = Fakes::for_scenario_with_viewer(&scenario, ADMIN)
        .await
        .unwrap();
    let work = temp_dir("viewer-browser");
    let config = fakes
        .scenario_config(&scenario, &work.join("state"), None)
        .unwrap();
    let mut runs = Vec::new();
    for run in &scenario.runs {
        fakes.clock.set(run.run_at());
        runs.push(
            Connector::new(config.clone(), fixed_clock(run.run_at()))
                .unwrap()
                .with_retry_delays(Duration::from_millis(1), Duration::from_millis(10))
                .run(run.until, run.since)
                .await
                .unwrap(),
        );
    }
    // The scenario report of this import, as `scenarios run --html` writes it.
    let expected = scenarios::oracle::expected(&scenario);
    let delivered =
        scenarios::reconcile::landed(&scenario, &expected.long_ids, &fakes.mailbox).unwrap();
    let report = scenarios::reconcile::reconcile(
        &scenario,
        &expected,
        &delivered,
        &runs,
        "cargo run --release -p scenarios -- run scenarios/recorded/rule-capture-modes-and-kinds.json".into(),
    );
    let report_page = screenshots().join("scenario-report.html");
    std::fs::write(&report_page, scenarios::html::scenario_report(&[report])).unwrap();
    let alice = "alice@contoso.example";
    import(&fakes, alice, &hostile_mime()).await;
    let landed = fakes.mailbox.inspect_messages(alice, false).unwrap();
    assert!(landed.len() > 5, "the scenario landed in Alice's mailbox");

    let driver = start_driver(&chromedriver);
    let client = browser(&driver, &chromium).await;
    let ui = format!("{}/ui/", fakes.mailbox_url);

    // The steps run in a block whose panic is caught, so that the browser is closed
    // (chromedriver does not take Chromium with it) before the failure is reported.
    let steps = async {
        // 1. Anonymous: the sign-in page, and no data, on any page.
        client.goto(&ui).await.unwrap();
        let page = client.source().await.unwrap();
        assert!(page.contains("name=\"token\""), "the sign-in form");
        for data in ["Alice Archer", alice, "Term sheet"] {
            assert!(!page.contains(data), "an anonymous visit shows {data}");
        }
        snap(&client, "01-sign-in").await;
        let some = &landed[0];
        client
            .goto(&format!("{ui}mailboxes/{alice}/messages/{}/raw", some.id))
            .await
            .unwrap();
        let page = client.source().await.unwrap();
        assert!(!page.contains("Message-ID"), "raw MIME shown anonymously");

        // 2. Sign in: the mailbox list shows what each mailbox holds.
        client.goto(&ui).await.unwrap();
        type_into(&client, "input[name=token]", ADMIN).await;
        click(&client, Locator::Css("form.login button")).await;
        client
            .wait()
            .for_element(Locator::Css("td[data-messages]"))
            .await
            .unwrap();
        let cookie_visible = eval(&client, "return document.cookie").await;
        assert_eq!(cookie_visible, json!(""), "the session cookie is HttpOnly");
        let shown = eval(
            &client,
            "return [...document.querySelectorAll('tr')].filter(r => r.querySelector('td[data-messages]'))\
             .map(r => [r.cells[1].textContent, Number(r.querySelector('td[data-messages]').dataset.messages)])",
        )
        .await;
        let shown: Vec<(String, usize)> = serde_json::from_value(shown).unwrap();
        assert_eq!(
            shown.len(),
            scenario.users.iter().filter(|u| u.mailbox).count()
        );
        for (upn, count) in &shown {
            let expected = fakes.mailbox.inspect_messages(upn, false).unwrap().len();
            assert_eq!(*count, expected, "{upn}");
        }
        assert!(
            shown
                .iter()
                .any(|(upn, n)| upn == alice && *n == landed.len())
        );
        snap(&client, "02-mailboxes").await;

        // 3. Alice's mailbox, then the archive folder, as a person clicks through.
        click(&client, Locator::LinkText("Alice Archer")).await;
        click(&client, Locator::LinkText("WhatsApp Archiver")).await;
        client
            .wait()
            .for_element(Locator::Css("table#messages"))
            .await
            .unwrap();
        let archived = landed
            .iter()
            .filter(|m| m.folder == "WhatsApp Archiver")
            .count();
        let rows = client
            .find_all(Locator::Css("table#messages tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), archived);
        snap(&client, "03-folder").await;

        // 4. A message opens from its row, with its subject and its non-ASCII text.
        let cloud = landed
            .iter()
            .find(|m| m.body_text.contains("Cloud Archiver text"))
            .expect("the Cloud Archiver item landed");
        assert!(!cloud.subject.is_empty());
        let raw_subject = cloud
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Subject"))
            .unwrap();
        // Subjects repeat (one per conversation): the row's link to this message.
        click(
            &client,
            Locator::Css(&format!("a[href$='/messages/{}']", cloud.id)),
        )
        .await;
        let subject = text_of(&client, "h1#subject").await;
        assert_eq!(subject, cloud.subject, "(header {raw_subject:?})");
        let body = text_of(&client, "pre#text-body").await;
        assert!(body.contains("你好"), "{body}");
        snap(&client, "04-message").await;

        // 5. An attachment downloads with the provider's SHA-256.
        let term_sheet = landed
            .iter()
            .find(|m| m.attachments.iter().any(|a| a.name == "Term sheet.pdf"))
            .expect("the document landed");
        client
            .goto(&format!("{ui}mailboxes/{alice}/messages/{}", term_sheet.id))
            .await
            .unwrap();
        // The link as the page has it, fetched with the browser's own session cookie (the
        // page's policy allows no script to fetch anything, so not from inside the page).
        let link = client
            .find(Locator::LinkText("Term sheet.pdf"))
            .await
            .unwrap();
        assert_eq!(link.attr("download").await.unwrap().as_deref(), Some(""));
        let href = link.prop("href").await.unwrap().expect("a link");
        let cookie = client
            .get_named_cookie(mock_mailbox::ui::COOKIE)
            .await
            .unwrap();
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(
            cookie.same_site().map(|s| s.to_string()).as_deref(),
            Some("Strict")
        );
        let download = reqwest::Client::new()
            .get(&href)
            .header("cookie", format!("{}={}", cookie.name(), cookie.value()))
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), 200);
        assert_eq!(
            download.headers()["content-type"],
            "application/octet-stream"
        );
        assert_eq!(
            download.headers()["content-disposition"],
            "attachment; filename=\"Term sheet.pdf\"; filename*=UTF-8''Term%20sheet.pdf"
        );
        let bytes = download.bytes().await.unwrap();
        assert_eq!(bytes.len(), 182_733);
        use sha2::Digest;
        let sha256: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sha256,
            mock_telemessage::attachment::sha256_hex(8, 182_733),
            "the bytes the provider served"
        );
        eval(
            &client,
            "document.getElementById('attachments').scrollIntoView(); return null",
        )
        .await;
        snap(&client, "05-attachments").await;

        // 6. Search finds a message by a word of its body (an image's caption).
        client
            .goto(&format!("{ui}mailboxes/{alice}"))
            .await
            .unwrap();
        type_into(&client, "input[name=q]", "whiteboard").await;
        click(&client, Locator::Css("form.search button")).await;
        client
            .wait()
            .for_element(Locator::Css("p#count"))
            .await
            .unwrap();
        let expected: Vec<_> = landed
            .iter()
            .filter(|m| m.body_text.to_lowercase().contains("whiteboard"))
            .collect();
        assert_eq!(expected.len(), 1);
        let found = eval(
            &client,
            "return [...document.querySelectorAll('table#messages tbody tr a')]\
             .map(a => [a.textContent, a.getAttribute('href')])",
        )
        .await;
        assert_eq!(
            found,
            json!([[
                expected[0].subject,
                format!(
                    "/ui/mailboxes/{}/messages/{}",
                    alice_id(&fakes),
                    expected[0].id
                )
            ]])
        );
        snap(&client, "06-search").await;

        // 7. The hostile message: its subject (RFC 2047 on the wire) decoded and shown as
        // text, like its sender; no script of its
        // HTML runs, neither in the viewer's sandboxed frame nor when its URL is opened.
        let hostile = fakes
            .mailbox
            .inspect_messages(alice, false)
            .unwrap()
            .into_iter()
            .find(|m| m.internet_message_id.as_deref() == Some("<hostile-html@partner.example>"))
            .unwrap();
        let page = format!("{ui}mailboxes/{alice}/messages/{}", hostile.id);
        client.goto(&page).await.unwrap();
        let frame = client
            .wait()
            .for_element(Locator::Css("iframe#html-body"))
            .await
            .unwrap();
        let subject = text_of(&client, "h1#subject").await;
        assert_eq!(
            subject, "Rechnung für Zoë <img src=x onerror=alert(1)>",
            "decoded from RFC 2047, shown as text"
        );
        frame.clone().enter_frame().await.unwrap();
        let state = eval(&client, "return [document.readyState, document.title]").await;
        client.enter_parent_frame().await.unwrap();
        // Loaded in full: the failed image's error event has fired by now, had it run.
        assert_eq!(state, json!(["complete", "body"]), "inside the frame");
        assert_eq!(
            eval(&client, "return document.title").await,
            json!(PAGE_TITLE)
        );
        snap(&client, "07-hostile-message").await;
        client.goto(&format!("{page}/body")).await.unwrap();
        assert_eq!(
            eval(&client, "return [document.readyState, document.title]").await,
            json!(["complete", "body"]),
            "the body's own URL"
        );

        // 8. The scenario report of the same import, opened from its file: it needs nothing
        // from the network and says the scenario passed.
        client
            .goto(&format!(
                "file://{}",
                report_page.canonicalize().unwrap().display()
            ))
            .await
            .unwrap();
        let verdict = text_of(&client, "#verdict").await;
        assert!(verdict.starts_with("PASS"), "{verdict}");
        let rows = eval(
            &client,
            "return [...document.querySelectorAll('#summary tbody tr')].map(r => r.cells[0].textContent)",
        )
        .await;
        assert_eq!(rows, json!([scenario.name]));
        snap(&client, "08-scenario-report").await;
    };
    let outcome = std::panic::AssertUnwindSafe(steps).catch_unwind().await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&work);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
