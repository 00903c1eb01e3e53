//! The fake tenant(s): application sessions, mailboxes with folders and messages,
//! Litigation Hold, throttling, seeded faults and the inspection view.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::directory::{Directory, DirectoryError, Faults, Tenant, User};
use crate::error::{GraphError, TokenError};
use crate::message::{AttachmentSummary, Ids, MimeError, StoredMessage};
use crate::throttle::{Limits, Permit, Throttle, Throttled, Usage};
use mock_common::{AdminToken, Lookup, Sessions, SharedClock};

/// Settings that are not data.
#[derive(Debug, Clone)]
pub struct Config {
    pub token_lifetime: Duration,
    pub limits: Limits,
    /// Where message bytes are kept.
    pub storage: crate::store::Storage,
    /// How strict and how slow: `lenient` by default (`crate::profile`).
    pub profile: crate::profile::Profile,
    /// Whether a file may be attached (by POST or upload session) to a message that is
    /// not a draft. Microsoft documents attachments on "a message" without saying; the
    /// default follows the documentation (allow), `false` answers 403 as Graph does for a
    /// forbidden operation, so a connector can be tested under both answers.
    pub attachments_on_non_drafts: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::seconds(3599),
            limits: Limits::default(),
            storage: crate::store::Storage::default(),
            profile: crate::profile::Profile::default(),
            attachments_on_non_drafts: true,
        }
    }
}

/// Well-known folders every mailbox starts with: display name and well-known name.
pub const WELL_KNOWN: [(&str, &str); 8] = [
    ("Archive", "archive"),
    ("Conversation History", "conversationhistory"),
    ("Deleted Items", "deleteditems"),
    ("Drafts", "drafts"),
    ("Inbox", "inbox"),
    ("Junk Email", "junkemail"),
    ("Outbox", "outbox"),
    ("Sent Items", "sentitems"),
];

/// Permission sets: any one of the listed application permissions grants the operation.
pub mod permission {
    pub const READ_USERS: &[&str] = &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const READ_MAIL: &[&str] = &["Mail.Read", "Mail.ReadWrite"];
    pub const WRITE_MAIL: &[&str] = &["Mail.ReadWrite"];
    pub const IMPORT_MIME: &[&str] = &["Mail-Advanced.ReadWrite.All"];
}

/// An application's access token, as the server keeps it.
#[derive(Debug, Clone)]
pub struct AppSession {
    pub tenant_id: String,
    pub client_id: String,
    pub permissions: Vec<String>,
}

impl AppSession {
    pub fn may(&self, any_of: &[&str]) -> bool {
        self.permissions
            .iter()
            .any(|p| any_of.iter().any(|a| a.eq_ignore_ascii_case(p)))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Folder {
    pub id: String,
    /// The number its id is made from ([`Ids::folder`]).
    #[serde(skip)]
    pub serial: u64,
    pub display_name: String,
    #[serde(skip)]
    pub well_known: Option<&'static str>,
}

/// One user's mailbox.
#[derive(Debug)]
pub struct Mailbox {
    pub user: User,
    pub root_id: String,
    pub folders: Vec<Folder>,
    /// By [`StoredMessage::serial`]: the id is made from it.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Deleted while on Litigation Hold: out of every folder, still kept.
    pub recoverable: Vec<StoredMessage>,
    next: u64,
    /// The user id, shared by every message (their ids are made from it).
    owner: Arc<str>,
}

impl Mailbox {
    fn new(user: User) -> Self {
        let user_id = user.id.clone();
        let mut mailbox = Self {
            root_id: String::new(),
            user,
            folders: Vec::new(),
            messages: BTreeMap::new(),
            recoverable: Vec::new(),
            next: 0,
            owner: Arc::from(user_id.as_str()),
        };
        mailbox.root_id = mailbox.new_id("root").0;
        for (name, well_known) in WELL_KNOWN {
            let (id, serial) = mailbox.new_id("f");
            mailbox.folders.push(Folder {
                id,
                serial,
                display_name: name.to_owned(),
                well_known: Some(well_known),
            });
        }
        mailbox
    }

    /// A new id of `kind`, and the number it is made from.
    fn new_id(&mut self, kind: &str) -> (String, u64) {
        self.next += 1;
        (Ids::make(&self.owner, kind, self.next), self.next)
    }

    /// A message by its Graph id.
    pub fn message(&self, id: &str) -> Option<&StoredMessage> {
        self.messages.get(&Ids::serial(&self.owner, "m", id)?)
    }

    /// A recoverable item by its Graph id.
    pub fn recoverable(&self, id: &str) -> Option<&StoredMessage> {
        let serial = Ids::serial(&self.owner, "m", id)?;
        self.recoverable.iter().find(|m| m.serial == serial)
    }

    /// A folder by id or well-known name.
    pub fn folder(&self, reference: &str) -> Option<&Folder> {
        self.folders.iter().find(|f| {
            f.id == reference
                || f.well_known
                    .is_some_and(|w| w.eq_ignore_ascii_case(reference))
        })
    }

    pub fn folder_size(&self, folder: &Folder) -> usize {
        self.messages
            .values()
            .filter(|m| m.folder == folder.serial)
            .count()
    }

    /// Creates a child of the root. Names are unique regardless of case.
    pub fn create_folder(&mut self, name: &str) -> Result<Folder, GraphError> {
        if self
            .folders
            .iter()
            .any(|f| f.display_name.eq_ignore_ascii_case(name))
        {
            return Err(GraphError::new(
                StatusCode::CONFLICT,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            ));
        }
        let (id, serial) = self.new_id("f");
        let folder = Folder {
            id,
            serial,
            display_name: name.to_owned(),
            well_known: None,
        };
        self.folders.push(folder.clone());
        Ok(folder)
    }

    /// Stores a message that arrived as MIME in folder number `folder`; `None`, nothing
    /// stored, if that folder is gone. A request finds its folder before it reads its
    /// body; another request may delete the folder meanwhile, and an import may not
    /// land in a folder that no longer exists.
    pub fn import(
        &mut self,
        folder: u64,
        content: Arc<crate::store::Content>,
        is_draft: bool,
        now: DateTime<Utc>,
    ) -> Option<StoredMessage> {
        if !self.folders.iter().any(|f| f.serial == folder) {
            return None;
        }
        self.next += 1;
        let message = StoredMessage::new(
            self.owner.clone(),
            self.next,
            folder,
            content,
            is_draft,
            now,
        );
        self.messages.insert(self.next, message.clone());
        Some(message)
    }

    /// Deletes a folder for good (Shift+Delete, then Deleted Items emptied): its id is
    /// gone and its messages go to Recoverable Items, where Exchange keeps them for 14
    /// days (longer on hold). Answers how many messages went with it.
    pub fn delete_folder_for_good(&mut self, folder_id: &str) -> usize {
        let Some(at) = self
            .folders
            .iter()
            .position(|f| f.id == folder_id && f.well_known.is_none())
        else {
            return 0;
        };
        let folder = self.folders.remove(at);
        let ids: Vec<u64> = self
            .messages
            .values()
            .filter(|m| m.folder == folder.serial)
            .map(|m| m.serial)
            .collect();
        for id in &ids {
            if let Some(mut message) = self.messages.remove(id) {
                message.deleted_with = Some(folder.display_name.as_str().into());
                self.recoverable.push(message);
            }
        }
        ids.len()
    }

    /// The id of attachment number `index` of message `serial`.
    pub fn attachment_id(&self, serial: u64, index: usize) -> String {
        Ids::make(&self.owner, &format!("a{serial}"), index as u64)
    }

    /// The number of the attachment `id` of message `serial` (`None` for any other id).
    pub fn attachment_index(&self, serial: u64, id: &str) -> Option<usize> {
        Ids::serial(&self.owner, &format!("a{serial}"), id).and_then(|n| usize::try_from(n).ok())
    }

    /// Gives message `id` the content `new` if it still has `old` (another change may
    /// have come first: then `Ok(false)`, and the caller starts again from what is
    /// there). Under Litigation Hold the version replaced is kept as a recoverable item.
    pub fn replace_content(
        &mut self,
        id: &str,
        old: &Arc<crate::store::Content>,
        new: Arc<crate::store::Content>,
    ) -> Result<bool, GraphError> {
        let hold = self.user.litigation_hold;
        let message = Ids::serial(&self.owner, "m", id)
            .and_then(|serial| self.messages.get_mut(&serial))
            .ok_or_else(GraphError::item_not_found)?;
        if !Arc::ptr_eq(&message.content, old) {
            return Ok(false);
        }
        let mut before = message.clone();
        before.replaced = true;
        message.content = new;
        if hold {
            self.recoverable.push(before);
        }
        Ok(true)
    }

    /// Deletes a message: gone, or kept as recoverable under Litigation Hold.
    pub fn delete(&mut self, id: &str) -> bool {
        let Some(serial) = Ids::serial(&self.owner, "m", id) else {
            return false;
        };
        match self.messages.remove(&serial) {
            Some(message) => {
                if self.user.litigation_hold {
                    self.recoverable.push(message);
                }
                true
            }
            None => false,
        }
    }
}

/// Cheap to clone: every clone is the same server.
#[derive(Debug, Clone)]
pub struct State(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    clock: SharedClock,
    config: Config,
    admin: AdminToken,
    tenants: Vec<Tenant>,
    faults: Faults,
    sessions: Sessions<AppSession>,
    /// The web viewer's login sessions (cookie values kept as digests).
    ui_sessions: Sessions<()>,
    /// Where client secrets are checked (argon2): bounded, refusing at once when full.
    checks: mock_common::CheckPool,
    mailboxes: RwLock<HashMap<String, Arc<Mutex<Mailbox>>>>,
    throttle: Throttle,
    store: crate::store::Store,
    /// Open upload sessions (their URLs' credentials as digests).
    uploads: crate::attach::Uploads,
    fault_draws: mock_common::seeded::IdentityDraws,
    tokens_issued: AtomicU64,
    token_failures: AtomicU64,
    faults_injected: AtomicU64,
    imports: AtomicU64,
    /// Users whose mailbox a seeded fault disabled (`MailboxNotEnabledForRESTAPI`) or who
    /// were deleted (`ErrorInvalidUser`), by user id.
    gone: RwLock<BTreeMap<String, (usize, Gone)>>,
}

/// What a seeded fault did to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gone {
    MailboxDisabled,
    UserDeleted,
}

/// The token endpoint's form.
#[derive(serde::Deserialize, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

/// A fault drawn for one Graph request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Unavailable,
    LoseImportResponse,
    /// The caller's token is revoked before it expires; the request is refused with 401.
    RevokedToken,
    /// A 429 beyond the normal throttling, with this `Retry-After` (seconds).
    Storm {
        retry_after: u64,
    },
    /// An import's target folder is deleted for good just before the import arrives.
    DeleteFolder,
    /// The mailbox is disabled (or its user deleted) just before the import arrives.
    DisableMailbox {
        user_deleted: bool,
    },
}

/// A message as the inspection API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InspectedMessage {
    pub id: String,
    pub folder_id: String,
    pub folder: String,
    pub internet_message_id: Option<String>,
    pub subject: String,
    pub from: Option<crate::message::Mailbox>,
    pub to: Vec<crate::message::Mailbox>,
    pub cc: Vec<crate::message::Mailbox>,
    pub date: Option<DateTime<Utc>>,
    pub imported_at: DateTime<Utc>,
    pub is_draft: bool,
    pub size: usize,
    pub attachments: Vec<AttachmentSummary>,
    /// Every header, name and decoded value, in order.
    pub headers: Vec<(String, String)>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// The plain-text body, decoded.
    pub body_text: String,
    /// Deleted while the mailbox was on Litigation Hold, kept as a recoverable item.
    pub recoverable: bool,
    /// Deleted for good with its folder (a seeded fault): that folder's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_with: Option<String>,
    /// A version kept by Litigation Hold when the message changed (a file attached after
    /// import); the message lives on with its new content.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

/// Where a stored message is, and its content (shared by every mailbox holding the same
/// bytes): what [`InspectedMessage`] shows, without copying the summary.
#[derive(Debug, Clone)]
pub struct Placed {
    pub stored: StoredMessage,
    /// Its folder's name (shared by the folder's messages), or "Recoverable Items".
    pub folder: Arc<str>,
    pub recoverable: bool,
}

impl Placed {
    /// The inspection API's view of it (its header section and text read back).
    pub fn inspected(&self) -> Result<InspectedMessage, crate::store::ReadError> {
        let m = &self.stored;
        let opened = m.content.open()?;
        let s = opened.summary;
        Ok(InspectedMessage {
            id: m.id(),
            folder_id: m.folder_id(),
            folder: self.folder.to_string(),
            internet_message_id: s.internet_message_id,
            subject: s.subject,
            from: s.from,
            to: s.to,
            cc: s.cc,
            date: s.date,
            imported_at: m.created,
            is_draft: m.is_draft,
            size: m.content.len,
            attachments: s.attachments,
            headers: opened.headers,
            in_reply_to: s.in_reply_to,
            references: s.references,
            body_text: s.body_text,
            recoverable: self.recoverable,
            deleted_with: m.deleted_with.as_deref().map(str::to_owned),
            replaced: m.replaced,
        })
    }
}

/// Why a mailbox's messages cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no such mailbox")]
    NoMailbox,
    #[error(transparent)]
    Read(crate::store::ReadError),
}

/// What [`State::memory`] found.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Memory {
    /// Messages stored, one per mailbox holding it.
    pub messages: u64,
    /// Distinct contents (each kept once).
    pub contents: u64,
    /// Their estimated bytes in memory (allocator overhead not counted).
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectedFolder {
    pub id: String,
    pub display_name: String,
    pub well_known: Option<&'static str>,
    pub message_count: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Counters {
    pub tokens_issued: u64,
    pub token_failures: u64,
    pub faults_injected: u64,
    /// Messages stored by `importMime`.
    pub imports: u64,
    pub requests: u64,
    pub throttled: u64,
    pub bytes_received: u64,
    pub per_application_mailbox: Vec<UsageRow>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct UsageRow {
    pub client_id: String,
    pub mailbox: String,
    #[serde(flatten)]
    pub usage: Usage,
}

impl State {
    pub fn new(
        directory: &Directory,
        clock: SharedClock,
        config: Config,
        admin: AdminToken,
    ) -> Result<Self, DirectoryError> {
        let tenants = directory.tenants()?;
        let mailboxes = tenants
            .iter()
            .flat_map(|t| &t.users)
            .filter(|u| u.mailbox_enabled)
            .map(|u| {
                (
                    u.id.to_ascii_lowercase(),
                    Arc::new(Mutex::new(Mailbox::new(u.clone()))),
                )
            })
            .collect();
        let throttle = Throttle::new(config.limits.clone());
        let store = crate::store::Store::new(&config.storage)
            .map_err(|e| DirectoryError::Store(e.to_string()))?;
        Ok(Self(Arc::new(Inner {
            clock,
            config,
            admin,
            tenants,
            faults: directory.faults.clone(),
            sessions: Sessions::default(),
            ui_sessions: Sessions::default(),
            checks: mock_common::CheckPool::default(),
            mailboxes: RwLock::new(mailboxes),
            throttle,
            store,
            uploads: crate::attach::Uploads::default(),
            fault_draws: mock_common::seeded::IdentityDraws::default(),
            tokens_issued: AtomicU64::new(0),
            token_failures: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            gone: RwLock::default(),
            imports: AtomicU64::new(0),
        })))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    pub fn admin(&self) -> &AdminToken {
        &self.0.admin
    }

    pub fn throttle(&self) -> &Throttle {
        &self.0.throttle
    }

    fn tenant(&self, reference: &str) -> Option<&Tenant> {
        self.0.tenants.iter().find(|t| {
            t.id.eq_ignore_ascii_case(reference) || t.domain.eq_ignore_ascii_case(reference)
        })
    }

    /// The client-credentials grant: `POST /{tenant}/oauth2/v2.0/token`.
    pub async fn issue_token(
        &self,
        tenant: &str,
        form: TokenRequest,
    ) -> Result<(String, u64), TokenError> {
        let result = self.check_token_request(tenant, form).await;
        let counter = if result.is_ok() {
            &self.0.tokens_issued
        } else {
            &self.0.token_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn check_token_request(
        &self,
        tenant_ref: &str,
        form: TokenRequest,
    ) -> Result<(String, u64), TokenError> {
        let bad = |code, aadsts, text: String| {
            TokenError::new(StatusCode::BAD_REQUEST, code, aadsts, text)
        };
        let Some(tenant) = self.tenant(tenant_ref) else {
            return Err(bad(
                "invalid_request",
                90002,
                format!(
                    "Tenant '{}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
                    mock_common::clip(tenant_ref, 100)
                ),
            ));
        };
        let grant = form.grant_type.as_deref().unwrap_or_default();
        if grant.is_empty() {
            return Err(bad(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.".into(),
            ));
        }
        if grant != "client_credentials" {
            return Err(bad(
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.".into(),
            ));
        }
        let Some(client_id) = form.client_id.filter(|c| !c.is_empty()) else {
            return Err(bad(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.".into(),
            ));
        };
        let scope = form.scope.unwrap_or_default();
        if scope.is_empty() {
            return Err(bad(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.".into(),
            ));
        }
        if scope != "https://graph.microsoft.com/.default" {
            return Err(bad(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                    mock_common::clip(&scope, 100)
                ),
            ));
        }
        let Some(secret) = form.client_secret.filter(|s| !s.is_empty()) else {
            return Err(bad("invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into()));
        };
        let Some(app) = tenant
            .applications
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(&client_id))
        else {
            return Err(bad(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{}' was not found in the directory '{}'.",
                    mock_common::clip(&client_id, 100),
                    tenant.domain
                ),
            ));
        };
        let hash = app.secret.clone();
        let Ok(verified) = self.0.checks.run(move || hash.verify(&secret)).await else {
            tracing::warn!(client_id = %app.client_id, "token request refused: secret checks are busy");
            return Err(TokenError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                90055,
                "Too many requests are being checked at once; retry after the interval in Retry-After.",
            ));
        };
        if !verified {
            tracing::info!(client_id = %app.client_id, tenant = %tenant.id, "client secret refused");
            return Err(TokenError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    app.client_id
                ),
            ));
        }
        let lifetime = self.0.config.token_lifetime;
        let session = AppSession {
            tenant_id: tenant.id.clone(),
            client_id: app.client_id.clone(),
            permissions: app.permissions.clone(),
        };
        let token = self.0.sessions.issue(
            "eyJ0eXAiOiJKV1QiLCJmYWtlIjp0cnVlfQ.",
            session,
            self.now() + lifetime,
        );
        tracing::info!(client_id = %app.client_id, tenant = %tenant.id, "token issued");
        Ok((token, lifetime.num_seconds().max(0) as u64))
    }

    /// The session behind an `Authorization` header, or Graph's 401.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<AppSession, GraphError> {
        let Some(header) = authorization.filter(|h| !h.trim().is_empty()) else {
            return Err(GraphError::invalid_token("Access token is empty."));
        };
        let Some(token) = mock_common::secret::bearer(header) else {
            return Err(GraphError::invalid_token(
                "Access token validation failure. Invalid audience.",
            ));
        };
        match self.0.sessions.lookup(token, self.now()) {
            Lookup::Unknown => Err(GraphError::invalid_token(
                "IDX14100: JWT is not well formed, there are no dots (.).",
            )),
            Lookup::Expired => Err(GraphError::invalid_token(
                "Lifetime validation failed, the token is expired.",
            )),
            Lookup::Valid(session) => Ok(session),
        }
    }

    /// A user of the session's tenant, by id or userPrincipalName.
    pub fn user(&self, session: &AppSession, reference: &str) -> Option<User> {
        self.0
            .tenants
            .iter()
            .find(|t| t.id == session.tenant_id)?
            .users
            .iter()
            .find(|u| {
                u.id.eq_ignore_ascii_case(reference)
                    || u.user_principal_name.eq_ignore_ascii_case(reference)
            })
            .filter(|u| self.gone(&u.id) != Some(Gone::UserDeleted))
            .cloned()
    }

    fn gone(&self, user_id: &str) -> Option<Gone> {
        self.0
            .gone
            .read()
            .expect("lock poisoned")
            .get(&user_id.to_ascii_lowercase())
            .map(|(_, how)| *how)
    }

    /// Disables a user's mailbox, or deletes the user (a seeded fault): from then on
    /// Graph answers 404 for it, while the inspection API still shows what it held.
    pub fn make_gone(&self, user_id: &str, how: Gone) {
        let mut gone = self.0.gone.write().expect("lock poisoned");
        let next = gone.len();
        gone.entry(user_id.to_ascii_lowercase())
            .or_insert((next, how));
    }

    /// Users a seeded fault disabled or deleted, in the order they went: (principal
    /// name, how).
    pub fn gone_users(&self) -> Vec<(String, Gone)> {
        let gone = self.0.gone.read().expect("lock poisoned");
        let mut users: Vec<(usize, String, Gone)> = self
            .0
            .tenants
            .iter()
            .flat_map(|t| &t.users)
            .filter_map(|u| {
                gone.get(&u.id.to_ascii_lowercase())
                    .map(|(n, g)| (*n, u.user_principal_name.clone(), *g))
            })
            .collect();
        users.sort_by_key(|(n, _, _)| *n);
        users.into_iter().map(|(_, upn, g)| (upn, g)).collect()
    }

    /// The mailbox of a user of the session's tenant, or Graph's 404 for an unknown user
    /// or a user without a mailbox.
    pub fn mailbox(
        &self,
        session: &AppSession,
        reference: &str,
    ) -> Result<Arc<Mutex<Mailbox>>, GraphError> {
        let user = self.user(session, reference).ok_or_else(|| {
            GraphError::new(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                format!(
                    "The requested user '{}' is invalid.",
                    mock_common::clip(reference, 100)
                ),
            )
        })?;
        let disabled = || {
            GraphError::new(
                StatusCode::NOT_FOUND,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        };
        if self.gone(&user.id) == Some(Gone::MailboxDisabled) {
            return Err(disabled());
        }
        self.0
            .mailboxes
            .read()
            .expect("lock poisoned")
            .get(&user.id.to_ascii_lowercase())
            .cloned()
            .ok_or_else(disabled)
    }

    /// Admits a request through the throttle, or answers Graph's 429. Under a profile
    /// with latency, the `Retry-After` of a concurrency refusal is drawn (seeded, by the
    /// request `identity` and its attempt) rather than always one second.
    pub fn admit(
        &self,
        session: &AppSession,
        mailbox_key: &str,
        upload_bytes: u64,
        identity: &str,
    ) -> Result<Permit, GraphError> {
        self.admit_as(&session.client_id, mailbox_key, upload_bytes, identity)
    }

    /// [`State::admit`] for the application `client_id` (an upload URL's chunks carry no
    /// token: they count against the application that opened the session).
    pub fn admit_as(
        &self,
        client_id: &str,
        mailbox_key: &str,
        upload_bytes: u64,
        identity: &str,
    ) -> Result<Permit, GraphError> {
        self.0
            .throttle
            .enter(client_id, mailbox_key, upload_bytes, self.now())
            .map_err(|t| {
                let (code, message, retry) = match t {
                    Throttled::Concurrency => (
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                        self.0
                            .config
                            .profile
                            .latency
                            .as_ref()
                            .map_or(1, |l| l.retry_after(&self.0.fault_draws, identity)),
                    ),
                    Throttled::Requests { retry_after } => (
                        "TooManyRequests",
                        "The mailbox is over its request limit; retry later.",
                        retry_after,
                    ),
                    Throttled::Upload { retry_after } => (
                        "TooManyRequests",
                        "The mailbox is over its upload limit; retry later.",
                        retry_after,
                    ),
                    Throttled::Application { retry_after } => (
                        "ApplicationThrottled",
                        "Application is over its request limit across all mailboxes.",
                        retry_after,
                    ),
                };
                GraphError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                    .with_retry_after(retry)
            })
    }

    /// The mailbox of the user `user_id`, whoever asks (for an upload session's last
    /// chunk, which carries no token).
    pub fn mailbox_of(&self, user_id: &str) -> Option<Arc<Mutex<Mailbox>>> {
        if self.gone(user_id) == Some(Gone::MailboxDisabled) {
            return None;
        }
        self.0
            .mailboxes
            .read()
            .expect("lock poisoned")
            .get(&user_id.to_ascii_lowercase())
            .cloned()
    }

    /// The open upload sessions.
    pub fn uploads(&self) -> &crate::attach::Uploads {
        &self.0.uploads
    }

    /// Whether message `id` of `mailbox` may take a file now (it exists; it is a draft,
    /// or the fake allows attachments on non-drafts).
    pub fn may_attach(&self, mailbox: &Mailbox, id: &str) -> Result<(), GraphError> {
        let message = mailbox.message(id).ok_or_else(GraphError::item_not_found)?;
        if !message.is_draft && !self.0.config.attachments_on_non_drafts {
            return Err(GraphError::access_denied());
        }
        Ok(())
    }

    /// Attaches a file to message `id`: its MIME gets one more part (or, when the store
    /// keeps summaries only, its summary one more attachment). Answers the attachment's
    /// id. Two files finishing at once on one message both land: the second starts again
    /// from what the first left.
    pub async fn attach(
        &self,
        mailbox: &Arc<Mutex<Mailbox>>,
        id: &str,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<String, GraphError> {
        loop {
            let old = {
                let mailbox = mailbox.lock().expect("mailbox lock poisoned");
                self.may_attach(&mailbox, id)?;
                mailbox
                    .message(id)
                    .ok_or_else(GraphError::item_not_found)?
                    .content
                    .clone()
            };
            let new = if old.retained() {
                let mime = old.mime()?;
                let joined = crate::attach::with_attachment(&mime, name, content_type, bytes)
                    .map_err(|_| {
                        GraphError::bad_request("The stored message cannot take an attachment.")
                    })?;
                self.0.store.put(joined).await.map_err(|e| {
                    tracing::error!(error = %e, "the message store cannot write");
                    GraphError::internal()
                })?
            } else {
                self.0
                    .store
                    .with_attachment(&old, name, content_type, bytes)
            };
            let mut mailbox = mailbox.lock().expect("mailbox lock poisoned");
            if mailbox.replace_content(id, &old, new.clone())? {
                let serial = mailbox
                    .message(id)
                    .map(|m| m.serial)
                    .ok_or_else(GraphError::item_not_found)?;
                return Ok(mailbox.attachment_id(serial, new.attachments().len() - 1));
            }
        }
    }

    /// Whether any seeded fault is configured.
    pub fn faults_configured(&self) -> bool {
        let f = &self.0.faults;
        f.unavailable_rate > 0.0
            || f.lost_import_response_rate > 0.0
            || f.revoked_token_rate > 0.0
            || f.throttle_storm_rate > 0.0
            || f.folder_deleted_rate > 0.0
            || f.mailbox_disabled_rate > 0.0
            || f.transport().configured()
    }

    /// What the transport does to the request `identity` (slow answer, cut body).
    /// The profile in force.
    pub fn profile(&self) -> &crate::profile::Profile {
        &self.0.config.profile
    }

    /// How long the request `identity` takes under the profile, its seeded slow-answer
    /// fault included: the time it holds its place among its mailbox's requests in
    /// flight. Answers whether the transport also cuts its body short.
    pub fn request_delay(
        &self,
        identity: &str,
        kind: crate::profile::RequestKind,
        body_bytes: usize,
    ) -> (std::time::Duration, bool) {
        let drawn = if self.faults_configured() {
            self.roll_transport(identity)
        } else {
            mock_common::transport::Drawn::default()
        };
        let latency = self
            .0
            .config
            .profile
            .latency
            .as_ref()
            .map(|l| l.delay(&self.0.fault_draws, identity, kind, body_bytes))
            .unwrap_or_default();
        (latency + drawn.delay.unwrap_or_default(), drawn.reset)
    }

    pub fn roll_transport(&self, identity: &str) -> mock_common::transport::Drawn {
        let drawn = self
            .0
            .faults
            .transport()
            .draw(&self.0.fault_draws, identity);
        if drawn.delay.is_some() || drawn.reset {
            self.0.faults_injected.fetch_add(1, Ordering::Relaxed);
        }
        drawn
    }

    /// Draws, from the directory's seed, what the request is about (`identity`) and how
    /// many times that same request came before, whether to inject a fault into it:
    /// never from arrival order, so a scenario meets the same faults at any concurrency.
    pub fn roll_fault(&self, import: bool, identity: &str) -> Option<Fault> {
        let f = &self.0.faults;
        if !self.faults_configured() {
            return None;
        }
        let draw = self.0.fault_draws.draw(f.seed, identity);
        let fault = if draw < f.unavailable_rate {
            Some(Fault::Unavailable)
        } else if draw < f.unavailable_rate + f.revoked_token_rate {
            Some(Fault::RevokedToken)
        } else if import
            && draw < f.unavailable_rate + f.revoked_token_rate + f.lost_import_response_rate
        {
            Some(Fault::LoseImportResponse)
        } else {
            // Past every other kind (an import's or not), so that adding storms leaves
            // the other kinds' draws as they were.
            let from = f.unavailable_rate + f.revoked_token_rate + f.lost_import_response_rate;
            let folder_from = from + f.throttle_storm_rate;
            let disable_from = folder_from + f.folder_deleted_rate;
            if draw >= from && draw < folder_from {
                Some(Fault::Storm {
                    retry_after: 1 + ((draw - from) / f.throttle_storm_rate * 10.0) as u64 % 10,
                })
            } else if import && draw >= folder_from && draw < disable_from {
                Some(Fault::DeleteFolder)
            } else if import
                && draw >= disable_from
                && draw < disable_from + f.mailbox_disabled_rate
            {
                Some(Fault::DisableMailbox {
                    user_deleted: (draw - disable_from) / f.mailbox_disabled_rate < 0.5,
                })
            } else {
                None
            }
        };
        if fault.is_some() {
            self.0.faults_injected.fetch_add(1, Ordering::Relaxed);
        }
        fault
    }

    /// Where message bytes are kept.
    pub fn store(&self) -> &crate::store::Store {
        &self.0.store
    }

    /// Counts a stored import.
    pub fn count_import(&self) {
        self.0.imports.fetch_add(1, Ordering::Relaxed);
    }

    // ---- inspection ----

    fn any_mailbox(&self, reference: &str) -> Option<Arc<Mutex<Mailbox>>> {
        let user = self.0.tenants.iter().flat_map(|t| &t.users).find(|u| {
            u.id.eq_ignore_ascii_case(reference)
                || u.user_principal_name.eq_ignore_ascii_case(reference)
        })?;
        self.0
            .mailboxes
            .read()
            .expect("lock poisoned")
            .get(&user.id.to_ascii_lowercase())
            .cloned()
    }

    /// Reads one mailbox (by user id or principal name) under its lock.
    pub fn read_mailbox<R>(&self, user: &str, read: impl FnOnce(&Mailbox) -> R) -> Option<R> {
        let mailbox = self.any_mailbox(user)?;
        let mailbox = mailbox.lock().expect("lock poisoned");
        Some(read(&mailbox))
    }

    /// Forgets an access token before it expires (a revocation).
    pub fn revoke(&self, authorization: Option<&str>) {
        if let Some(token) = authorization.and_then(mock_common::secret::bearer) {
            self.0.sessions.revoke(token);
        }
    }

    /// The web viewer's login sessions.
    pub fn ui_sessions(&self) -> &Sessions<()> {
        &self.0.ui_sessions
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.0.tenants
    }

    /// A mailbox's folders with their message counts, or `None` for no such mailbox.
    pub fn inspect_folders(&self, user: &str) -> Option<Vec<InspectedFolder>> {
        let mailbox = self.any_mailbox(user)?;
        let mailbox = mailbox.lock().expect("lock poisoned");
        Some(
            mailbox
                .folders
                .iter()
                .map(|f| InspectedFolder {
                    id: f.id.clone(),
                    display_name: f.display_name.clone(),
                    well_known: f.well_known,
                    message_count: mailbox.folder_size(f),
                })
                .collect(),
        )
    }

    /// Every message of a mailbox, with recoverable items if asked.
    pub fn inspect_messages(
        &self,
        user: &str,
        include_recoverable: bool,
    ) -> Result<Vec<InspectedMessage>, InspectError> {
        self.inspect_placed(user, include_recoverable)
            .ok_or(InspectError::NoMailbox)?
            .iter()
            .map(|p| p.inspected().map_err(InspectError::Read))
            .collect()
    }

    /// Every message of a mailbox, as where it is and its shared content: nothing of the
    /// summary is copied, so a reconciliation over millions of copies stays small.
    pub fn inspect_placed(&self, user: &str, include_recoverable: bool) -> Option<Vec<Placed>> {
        let mailbox = self.any_mailbox(user)?;
        let mailbox = mailbox.lock().expect("lock poisoned");
        let names: HashMap<u64, Arc<str>> = mailbox
            .folders
            .iter()
            .map(|f| (f.serial, Arc::from(f.display_name.as_str())))
            .collect();
        let recoverable: Arc<str> = Arc::from("Recoverable Items");
        let unknown: Arc<str> = Arc::from("");
        let mut all: Vec<_> = mailbox
            .messages
            .values()
            .map(|m| Placed {
                stored: m.clone(),
                folder: names.get(&m.folder).unwrap_or(&unknown).clone(),
                recoverable: false,
            })
            .collect();
        if include_recoverable {
            all.extend(mailbox.recoverable.iter().map(|m| Placed {
                stored: m.clone(),
                folder: recoverable.clone(),
                recoverable: true,
            }));
        }
        Some(all)
    }

    /// A stored message's content (recoverable ones too): its exact bytes with
    /// [`Content::mime`](crate::store::Content::mime).
    pub fn inspect_content(
        &self,
        user: &str,
        message_id: &str,
    ) -> Option<Arc<crate::store::Content>> {
        let mailbox = self.any_mailbox(user)?;
        let mailbox = mailbox.lock().expect("lock poisoned");
        mailbox
            .message(message_id)
            .or_else(|| mailbox.recoverable(message_id))
            .map(|m| m.content.clone())
    }

    pub fn counters(&self) -> Counters {
        let usage = self.0.throttle.usage();
        let sum = |f: fn(&Usage) -> u64| usage.values().map(f).sum();
        Counters {
            tokens_issued: self.0.tokens_issued.load(Ordering::Relaxed),
            token_failures: self.0.token_failures.load(Ordering::Relaxed),
            faults_injected: self.0.faults_injected.load(Ordering::Relaxed),
            imports: self.0.imports.load(Ordering::Relaxed),
            requests: sum(|u| u.requests),
            throttled: sum(|u| u.throttled),
            bytes_received: sum(|u| u.bytes_received),
            per_application_mailbox: usage
                .into_iter()
                .map(|((client_id, mailbox), usage)| UsageRow {
                    client_id,
                    mailbox,
                    usage,
                })
                .collect(),
        }
    }

    /// What the mailboxes hold in memory, estimated from their data (a figure of the fake
    /// alone, where the process's RSS also counts whatever shares it): every stored
    /// message (recoverable ones too), each distinct content once.
    pub fn memory(&self) -> Memory {
        let mut out = Memory::default();
        let mut seen = std::collections::HashSet::new();
        let mailboxes: Vec<_> = self
            .0
            .mailboxes
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect();
        for mailbox in mailboxes {
            let mailbox = mailbox.lock().expect("lock poisoned");
            for m in mailbox.messages.values().chain(&mailbox.recoverable) {
                out.messages += 1;
                out.bytes += m.heap_bytes() as u64;
                if seen.insert(Arc::as_ptr(&m.content)) {
                    out.contents += 1;
                    out.bytes += m.content.heap_bytes() as u64;
                }
            }
        }
        out
    }

    /// Empties every mailbox back to its well-known folders and zeroes the counters.
    /// Sessions stay valid.
    pub fn reset(&self) {
        self.0.uploads.clear();
        let mut mailboxes = self.0.mailboxes.write().expect("lock poisoned");
        for mailbox in mailboxes.values_mut() {
            let user = mailbox.lock().expect("lock poisoned").user.clone();
            *mailbox = Arc::new(Mutex::new(Mailbox::new(user)));
        }
        self.0.throttle.reset();
        for c in [
            &self.0.tokens_issued,
            &self.0.token_failures,
            &self.0.faults_injected,
            &self.0.imports,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Decodes an import body (base64, white space ignored).
pub fn decode_base64(body: &[u8]) -> Result<Vec<u8>, MimeError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD.decode(&compact).map_err(|_| MimeError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_import_into_a_folder_deleted_meanwhile_stores_nothing() {
        let mut mailbox = Mailbox::new(User {
            id: "u1".into(),
            user_principal_name: "alice@contoso.example".into(),
            mail: None,
            display_name: "Alice".into(),
            mailbox_enabled: true,
            litigation_hold: false,
        });
        let folder = mailbox.create_folder("WhatsApp Archiver").expect("created");
        let store = crate::store::Store::new(&crate::store::Storage::Memory).expect("a store");
        let content = store
            .put(b"Message-ID: <m@x>\r\nFrom: a@b.c\r\n\r\nhi\r\n".to_vec())
            .await
            .expect("kept");
        let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .expect("a time")
            .to_utc();
        // The request found the folder (its number), then another deleted it.
        mailbox.delete_folder_for_good(&folder.id);
        assert!(
            mailbox
                .import(folder.serial, content.clone(), false, now)
                .is_none()
        );
        assert!(mailbox.messages.is_empty());
        let inbox = mailbox.folder("inbox").expect("inbox").serial;
        assert!(mailbox.import(inbox, content, false, now).is_some());
        assert_eq!(mailbox.messages.len(), 1);
    }
}
