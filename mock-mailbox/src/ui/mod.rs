//! The web viewer at `/ui/`: what a person uses to see what landed, read-only.
//!
//! Never open anonymously. The admin token unlocks it through a login form, which sets
//! an `HttpOnly`, `SameSite=Strict` session cookie scoped to `/ui`; the token never
//! travels in a URL and is never logged. Without an admin token configured the viewer is
//! off (404). Every page is rendered on the server (maud escapes every value), carries a
//! strict Content-Security-Policy (no script at all, the inlined stylesheet by hash),
//! and cannot be framed. A message's HTML body is untrusted: it is served on its own
//! URL under a `sandbox` policy with no script source, and shown in an `<iframe
//! sandbox>`, so no script in a message ever runs. Attachments are served as downloads
//! (`application/octet-stream`, `nosniff`) under a safe name.

mod pages;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Duration;
use mock_common::Lookup;
use serde::Deserialize;

use crate::message::StoredMessage;
use crate::search::Search;
use crate::state::{Mailbox, State};

/// The session cookie's name.
pub const COOKIE: &str = "mock_mailbox_viewer";
/// How long a login lasts, on the fake's clock.
const SESSION_HOURS: i64 = 8;
/// Messages on one page of a folder, a search or the hold view.
pub const PAGE_SIZE: usize = 50;
/// Longest search accepted, in characters.
const MAX_QUERY: usize = 1_000;
/// Largest login form accepted, in bytes.
const MAX_LOGIN_FORM: usize = 4 * 1024;

/// The viewer's routes, added to the fake's router.
pub fn routes(router: Router<State>) -> Router<State> {
    router
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(home))
        .route(
            "/ui/login",
            get(login_page)
                .post(login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_FORM)),
        )
        .route("/ui/logout", post(logout))
        .route("/ui/mailboxes/{user}", get(mailbox))
        .route("/ui/mailboxes/{user}/folders/{folder}", get(folder))
        .route("/ui/mailboxes/{user}/search", get(search))
        .route("/ui/mailboxes/{user}/recoverable", get(recoverable))
        .route("/ui/mailboxes/{user}/messages/{message}", get(message))
        .route(
            "/ui/mailboxes/{user}/messages/{message}/body",
            get(html_body),
        )
        .route("/ui/mailboxes/{user}/messages/{message}/raw", get(raw))
        .route(
            "/ui/mailboxes/{user}/messages/{message}/attachments/{index}",
            get(attachment),
        )
}

// ---- access ----

/// Why a request gets no data.
enum Refusal {
    /// No admin token configured: the viewer does not exist.
    Off,
    /// No valid session: the login page, with status 401.
    Login,
    /// A message the fake's own store cannot read back.
    Unreadable(crate::store::ReadError),
}

impl From<crate::store::ReadError> for Refusal {
    fn from(e: crate::store::ReadError) -> Self {
        Self::Unreadable(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Off => (
                StatusCode::NOT_FOUND,
                secure_headers(),
                "The viewer is off: start mock-mailbox with an admin token to use it.\n",
            )
                .into_response(),
            Refusal::Login => html(StatusCode::UNAUTHORIZED, pages::login(None)),
            Refusal::Unreadable(e) => {
                tracing::error!(error = %e, "a stored message cannot be read back");
                html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::not_found("A message of this page cannot be read back from the store."),
                )
            }
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Lets a request through only with a live session.
fn signed_in(state: &State, headers: &HeaderMap) -> Result<(), Refusal> {
    if !state.admin().is_set() {
        return Err(Refusal::Off);
    }
    match session_cookie(headers).map(|c| state.ui_sessions().lookup(c, state.now())) {
        Some(Lookup::Valid(())) => Ok(()),
        _ => Err(Refusal::Login),
    }
}

async fn home(AxState(state): AxState<State>, headers: HeaderMap) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let tenants = state
        .tenants()
        .iter()
        .map(|t| pages::TenantView {
            id: t.id.clone(),
            domain: t.domain.clone(),
            mailboxes: t
                .users
                .iter()
                .map(|u| {
                    let counts = state.read_mailbox(&u.id, |m| {
                        (m.folders.len(), m.messages.len(), m.recoverable.len())
                    });
                    pages::MailboxView {
                        user: u.clone(),
                        counts,
                    }
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    Ok(html(StatusCode::OK, pages::home(&tenants)))
}

async fn login_page(AxState(state): AxState<State>, headers: HeaderMap) -> Response {
    if !state.admin().is_set() {
        return Refusal::Off.into_response();
    }
    if signed_in(&state, &headers).is_ok() {
        return Redirect::to("/ui/").into_response();
    }
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(AxState(state): AxState<State>, Form(form): Form<LoginForm>) -> Response {
    if !state.admin().is_set() {
        return Refusal::Off.into_response();
    }
    if !state.admin().is(form.token.trim()) {
        tracing::warn!("viewer login refused: not the admin token");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That is not this mock-mailbox's admin token.")),
        );
    }
    let session = state
        .ui_sessions()
        .issue("v_", (), state.now() + Duration::hours(SESSION_HOURS));
    tracing::info!("viewer login");
    let cookie = format!(
        "{COOKIE}={session}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_HOURS * 3600
    );
    let mut response = Redirect::to("/ui/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(AxState(state): AxState<State>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session_cookie(&headers) {
        state.ui_sessions().revoke(cookie);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "mock_mailbox_viewer=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

// ---- pages ----

fn not_found(what: &str) -> Response {
    html(StatusCode::NOT_FOUND, pages::not_found(what))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

async fn mailbox(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let view = state.read_mailbox(&user, |m| {
        let mut counts = std::collections::HashMap::<u64, usize>::new();
        for message in m.messages.values() {
            *counts.entry(message.folder).or_default() += 1;
        }
        pages::FoldersView {
            user: m.user.clone(),
            folders: m
                .folders
                .iter()
                .map(|f| (f.clone(), counts.get(&f.serial).copied().unwrap_or(0)))
                .collect(),
            recoverable: m.recoverable.len(),
        }
    });
    Ok(match view {
        Some(view) => html(StatusCode::OK, pages::folders(&view)),
        None => not_found("No mailbox for that user."),
    })
}

/// Newest first, as a mail client lists them.
fn sorted<'a>(messages: impl Iterator<Item = &'a StoredMessage>) -> Vec<&'a StoredMessage> {
    let mut list: Vec<_> = messages.collect();
    list.sort_by(|a, b| {
        b.received()
            .cmp(&a.received())
            .then_with(|| a.serial.cmp(&b.serial))
    });
    list
}

/// One page of a list of messages, under `heading`; `here` is the list's own path.
fn list_view(
    mailbox: &Mailbox,
    list: Vec<&StoredMessage>,
    page: usize,
    deleted: bool,
    heading: String,
    here: &str,
) -> Result<pages::ListView, crate::store::ReadError> {
    let total = list.len();
    let rows = list
        .into_iter()
        .skip((page - 1).saturating_mul(PAGE_SIZE))
        .take(PAGE_SIZE)
        .map(|m| pages::Row::of(mailbox, m, deleted))
        .collect::<Result<_, _>>()?;
    Ok(pages::ListView {
        user: mailbox.user.clone(),
        heading,
        here: format!("/ui/mailboxes/{}/{here}", mailbox.user.id),
        query: None,
        error: None,
        rows,
        total,
        page,
    })
}

async fn folder(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, folder)): Path<(String, String)>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let page = query.page.unwrap_or(1).max(1);
    let view = state.read_mailbox(&user, |m| {
        let folder = m.folders.iter().find(|f| f.id == folder)?.clone();
        let list = sorted(m.messages.values().filter(|x| x.folder == folder.serial));
        Some(list_view(
            m,
            list,
            page,
            false,
            folder.display_name.clone(),
            &format!("folders/{}", folder.id),
        ))
    });
    Ok(match view.map(|v| v.transpose()).transpose()? {
        Some(Some(view)) => html(StatusCode::OK, pages::list(&view)),
        Some(None) => not_found("No such folder in this mailbox."),
        None => not_found("No mailbox for that user."),
    })
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    page: Option<usize>,
}

async fn search(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let page = query.page.unwrap_or(1).max(1);
    let raw = query.q.unwrap_or_default();
    let text = raw.trim();
    let parsed = if text.chars().count() > MAX_QUERY {
        Err(format!("A search is at most {MAX_QUERY} characters."))
    } else if text.starts_with('"') {
        Search::parse(text).map_err(|e| e.message)
    } else {
        // As a person types it: the KQL terms without the quotes Graph's $search wants.
        Search::parse(&format!("\"{}\"", text.replace('"', " "))).map_err(|e| e.message)
    };
    let shown: String = text.chars().take(MAX_QUERY).collect();
    let view = state.read_mailbox(&user, |m| {
        let list = match &parsed {
            Ok(search) if !text.is_empty() => {
                let mut found = Vec::new();
                for x in m.messages.values() {
                    if search.matches(x)? {
                        found.push(x);
                    }
                }
                sorted(found.into_iter())
            }
            _ => Vec::new(),
        };
        let mut view = list_view(m, list, page, false, format!("Search: {shown}"), "search")?;
        view.query = Some(shown.clone());
        view.error = parsed.as_ref().err().cloned();
        Ok::<_, crate::store::ReadError>(view)
    });
    Ok(match view.transpose()? {
        Some(view) => {
            let status = if view.error.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            html(status, pages::list(&view))
        }
        None => not_found("No mailbox for that user."),
    })
}

async fn recoverable(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let page = query.page.unwrap_or(1).max(1);
    let view = state.read_mailbox(&user, |m| {
        let list = sorted(m.recoverable.iter());
        list_view(
            m,
            list,
            page,
            true,
            "Recoverable Items (Litigation Hold)".into(),
            "recoverable",
        )
    });
    Ok(match view.transpose()? {
        Some(view) => html(StatusCode::OK, pages::list(&view)),
        None => not_found("No mailbox for that user."),
    })
}

/// A message of the mailbox, in a folder or recoverable: what the page shows of it.
fn find<'a>(mailbox: &'a Mailbox, id: &str) -> Option<(&'a StoredMessage, bool)> {
    mailbox
        .message(id)
        .map(|m| (m, false))
        .or_else(|| mailbox.recoverable(id).map(|m| (m, true)))
}

async fn message(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let view = state.read_mailbox(&user, |m| {
        find(m, &id)
            .map(|(message, deleted)| {
                let opened = message.content.open()?;
                Ok::<_, crate::store::ReadError>(pages::MessageView {
                    user: m.user.clone(),
                    row: pages::Row::of(m, message, deleted)?,
                    summary: opened.summary,
                    headers: opened.headers,
                    imported_at: message.created,
                })
            })
            .transpose()
    });
    Ok(match view.transpose()? {
        Some(Some(view)) => html(StatusCode::OK, pages::message(&view)),
        Some(None) => not_found("No such message in this mailbox."),
        None => not_found("No mailbox for that user."),
    })
}

/// What a message's own HTML may do: nothing but show itself. `sandbox` gives it an
/// opaque origin with scripts, forms and pop-ups off even when opened on its own; no
/// script source at all; inline styles and `data:` images only; nothing fetched.
pub const BODY_POLICY: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
img-src data:; base-uri 'none'; form-action 'none'";

async fn html_body(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let body = state
        .read_mailbox(&user, |m| {
            find(m, &id)
                .map(|(message, _)| message.content.summary().map(|s| s.body_html))
                .transpose()
        })
        .transpose()?
        .flatten()
        .flatten();
    let Some(body) = body else {
        return Ok(not_found("This message has no HTML body."));
    };
    let mut response = (StatusCode::OK, secure_headers(), body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(BODY_POLICY),
    );
    // Only the viewer's own message page may frame it.
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}

async fn raw(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let content = state
        .read_mailbox(&user, |m| find(m, &id).map(|(x, _)| x.content.clone()))
        .flatten();
    let Some(content) = content else {
        return Ok(not_found("No such message in this mailbox."));
    };
    Ok(match content.mime() {
        Ok(bytes) => {
            let mut response = (StatusCode::OK, secure_headers(), bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Err(crate::store::ReadError::NotRetained) => html(
            StatusCode::NOT_IMPLEMENTED,
            pages::not_found(
                "This mailbox keeps summaries only (--retain summary): the message's bytes were not kept.",
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a stored message cannot be read back");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::not_found("The message's bytes cannot be read back."),
            )
        }
    })
}

async fn attachment(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((user, id, index)): Path<(String, String, usize)>,
) -> Result<Response, Refusal> {
    signed_in(&state, &headers)?;
    let found = state
        .read_mailbox(&user, |m| {
            find(m, &id).and_then(|(x, _)| {
                let name = x.content.attachments().get(index)?.name.clone();
                Some((x.content.clone(), name))
            })
        })
        .flatten();
    let Some((content, name)) = found else {
        return Ok(not_found("No such attachment."));
    };
    let bytes = content
        .mime()
        .ok()
        .and_then(|mime| crate::message::attachment_content(&mime, index));
    if !content.retained() {
        return Ok(html(
            StatusCode::NOT_IMPLEMENTED,
            pages::not_found(
                "This mailbox keeps summaries only (--retain summary): the attachment's bytes were not kept.",
            ),
        ));
    }
    let Some(bytes) = bytes else {
        return Ok(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::not_found("The attachment cannot be read back."),
        ));
    };
    let mut response = (StatusCode::OK, secure_headers(), bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&name, index)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

// ---- responses ----

/// The policy of the viewer's own pages: no script, the inlined stylesheet only, frames
/// only from the viewer itself, forms only to itself, never framed.
fn page_policy() -> String {
    format!(
        "default-src 'none'; style-src {}; frame-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        mock_common::page::style_source()
    )
}

/// Headers every viewer response carries.
fn secure_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, secure_headers(), markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&page_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `attachment` with a name that is safe on every system: an ASCII fallback (letters,
/// digits, `.`, `-`, `_` and spaces; no path, no leading dot) and the name itself in
/// RFC 5987 form without path separators, controls or bidirectional overrides.
pub fn content_disposition(name: &str, index: usize) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .take(200)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    let fallback: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fallback = if fallback.trim_matches(['_', ' ', '.']).is_empty() {
        format!("attachment-{}", index + 1)
    } else {
        fallback
    };
    let cleaned = if cleaned.is_empty() {
        fallback.clone()
    } else {
        cleaned
    };
    let encoded: String = cleaned
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
