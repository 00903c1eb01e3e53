//! Conversion throughput: messages per second for a text item and for an item with a
//! 1 MiB attachment. Run with `cargo bench -p connector`.

use chrono::{DateTime, Utc};
use connector::email::{AttachmentBody, Options, convert};
use connector::model::{Attachment, CaptureMode, Content, Conversation, Item, Participant};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn item(content: Content) -> Item {
    Item {
        revision: 1,
        unmapped: Vec::new(),
        id: "wa-bench-1".into(),
        capture_mode: CaptureMode::CloudArchiver,
        archived_at: t("2026-11-22T09:00:03Z"),
        sent_at: t("2026-11-22T09:00:01Z"),
        conversation: Conversation {
            id: "conv-sales".into(),
            is_group: true,
            name: Some("Sales Group".into()),
        },
        from: Participant {
            phone: "+16174354634".into(),
            name: "Alice Archer".into(),
            user_email: Some("alice.archer@contoso.example".into()),
        },
        to: (0..8)
            .map(|i| Participant {
                phone: format!("+1212432{i:04}"),
                name: format!("Member {i}"),
                user_email: None,
            })
            .collect(),
        context: None,
        deleted: None,
        content,
    }
}

fn bench(c: &mut Criterion) {
    let options = Options::default();
    let limit = 10 * 1024 * 1024;
    let text = item(Content::Text {
        text: "Morning all, the 10:00 call moves to 10:30. Prix indicatif : 101,25 € 👍".repeat(4),
    });
    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("text", |b| b.iter(|| convert(&text, None, &options, limit)));
    let bytes: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let doc = item(Content::Document {
        caption: Some("Term sheet".into()),
        attachment: Attachment {
            id: "att-1".into(),
            file_name: "Term sheet v3.pdf".into(),
            content_type: "application/pdf".into(),
            size: bytes.len() as u64,
            sha256: String::new(),
        },
    });
    group.bench_function("document_1mib", |b| {
        b.iter(|| convert(&doc, Some(AttachmentBody::Bytes(&bytes)), &options, limit))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
