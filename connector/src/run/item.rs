//! One staged item: read, mapped to its mailboxes, its file fetched and checked, built
//! into a message and delivered to each mailbox.

use super::*;

#[derive(Debug, Default)]
pub(super) struct ItemResult {
    pub(super) skips: Vec<Skip>,
    pub(super) failures: Vec<Failure>,
    /// The item's share of the report's accounting.
    pub(super) account: Accounting,
}

impl ItemResult {
    /// An item left out whole, for `reason`, in place of `deliveries` deliveries.
    pub(super) fn left_out(&mut self, reason: SkipReason, deliveries: u64) {
        *self
            .account
            .skipped
            .entry(reason.code().to_owned())
            .or_default() += deliveries;
    }
}

impl ItemResult {
    /// Every failure's error, in one line (what the held list keeps).
    pub(super) fn error(&self) -> String {
        self.failures
            .iter()
            .map(|f| f.error.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Held while one item works with a staged file.
pub(super) type FileLock = Arc<tokio::sync::Mutex<()>>;

/// One lock per staged file (by window and attachment id), which several items may share
/// (two contents of an id, a file sent twice): it is read, downloaded and removed by one
/// of them at a time. A lock goes once its file is gone and no item holds it, so a day's
/// run does not keep one for every file it ever staged.
#[derive(Debug, Default)]
pub(super) struct FileLocks(Mutex<HashMap<(i64, String), FileLock>>);

impl FileLocks {
    /// The lock of one staged file.
    pub(super) fn of(&self, window: i64, attachment_id: &str) -> FileLock {
        self.0
            .lock()
            .expect("lock poisoned")
            .entry((window, attachment_id.to_owned()))
            .or_default()
            .clone()
    }

    /// The file is gone: its lock goes too, unless another item holds it (that item then
    /// finds the file gone and stages it again under the same lock).
    pub(super) fn release(&self, window: i64, attachment_id: &str) {
        let mut locks = self.0.lock().expect("lock poisoned");
        let key = (window, attachment_id.to_owned());
        if locks
            .get(&key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("lock poisoned").len()
    }
}

impl Connector {
    pub(super) async fn process_item(
        &self,
        window: &Window,
        staged: Staged,
    ) -> Result<ItemResult, ConnectorError> {
        let mut result = ItemResult::default();
        result.account.items = 1;
        self.progress
            .items
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.tick();
        // The record key: the provider's id, and the revision of its content.
        let key_id = staged.item_id.as_str();
        let seq = staged.seq;
        let (provider_id, revision) = state::split_key(key_id);
        let mut item = match wire::read_item_text(&staged.json) {
            Ok(item) => item,
            Err(reason) => {
                self.skip(
                    window,
                    &mut result,
                    provider_id,
                    SkipReason::InvalidItem,
                    reason,
                )?;
                result.account.planned = 1;
                result.left_out(SkipReason::InvalidItem, 1);
                return Ok(result);
            }
        };
        item.revision = revision;
        if revision > 1 {
            self.skip(
                window,
                &mut result,
                &item.id,
                SkipReason::RevisedItem,
                format!(
                    "the provider sent this id again with different content: revision {revision} is imported as {}, referring to the first",
                    email::revision_message_id(&item.id, revision)
                ),
            )?;
        }
        if window.look_back {
            self.skip(
                window,
                &mut result,
                &item.id,
                SkipReason::LateVisible,
                format!(
                    "archived at {}, listed by the provider only after its window closed; imported now",
                    item.archived_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            )?;
        }
        // Where it goes: each participant's mailbox, distinct.
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        for participant in item.participants() {
            match self.resolve(participant).await {
                Ok(Some(t)) => {
                    targets.entry(t.user.id.to_ascii_lowercase()).or_insert(t);
                }
                Ok(None) => {}
                Err(e) => {
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: None,
                        error: format!("mapping {}: {e}", participant.phone),
                    });
                    result.account.planned = 1;
                    result.account.failed = 1;
                    return Ok(result);
                }
            }
        }
        if targets.is_empty() {
            let who: Vec<String> = item.participants().map(|p| p.phone.clone()).collect();
            self.skip(
                window,
                &mut result,
                &item.id,
                SkipReason::Unmapped,
                format!(
                    "no participant maps to a Microsoft 365 user: {}",
                    who.join(", ")
                ),
            )?;
            result.account.planned = 1;
            result.left_out(SkipReason::Unmapped, 1);
            return Ok(result);
        }
        result.account.planned = targets.len() as u64;
        let mut pending = Vec::new();
        for (key, target) in targets {
            match self.store.delivery(key_id, &key)? {
                Some(DeliveryState::Delivered) => {
                    result.account.already_there += 1;
                }
                state => pending.push((key, target, state)),
            }
        }
        if pending.is_empty() {
            return Ok(result);
        }
        // The size plan, before anything is downloaded (see `plan`).
        let limit = self.config.size_limit;
        let carry = plan::carries_file(&item, &self.options, limit);
        // The message, with its attachment staged and verified (or left out, and why).
        let fetched = if carry {
            self.attachment(window, &item).await
        } else {
            Ok(Some(Err(OmitReason::ToFit)))
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                result.failures.push(Failure {
                    item_id: item.id.clone(),
                    mailbox: None,
                    error: e.to_string(),
                });
                result.account.failed += pending.len() as u64;
                return Ok(result);
            }
        };
        let body = match &bytes {
            Some(Ok(b)) => Some(AttachmentBody::Bytes(b)),
            Some(Err(reason)) => Some(AttachmentBody::Omitted(*reason)),
            None => None,
        };
        let message = match plan::message(&item, body, &self.options, limit) {
            plan::Planned::Send(message) => message,
            plan::Planned::TooLarge { bytes } => {
                self.skip(
                    window,
                    &mut result,
                    &item.id,
                    SkipReason::ItemTooLarge,
                    format!("the message is {bytes} bytes; the limit is {limit}"),
                )?;
                result.left_out(SkipReason::ItemTooLarge, pending.len() as u64);
                return Ok(result);
            }
        };
        if let (Some(reason), Some(att)) = (message.omitted, item.content.attachment()) {
            self.skip(
                window,
                &mut result,
                &item.id,
                reason.reason(),
                format!(
                    "{} ({} bytes) left out; the message is imported without it",
                    att.file_name, att.size
                ),
            )?;
        }
        // Encoded once, sent to every mailbox and on every attempt.
        let body = ImportBody::encode(&message.mime);
        for (key, target, state) in pending {
            // A delivery with no record is known never to have been sent only in a window
            // this run began; anywhere else (a window a crash left open, a held item) its
            // record may have been lost with an uncommitted group: look first.
            let look_first = state == Some(DeliveryState::Attempted)
                || !window.fresh
                || self
                    .failed_here
                    .lock()
                    .expect("lock poisoned")
                    .contains(&(key_id.to_owned(), key.clone()));
            match self
                .deliver(key_id, &message, &body, &key, &target, look_first)
                .await
            {
                Ok(true) => {
                    self.latency.delivered(window.id, seq);
                    if message.omitted.is_some() {
                        result.account.delivered_without_attachment += 1;
                    } else {
                        result.account.delivered += 1;
                    }
                    self.progress
                        .deliveries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(false) => {
                    result.account.already_there += 1;
                }
                Err(DeliverError::State(e)) => return Err(e),
                Err(DeliverError::Graph(e)) => {
                    result.account.failed += 1;
                    tracing::warn!(item = %item.id, mailbox = %target.user.user_principal_name, error = %e, "delivery failed");
                    self.failed_here
                        .lock()
                        .expect("lock poisoned")
                        .insert((key_id.to_owned(), key.clone()));
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: Some(target.user.user_principal_name.clone()),
                        error: e.to_string(),
                    });
                }
            }
        }
        // Every mailbox has it: its file need not stay at rest until the window closes.
        if result.failures.is_empty()
            && let Some(att) = item.content.attachment()
        {
            let file = self.staged_files.of(window.id, &att.id);
            let only_this_item = file.lock().await;
            self.staging.forget(window.id, &att.id)?;
            drop(only_this_item);
            drop(file);
            self.staged_files.release(window.id, &att.id);
        }
        Ok(result)
    }

    /// The attachment's bytes (staged and verified), the reason it is left out, or
    /// `None` if the item has none. An `Err` is a provider failure: the item waits.
    pub(super) async fn attachment(
        &self,
        window: &Window,
        item: &Item,
    ) -> Result<Option<Result<Vec<u8>, OmitReason>>, ConnectorError> {
        let Some(att) = item.content.attachment() else {
            return Ok(None);
        };
        if !size::attachment_fits(att.size, self.config.size_limit) {
            return Ok(Some(Err(OmitReason::TooLarge)));
        }
        if att.id.len() > email::MAX_ATTACHMENT_ID {
            return Ok(Some(Err(OmitReason::Unreachable)));
        }
        let file = self.staged_files.of(window.id, &att.id);
        let _only_this_item = file.lock().await;
        let path = self.staging.attachment(window.id, &att.id)?;
        if let Ok(bytes) = tokio::fs::read(&path).await
            && bytes.len() as u64 == att.size
            && sha256_hex(&bytes) == att.sha256
        {
            return Ok(Some(Ok(bytes)));
        }
        match self
            .provider
            .download(&att.id, att.size, &att.sha256, &path)
            .await
        {
            Ok(()) => {
                self.staging.staged(&path, att.size);
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| ConnectorError::Staging {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Some(Ok(bytes)))
            }
            Err(ProviderError::Attachment { .. }) | Err(ProviderError::Api { status: 404, .. }) => {
                Ok(Some(Err(OmitReason::Unverifiable)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_files_lock_is_shared_while_held_and_goes_with_its_file() {
        let locks = FileLocks::default();
        let a = locks.of(1, "att-1");
        let b = locks.of(1, "att-1");
        assert!(Arc::ptr_eq(&a, &b), "one lock per file");
        assert!(!Arc::ptr_eq(&a, &locks.of(2, "att-1")), "per window");
        drop(a);
        locks.release(1, "att-1");
        assert!(
            Arc::ptr_eq(&b, &locks.of(1, "att-1")),
            "kept while an item holds it"
        );
        drop(b);
        locks.release(1, "att-1");
        locks.release(2, "att-1");
        assert_eq!(locks.len(), 0, "gone with their files");
        locks.release(3, "never staged");
        assert_eq!(locks.len(), 0);
    }
}
