//! The exactly-once delivery protocol: targets and their archive folders (found once per
//! run), an import, and the look-up by Message-ID of a delivery that may have landed.

use super::*;

/// A mailbox an item goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) user: UserRef,
}

#[derive(Debug)]
pub(super) enum DeliverError {
    Graph(GraphError),
    State(ConnectorError),
}

impl From<GraphError> for DeliverError {
    fn from(e: GraphError) -> Self {
        Self::Graph(e)
    }
}

impl Connector {
    /// The mailbox a participant's copy goes to, by the mapping rule; `None` if none.
    pub(super) async fn resolve(
        &self,
        participant: &crate::model::Participant,
    ) -> Result<Option<Target>, GraphError> {
        let (_, target) = mapping::resolve(
            Some(&participant.phone),
            participant.user_email.as_deref(),
            self.mapping.as_ref(),
            self.config.automatic_mapping,
            |address: String| async move { self.target(&address).await },
        )
        .await?;
        Ok(target)
    }

    /// What the mapping rule found for each participant of an item none of whose
    /// participants maps: one line each, for the catch-all mailbox's copy.
    pub(super) fn unmapped_lines(&self, item: &crate::model::Item) -> Vec<String> {
        item.participants()
            .map(|p| {
                let tried = mapping::candidates(
                    Some(&p.phone),
                    p.user_email.as_deref(),
                    self.mapping.as_ref(),
                    self.config.automatic_mapping,
                );
                let found = if tried.is_empty() {
                    if self.config.automatic_mapping {
                        "no mapping-file entry and no email property".to_owned()
                    } else {
                        "no mapping-file entry (automatic mapping is off)".to_owned()
                    }
                } else {
                    tried
                        .iter()
                        .map(|(from_csv, address)| {
                            format!(
                                "{} {address} is not a Microsoft 365 user with a mailbox",
                                if *from_csv {
                                    "mapping file"
                                } else {
                                    "email property"
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                format!("{}: {found}", p.phone)
            })
            .collect()
    }

    /// Whether an address is a valid Microsoft 365 user with a mailbox; asked of Graph
    /// once per run, even when several items ask at the same time.
    pub(super) async fn target(&self, address: &str) -> Result<Option<Target>, GraphError> {
        let cell = self
            .targets
            .lock()
            .expect("lock poisoned")
            .entry(address.to_ascii_lowercase())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.look_up(address))
            .await
            .cloned()
    }

    pub(super) async fn look_up(&self, address: &str) -> Result<Option<Target>, GraphError> {
        let found = match self.graph.user(address).await? {
            None => None,
            Some(user) => match self
                .graph
                .find_folder(&user.id, &self.config.folder)
                .await?
            {
                FolderLookup::NoMailbox => None,
                FolderLookup::Found(folder) => {
                    let _ = self.folder_cell(&user.id).set(folder);
                    Some(Target { user })
                }
                FolderLookup::Missing => Some(Target { user }),
            },
        };
        if found.is_none() {
            tracing::info!(address, "not a Microsoft 365 user with a mailbox");
        }
        Ok(found)
    }

    /// The archive folder's id in this mailbox: found or created once per run.
    pub(super) async fn archive_folder(&self, user_id: &str) -> Result<String, DeliverError> {
        Ok(self
            .folder_cell(user_id)
            .get_or_try_init(|| async {
                match self
                    .graph
                    .ensure_folder(user_id, &self.config.folder)
                    .await?
                {
                    FolderLookup::Found(id) => Ok(id),
                    _ => Err(GraphError::Api {
                        status: 404,
                        code: "MailboxNotEnabledForRESTAPI".into(),
                        message: "the mailbox went away".into(),
                        request_id: String::new(),
                    }),
                }
            })
            .await?
            .clone())
    }

    /// Forgets the archive folder found in this mailbox, if it is still `stale`, so that
    /// the next delivery finds or creates it again.
    pub(super) fn forget_folder(&self, user_id: &str, stale: &str) {
        let mut folders = self.folders.lock().expect("lock poisoned");
        let key = user_id.to_ascii_lowercase();
        if folders
            .get(&key)
            .and_then(|c| c.get())
            .is_some_and(|id| id == stale)
        {
            folders.remove(&key);
        }
    }

    pub(super) fn folder_cell(&self, user_id: &str) -> Arc<OnceCell<String>> {
        self.folders
            .lock()
            .expect("lock poisoned")
            .entry(user_id.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    /// Imports one message into one mailbox, exactly once, and attaches the file that
    /// follows it if it says one does (once as well).
    pub(super) async fn deliver(
        &self,
        key_id: &str,
        sent: &super::item::Sent,
        key: &str,
        target: &Target,
        look_first: bool,
    ) -> Result<Outcome, DeliverError> {
        let message = &sent.email;
        let body = &sent.body;
        let user_id = &target.user.id;
        let mut folder = self.archive_folder(user_id).await?;
        let address = &target.user.user_principal_name;
        if look_first && let Some(graph_id) = self.find_in_mailbox(target, message).await? {
            return self
                .complete(key_id, key, target, sent, &graph_id, false)
                .await;
        }
        for attempt in 1..=self.retry.max_attempts {
            match self.graph.import(user_id, &folder, body).await {
                // The folder this run found is gone (deleted by a person since): find or
                // create it again and send once more. Nothing was stored.
                Err(e)
                    if e.code() == Some("ErrorItemNotFound")
                        && attempt < self.retry.max_attempts =>
                {
                    tracing::warn!(mailbox = %address, "the archive folder went away; finding it again");
                    self.retry.count_retry();
                    self.forget_folder(user_id, &folder);
                    folder = self.archive_folder(user_id).await?;
                }
                Ok(graph_id) => {
                    return self
                        .complete(key_id, key, target, sent, &graph_id, true)
                        .await;
                }
                Err(e) if e.uncertain() => {
                    // It may have landed: look before sending it again, and after the
                    // last attempt too, for an answer that failed may still have stored
                    // the message (a 504 after the import was done).
                    let last = attempt >= self.retry.max_attempts;
                    if !last {
                        self.retry.count_retry();
                    }
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    if let Some(graph_id) = self.find_in_mailbox(target, message).await? {
                        return self
                            .complete(key_id, key, target, sent, &graph_id, true)
                            .await;
                    }
                    if last {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The message is in the mailbox as `graph_id` (`sent_now`: by this delivery). If a
    /// file follows it, the file is attached, unless it is there already (looked for
    /// first when the message was there before, and after any attempt that may have
    /// taken effect); then the delivery is recorded. A delivery is recorded only once
    /// its file is in: a run that stops between the two finds the message by its
    /// Message-ID next time and attaches only what is missing.
    async fn complete(
        &self,
        key_id: &str,
        key: &str,
        target: &Target,
        sent: &super::item::Sent,
        graph_id: &str,
        sent_now: bool,
    ) -> Result<Outcome, DeliverError> {
        let mut outcome = if sent_now {
            Outcome::Delivered
        } else {
            Outcome::AlreadyThere
        };
        if let (Some(file), Some(bytes)) = (&sent.email.follows, &sent.file) {
            match self
                .attach_following(&target.user.id, graph_id, file, bytes, !sent_now)
                .await
            {
                Ok(true) => outcome = Outcome::Delivered,
                Ok(false) => {}
                // Microsoft 365 takes no file on an imported message here (403): the
                // message stays as it is, the file is left out and reported, never tried
                // again.
                Err(e) if e.code() == Some("ErrorAccessDenied") => {
                    outcome = Outcome::FileRefused(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.store
            .mark_delivered(
                key_id,
                key,
                &target.user.user_principal_name,
                graph_id,
                (self.clock)(),
            )
            .map_err(DeliverError::State)?;
        Ok(outcome)
    }

    /// Attaches `file` to the message `graph_id`, once: `Ok(false)` if it is there
    /// already. An attachment appears whole or not at all (an upload session adds it
    /// with its last chunk), so one of the same name is the file. Its `size` is not
    /// compared: Graph's attachment size is the stored item's, not documented to be the
    /// file's byte count.
    async fn attach_following(
        &self,
        user_id: &str,
        graph_id: &str,
        file: &email::FollowingFile,
        bytes: &bytes::Bytes,
        look_first: bool,
    ) -> Result<bool, GraphError> {
        let there = || async {
            Ok::<bool, GraphError>(
                self.graph
                    .attachment_names(user_id, graph_id)
                    .await?
                    .contains(&file.name),
            )
        };
        if look_first && there().await? {
            return Ok(false);
        }
        for attempt in 1..=self.retry.max_attempts {
            match self.graph.attach(user_id, graph_id, file, bytes).await {
                Ok(()) => return Ok(true),
                Err(e) if e.uncertain() => {
                    let last = attempt >= self.retry.max_attempts;
                    if !last {
                        self.retry.count_retry();
                    }
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    if there().await? {
                        return Ok(true);
                    }
                    if last {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The Graph id of the message with this Message-ID in the mailbox, if it is there.
    pub(super) async fn find_in_mailbox(
        &self,
        target: &Target,
        message: &email::Email,
    ) -> Result<Option<String>, DeliverError> {
        Ok(self
            .graph
            .find_message(&target.user.id, &message.message_id)
            .await?)
    }
}

/// What one delivery did.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Sent now (or its file attached now).
    Delivered,
    /// It was in the mailbox already, whole.
    AlreadyThere,
    /// In the mailbox, but Microsoft 365 refused the file that follows it.
    FileRefused(GraphError),
}
