//! A message's attachments, and the upload sessions that bring files too large for one
//! request: `GET`/`POST .../messages/{id}/attachments`, `GET .../attachments/{id}` and
//! its `$value`, `POST .../attachments/createUploadSession`, and the upload URL it
//! gives (`PUT` a chunk, `DELETE` to cancel), which carries its own credential and no
//! bearer token, as Graph's does.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query as AxQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::graph::{Answer, body_bytes, context, created, mail_call, page, query};
use crate::attach::{
    Announced, CHUNK_LIMIT, ChunkError, Owner, SINGLE_POST_LIMIT, Taken, UPLOAD_LIMIT,
};
use crate::error::GraphError;
use crate::message::AttachmentSummary;
use crate::state::{State, permission};

/// Graph's `fileAttachment`, without its bytes.
fn attachment_json(id: &str, a: &AttachmentSummary, modified: DateTime<Utc>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.fileAttachment"),
    );
    m.insert("id".into(), json!(id));
    m.insert(
        "lastModifiedDateTime".into(),
        json!(modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    m.insert("name".into(), json!(a.name));
    m.insert("contentType".into(), json!(a.content_type));
    m.insert("size".into(), json!(a.size));
    m.insert("isInline".into(), json!(false));
    m
}

/// Reads attachment `attachment` of message `message`, for a read call: the message, the
/// attachment as listed, and its decoded bytes (501 when the store keeps no bytes).
async fn read_attachment(
    state: &State,
    headers: &HeaderMap,
    (root, user, message, attachment): (&str, &str, &str, &str),
) -> Result<(crate::message::StoredMessage, AttachmentSummary, Vec<u8>), GraphError> {
    let call = mail_call(state, headers, root, user, permission::READ_MAIL, 0, false).await?;
    let found = call
        .mailbox()
        .message(message)
        .cloned()
        .ok_or_else(GraphError::item_not_found)?;
    let (index, summary) = call
        .mailbox()
        .attachment_index(found.serial, attachment)
        .and_then(|i| Some((i, found.content.attachments().into_iter().nth(i)?)))
        .ok_or_else(GraphError::item_not_found)?;
    let mime = found.content.mime()?;
    let bytes = crate::message::attachment_content(&mime, index).unwrap_or_default();
    Ok((found, summary, bytes))
}

pub async fn list(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    uri: axum::http::Uri,
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
    let values = found
        .content
        .attachments()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            q.project(attachment_json(
                &mailbox.attachment_id(found.serial, i),
                a,
                found.created,
            ))
        })
        .collect();
    Ok(page(
        &headers,
        &uri,
        &q,
        context(
            &root,
            &format!("users('{user}')/messages('{message}')/attachments"),
        ),
        values,
    ))
}

pub async fn get_one(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message, attachment)): Path<(String, String, String, String)>,
) -> Answer {
    let (found, summary, bytes) =
        read_attachment(&state, &headers, (&root, &user, &message, &attachment)).await?;
    let mut m = attachment_json(&attachment, &summary, found.created);
    m.insert(
        "@odata.context".into(),
        json!(context(
            &root,
            &format!("users('{user}')/messages('{message}')/attachments/$entity")
        )),
    );
    m.insert("contentBytes".into(), json!(STANDARD.encode(bytes)));
    Ok(axum::Json(Value::Object(m)).into_response())
}

pub async fn get_value(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message, attachment)): Path<(String, String, String, String)>,
) -> Answer {
    let (_, summary, bytes) =
        read_attachment(&state, &headers, (&root, &user, &message, &attachment)).await?;
    let content_type = summary.content_type;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAttachment {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    name: Option<String>,
    content_type: Option<String>,
    content_bytes: Option<String>,
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

fn file_name(name: Option<String>) -> Result<String, GraphError> {
    name.map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control) && n.chars().count() <= 255)
        .ok_or_else(|| invalid("An attachment needs a name of 1 to 255 characters, none of them a control character."))
}

/// `POST .../messages/{id}/attachments`: a file under 3 MB in one request.
pub async fn add(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message)): Path<(String, String, String)>,
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
    let new: NewAttachment = serde_json::from_slice(&body).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "The request body must be a JSON fileAttachment.",
        )
    })?;
    if new.odata_type.as_deref() != Some("#microsoft.graph.fileAttachment") {
        return Err(invalid(
            "This fake takes file attachments only: @odata.type must be #microsoft.graph.fileAttachment.",
        ));
    }
    let name = file_name(new.name)?;
    let bytes = new
        .content_bytes
        .as_deref()
        .map(|b| STANDARD.decode(b))
        .ok_or_else(|| invalid("A fileAttachment needs contentBytes."))?
        .map_err(|_| invalid("contentBytes is not valid base64."))?;
    if bytes.len() >= SINGLE_POST_LIMIT {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "A file attached in one request must be under 3 MB: use an upload session.",
        ));
    }
    let content_type = new
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    let id = state
        .attach(&call.mailbox, &message, &name, &content_type, &bytes)
        .await?;
    tracing::debug!(message = %message, size = bytes.len(), "file attached");
    let summary = AttachmentSummary {
        name,
        content_type,
        size: bytes.len(),
        sha256: String::new(),
    };
    let mut m = attachment_json(&id, &summary, state.now());
    m.insert(
        "@odata.context".into(),
        json!(context(
            &root,
            &format!("users('{user}')/messages('{message}')/attachments/$entity")
        )),
    );
    Ok(created(Value::Object(m)))
}

#[derive(Debug, Deserialize)]
pub struct SessionRequest {
    #[serde(rename = "AttachmentItem")]
    item: Option<AttachmentItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentItem {
    attachment_type: Option<String>,
    name: Option<String>,
    size: Option<u64>,
    content_type: Option<String>,
}

/// The host a client reached this fake at, for the URLs it gives out.
fn host(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
}

/// `POST .../messages/{id}/attachments/createUploadSession`.
pub async fn create_session(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((root, user, message)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = body_bytes(body)?;
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
    let request: SessionRequest = serde_json::from_slice(&body).map_err(|_| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "The request body must be {\"AttachmentItem\": {\"attachmentType\": \"file\", \"name\", \"size\"}}.",
        )
    })?;
    let item = request
        .item
        .ok_or_else(|| invalid("The request body needs an AttachmentItem."))?;
    if !item
        .attachment_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("file"))
    {
        return Err(invalid("AttachmentItem.attachmentType must be \"file\"."));
    }
    let name = file_name(item.name)?;
    let size = item
        .size
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("AttachmentItem.size must be the file's size in bytes, above 0."))?;
    if size > UPLOAD_LIMIT {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "An upload session takes a file of at most 150 MB.",
        ));
    }
    let user_id = {
        let mailbox = call.mailbox();
        state.may_attach(&mailbox, &message)?;
        mailbox.user.id.clone()
    };
    let (session, credential, expires) = state.uploads().open(
        Owner {
            client_id: call.client_id.clone(),
            user_id: user_id.clone(),
            message_id: message.clone(),
        },
        Announced {
            name,
            content_type: item
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            size,
        },
        state.now(),
    );
    let upload_url = format!(
        "http://{}/api/v2.0/Users('{user_id}')/Messages('{message}')/AttachmentSessions('{session}')?authtoken={credential}",
        host(&headers)
    );
    Ok(created(json!({
        "@odata.context": context(&root, "microsoft.graph.uploadSession"),
        "uploadUrl": upload_url,
        "expirationDateTime": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "nextExpectedRanges": ["0-"],
    })))
}

/// The session id in an upload URL's last segment, `AttachmentSessions('{id}')`.
fn session_id(segment: &str) -> Option<&str> {
    segment
        .strip_prefix("AttachmentSessions('")?
        .strip_suffix("')")
}

/// An upload URL's credential, from its query.
fn credential(q: &HashMap<String, String>) -> &str {
    q.get("authtoken").map(String::as_str).unwrap_or_default()
}

fn no_session() -> GraphError {
    GraphError::item_not_found()
}

/// The upload URL takes no bearer token: its own credential is in its query.
fn refuse_bearer(headers: &HeaderMap) -> Result<(), GraphError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(GraphError::invalid_token(
            "An upload URL is pre-authenticated: send no Authorization header to it.",
        ));
    }
    Ok(())
}

/// `Content-Range: bytes {first}-{last}/{total}`.
fn content_range(headers: &HeaderMap) -> Result<(u64, u64, u64), GraphError> {
    let bad = || invalid("A chunk needs Content-Range: bytes FIRST-LAST/TOTAL.");
    let value = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad)?;
    let rest = value.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = rest.split_once('/').ok_or_else(bad)?;
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (first, last, total) = (parse(first)?, parse(last)?, parse(total)?);
    if last < first {
        return Err(bad());
    }
    Ok((first, last, total))
}

/// `PUT` a chunk to an upload URL.
pub async fn put_chunk(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((_user, _message, session)): Path<(String, String, String)>,
    AxQuery(q): AxQuery<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    refuse_bearer(&headers)?;
    let body = body_bytes(body)?;
    let id = session_id(&session).ok_or_else(no_session)?;
    let key = credential(&q);
    let owner = state
        .uploads()
        .owner(id, key, state.now())
        .ok_or_else(no_session)?;
    if body.len() > CHUNK_LIMIT {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "A chunk carries at most 4 MB.",
        ));
    }
    let (first, last, total) = content_range(&headers)?;
    if last - first + 1 != body.len() as u64 {
        return Err(invalid(format!(
            "Content-Range names {} bytes; the chunk has {}.",
            last - first + 1,
            body.len()
        )));
    }
    // The chunk counts against the mailbox's upload budget and requests in flight, for
    // the application that opened the session, for all of its delay.
    let _permit = state.admit_as(
        &owner.client_id,
        &owner.user_id,
        body.len() as u64,
        super::graph::identity(&headers),
    )?;
    super::graph::serve_delay(&state, &headers, &owner.client_id, &owner.user_id).await;
    let now = state.now();
    match state.uploads().take(id, key, first, total, &body, now) {
        Err(ChunkError::NotFound) => Err(no_session()),
        Err(ChunkError::Range { expected }) => Err(GraphError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            format!("The chunk starts at byte {first}; the session expects byte {expected} next."),
        )),
        Err(ChunkError::Total { announced }) => Err(invalid(format!(
            "Content-Range gives a total of {total} bytes; the session was opened for {announced}."
        ))),
        Err(ChunkError::PastEnd) => Err(invalid("The chunk goes past the end of the file.")),
        Ok(Taken::More { next, expires }) => Ok(axum::Json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
            "expirationDateTime": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            // For Outlook attachments Graph gives one value, where the next chunk starts
            // (not a "start-end" range as for OneDrive).
            "nextExpectedRanges": [next.to_string()],
        }))
        .into_response()),
        Ok(Taken::Complete { owner, file, bytes }) => {
            let mailbox = state
                .mailbox_of(&owner.user_id)
                .ok_or_else(GraphError::item_not_found)?;
            let attachment = state
                .attach(
                    &mailbox,
                    &owner.message_id,
                    &file.name,
                    &file.content_type,
                    &bytes,
                )
                .await?;
            tracing::debug!(message = %owner.message_id, size = bytes.len(), "file uploaded");
            let location = format!(
                "http://{}/v1.0/users/{}/messages/{}/attachments/{attachment}",
                host(&headers),
                owner.user_id,
                owner.message_id
            );
            let mut response = StatusCode::CREATED.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
    }
}

/// `DELETE` an upload URL: the session and what it took are gone.
pub async fn cancel(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Path((_user, _message, session)): Path<(String, String, String)>,
    AxQuery(q): AxQuery<HashMap<String, String>>,
) -> Answer {
    refuse_bearer(&headers)?;
    let id = session_id(&session).ok_or_else(no_session)?;
    if state.uploads().cancel(id, credential(&q), state.now()) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_session())
    }
}
