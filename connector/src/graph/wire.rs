//! Graph's JSON, as far as the connector reads it (docs/mailbox-api.md and Microsoft's
//! documentation). Unknown fields are ignored.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Deserialize)]
pub struct TokenError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "innerError")]
    pub inner_error: Option<InnerError>,
}

#[derive(Debug, Deserialize)]
pub struct InnerError {
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Folder {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
pub struct Collection<T> {
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MessageRef {
    pub id: String,
}

/// An attachment in a list, as far as the connector reads it.
#[derive(Debug, Deserialize)]
pub struct AttachmentRef {
    #[serde(default)]
    pub name: String,
}

/// `createUploadSession`'s answer. Its URL carries a credential: never logged, never
/// shown by `Debug`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    pub upload_url: String,
}

impl std::fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSession { upload_url: (redacted) }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> String {
        std::fs::read_to_string(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/examples/graph")
                .join(name),
        )
        .unwrap()
    }

    /// The connector reads the golden Graph answers with its own types.
    #[test]
    fn reads_the_golden_graph_answers() {
        let token: TokenResponse = serde_json::from_str(&golden("token.json")).unwrap();
        assert_eq!(token.expires_in, 3599);
        let refused: TokenError = serde_json::from_str(&golden("token-error.json")).unwrap();
        assert_eq!(refused.error, "invalid_client");
        let error: ErrorBody = serde_json::from_str(&golden("error.json")).unwrap();
        assert_eq!(error.error.code, "ErrorFolderExists");
        assert!(error.error.inner_error.unwrap().request_id.is_some());
        let user: User = serde_json::from_str(&golden("user.json")).unwrap();
        assert_eq!(user.user_principal_name, "alice.archer@contoso.example");
        let folders: Collection<Folder> =
            serde_json::from_str(&golden("folders-page.json")).unwrap();
        assert_eq!(folders.value[0].display_name, "WhatsApp Archiver");
        assert!(folders.next_link.is_some());
        let _: Folder = serde_json::from_str(&golden("folder.json")).unwrap();
        let _: MessageRef = serde_json::from_str(&golden("message.json")).unwrap();
        let page: Collection<MessageRef> =
            serde_json::from_str(&golden("messages-page.json")).unwrap();
        assert_eq!(page.value.len(), 1);
    }
}
