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

/// An item read, its skips recorded and its mailboxes found: what is left is one delivery
/// to each mailbox that does not have it yet, in whatever order their lanes allow.
#[derive(Debug)]
pub(super) struct OpenItem {
    pub(super) staged: Staged,
    pub(super) item: Item,
    /// The mailboxes still to deliver to, by key, and what the state knew of each.
    pub(super) pending: BTreeMap<String, (Target, Option<DeliveryState>)>,
    /// What becomes of its file, decided when it was planned.
    fate: plan::FileFate,
    /// The bytes building its message may hold ([`plan::bytes_to_build`]).
    pub(super) to_build: usize,
    message: tokio::sync::Mutex<Building>,
}

/// The item's message: built by the first delivery that goes, shared by the others.
#[derive(Debug, Default)]
struct Building {
    message: Option<Message>,
    /// The skips the message brings (the attachment left out, too large) are recorded.
    recorded: bool,
}

/// A message ready to go to every mailbox.
#[derive(Debug)]
pub(super) struct Sent {
    /// Its Message-ID, omission and following file (the MIME itself is not kept).
    pub(super) email: email::Email,
    /// The import's body.
    pub(super) body: ImportBody,
    /// The file attached after the import when the message says one follows.
    pub(super) file: Option<bytes::Bytes>,
}

impl Sent {
    /// The bytes it keeps open.
    fn len(&self) -> usize {
        self.body.len() + self.file.as_ref().map_or(0, bytes::Bytes::len)
    }
}

#[derive(Debug, Clone)]
enum Message {
    /// What every mailbox gets.
    Send(Arc<Sent>),
    /// No message within the limit can be made: every delivery is left out.
    TooLarge,
    /// The provider failed to give the attachment: the item waits for a later run.
    Failed,
}

impl OpenItem {
    /// Drops the built message while no delivery of the item is going: it is built again
    /// (from the item and its staged file, to the same bytes) when one goes. Answers the
    /// bytes freed.
    pub(super) fn park(&self) -> usize {
        let Ok(mut building) = self.message.try_lock() else {
            return 0;
        };
        match &building.message {
            // A file that could not be verified might be fetched the next time: the item's
            // other mailboxes would get another message. Kept.
            Some(Message::Send(sent)) if sent.email.omitted != Some(OmitReason::Unverifiable) => {
                let bytes = sent.len();
                building.message = None;
                bytes
            }
            _ => 0,
        }
    }
}

/// What planning an item came to.
pub(super) enum Planned {
    /// Nothing to send: skipped, failed (to be held, with the item as staged), or every
    /// mailbox has it.
    Settled(Staged, ItemResult),
    /// Deliveries to make; the result so far (the item's count, its skips).
    Open(Arc<OpenItem>, ItemResult),
}

impl ItemResult {
    pub(super) fn merge(&mut self, other: ItemResult) {
        self.account.add(&other.account);
        self.skips.extend(other.skips);
        self.failures.extend(other.failures);
    }
}

impl Connector {
    /// One item, start to end: planned, then delivered to each mailbox in turn (the held
    /// list's way; a window's items go through the lanes instead).
    pub(super) async fn process_item(
        &self,
        window: &Window,
        staged: Staged,
    ) -> Result<ItemResult, ConnectorError> {
        let (open, mut result) = match self.plan_item(window, staged).await? {
            Planned::Settled(_, result) => return Ok(result),
            Planned::Open(open, result) => (open, result),
        };
        for key in open.pending.keys() {
            let (r, _) = self.deliver_one(window, &open, key).await?;
            result.merge(r);
        }
        self.settle_item(window, &open, &result).await?;
        Ok(result)
    }

    /// Reads a staged item, records the skips it brings, finds its mailboxes and which of
    /// them have it already. Nothing is downloaded or sent.
    pub(super) async fn plan_item(
        &self,
        window: &Window,
        staged: Staged,
    ) -> Result<Planned, ConnectorError> {
        let mut result = ItemResult::default();
        result.account.items = 1;
        self.progress
            .items
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.tick();
        // The record key: the provider's id, and the revision of its content.
        let key_id = staged.item_id.as_str();
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
                return Ok(Planned::Settled(staged, result));
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
                    return Ok(Planned::Settled(staged, result));
                }
            }
        }
        // No participant maps: the catch-all mailbox, if there is one and it can
        // receive, takes the item, with what the rule found for each participant.
        let catch_all = match (targets.is_empty(), &self.config.unmapped_mailbox) {
            (true, Some(address)) => match self.target(address).await {
                Ok(found) => found.map(|t| (address.clone(), t)),
                Err(e) => {
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: Some(address.clone()),
                        error: format!("the catch-all mailbox {address}: {e}"),
                    });
                    result.account.planned = 1;
                    result.account.failed = 1;
                    return Ok(Planned::Settled(staged, result));
                }
            },
            _ => None,
        };
        if let Some((address, target)) = catch_all {
            item.unmapped = self.unmapped_lines(&item);
            self.skip(
                window,
                &mut result,
                &item.id,
                SkipReason::UnmappedToCatchAll,
                format!(
                    "no participant maps to a Microsoft 365 user ({}); delivered to {address}",
                    item.unmapped.join(" | ")
                ),
            )?;
            targets.insert(target.user.id.to_ascii_lowercase(), target);
        }
        if targets.is_empty() {
            let who: Vec<String> = item.participants().map(|p| p.phone.clone()).collect();
            let catch_all = match &self.config.unmapped_mailbox {
                Some(address) => format!(
                    "; the catch-all mailbox {address} is not a Microsoft 365 user with a mailbox"
                ),
                None => String::new(),
            };
            self.skip(
                window,
                &mut result,
                &item.id,
                SkipReason::Unmapped,
                format!(
                    "no participant maps to a Microsoft 365 user: {}{catch_all}",
                    who.join(", ")
                ),
            )?;
            result.account.planned = 1;
            result.left_out(SkipReason::Unmapped, 1);
            return Ok(Planned::Settled(staged, result));
        }
        result.account.planned = targets.len() as u64;
        let mut pending = BTreeMap::new();
        let mut known = self.store.deliveries(key_id)?;
        for (key, target) in targets {
            match known.remove(&key) {
                Some(DeliveryState::Delivered) => {
                    result.account.already_there += 1;
                }
                state => {
                    pending.insert(key, (target, state));
                }
            }
        }
        if pending.is_empty() {
            return Ok(Planned::Settled(staged, result));
        }
        let fate = plan::file_fate(&item, &self.options, self.config.size_limit);
        let file_size = item.content.attachment().map_or(0, |a| a.size);
        let to_build = plan::bytes_to_build(
            fate,
            file_size,
            staged.json.len(),
            self.config.max_request_bytes,
        );
        let open = Arc::new(OpenItem {
            staged,
            item,
            pending,
            fate,
            to_build,
            message: tokio::sync::Mutex::default(),
        });
        Ok(Planned::Open(open, result))
    }

    /// The item's message: the one built already, or built now (its file staged and
    /// verified, or left out and why). The skips it brings are recorded the first time.
    /// Answers the message and, if it was built now, the bytes of its body.
    async fn message_of(
        &self,
        window: &Window,
        open: &OpenItem,
        result: &mut ItemResult,
    ) -> Result<(Message, Option<usize>), ConnectorError> {
        let mut building = open.message.lock().await;
        if let Some(message) = &building.message {
            return Ok((message.clone(), None));
        }
        let item = &open.item;
        // The size plan, before anything is downloaded (see `plan`).
        let limit = self.config.size_limit;
        let key = open.staged.item_id.as_str();
        let fetched = match open.fate {
            plan::FileFate::NoFile => Ok(None),
            plan::FileFate::Omit(reason) => Ok(Some(Err(reason))),
            // Owed already (an earlier build, maybe by a run that crashed): every mailbox
            // gets the message without it, and the file follows in its own message.
            plan::FileFate::Fetch if self.store.file_owed(key)? => {
                Ok(Some(Err(OmitReason::Unverifiable)))
            }
            plan::FileFate::Fetch => match self.fetch_file(window, item).await {
                Ok(Ok(bytes)) => Ok(Some(Ok(bytes))),
                // The text never waits for a file: the message goes without it now, and
                // the file is owed, recorded before the first copy is sent.
                Ok(Err(why)) => {
                    tracing::warn!(item = %item.id, error = %why, "the file could not be fetched; the message goes without it and the file is owed");
                    self.store
                        .owe_file(key, &open.staged.json, window.id, &why, (self.clock)())?;
                    Ok(Some(Err(OmitReason::Unverifiable)))
                }
                Err(e) => Err(e),
            },
        };
        // The first build records what the message brings; a build again does not.
        let first = !std::mem::replace(&mut building.recorded, true);
        let bytes = match fetched {
            Ok(b) => b,
            // The staging area cannot be used (a full disk): no item can go on, so the
            // run stops with the status for it; the window stays open for the next run.
            Err(e @ ConnectorError::Staging { .. }) => return Err(e),
            Err(e) => {
                if first {
                    result.failures.push(Failure {
                        item_id: item.id.clone(),
                        mailbox: None,
                        error: e.to_string(),
                    });
                }
                let message = Message::Failed;
                building.message = Some(message.clone());
                return Ok((message, None));
            }
        };
        let body = plan::attachment_body(&bytes);
        let planned = plan::message(
            item,
            body,
            &self.options,
            limit,
            self.config.max_request_bytes,
        );
        let (message, built) = match planned {
            plan::Planned::Send(mut message) => {
                if first
                    && let (Some(reason), Some(att)) = (message.omitted, item.content.attachment())
                {
                    self.skip(
                        window,
                        result,
                        &item.id,
                        reason.reason(),
                        if reason == OmitReason::Unverifiable {
                            format!(
                                "{} ({} bytes) could not be fetched; the message is imported without it, and the file is owed: a later run delivers it in a message of its own that completes this one",
                                att.file_name, att.size
                            )
                        } else {
                            format!(
                                "{} ({} bytes) left out; the message is imported without it",
                                att.file_name, att.size
                            )
                        },
                    )?;
                }
                // Encoded once, sent to every mailbox and on every attempt; the MIME
                // itself is not needed any more.
                let body = ImportBody::encode(&message.mime);
                message.mime = Vec::new();
                let file = match (&message.follows, bytes) {
                    (Some(_), Some(Ok(file))) => Some(bytes::Bytes::from(file)),
                    _ => None,
                };
                let sent = Sent {
                    email: message,
                    body,
                    file,
                };
                let len = sent.len();
                (Message::Send(Arc::new(sent)), Some(len))
            }
            plan::Planned::TooLarge { bytes } => {
                if first {
                    self.skip(
                        window,
                        result,
                        &item.id,
                        SkipReason::ItemTooLarge,
                        format!("the message is {bytes} bytes; the limit is {limit}"),
                    )?;
                }
                (Message::TooLarge, None)
            }
        };
        building.message = Some(message.clone());
        Ok((message, built))
    }

    /// One delivery of an open item, to the mailbox `key`: its share of the item's
    /// result, and the bytes of the message if this delivery built it.
    pub(super) async fn deliver_one(
        &self,
        window: &Window,
        open: &OpenItem,
        key: &str,
    ) -> Result<(ItemResult, Option<usize>), ConnectorError> {
        let mut result = ItemResult::default();
        let (message, built) = self.message_of(window, open, &mut result).await?;
        let sent = match message {
            Message::Send(sent) => sent,
            Message::TooLarge => {
                result.left_out(SkipReason::ItemTooLarge, 1);
                return Ok((result, built));
            }
            Message::Failed => {
                result.account.failed += 1;
                return Ok((result, built));
            }
        };
        let (target, state) = &open.pending[key];
        let key_id = open.staged.item_id.as_str();
        // A delivery with no record is known never to have been sent only in a window
        // this run began on a state that knows the window's time; anywhere else (a
        // window a crash left open, a held item) its record may have been lost with an
        // uncommitted group, and a state with no history of the time may have replaced
        // one that delivered it: look first.
        let look_first =
            *state == Some(DeliveryState::Attempted) || !window.fresh || window.unknown_past || {
                let failed = self.failed_here.lock().expect("lock poisoned");
                !failed.is_empty() && failed.contains(&(key_id.to_owned(), key.to_owned()))
            };
        match self.deliver(key_id, &sent, key, target, look_first).await {
            Ok(outcome @ (Outcome::Delivered | Outcome::FileRefused(_))) => {
                self.latency.delivered(window.id, open.staged.seq);
                if let Outcome::FileRefused(e) = &outcome {
                    result.account.delivered_without_attachment += 1;
                    let name = sent.email.follows.as_ref().map_or("", |f| f.name.as_str());
                    tracing::warn!(item = %open.item.id, mailbox = %target.user.user_principal_name, error = %e, "Microsoft 365 refused the file attached after import; the message stays without it");
                    self.skip(
                        window,
                        &mut result,
                        &open.item.id,
                        SkipReason::AttachmentRefused,
                        format!(
                            "{name} is too large to go in one request with its message, so the message was imported without it; Microsoft 365 then refused to attach it ({e}). The message says the file was to follow; the file remains in the TeleMessage archive"
                        ),
                    )?;
                } else if sent.email.omitted.is_some() {
                    result.account.delivered_without_attachment += 1;
                } else {
                    result.account.delivered += 1;
                }
                self.progress
                    .deliveries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Outcome::AlreadyThere) => {
                result.account.already_there += 1;
            }
            Err(DeliverError::State(e)) => return Err(e),
            Err(DeliverError::Graph(e)) => {
                result.account.failed += 1;
                let kind = format!("delivery failed {}", e.code().unwrap_or("-"));
                if let Some(unsaid) = self.retry.repeats.admit(&kind, Instant::now()) {
                    tracing::warn!(item = %open.item.id, mailbox = %target.user.user_principal_name, error = %e, unsaid, "delivery failed (unsaid: like lines left out in the last second)");
                }
                self.failed_here
                    .lock()
                    .expect("lock poisoned")
                    .insert((key_id.to_owned(), key.to_owned()));
                result.failures.push(Failure {
                    item_id: open.item.id.clone(),
                    mailbox: Some(target.user.user_principal_name.clone()),
                    error: e.to_string(),
                });
            }
        }
        Ok((result, built))
    }

    /// Every delivery of the item is over. If every mailbox has it, its file need not
    /// stay at rest until the window closes.
    pub(super) async fn settle_item(
        &self,
        window: &Window,
        open: &OpenItem,
        result: &ItemResult,
    ) -> Result<(), ConnectorError> {
        if result.failures.is_empty()
            && let Some(att) = open.item.content.attachment()
        {
            let file = self.staged_files.of(window.id, &att.id);
            let only_this_item = file.lock().await;
            self.staging.forget(window.id, &att.id)?;
            drop(only_this_item);
            drop(file);
            self.staged_files.release(window.id, &att.id);
        }
        Ok(())
    }

    /// The bytes of the item's file, staged and verified (size and SHA-256), or why
    /// they could not be had from the provider (the file is then owed). An `Err` is a
    /// failure of this side (the staging area) or a session the provider refused: the
    /// run, or the item, cannot go on.
    pub(super) async fn fetch_file(
        &self,
        window: &Window,
        item: &Item,
    ) -> Result<Result<Vec<u8>, String>, ConnectorError> {
        let Some(att) = item.content.attachment() else {
            return Ok(Err("the item has no file".into()));
        };
        let file = self.staged_files.of(window.id, &att.id);
        let _only_this_item = file.lock().await;
        let path = self.staging.attachment(window.id, &att.id)?;
        if let Ok(bytes) = tokio::fs::read(&path).await
            && bytes.len() as u64 == att.size
            && crate::digest::sha256_hex(&bytes) == att.sha256
        {
            return Ok(Ok(bytes));
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
                        reason: crate::stage::io_reason(&e),
                    })?;
                Ok(Ok(bytes))
            }
            // Writing the staged file failed: the staging area's fault, not the provider's.
            Err(ProviderError::Io { path, source }) => Err(ConnectorError::Staging {
                path,
                reason: crate::stage::io_reason(&source),
            }),
            // The session itself is refused: nothing can be fetched, the item waits.
            Err(e @ ProviderError::Login { .. }) => Err(e.into()),
            // The file would not come whole (wrong size or SHA-256, a broken transfer, a
            // page for a file), is gone (404), or the provider failed after every try.
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_with(omitted: Option<OmitReason>) -> OpenItem {
        let item = super::super::plan::tests::item("hi", None);
        let email = email::Email {
            message_id: "<wa-1@x>".into(),
            mime: Vec::new(),
            omitted,
            follows: None,
        };
        let building = Building {
            message: Some(Message::Send(Arc::new(Sent {
                email,
                body: ImportBody::encode(b"abc"),
                file: None,
            }))),
            recorded: true,
        };
        OpenItem {
            staged: Staged {
                seq: 1,
                item_id: "wa-1".into(),
                json: String::new(),
            },
            item,
            pending: BTreeMap::new(),
            fate: plan::FileFate::NoFile,
            to_build: 0,
            message: tokio::sync::Mutex::new(building),
        }
    }

    #[test]
    fn a_parked_message_is_one_that_is_built_again_the_same() {
        let open = open_with(None);
        assert_eq!(open.park(), 4, "the base64 of three bytes");
        assert!(open.message.try_lock().unwrap().message.is_none());
        assert!(
            open.message.try_lock().unwrap().recorded,
            "its skips stay recorded"
        );
        let left_to_fit = open_with(Some(OmitReason::ToFit));
        assert_eq!(left_to_fit.park(), 4, "decided without a download");
        // Unverifiable now, perhaps fetched later: the other mailboxes must get the same.
        let unverifiable = open_with(Some(OmitReason::Unverifiable));
        assert_eq!(unverifiable.park(), 0);
        assert!(unverifiable.message.try_lock().unwrap().message.is_some());
        // Busy (a delivery is building or reading it): left alone.
        let busy = open_with(None);
        let _held = busy.message.try_lock().unwrap();
        assert_eq!(busy.park(), 0);
    }

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
