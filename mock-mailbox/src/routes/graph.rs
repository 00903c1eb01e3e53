//! The Microsoft Graph mail subset. Every handler: version, token, faults, permission,
//! user and mailbox, throttle, then the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query as AxQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::authorization;
use crate::error::GraphError;
use crate::message::{MimeError, StoredMessage};
use crate::odata::Query;
use crate::search::Search;
use crate::state::{AppSession, Fault, Folder, Mailbox, State, decode_base64, permission};
use crate::throttle::Permit;

pub(super) type Answer = Result<Response, GraphError>;

const DEFAULT_PAGE: usize = 10;

/// Checks the version segment and the token; draws a fault.
fn open(state: &State, headers: &HeaderMap, root: &str) -> Result<AppSession, GraphError> {
    if root != "v1.0" && root != "beta" {
        return Err(GraphError::bad_request(format!(
            "Invalid version: {}",
            mock_common::clip(root, 40)
        )));
    }
    state.authenticate(authorization(headers))
}

/// The name the gate gave a request (what it is about), for seeded draws.
pub(super) fn identity(headers: &HeaderMap) -> &str {
    headers
        .get(super::FAULT_IDENTITY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Draws the seeded fault of a request that got through (after its throttle, so that a
/// 429 does not use up a draw: the same request meets the same faults at any
/// concurrency). `Unavailable` and `RevokedToken` are answered here.
fn fault(state: &State, headers: &HeaderMap, import: bool) -> Result<Option<Fault>, GraphError> {
    let fault = state.roll_fault(import, identity(headers));
    match fault {
        Some(Fault::Unavailable) => Err(GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Service Unavailable",
        )
        .with_retry_after(1)),
        Some(Fault::Storm { retry_after }) => Err(GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "The mailbox is over its request limit; retry later.",
        )
        .with_retry_after(retry_after)
        .injected()),
        Some(Fault::RevokedToken) => {
            state.revoke(authorization(headers));
            Err(GraphError::invalid_token(
                "Access token has been revoked before its expiry.",
            ))
        }
        _ => Ok(fault),
    }
}

/// A mail call that got through: its session, its mailbox, the fault drawn for it, and
/// its place in the throttle (held until the call ends).
pub(super) struct MailCall {
    pub(super) mailbox: Arc<Mutex<Mailbox>>,
    /// The calling application.
    pub(super) client_id: String,
    fault: Option<Fault>,
    _permit: Permit,
}

impl MailCall {
    pub(super) fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        self.mailbox.lock().expect("mailbox lock poisoned")
    }
}

/// Version, token, fault, permission, mailbox and throttle, in that order; then the
/// request's delay (its profile's latency, a seeded slow answer), served while it holds
/// its place among its mailbox's requests in flight, as Graph counts it.
pub(super) async fn mail_call(
    state: &State,
    headers: &HeaderMap,
    root: &str,
    user: &str,
    any_of: &[&str],
    upload_bytes: u64,
    import: bool,
) -> Result<MailCall, GraphError> {
    let session = open(state, headers, root)?;
    if !session.may(any_of) {
        return Err(GraphError::access_denied());
    }
    let mailbox = state.mailbox(&session, user)?;
    let user_id = mailbox
        .lock()
        .expect("mailbox lock poisoned")
        .user
        .id
        .clone();
    let permit = state.admit(&session, &user_id, upload_bytes, identity(headers))?;
    serve_delay(state, headers, &session.client_id, &user_id).await;
    let fault = fault(state, headers, import)?;
    Ok(MailCall {
        mailbox,
        client_id: session.client_id,
        fault,
        _permit: permit,
    })
}

/// Serves the delay the gate drew for this request while it holds its place in flight,
/// and counts it as its mailbox's busy time.
pub(super) async fn serve_delay(
    state: &State,
    headers: &HeaderMap,
    client_id: &str,
    user_id: &str,
) {
    let delay = headers
        .get(super::DELAY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_micros(delay)).await;
        state.throttle().add_busy(client_id, user_id, delay);
    }
}

pub(super) fn query(
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Result<Query, GraphError> {
    let AxQuery(params) =
        q.map_err(|_| GraphError::bad_request("The query string is malformed."))?;
    Query::parse(&params)
}

pub(super) fn context(root: &str, what: &str) -> String {
    format!("https://graph.microsoft.com/{root}/$metadata#{what}")
}

/// `@odata.nextLink`: this request's URL with `$skip` moved on.
pub(super) fn next_link(headers: &HeaderMap, uri: &axum::http::Uri, skip: usize) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .filter(|(k, _)| k != "$skip")
            .collect();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        query.append_pair(k, v);
    }
    query.append_pair("$skip", &skip.to_string());
    format!("http://{host}{}?{}", uri.path(), query.finish())
}

pub(super) fn page(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    q: &Query,
    context: String,
    values: Vec<Value>,
) -> Response {
    let top = q.top.unwrap_or(DEFAULT_PAGE);
    let total = values.len();
    let values: Vec<Value> = values.into_iter().skip(q.skip).take(top).collect();
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(context));
    body.insert("value".into(), Value::Array(values));
    if q.skip.saturating_add(top) < total {
        body.insert(
            "@odata.nextLink".into(),
            json!(next_link(headers, uri, q.skip.saturating_add(top))),
        );
    }
    axum::Json(Value::Object(body)).into_response()
}

fn folder_json(mailbox: &Mailbox, folder: &Folder) -> Map<String, Value> {
    let size: usize = mailbox
        .messages
        .values()
        .filter(|m| m.folder == folder.serial)
        .map(|m| m.content.len)
        .sum();
    let mut m = Map::new();
    m.insert("id".into(), json!(folder.id));
    m.insert("displayName".into(), json!(folder.display_name));
    m.insert("parentFolderId".into(), json!(mailbox.root_id));
    m.insert("childFolderCount".into(), json!(0));
    m.insert("unreadItemCount".into(), json!(0));
    m.insert("totalItemCount".into(), json!(mailbox.folder_size(folder)));
    m.insert("sizeInBytes".into(), json!(size));
    m.insert("isHidden".into(), json!(false));
    m
}

pub(super) fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

pub async fn get_user(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user)): Path<(String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let session = open(&state, &headers, &root)?;
    fault(&state, &headers, false)?;
    let q = query(q)?;
    if !session.may(permission::READ_USERS) {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    let found = state.user(&session, &user).ok_or_else(|| {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{}' does not exist or one of its queried reference-property objects are not present.",
                mock_common::clip(&user, 100)
            ),
        )
    })?;
    let _permit = state.admit(&session, &found.id, 0, identity(&headers))?;
    let mut m = Map::new();
    m.insert(
        "@odata.context".into(),
        json!(context(&root, "users/$entity")),
    );
    m.insert("id".into(), json!(found.id));
    m.insert("userPrincipalName".into(), json!(found.user_principal_name));
    m.insert("mail".into(), json!(found.mail));
    m.insert("displayName".into(), json!(found.display_name));
    m.insert("businessPhones".into(), json!([]));
    Ok(axum::Json(q.project(m)).into_response())
}

pub async fn list_folders(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((root, user)): Path<(String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::READ_MAIL,
        0,
        false,
    )
    .await?;
    let q = query(q)?;
    let mailbox = call.mailbox();
    let wanted = match &q.filter {
        Some(f) => Some(f.on("displayName")?.to_owned()),
        None => None,
    };
    let mut folders: Vec<&Folder> = mailbox
        .folders
        .iter()
        .filter(|f| {
            wanted
                .as_deref()
                .is_none_or(|w| f.display_name.eq_ignore_ascii_case(w))
        })
        .collect();
    folders.sort_by(|a, b| {
        a.display_name
            .to_lowercase()
            .cmp(&b.display_name.to_lowercase())
    });
    let values = folders
        .into_iter()
        .map(|f| q.project(folder_json(&mailbox, f)))
        .collect();
    Ok(page(
        &headers,
        &uri,
        &q,
        context(&root, &format!("users('{user}')/mailFolders")),
        values,
    ))
}

pub async fn get_folder(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, folder)): Path<(String, String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::READ_MAIL,
        0,
        false,
    )
    .await?;
    let q = query(q)?;
    let mailbox = call.mailbox();
    let folder = mailbox
        .folder(&folder)
        .ok_or_else(GraphError::item_not_found)?;
    let mut m = folder_json(&mailbox, folder);
    m.insert(
        "@odata.context".into(),
        json!(context(
            &root,
            &format!("users('{user}')/mailFolders/$entity")
        )),
    );
    Ok(axum::Json(q.project(m)).into_response())
}

/// `DELETE /users/{u}/mailFolders/{id}`: the folder and its messages go (to Recoverable
/// Items, as Exchange keeps them; the inspection view shows them there). A well-known
/// folder cannot be deleted.
pub async fn delete_folder(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, folder)): Path<(String, String, String)>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::WRITE_MAIL,
        0,
        false,
    )
    .await?;
    let mut mailbox = call.mailbox();
    let found = mailbox
        .folder(&folder)
        .ok_or_else(GraphError::item_not_found)?;
    if found.well_known.is_some() {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorDeleteDistinguishedFolder",
            "Distinguished folders cannot be deleted.",
        ));
    }
    let id = found.id.clone();
    mailbox.delete_folder_for_good(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewFolder {
    display_name: Option<String>,
}

/// Longest folder name accepted, in characters (Exchange's limit).
pub const FOLDER_NAME_LIMIT: usize = 255;

pub async fn create_folder(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user)): Path<(String, String)>,
    body: Result<axum::Json<NewFolder>, JsonRejection>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::WRITE_MAIL,
        0,
        false,
    )
    .await?;
    let axum::Json(body) = body.map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "The request body must be a JSON mailFolder with displayName.",
        )
    })?;
    let name = body
        .display_name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The displayName of a folder cannot be empty.",
            )
        })?;
    if name.chars().count() > FOLDER_NAME_LIMIT || name.chars().any(char::is_control) {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            format!(
                "The displayName of a folder is at most {FOLDER_NAME_LIMIT} characters, none of them a control character."
            ),
        ));
    }
    let mut mailbox = call.mailbox();
    let folder = mailbox.create_folder(&name)?;
    tracing::info!(mailbox = %mailbox.user.user_principal_name, folder = %name, "folder created");
    let mut m = folder_json(&mailbox, &folder);
    m.insert(
        "@odata.context".into(),
        json!(context(
            &root,
            &format!("users('{user}')/mailFolders/$entity")
        )),
    );
    Ok(created(Value::Object(m)))
}

/// Decodes a base64 MIME body and keeps it in the message store.
async fn keep(
    state: &State,
    body: &[u8],
) -> Result<std::sync::Arc<crate::store::Content>, GraphError> {
    let mime = decode_base64(body).map_err(mime_error)?;
    state.store().put(mime).await.map_err(|e| match e {
        crate::store::StoreError::Mime(e) => mime_error(e),
        crate::store::StoreError::Io(e) => {
            tracing::error!(error = %e, "the message store cannot write");
            GraphError::internal()
        }
        crate::store::StoreError::TooLong => {
            GraphError::bad_request("The message's header section or text is too long to keep.")
        }
    })
}

fn mime_error(e: MimeError) -> GraphError {
    match e {
        MimeError::Base64 => GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        ),
        MimeError::NotMime => GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalid",
            "The MIME content is not valid.",
        ),
    }
}

/// MIME goes to Graph as base64 text: `Content-Type: text/plain` (parameters allowed).
fn mime_content_type(headers: &HeaderMap) -> Result<(), GraphError> {
    let plain = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/plain"));
    if plain {
        Ok(())
    } else {
        Err(GraphError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "MIME content must be sent base64-encoded with Content-Type: text/plain.",
        ))
    }
}

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, GraphError> {
    body.map_err(|_| {
        GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is too large.",
        )
    })
}

fn message_entity(
    root: &str,
    user: &str,
    message: &StoredMessage,
    q: Option<&Query>,
) -> Result<Value, GraphError> {
    let with_headers = q.is_some_and(|q| q.selects("internetMessageHeaders"));
    let mut m = message.to_graph(with_headers)?;
    m.insert(
        "@odata.context".into(),
        json!(context(root, &format!("users('{user}')/messages/$entity"))),
    );
    Ok(match q {
        Some(q) => q.project(m),
        None => Value::Object(m),
    })
}

pub async fn import_mime(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, folder)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    if root == "v1.0" {
        return Err(GraphError::bad_request(
            "Resource not found for the segment 'importMime'.",
        ));
    }
    let body = body_bytes(body)?;
    mime_content_type(&headers)?;
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::IMPORT_MIME,
        body.len() as u64,
        true,
    )
    .await?;
    match call.fault {
        Some(Fault::DeleteFolder) => {
            let mut mailbox = call.mailbox();
            let doomed = mailbox.folder(&folder).map(|f| f.id.clone());
            if let Some(id) = doomed
                && mailbox.delete_folder_for_good(&id) > 0
            {
                tracing::info!(mailbox = %mailbox.user.user_principal_name, "seeded fault: folder deleted for good");
                return Err(GraphError::item_not_found());
            }
        }
        Some(Fault::DisableMailbox { user_deleted }) => {
            let (id, upn) = {
                let mailbox = call.mailbox();
                (
                    mailbox.user.id.clone(),
                    mailbox.user.user_principal_name.clone(),
                )
            };
            tracing::info!(mailbox = %upn, user_deleted, "seeded fault: mailbox gone");
            return Err(if user_deleted {
                state.make_gone(&id, crate::state::Gone::UserDeleted);
                GraphError::new(
                    StatusCode::NOT_FOUND,
                    "ErrorInvalidUser",
                    format!(
                        "The requested user '{}' is invalid.",
                        mock_common::clip(&user, 100)
                    ),
                )
            } else {
                state.make_gone(&id, crate::state::Gone::MailboxDisabled);
                GraphError::new(
                    StatusCode::NOT_FOUND,
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                )
            });
        }
        _ => {}
    }
    // Decoded and parsed before the mailbox is locked: a mailbox takes several imports
    // at once, as Exchange does.
    let folder = call
        .mailbox()
        .folder(&folder)
        .ok_or_else(GraphError::item_not_found)?
        .serial;
    let content = keep(&state, &body).await?;
    let (stored, upn) = {
        let mut mailbox = call.mailbox();
        let stored = mailbox
            .import(folder, content, false, state.now())
            .ok_or_else(GraphError::item_not_found)?;
        (stored, mailbox.user.user_principal_name.clone())
    };
    state.count_import();
    tracing::debug!(mailbox = %upn, message = %stored.id(), "message imported");
    if call.fault == Some(Fault::LoseImportResponse) {
        return Err(GraphError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "UnknownError",
            "The gateway timed out.",
        ));
    }
    Ok(created(message_entity(&root, &user, &stored, None)?))
}

async fn create_draft_in(
    state: State,
    headers: HeaderMap,
    root: String,
    user: String,
    folder: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = body_bytes(body)?;
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::WRITE_MAIL,
        body.len() as u64,
        false,
    )
    .await?;
    let is_mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/plain"));
    if !is_mime {
        return Err(GraphError::bad_request(
            "This fake creates messages from MIME only: send the base64 MIME with Content-Type: text/plain.",
        ));
    }
    let folder = call
        .mailbox()
        .folder(folder.as_deref().unwrap_or("drafts"))
        .ok_or_else(GraphError::item_not_found)?
        .serial;
    let content = keep(&state, &body).await?;
    let stored = call
        .mailbox()
        .import(folder, content, true, state.now())
        .ok_or_else(GraphError::item_not_found)?;
    Ok(created(message_entity(&root, &user, &stored, None)?))
}

pub async fn create_draft(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    create_draft_in(state, headers, root, user, None, body).await
}

pub async fn create_draft_in_folder(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, folder)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    create_draft_in(state, headers, root, user, Some(folder), body).await
}

async fn list_in(
    state: State,
    headers: HeaderMap,
    uri: axum::http::Uri,
    root: String,
    user: String,
    folder: Option<String>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::READ_MAIL,
        0,
        false,
    )
    .await?;
    let q = query(q)?;
    let search = q.search.as_deref().map(Search::parse).transpose()?;
    let wanted_id = match &q.filter {
        Some(f) => Some(f.on("internetMessageId")?.to_owned()),
        None => None,
    };
    let mailbox = call.mailbox();
    let folder = match &folder {
        Some(f) => Some(
            mailbox
                .folder(f)
                .ok_or_else(GraphError::item_not_found)?
                .serial,
        ),
        None => None,
    };
    let mut messages: Vec<&StoredMessage> = Vec::new();
    for m in mailbox
        .messages
        .values()
        .filter(|m| folder.is_none_or(|f| m.folder == f))
        .filter(|m| {
            wanted_id
                .as_deref()
                .is_none_or(|w| m.content.internet_message_id() == Some(w))
        })
    {
        if search.as_ref().map_or(Ok(true), |s| s.matches(m))? {
            messages.push(m);
        }
    }
    // Newest first; among equals, in the order they came.
    messages.sort_by(|a, b| {
        b.received()
            .cmp(&a.received())
            .then_with(|| a.serial.cmp(&b.serial))
    });
    let with_headers = q.selects("internetMessageHeaders");
    let values = messages
        .into_iter()
        .map(|m| Ok(q.project(m.to_graph(with_headers)?)))
        .collect::<Result<_, crate::store::ReadError>>()?;
    let what = match &folder {
        Some(f) => format!("users('{user}')/mailFolders('{f}')/messages"),
        None => format!("users('{user}')/messages"),
    };
    Ok(page(&headers, &uri, &q, context(&root, &what), values))
}

pub async fn list_messages(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((root, user)): Path<(String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    list_in(state, headers, uri, root, user, None, q).await
}

pub async fn list_folder_messages(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((root, user, folder)): Path<(String, String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    list_in(state, headers, uri, root, user, Some(folder), q).await
}

pub async fn get_message(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message)): Path<(String, String, String)>,
    q: Result<AxQuery<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::READ_MAIL,
        0,
        false,
    )
    .await?;
    let q = query(q)?;
    let mailbox = call.mailbox();
    let found = mailbox
        .message(&message)
        .ok_or_else(GraphError::item_not_found)?;
    Ok(axum::Json(message_entity(&root, &user, found, Some(&q))?).into_response())
}

pub async fn get_mime(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message)): Path<(String, String, String)>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::READ_MAIL,
        0,
        false,
    )
    .await?;
    let mailbox = call.mailbox();
    let found = mailbox
        .message(&message)
        .ok_or_else(GraphError::item_not_found)?;
    let bytes = found.content.mime()?;
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

pub async fn delete_message(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message)): Path<(String, String, String)>,
) -> Answer {
    let call = mail_call(
        &state,
        &headers,
        &root,
        &user,
        permission::WRITE_MAIL,
        0,
        false,
    )
    .await?;
    let mut mailbox = call.mailbox();
    if !mailbox.delete(&message) {
        return Err(GraphError::item_not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
