//! `--keep-mail`: every delivered copy is written, exactly the bytes the mailbox holds,
//! one folder per mailbox.

use std::path::PathBuf;

use scenarios::Scenario;

#[tokio::test]
async fn every_delivered_copy_is_kept_byte_for_byte() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recorded/rule-calls.json");
    let scenario = Scenario::load(&file).unwrap();
    let work = scenarios::harness::temp_dir("keep-mail-work");
    let outcome = scenarios::runner::run(&scenario, &work, String::new())
        .await
        .unwrap();
    let out = scenarios::harness::temp_dir("keep-mail-out");
    let written = scenarios::keep_mail::write(&outcome.landed, &out, &scenario.name).unwrap();
    assert_eq!(written, outcome.report.found_deliveries);
    let mut files = 0;
    for copies in outcome.landed.values() {
        for copy in copies {
            let id = copy.content().internet_message_id().unwrap();
            let path = out
                .join(&scenario.name)
                .join(&*copy.mailbox)
                .join(format!("{}.eml", id.trim_matches(['<', '>'])));
            assert_eq!(
                std::fs::read(&path).unwrap(),
                copy.content().mime().unwrap(),
                "{}",
                path.display()
            );
            files += 1;
        }
    }
    assert_eq!(files, written);
    std::fs::remove_dir_all(&work).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}
