//! Files owed: an item whose file could not be fetched went without it (its text never
//! waits for a file). Each run tries such files again, after the held list, and delivers
//! each one that comes whole as a follow-up message to every mailbox that has the item:
//! its own Message-ID, answering the first. Archived messages are never changed.

use super::*;

/// The record key a follow-up's deliveries are kept under: the item's key and a mark
/// no provider id or revision key carries.
pub(super) fn follow_up_key(item_key: &str) -> String {
    format!("{item_key}\u{1e}file")
}

impl Connector {
    /// Tries every owed file again. One that comes whole is delivered to each mailbox the
    /// item was delivered to (looked up first: a crash may have left it there) and is no
    /// longer owed; one that does not counts a run, and after `import.held_runs` runs or
    /// `import.held_days` days needs a person. An item still on the held list waits: its
    /// message is not in all its mailboxes yet.
    pub(super) async fn pay_owed_files(
        &self,
        report: &mut RunReport,
    ) -> Result<(), ConnectorError> {
        let owed: Vec<Held> = self
            .store
            .owed_files()?
            .into_iter()
            .filter(|o| !o.needs_person)
            .collect();
        if owed.is_empty() {
            return Ok(());
        }
        let held: std::collections::HashSet<String> =
            self.store.held()?.into_iter().map(|h| h.item_id).collect();
        tracing::info!(files = owed.len(), "fetching owed files again");
        for o in owed.iter().filter(|o| !held.contains(&o.item_id)) {
            let (_, revision) = state::split_key(&o.item_id);
            let Ok(mut item) = wire::read_item_text(&o.json) else {
                // It was read when the file was first owed; the same text reads the same.
                continue;
            };
            item.revision = revision;
            let window = Window {
                id: o.window_id,
                since: o.first_failed_at,
                until: o.first_failed_at,
                fetched: true,
                look_back: false,
                fresh: false,
                unknown_past: false,
            };
            let error = match self.fetch_file(&window, &item).await? {
                Ok(bytes) => {
                    match self
                        .deliver_follow_ups(&o.item_id, &item, &bytes, report)
                        .await?
                    {
                        None => {
                            self.store.file_paid(&o.item_id)?;
                            if let Some(att) = item.content.attachment() {
                                self.staging.forget(o.window_id, &att.id)?;
                            }
                            tracing::info!(item = %item.id, "owed file delivered");
                            continue;
                        }
                        Some(error) => error,
                    }
                }
                Err(why) => why,
            };
            self.store.owed_failed_again(&o.item_id, &error)?;
            if self.needs_person_after(o.runs + 1, o.first_failed_at) {
                self.store.mark_owed_needs_person(&o.item_id)?;
            }
        }
        Ok(())
    }

    /// Sends the follow-up that brings `bytes` to every mailbox the item is recorded in.
    /// Answers the last error if a mailbox could not take it (tried again next run).
    async fn deliver_follow_ups(
        &self,
        item_key: &str,
        item: &Item,
        bytes: &[u8],
        report: &mut RunReport,
    ) -> Result<Option<String>, ConnectorError> {
        let mut message =
            email::file_follow_up(item, bytes, &self.options, self.config.max_request_bytes);
        let sent = super::item::Sent {
            body: ImportBody::encode(&message.mime),
            file: message
                .follows
                .is_some()
                .then(|| bytes::Bytes::copy_from_slice(bytes)),
            email: {
                message.mime = Vec::new();
                message
            },
        };
        let key = follow_up_key(item_key);
        let mut error = None;
        for (mailbox, address) in self.store.delivered_to(item_key)? {
            let target = match self.target(&address).await {
                Ok(Some(target)) => target,
                // The mailbox is gone since the item was delivered: nowhere to send.
                Ok(None) => {
                    tracing::warn!(item = %item.id, mailbox = %address, "the mailbox is gone; its owed file cannot follow");
                    continue;
                }
                Err(e) => {
                    error = Some(e.to_string());
                    continue;
                }
            };
            match self.deliver(&key, &sent, &mailbox, &target, true).await {
                Ok(super::deliver::Outcome::Delivered) => report.files_delivered_later += 1,
                Ok(super::deliver::Outcome::AlreadyThere) => {}
                Ok(super::deliver::Outcome::FileRefused(e)) => {
                    tracing::warn!(item = %item.id, mailbox = %address, error = %e, "Microsoft 365 refused the owed file attached after import");
                    error = Some(e.to_string());
                }
                Err(DeliverError::State(e)) => return Err(e),
                Err(DeliverError::Graph(e)) => {
                    tracing::warn!(item = %item.id, mailbox = %address, error = %e, "owed file not delivered");
                    error = Some(e.to_string());
                }
            }
        }
        Ok(error)
    }
}
