//! `connector check --probe MAILBOX`: finds out, once, what the tenant accepts, with a few
//! small test messages in a scratch folder of a mailbox the operator names, removed
//! afterwards. It asks two things Microsoft leaves open for `importMime`: whether a body
//! just under and just above `import.max_request_bytes` is taken, and whether a file can
//! be attached to an imported message by an upload session (what the connector does for
//! files above the cap). Nothing else is imported, and no secret or upload URL is printed.

use super::*;
use crate::graph::client::{FolderLookup, ImportBody};

/// How far under and over the cap the two import probes' bodies are.
const MARGIN: u64 = 64 * 1024;
/// The probe file attached after import: above the 3 MB of a single POST, so that it goes
/// by an upload session as a large file would.
const PROBE_FILE: usize = crate::size::SINGLE_POST_FILE as usize + 512 * 1024;

impl Connector {
    /// Probes `mailbox` (an address or user id) and says, a line each, what the tenant
    /// took and which path the connector will take for large files.
    pub async fn probe(&self, mailbox: &str) -> Result<Vec<String>, ConnectorError> {
        let mut lines = Vec::new();
        let Some(user) = self.graph.user(mailbox).await? else {
            return Err(ConnectorError::Usage(format!(
                "--probe {mailbox}: Microsoft 365 knows no such user; name a mailbox of the tenant"
            )));
        };
        let tag = random_tag();
        let folder_name = format!("{} probe {tag}", self.config.folder);
        let folder = match self.graph.ensure_folder(&user.id, &folder_name).await? {
            FolderLookup::Found(id) => id,
            _ => {
                return Err(ConnectorError::Usage(format!(
                    "--probe {mailbox}: the user has no mailbox Graph can use"
                )));
            }
        };
        lines.push(format!(
            "probe: scratch folder \"{folder_name}\" made in {}",
            user.user_principal_name
        ));
        let outcome = self.probe_in(&user.id, &folder, &tag, &mut lines).await;
        // The scratch folder goes whatever happened (Graph moves a deleted folder to
        // Deleted Items; a mailbox on hold keeps it, as it keeps any deleted item).
        match self.graph.delete_folder(&user.id, &folder).await {
            Ok(_) => lines.push(format!("probe: scratch folder \"{folder_name}\" removed")),
            Err(e) => lines.push(format!(
                "probe: the scratch folder \"{folder_name}\" could not be removed ({e}); remove it by hand"
            )),
        }
        outcome?;
        Ok(lines)
    }

    async fn probe_in(
        &self,
        user_id: &str,
        folder: &str,
        tag: &str,
        lines: &mut Vec<String>,
    ) -> Result<(), ConnectorError> {
        let cap = self.config.max_request_bytes;
        let under = self
            .probe_import(user_id, folder, tag, 1, cap - MARGIN)
            .await?;
        lines.push(format!(
            "probe: a message of {} bytes as sent (under import.max_request_bytes, {cap}): {}",
            cap - MARGIN,
            under.said()
        ));
        let over = self
            .probe_import(user_id, folder, tag, 2, cap + MARGIN)
            .await?;
        lines.push(format!(
            "probe: a message of {} bytes as sent (above the cap): {}",
            cap + MARGIN,
            over.said()
        ));
        let Taken::Yes(message_id) = under else {
            lines.push(
                "probe: the tenant refused a message under the cap: lower import.max_request_bytes and probe again".into(),
            );
            return Ok(());
        };
        if matches!(over, Taken::Yes(_)) {
            lines.push("probe: the tenant took more than the cap: the cap is the stricter of the two, which is safe (Microsoft documents 4 MB)".into());
        }
        let bytes = bytes::Bytes::from(vec![b'p'; PROBE_FILE]);
        let file = crate::email::FollowingFile {
            name: format!("probe-{tag}.bin"),
            content_type: "application/octet-stream".into(),
            size: PROBE_FILE as u64,
            sha256: crate::digest::sha256_hex(&bytes),
        };
        match self.graph.attach(user_id, &message_id, &file, &bytes).await {
            Ok(()) => {
                lines.push(format!(
                    "probe: a file of {PROBE_FILE} bytes attached to an imported message by an upload session: taken"
                ));
                lines.push("probe: the connector will import messages up to the cap in one request, and attach larger files after import by an upload session".into());
            }
            Err(e) if matches!(e, crate::graph::client::GraphError::Api { status: 403, .. }) => {
                lines.push(format!(
                    "probe: a file attached to an imported message: refused ({e})"
                ));
                lines.push("probe: the connector will import messages up to the cap in one request; files that make a message larger will be left out and reported as attachment_refused (the text, caption and a note still go)".into());
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Imports a test message whose body as sent is `body_len` bytes; answers whether it
    /// is in the folder afterwards (looked up by its Message-ID, so that a refusal by a
    /// closed connection reads the same as a 413).
    async fn probe_import(
        &self,
        user_id: &str,
        folder: &str,
        tag: &str,
        n: u32,
        body_len: u64,
    ) -> Result<Taken, ConnectorError> {
        let message_id = format!("<probe-{tag}-{n}@whatsapp-archiver.invalid>");
        let mime = probe_mime(&message_id, (self.clock)(), body_len);
        let body = ImportBody::encode(&mime);
        let answer = self.graph.import(user_id, folder, &body).await;
        match self.graph.find_message(user_id, &message_id).await? {
            Some(id) => Ok(Taken::Yes(id)),
            None => Ok(Taken::No(match answer {
                Ok(_) => "no error, yet not in the folder".into(),
                Err(e) => e.to_string(),
            })),
        }
    }
}

/// Whether a probe message was taken: its Graph id, or what the refusal said.
enum Taken {
    Yes(String),
    No(String),
}

impl Taken {
    fn said(&self) -> String {
        match self {
            Self::Yes(_) => "taken".into(),
            Self::No(why) => format!("refused ({why})"),
        }
    }
}

/// Eight random hex digits: the probe's folder and messages are its own.
fn random_tag() -> String {
    let mut raw = [0u8; 4];
    // A clock-based tag if the system's randomness is unavailable: still unique enough
    // for a scratch folder removed at once.
    if getrandom::fill(&mut raw).is_err() {
        raw = (std::process::id() ^ chrono::Utc::now().timestamp_subsec_nanos()).to_be_bytes();
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plain message whose base64 (what `importMime` is sent) is `body_len` bytes, give or
/// take three.
fn probe_mime(message_id: &str, now: DateTime<Utc>, body_len: u64) -> Vec<u8> {
    let mut mime = format!(
        "From: WhatsApp Archiver probe <probe@whatsapp-archiver.invalid>\r\nSubject: WhatsApp Archiver probe (removed at once)\r\nDate: {}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        now.to_rfc2822()
    )
    .into_bytes();
    let target = (body_len / 4 * 3) as usize;
    let line = [b"x".repeat(76), b"\r\n".to_vec()].concat();
    while mime.len() + line.len() <= target {
        mime.extend_from_slice(&line);
    }
    mime.resize(target.max(mime.len()), b'x');
    mime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_message_is_as_large_as_asked_once_encoded() {
        let now = "2026-12-07T10:00:00Z".parse().unwrap();
        for len in [
            64 * 1024,
            4 * 1024 * 1024 - MARGIN,
            4 * 1024 * 1024 + MARGIN,
        ] {
            let mime = probe_mime("<p@x>", now, len);
            let sent = crate::size::base64_len(mime.len() as u64);
            assert!(sent.abs_diff(len) <= 4, "{sent} for {len}");
            assert!(mime.starts_with(b"From: WhatsApp Archiver probe"));
        }
    }
}
