//! The viewer's pages, as maud templates: every value from a message or the directory
//! is interpolated, so escaped; nothing is written raw but the shared stylesheet.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use mock_common::page::document;

use super::PAGE_SIZE;
use crate::directory::User;
use crate::message::{Mailbox as Address, StoredMessage, Summary};
use crate::state::{Folder, Mailbox};

const TITLE: &str = "mock-mailbox viewer";

/// A tenant on the home page.
pub struct TenantView {
    pub id: String,
    pub domain: String,
    pub mailboxes: Vec<MailboxView>,
}

/// A user, and (folders, messages, recoverable items) if they have a mailbox.
pub struct MailboxView {
    pub user: User,
    pub counts: Option<(usize, usize, usize)>,
}

pub struct FoldersView {
    pub user: User,
    pub folders: Vec<(Folder, usize)>,
    pub recoverable: usize,
}

/// A list of messages: a folder's, a search's or the hold view's.
pub struct ListView {
    pub user: User,
    pub heading: String,
    /// This list's own path, for the pager.
    pub here: String,
    /// The search typed, on a search page.
    pub query: Option<String>,
    pub error: Option<String>,
    pub rows: Vec<Row>,
    pub total: usize,
    pub page: usize,
}

/// One message in a list.
pub struct Row {
    pub id: String,
    pub folder: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub received: DateTime<Utc>,
    pub size: usize,
    pub attachments: usize,
    /// The `X-WhatsApp-Revision` header: a revised item.
    pub revision: Option<String>,
    pub draft: bool,
    /// Deleted while on hold, kept as a recoverable item.
    pub deleted: bool,
}

impl Row {
    pub fn of(
        mailbox: &Mailbox,
        m: &StoredMessage,
        deleted: bool,
    ) -> Result<Self, crate::store::ReadError> {
        let opened = m.content.open()?;
        let s = opened.summary;
        Ok(Self {
            id: m.id(),
            folder: if deleted {
                "Recoverable Items".into()
            } else {
                mailbox
                    .folders
                    .iter()
                    .find(|f| f.serial == m.folder)
                    .map(|f| f.display_name.clone())
                    .unwrap_or_default()
            },
            from: s.from.as_ref().map(address).unwrap_or_default(),
            to: s
                .to
                .iter()
                .chain(&s.cc)
                .map(address)
                .collect::<Vec<_>>()
                .join(", "),
            subject: s.subject,
            received: m.received(),
            size: m.content.len,
            attachments: s.attachments.len(),
            revision: opened
                .headers
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("X-WhatsApp-Revision"))
                .map(|(_, v)| v),
            draft: m.is_draft,
            deleted,
        })
    }
}

pub struct MessageView {
    pub user: User,
    pub row: Row,
    pub summary: Summary,
    /// Every header, name and decoded value, in order.
    pub headers: Vec<(String, String)>,
    pub imported_at: DateTime<Utc>,
}

fn address(a: &Address) -> String {
    if a.name.is_empty() {
        a.address.clone()
    } else {
        format!("{} <{}>", a.name, a.address)
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

fn bar() -> Markup {
    html! {
        a href="/ui/" { "Mailboxes" }
        form method="post" action="/ui/logout" { button type="submit" { "Log out" } }
    }
}

fn mailbox_path(user: &User) -> String {
    format!("/ui/mailboxes/{}", user.id)
}

fn crumbs(user: &User) -> Markup {
    html! {
        p.crumbs {
            a href="/ui/" { "Mailboxes" } " › "
            a href=(mailbox_path(user)) { (user.display_name) " (" (user.user_principal_name) ")" }
        }
    }
}

fn search_box(user: &User, query: Option<&str>) -> Markup {
    html! {
        form.search method="get" action=(format!("{}/search", mailbox_path(user))) role="search" {
            input type="search" name="q" value=[query] placeholder="Search this mailbox: words, from:, to:, subject:, body:, hasAttachments:true, received>=2026-11-22" aria-label="Search this mailbox";
            button type="submit" { "Search" }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    document(
        TITLE,
        html! {},
        html! {
            h1 { "Sign in" }
            p { "The viewer shows what the fake Microsoft 365 holds. It opens with this mock-mailbox's admin token (the file given with " code { "--admin-token-file" } "; " code { "scenarios serve" } " prints where it wrote it)." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form.login method="post" action="/ui/login" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn not_found(what: &str) -> Markup {
    document(
        TITLE,
        bar(),
        html! { h1 { "Not found" } p { (what) } p { a href="/ui/" { "Back to the mailboxes" } } },
    )
}

pub fn home(tenants: &[TenantView]) -> Markup {
    document(
        TITLE,
        bar(),
        html! {
            h1 { "Mailboxes" }
            @for t in tenants {
                h2 { (t.domain) " " span.muted { "tenant " (t.id) } }
                table {
                    thead { tr {
                        th { "Mailbox" } th { "Principal name" } th.num { "Folders" }
                        th.num { "Messages" } th.num { "Recoverable" } th { "Hold" }
                    } }
                    tbody {
                        @for m in &t.mailboxes {
                            tr {
                                @match m.counts {
                                    Some((folders, messages, recoverable)) => {
                                        td { a href=(mailbox_path(&m.user)) { (m.user.display_name) } }
                                        td { (m.user.user_principal_name) }
                                        td.num { (folders) }
                                        td.num data-messages=(messages) { (messages) }
                                        td.num { (recoverable) }
                                    }
                                    None => {
                                        td { (m.user.display_name) }
                                        td { (m.user.user_principal_name) }
                                        td colspan="3" .muted { "no mailbox" }
                                    }
                                }
                                td { @if m.user.litigation_hold { "Litigation Hold" } }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn folders(view: &FoldersView) -> Markup {
    let base = mailbox_path(&view.user);
    document(
        TITLE,
        bar(),
        html! {
            (crumbs(&view.user))
            h1 { (view.user.display_name) }
            (search_box(&view.user, None))
            table {
                thead { tr { th { "Folder" } th.num { "Messages" } } }
                tbody {
                    @for (folder, count) in &view.folders {
                        tr {
                            td { a href=(format!("{base}/folders/{}", folder.id)) { (folder.display_name) } }
                            td.num { (count) }
                        }
                    }
                    @if view.user.litigation_hold || view.recoverable > 0 {
                        tr {
                            td { a href=(format!("{base}/recoverable")) { "Recoverable Items (Litigation Hold)" } }
                            td.num { (view.recoverable) }
                        }
                    }
                }
            }
        },
    )
}

fn markers(row: &Row) -> Markup {
    html! {
        @if row.attachments > 0 {
            span.badge title="attachments" {
                (row.attachments) @if row.attachments == 1 { " file" } @else { " files" }
            }
        }
        @if let Some(revision) = &row.revision {
            span.badge.revised title="a revised item" { "revised " (revision) }
        }
        @if row.deleted { span.badge.deleted { "deleted" } }
        @if row.draft { span.badge { "draft" } }
    }
}

pub fn list(view: &ListView) -> Markup {
    let base = mailbox_path(&view.user);
    let pages = view.total.div_ceil(PAGE_SIZE).max(1);
    let link = |page: usize| match &view.query {
        Some(q) => format!(
            "{}?q={}&page={page}",
            view.here,
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        ),
        None => format!("{}?page={page}", view.here),
    };
    let searching = view.query.is_some();
    document(
        TITLE,
        bar(),
        html! {
            (crumbs(&view.user))
            h1 { (view.heading) }
            (search_box(&view.user, view.query.as_deref()))
            @if let Some(error) = &view.error { p.error role="alert" { (error) } }
            p.muted #count { (view.total) " message" @if view.total != 1 { "s" } }
            @if !view.rows.is_empty() {
                table #messages {
                    thead { tr {
                        th { "Received" } th { "From" } th { "To" } th { "Subject" }
                        @if searching { th { "Folder" } }
                        th.num { "Size" } th { "" }
                    } }
                    tbody {
                        @for row in &view.rows {
                            tr {
                                td { (when(row.received)) }
                                td { (row.from) }
                                td { (row.to) }
                                td { a href=(format!("{base}/messages/{}", row.id)) {
                                    @if row.subject.is_empty() { "(no subject)" } @else { (row.subject) }
                                } }
                                @if searching { td { (row.folder) } }
                                td.num { (size(row.size)) }
                                td { (markers(row)) }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager aria-label="pages" {
                    @if view.page > 1 { a href=(link(view.page - 1)) rel="prev" { "‹ Newer" } }
                    span { "Page " (view.page) " of " (pages) }
                    @if view.page < pages { a href=(link(view.page + 1)) rel="next" { "Older ›" } }
                }
            }
        },
    )
}

pub fn message(view: &MessageView) -> Markup {
    let base = format!("{}/messages/{}", mailbox_path(&view.user), view.row.id);
    let s = &view.summary;
    let list = |l: &[Address]| l.iter().map(address).collect::<Vec<_>>().join(", ");
    document(
        TITLE,
        bar(),
        html! {
            (crumbs(&view.user))
            h1 #subject { @if s.subject.is_empty() { "(no subject)" } @else { (s.subject) } }
            p { (markers(&view.row)) }
            table.fields {
                tr { th { "From" } td { (s.from.as_ref().map(address).unwrap_or_default()) } }
                tr { th { "To" } td { (list(&s.to)) } }
                @if !s.cc.is_empty() { tr { th { "Cc" } td { (list(&s.cc)) } } }
                tr { th { "Date" } td { (s.date.map(when).unwrap_or_else(|| "(none)".into())) } }
                tr { th { "Message-ID" } td { code { (s.internet_message_id.clone().unwrap_or_default()) } } }
                tr { th { "Folder" } td { (view.row.folder) } }
                tr { th { "Imported" } td { (when(view.imported_at)) } }
                tr { th { "Size" } td { (size(view.row.size)) " (" (view.row.size) " bytes)" } }
            }
            details {
                summary { "All headers (" (view.headers.len()) ")" }
                table.fields {
                    @for (name, value) in &view.headers { tr { th { (name) } td { (value) } } }
                }
            }
            h2 { "Text" }
            pre #text-body { (s.body_text) }
            @if s.body_html.is_some() {
                h2 { "HTML" }
                p.muted { "Shown in a sandbox: no script in a message runs here." }
                iframe.body #html-body sandbox="" src=(format!("{base}/body")) title="The message's HTML body" referrerpolicy="no-referrer" {}
            }
            h2 { "Attachments" }
            @if s.attachments.is_empty() {
                p.muted { "None." }
            } @else {
                table #attachments {
                    thead { tr { th { "Name" } th { "Type" } th.num { "Size" } th { "SHA-256" } } }
                    tbody {
                        @for (i, a) in s.attachments.iter().enumerate() {
                            tr {
                                td { a href=(format!("{base}/attachments/{i}")) download data-sha256=(a.sha256) { (a.name) } }
                                td { (a.content_type) }
                                td.num { (size(a.size)) }
                                td { code { (a.sha256) } }
                            }
                        }
                    }
                }
            }
            p { a #raw href=(format!("{base}/raw")) { "Raw MIME" } }
        },
    )
}
