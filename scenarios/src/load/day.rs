//! The day a load run imports, as a stream: the generator's organisation (a scenario
//! without items) and its items drawn from the seed on demand, the chosen mix applied,
//! so that a day of any size is never held whole. A day can be drawn again from the
//! same seed ([`DayStream::again_from`]), its files' hashes remembered from the first
//! time.

use serde_json::{Value, json};

use super::{LoadParams, Mix};
use crate::generate::{GeneratorParams, Traffic};
use crate::model::Scenario;

/// The day: `shell` is the scenario without its items (directory, employees, mapping
/// file, runs, the two unreadable raw items); [`DayStream::next_chunk`] draws the items.
#[derive(Debug)]
pub struct DayStream {
    pub shell: Scenario,
    traffic: Traffic,
    mix: Mix,
    parts: usize,
    hashes: FileHashes,
}

/// Each file's SHA-256 as the day is drawn, in the order drawn: `(seed, size, digest)`.
/// Drawn again, the day reads them back rather than hashing every file again (about
/// 70 GB of files on a million-item day; the list is about 16 MB).
#[derive(Debug, Default)]
struct FileHashes {
    known: Vec<(u64, u64, [u8; 32])>,
    /// Drawing again: where the next file's hash is in `known`.
    replay: Option<usize>,
}

/// The generator's parameters for a load day: ordinary traffic only (no boundary cases,
/// no late items, no revisions: the recorded scenarios cover those).
fn generator_params(p: &LoadParams) -> GeneratorParams {
    GeneratorParams {
        seed: p.seed,
        start: p.start,
        days: p.days,
        employees: p.employees,
        external_contacts: p.external_contacts,
        items_per_day: p.items_per_day,
        missed_runs: Vec::new(),
        boundary_cases: false,
        late_rate: 0.0,
        revision_rate: 0.0,
    }
}

impl DayStream {
    /// The organisation, drawn from the seed; the items are drawn by `next_part`.
    pub fn new(p: &LoadParams) -> anyhow::Result<Self> {
        let traffic = Traffic::new(&generator_params(p))?;
        let mut shell = traffic.shell();
        shell.name = format!("load-{}x{}-seed{}", p.days, p.items_per_day, p.seed);
        if p.fault_rate > 0.0 {
            shell.mailbox_faults = Some(json!({
                "seed": p.seed,
                "unavailable_rate": p.fault_rate / 2.0,
                "lost_import_response_rate": p.fault_rate / 2.0,
            }));
        }
        Ok(Self {
            shell,
            traffic,
            mix: p.mix,
            parts: 0,
            hashes: FileHashes::default(),
        })
    }

    /// Writes the files' hashes this stream has worked out so far into `path` (48 bytes
    /// each: seed, size, digest), for a process that draws the day again
    /// ([`DayStream::again_from`]).
    pub fn save_hashes(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (seed, size, digest) in &self.hashes.known {
            std::io::Write::write_all(&mut out, &seed.to_le_bytes())?;
            std::io::Write::write_all(&mut out, &size.to_le_bytes())?;
            std::io::Write::write_all(&mut out, digest)?;
        }
        std::io::Write::flush(&mut out)
    }

    /// The same day from its first item again, with the files' hashes that
    /// [`DayStream::save_hashes`] wrote (a file that does not match is hashed again).
    pub fn again_from(p: &LoadParams, hashes: &std::path::Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(hashes)?;
        anyhow::ensure!(
            bytes.len() % 48 == 0,
            "{}: not a file of hashes ({} bytes)",
            hashes.display(),
            bytes.len()
        );
        let known = bytes
            .chunks_exact(48)
            .map(|r| {
                let number =
                    |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().expect("8 bytes"));
                (number(0), number(8), r[16..].try_into().expect("32 bytes"))
            })
            .collect();
        let mut day = Self::new(p)?;
        day.hashes = FileHashes {
            known,
            replay: Some(0),
        };
        Ok(day)
    }

    /// Items the day holds in all.
    pub fn total(&self) -> usize {
        self.traffic.total()
    }

    /// The next part of the day as a scenario of its own: the shell with the next `n`
    /// items (fewer at the end), the two unreadable raw items in the first part only;
    /// `None` once every item is drawn. The parts' items never share an id, so each can
    /// be worked out on its own (`oracle::Expected::absorb`).
    pub fn next_part(&mut self, n: usize) -> Option<Scenario> {
        let mut items: Vec<Value> = self.traffic.by_ref().take(n).collect();
        if items.is_empty() {
            return None;
        }
        if self.mix == Mix::Text {
            items.iter_mut().for_each(as_text);
        }
        self.hashes.apply(&mut items);
        let mut part = self.shell.clone();
        if self.parts > 0 {
            part.raw_items.clear();
        }
        part.items = items;
        self.parts += 1;
        Some(part)
    }
}

impl FileHashes {
    /// Gives each file of `items` its `sha256`: worked out the first time (and kept),
    /// read back when the day is drawn again. A file that is not the one expected there
    /// (another seed or size: the day drawn differs) is hashed again, never guessed.
    fn apply(&mut self, items: &mut [Value]) {
        let Some(next) = &mut self.replay else {
            hash_files(items);
            for item in items.iter() {
                if let (Some((seed, size)), Some(hex)) = (attachment_of(item), sha256_of(item)) {
                    self.known.push((seed, size, digest_of(hex)));
                }
            }
            return;
        };
        for item in items.iter_mut() {
            let Some((seed, size)) = attachment_of(item) else {
                continue;
            };
            let sha256 = match self.known.get(*next) {
                Some((s, n, digest)) if (*s, *n) == (seed, size) => {
                    mock_telemessage::attachment::hex(digest)
                }
                _ => mock_telemessage::attachment::sha256_hex(seed, size),
            };
            *next += 1;
            let part = file_part(item);
            item[part]["attachment"]["sha256"] = json!(sha256);
        }
    }
}

/// The SHA-256 (hex) an item's file was given.
fn sha256_of(item: &Value) -> Option<&str> {
    item.get(file_part(item))?
        .get("attachment")?
        .get("sha256")?
        .as_str()
}

/// 32 bytes from 64 hex digits (as `sha256_hex` writes them).
fn digest_of(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        *byte = digit(pair[0]) << 4 | digit(pair[1]);
    }
    out
}

/// Where an item's file is described: `media` or `document`.
fn file_part(item: &Value) -> &'static str {
    if item.get("media").is_some() {
        "media"
    } else {
        "document"
    }
}

/// Gives each file its `sha256`, worked out once here on every core: the oracle and the
/// fake provider both read it rather than each generating and hashing the bytes again (a
/// million-item day carries about 100 GB of files).
fn hash_files(items: &mut [Value]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for share in items.chunks_mut(per_thread) {
            scope.spawn(move || {
                for item in share {
                    let Some((seed, size)) = attachment_of(item) else {
                        continue;
                    };
                    let part = file_part(item);
                    item[part]["attachment"]["sha256"] =
                        json!(mock_telemessage::attachment::sha256_hex(seed, size));
                }
            });
        }
    });
}

/// About how many bytes of MIME the connector's message for `item` comes to: a few kB
/// of headers and text, and its file when the size rule lets it in, base64-encoded.
pub fn estimated_message_bytes(item: &Value, limit: u64) -> u64 {
    let file = attachment_of(item)
        .map(|(_, size)| size)
        .filter(|size| *size <= limit)
        .map_or(0, |size| size.div_ceil(3) * 4 * 78 / 76);
    3_000 + file
}

/// An item with a file becomes a text item: its caption, or what it was.
fn as_text(item: &mut Value) {
    let kind = item["type"].as_str().unwrap_or_default().to_owned();
    let part = match kind.as_str() {
        "media" => "media",
        "document" => "document",
        _ => return,
    };
    let text = match item[part]["caption"].as_str() {
        Some(c) if !c.is_empty() => c.to_owned(),
        _ => format!("[{}]", item[part]["kind"].as_str().unwrap_or(part)),
    };
    if let Some(o) = item.as_object_mut() {
        o.remove(part);
    }
    item["type"] = json!("text");
    item["text"] = json!(text);
}

/// The bytes of the files an item carries, if any: `(seed, size)`.
pub fn attachment_of(item: &Value) -> Option<(u64, u64)> {
    let att = item
        .get("media")
        .or_else(|| item.get("document"))?
        .get("attachment")?;
    Some((att["seed"].as_u64()?, att["size"].as_u64()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small day's parameters, for the tests of the load run.
    pub(crate) fn params() -> LoadParams {
        LoadParams {
            employees: 12,
            external_contacts: 10,
            items_per_day: 450,
            days: 2,
            mix: Mix::Realistic,
            throttling: super::super::Throttling::Off,
            limits: Default::default(),
            pacing: false,
            fault_rate: 0.0,
            connector: super::super::ConnectorMode::InProcess,
            retain: super::super::Retain::Auto,
            connector_bin: None,
            under: Default::default(),
            fakes: crate::load::FakesMode::InProcess,
            fakes_program: None,
            concurrency: 4,
            seed: 5,
            profile: crate::load::LoadProfile::Lenient,
            latency_seed: 0,
            ceiling_requests: 100,
            start: crate::harness::t("2026-11-20T00:00:00Z"),
        }
    }

    #[test]
    fn the_text_mix_keeps_every_item_and_drops_every_file() {
        let mut item = json!({"id": "a", "type": "media", "media": {"kind": "image", "caption": null,
            "attachment": {"id": "x", "seed": 3, "size": 10}}});
        assert_eq!(attachment_of(&item), Some((3, 10)));
        as_text(&mut item);
        assert_eq!(item["type"], "text");
        assert_eq!(item["text"], "[image]");
        assert_eq!(attachment_of(&item), None);
        let mut doc = json!({"id": "b", "type": "document", "document": {"caption": "Q3 deck",
            "attachment": {"id": "y", "seed": 4, "size": 20}}});
        as_text(&mut doc);
        assert_eq!(doc["text"], "Q3 deck");
        assert!(doc.get("document").is_none());
    }

    /// What the load run does with a day streamed in parts must equal the whole day:
    /// the same items in the same order, and the same expected outcome of each.
    #[test]
    fn a_day_drawn_and_worked_out_in_parts_is_the_day_drawn_whole() {
        use crate::oracle::{Expected, expected};
        let p = params();
        let whole = crate::generate::generate(&generator_params(&p)).unwrap();
        let mut day = DayStream::new(&p).unwrap();
        assert_eq!(day.total(), 900);
        let mut parts = Expected::default();
        let mut tally = crate::oracle::Tally::default();
        let mut items = Vec::new();
        while let Some(part) = day.next_part(200) {
            tally.add(&expected(&part)).unwrap();
            parts.absorb(expected(&part)).unwrap();
            items.extend(part.items);
        }
        // Drawn again (as the reconciliation does), in other parts, with the files'
        // hashes read back: the same items.
        let hashes = crate::harness::temp_dir("day-hashes").join("hashes");
        day.save_hashes(&hashes).unwrap();
        let mut again = DayStream::again_from(&p, &hashes).unwrap();
        std::fs::remove_dir_all(hashes.parent().unwrap()).unwrap();
        let mut items_again = Vec::new();
        while let Some(part) = again.next_part(333) {
            items_again.extend(part.items);
        }
        assert_eq!(items_again, items);
        // Worked out from the whole day as generated (the oracle hashes each file itself).
        let all = expected(&whole);
        // The parts carry each file's SHA-256, worked out once for the oracle and the
        // provider; otherwise they are the generated items.
        let mut generated = whole.items.clone();
        hash_files(&mut generated);
        assert_eq!(items, generated);
        assert!(items.iter().any(|i| attachment_of(i).is_some()));
        assert_eq!(parts.items, all.items);
        assert_eq!(parts.notices, all.notices);
        assert_eq!(parts.source_items, all.source_items);
        assert_eq!(parts.deliveries(), all.deliveries());
        assert_eq!(tally.deliveries, all.deliveries());
        assert_eq!(tally.source_items, all.source_items);
        assert!(all.deliveries() > 900, "items fan out to mailboxes");
        // A part that repeats an id is not independent: refused, never merged.
        let mut again = day.shell.clone();
        again.raw_items.clear();
        again.items = items[..1].to_vec();
        let e = parts.absorb(expected(&again)).unwrap_err().to_string();
        assert!(e.contains("comes in two parts"), "{e}");
        let e = tally.add(&expected(&again)).unwrap_err().to_string();
        assert!(e.contains("comes in two parts"), "{e}");
    }
}
