//! `--keep-mail DIR`: every delivered message as an `.eml` file, exactly the bytes the
//! mailbox holds, one folder per scenario and mailbox, for reviewers and mail tools.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::reconcile::Landed;

/// A name safe on every file system, from a Message-ID or a mailbox: letters, digits and
/// `.-_@` kept, anything else `_`; a long one is cut and made unique by a digest.
fn file_name(value: &str) -> String {
    let safe: String = value
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.').to_owned();
    if safe.len() <= 100 && !safe.is_empty() {
        return safe;
    }
    let digest: String = Sha256::digest(value.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{digest}", &safe[..safe.len().min(80)])
}

/// Writes every copy of `landed` under `dir/<scenario>/<mailbox>/`; answers how many
/// files it wrote. Two copies of one message in one mailbox (a duplicate) are both kept.
pub fn write(landed: &Landed, dir: &Path, scenario: &str) -> anyhow::Result<usize> {
    let root = dir.join(file_name(scenario));
    let mut written = 0;
    for copies in landed.values() {
        for copy in copies {
            let folder = root.join(file_name(&copy.mailbox));
            std::fs::create_dir_all(&folder)
                .map_err(|e| anyhow::anyhow!("--keep-mail {}: {e}", folder.display()))?;
            let id = copy.name();
            let mut path: PathBuf = folder.join(format!("{}.eml", file_name(&id)));
            let mut n = 1;
            while path.exists() {
                n += 1;
                path = folder.join(format!("{}.copy-{n}.eml", file_name(&id)));
            }
            let mime = copy
                .content()
                .mime()
                .map_err(|e| anyhow::anyhow!("reading back {id} in {}: {e}", copy.mailbox))?;
            std::fs::write(&path, mime)
                .map_err(|e| anyhow::anyhow!("--keep-mail {}: {e}", path.display()))?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(
            super::file_name("<wa-0001@whatsapp-archiver.invalid>"),
            "wa-0001@whatsapp-archiver.invalid"
        );
        assert_eq!(super::file_name("../../etc/passwd"), "_.._etc_passwd");
        let a = super::file_name(&format!("<{}a@x>", "x".repeat(300)));
        let b = super::file_name(&format!("<{}b@x>", "x".repeat(300)));
        assert!(a.len() <= 100 && a != b);
    }
}
