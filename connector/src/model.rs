//! The domain: a WhatsApp item as the connector reasons about it, apart from any wire
//! format.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub capture_mode: CaptureMode,
    pub archived_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
    pub conversation: Conversation,
    pub from: Participant,
    pub to: Vec<Participant>,
    pub context: Option<Context>,
    /// Deleted before the provider exported it; the content is still there.
    pub deleted: Option<Deleted>,
    pub content: Content,
    /// 1 for the first content the provider sent under this id; 2, 3, ... for content
    /// that differs from every earlier one (a revision, imported as its own message).
    pub revision: u32,
    /// Set when no participant maps and the item goes to the catch-all mailbox
    /// (`mapping.unmapped_mailbox`): what the rule found for each participant, one line
    /// each, for the message's headers. Empty otherwise.
    pub unmapped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    PhoneArchiver,
    CloudArchiver,
}

impl CaptureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PhoneArchiver => "Phone Archiver",
            Self::CloudArchiver => "Cloud Archiver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub is_group: bool,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// E.164 when the provider's number could be normalised; as given otherwise.
    pub phone: String,
    pub name: String,
    /// The "User's Email address" property, for registered employees.
    pub user_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub reply_to: Option<String>,
    pub quoted_text: Option<String>,
    pub forwarded: bool,
    pub frequently_forwarded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionScope {
    Everyone,
    Me,
}

impl DeletionScope {
    pub fn label(self) -> &'static str {
        match self {
            Self::Everyone => "For All",
            Self::Me => "For Me",
        }
    }

    pub fn header_value(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Me => "me",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub scope: DeletionScope,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    VoiceNote,
    Sticker,
}

impl MediaKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::VoiceNote => "voice note",
            Self::Sticker => "sticker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipAction {
    Join,
    Leave,
    Add,
    Remove,
    SubjectChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMedia {
    Voice,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Answered,
    Missed,
    Declined,
}

impl CallOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Missed => "missed",
            Self::Declined => "declined",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text {
        text: String,
    },
    Media {
        kind: MediaKind,
        caption: Option<String>,
        attachment: Attachment,
    },
    Document {
        caption: Option<String>,
        attachment: Attachment,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    Contact {
        name: String,
        phones: Vec<String>,
        emails: Vec<String>,
        organization: Option<String>,
    },
    Reaction {
        target_id: String,
        emoji: Option<String>,
    },
    Edit {
        target_id: String,
        text: String,
    },
    Deletion {
        target_id: String,
        scope: DeletionScope,
    },
    Membership {
        action: MembershipAction,
        members: Vec<Participant>,
        subject: Option<String>,
    },
    Call {
        media: CallMedia,
        outcome: CallOutcome,
        started_at: DateTime<Utc>,
        duration_seconds: u64,
        joined: Vec<String>,
    },
}

impl Content {
    /// The `X-WhatsApp-Kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Media { .. } => "media",
            Self::Document { .. } => "document",
            Self::Location { .. } => "location",
            Self::Contact { .. } => "contact",
            Self::Reaction { .. } => "reaction",
            Self::Edit { .. } => "edit",
            Self::Deletion { .. } => "deletion",
            Self::Membership { .. } => "membership",
            Self::Call { .. } => "call",
        }
    }

    pub fn attachment(&self) -> Option<&Attachment> {
        match self {
            Self::Media { attachment, .. } | Self::Document { attachment, .. } => Some(attachment),
            _ => None,
        }
    }

    /// The earlier item this one refers to, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::Reaction { target_id, .. }
            | Self::Edit { target_id, .. }
            | Self::Deletion { target_id, .. } => Some(target_id),
            _ => None,
        }
    }
}

impl Item {
    /// Every participant: the sender, then the others.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        std::iter::once(&self.from).chain(self.to.iter())
    }
}
