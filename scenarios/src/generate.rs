//! Generates an organisation and days of its WhatsApp traffic from parameters and a seed.
//! The same parameters give the same scenario on every machine (the generator draws only
//! from one seeded `StdRng`, whose algorithm is pinned by Cargo.lock).

use chrono::{DateTime, TimeDelta};
use fake::Fake;
use fake::faker::address::raw::{CityName, StreetName};
use fake::faker::company::raw::{Buzzword, CompanyName};
use fake::faker::name::raw::{FirstName, LastName};
use fake::locales::{AR_SA, DE_DE, EN, FR_FR, IT_IT, JA_JP, NL_NL, PT_BR, TR_TR, ZH_CN};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

pub use crate::model::GeneratorParams;
use crate::model::{RunSpec, Scenario, User};

/// The tenant's domain.
const DOMAIN: &str = "contoso.example";

/// A place names and numbers come from.
#[derive(Debug, Clone, Copy)]
struct Locale {
    country: &'static str,
    /// National significant number: a prefix and how many more digits.
    mobile: (&'static [&'static str], usize),
}

const LOCALES: [Locale; 10] = [
    Locale {
        country: "1",
        mobile: (&["617", "212", "415", "646", "312"], 7),
    },
    Locale {
        country: "33",
        mobile: (&["6", "7"], 8),
    },
    Locale {
        country: "49",
        mobile: (&["151", "160", "170", "176"], 8),
    },
    Locale {
        country: "55",
        mobile: (&["119", "219"], 8),
    },
    Locale {
        country: "39",
        mobile: (&["3"], 9),
    },
    Locale {
        country: "31",
        mobile: (&["6"], 8),
    },
    Locale {
        country: "86",
        mobile: (&["13", "15", "18"], 9),
    },
    Locale {
        country: "81",
        mobile: (&["70", "80", "90"], 8),
    },
    Locale {
        country: "966",
        mobile: (&["5"], 8),
    },
    Locale {
        country: "90",
        mobile: (&["5"], 9),
    },
];

fn person_name(rng: &mut StdRng, locale: usize) -> String {
    macro_rules! both {
        ($l:expr) => {{
            let first: String = FirstName($l).fake_with_rng(rng);
            let last: String = LastName($l).fake_with_rng(rng);
            (first, last)
        }};
    }
    let (first, last) = match locale {
        0 => both!(EN),
        1 => both!(FR_FR),
        2 => both!(DE_DE),
        3 => both!(PT_BR),
        4 => both!(IT_IT),
        5 => both!(NL_NL),
        6 => both!(ZH_CN),
        7 => both!(JA_JP),
        8 => both!(AR_SA),
        _ => both!(TR_TR),
    };
    if locale == 6 || locale == 7 {
        format!("{last}{first}")
    } else {
        format!("{first} {last}")
    }
}

/// Short messages in the languages and scripts of the locales, with emoji.
const PHRASES: [&[&str]; 10] = [
    &[
        "Can we move the call to 3pm?",
        "Sent you the term sheet, please check",
        "Price is firm at 101.25",
        "On my way 🚗",
        "Thanks! 👍",
        "Let's lock this in today",
        "Client wants a better rate",
        "Done ✅",
    ],
    &[
        "On se voit à 15h ?",
        "Je t'envoie le contrat ce soir",
        "Le prix indicatif est 101,25 €",
        "Merci beaucoup 🙏",
        "C'est validé de notre côté",
        "Réunion décalée à demain",
    ],
    &[
        "Können wir das Meeting verschieben?",
        "Angebot kommt gleich per Mail",
        "Kurs steht bei 101,25",
        "Danke dir! 😊",
        "Ich rufe später zurück",
        "Grüße aus Frankfurt",
    ],
    &[
        "Podemos falar amanhã?",
        "Mandei a proposta agora",
        "O preço ficou em 101,25",
        "Obrigado! 🙌",
        "Fechado então",
        "Estou chegando",
    ],
    &[
        "Ci sentiamo dopo?",
        "Ti mando il contratto",
        "Prezzo confermato a 101,25",
        "Grazie mille 🙂",
        "Va bene per me",
    ],
    &[
        "Kunnen we morgen bellen?",
        "Ik stuur de offerte zo",
        "Prijs blijft 101,25",
        "Dank je! 👌",
    ],
    &[
        "明天开会吗？",
        "合同已经发给你了",
        "价格是101.25",
        "谢谢！👍",
        "我马上到",
    ],
    &[
        "明日の会議は何時ですか？",
        "契約書を送りました",
        "価格は101.25です",
        "ありがとうございます🙏",
    ],
    &[
        "هل يمكننا التحدث غداً؟",
        "أرسلت العقد الآن",
        "السعر 101.25",
        "شكراً جزيلاً 🌟",
        "تم الاتفاق",
    ],
    &[
        "Yarın konuşabilir miyiz?",
        "Sözleşmeyi gönderdim",
        "Fiyat 101,25",
        "Teşekkürler! 😄",
    ],
];

/// How a person is found in Microsoft 365 (the cases the rules are about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Email property is their mailbox.
    Automatic,
    /// No email property; the mapping file gives their mailbox.
    CsvOnly,
    /// The mapping file gives their mailbox; the email property names another valid user.
    Both,
    /// The mapping file names a non-user; the email property is their mailbox.
    CsvToNonUser,
    /// The email property is not a user; no mapping file entry.
    BadEmail,
    /// Their user's mailbox is disabled.
    Disabled,
    /// Their number is mapped to a colleague's mailbox (a shared phone).
    SharedWithColleague,
    /// Captured, but neither registered with an email nor in the mapping file.
    Unregistered,
}

fn mapping_for(i: usize) -> Mapping {
    // A fixed pattern over each block of 25 employees: the proportions stay the same at
    // every size, and every case appears as soon as there are 25 employees.
    match i % 25 {
        0..=13 => Mapping::Automatic,
        14..=16 => Mapping::CsvOnly,
        17..=18 => Mapping::Both,
        19 => Mapping::CsvToNonUser,
        20 => Mapping::BadEmail,
        21 => Mapping::Disabled,
        22 => Mapping::SharedWithColleague,
        23 => Mapping::Unregistered,
        _ => Mapping::Automatic,
    }
}

#[derive(Debug, Clone)]
struct Person {
    phone: String,
    name: String,
    user_email: Option<String>,
    locale: usize,
}

impl Person {
    fn json(&self) -> Value {
        json!({"phone": self.phone, "name": self.name, "user_email": self.user_email})
    }
}

fn ascii_part(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase()
}

fn mobile(
    rng: &mut StdRng,
    locale: usize,
    used: &mut std::collections::BTreeSet<String>,
) -> String {
    let l = LOCALES[locale];
    loop {
        let prefix = l.mobile.0[rng.random_range(0..l.mobile.0.len())];
        let rest: String = (0..l.mobile.1)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        let number = format!("+{}{prefix}{rest}", l.country);
        if used.insert(number.clone()) {
            return number;
        }
    }
}

/// The region of national numbers in generated mapping files (its `default_region`).
const FILE_REGION: &str = "US";

/// The number as a person would type it into a spreadsheet: as it is, with `00`,
/// grouped, spaced; numbers of countries with a trunk prefix often as
/// `+33 (0)6 12 34 56 78`, and numbers of the file's region (the US) in national form,
/// `(617) 435-4634`. (The choice of form draws from `rng` as it always did, so the
/// rest of a generated scenario does not change with the forms.)
fn national_format(rng: &mut StdRng, e164: &str) -> String {
    let digits = &e164[1..];
    let trunk = ["33", "49", "31"]
        .into_iter()
        .find(|cc| digits.starts_with(cc));
    match rng.random_range(0..6) {
        0 if trunk.is_some() => {
            let cc = trunk.unwrap_or_default();
            format!("+{cc} (0){}", &digits[cc.len()..])
        }
        1 if digits.starts_with('1') && digits.len() == 11 => {
            format!("({}) {}-{}", &digits[1..4], &digits[4..7], &digits[7..])
        }
        0 => e164.to_owned(),
        // Bare digits would read as a national number of the file's region.
        1 => format!("00{digits}"),
        2 => format!("00{digits}"),
        3 => {
            let (cc, rest) = digits.split_at(digits.len() - 10.min(digits.len() - 1));
            format!("+{cc} ({}) {}-{}", &rest[..3], &rest[3..6], &rest[6..])
        }
        4 => {
            let spaced: Vec<String> = digits
                .as_bytes()
                .chunks(3)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            format!("+{}", spaced.join(" "))
        }
        _ => format!("  {e164} "),
    }
}

struct Conversation {
    id: String,
    group: Option<String>,
    members: Vec<usize>,
    history: Vec<(String, usize, String)>,
}

/// An organisation and its traffic, drawn from the seed: [`Traffic::new`] draws the
/// people, their directory entries and the conversations; the iterator then draws each
/// item in the order it is sent, on demand, so a day of any size need not be held whole
/// (`scenarios load` streams it into the fake provider). [`generate`] collects it into a
/// scenario; both draw the same items from the same seed.
pub struct Traffic {
    p: GeneratorParams,
    rng: StdRng,
    people: Vec<Person>,
    employees: usize,
    users: Vec<User>,
    csv_lines: Vec<String>,
    conversations: Vec<Conversation>,
    weighted: Vec<usize>,
    end: DateTime<chrono::Utc>,
    attachment_seq: u64,
    /// Days begun: the day (from 1) whose send times `times` holds.
    day: u32,
    day_start: DateTime<chrono::Utc>,
    times: std::vec::IntoIter<i64>,
    /// Items drawn so far (their ids count them).
    produced: usize,
}

impl Traffic {
    /// Draws the organisation: people, the directory, the mapping file, conversations.
    pub fn new(p: &GeneratorParams) -> anyhow::Result<Self> {
        if p.employees == 0 || p.days == 0 {
            anyhow::bail!("a generated scenario needs at least one employee and one day");
        }
        let mut rng = StdRng::seed_from_u64(p.seed);
        let domain = DOMAIN;
        let mut used_phones = std::collections::BTreeSet::new();
        let mut used_upns = std::collections::BTreeSet::new();
        let mut people: Vec<Person> = Vec::new();
        let mut users: Vec<User> = vec![
            User {
                upn: format!("trading-desk@{domain}"),
                name: "Trading Desk".into(),
                mailbox: true,
            },
            User {
                upn: format!("compliance@{domain}"),
                name: "Compliance".into(),
                mailbox: true,
            },
        ];
        let mut csv_lines: Vec<String> = Vec::new();
        let mut mappings = Vec::new();
        for i in 0..p.employees {
            let locale = rng.random_range(0..LOCALES.len());
            let name = person_name(&mut rng, locale);
            let phone = mobile(&mut rng, locale, &mut used_phones);
            let mut base = ascii_part(&name);
            if base.len() < 3 {
                base = format!("employee{i:03}");
            }
            let mut upn = format!("{base}@{domain}");
            let mut n = 2;
            while !used_upns.insert(upn.clone()) {
                upn = format!("{base}{n}@{domain}");
                n += 1;
            }
            let mapping = mapping_for(i);
            let user_email = match mapping {
                Mapping::Automatic | Mapping::CsvToNonUser | Mapping::Disabled => Some(upn.clone()),
                Mapping::Both => Some(format!("trading-desk@{domain}")),
                Mapping::BadEmail => Some(format!("{base}.old@{domain}")),
                Mapping::CsvOnly | Mapping::SharedWithColleague | Mapping::Unregistered => None,
            };
            match mapping {
                Mapping::CsvOnly | Mapping::Both => {
                    csv_lines.push(format!("{},{upn}", national_format(&mut rng, &phone)))
                }
                Mapping::CsvToNonUser => csv_lines.push(format!(
                    "{},former.{upn}",
                    national_format(&mut rng, &phone)
                )),
                Mapping::SharedWithColleague if i > 0 => {
                    let colleague = users.last().map(|u| u.upn.clone()).unwrap_or_default();
                    csv_lines.push(format!("{},{colleague}", national_format(&mut rng, &phone)));
                }
                _ => {}
            }
            if !matches!(
                mapping,
                Mapping::SharedWithColleague | Mapping::Unregistered | Mapping::BadEmail
            ) {
                users.push(User {
                    upn,
                    name: name.clone(),
                    mailbox: mapping != Mapping::Disabled,
                });
            }
            people.push(Person {
                phone,
                name,
                user_email,
                locale,
            });
            mappings.push(mapping);
        }
        let employees = people.len();
        for _ in 0..p.external_contacts {
            let locale = rng.random_range(0..LOCALES.len());
            let name = person_name(&mut rng, locale);
            let phone = mobile(&mut rng, locale, &mut used_phones);
            people.push(Person {
                phone,
                name,
                user_email: None,
                locale,
            });
        }
        // Conversations: direct chats (colleagues and clients), groups, and a few chats among
        // outsiders and unregistered numbers that no mailbox may receive.
        let mut conversations: Vec<Conversation> = Vec::new();
        let pick = |rng: &mut StdRng, lo: usize, hi: usize| rng.random_range(lo..hi.max(lo + 1));
        for _ in 0..(employees * 2).max(2) {
            let a = pick(&mut rng, 0, employees);
            let b = if rng.random_bool(0.5) || p.external_contacts == 0 {
                pick(&mut rng, 0, employees)
            } else {
                pick(&mut rng, employees, people.len())
            };
            if a != b {
                conversations.push(Conversation {
                    id: format!("c-{}", conversations.len()),
                    group: None,
                    members: vec![a, b],
                    history: Vec::new(),
                });
            }
        }
        for _ in 0..(employees / 4).max(1) {
            let size = rng.random_range(3..10usize).min(people.len());
            let mut members: Vec<usize> = Vec::new();
            while members.len() < size {
                let m = if rng.random_bool(0.75) {
                    pick(&mut rng, 0, employees)
                } else {
                    pick(&mut rng, 0, people.len())
                };
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            let name = match rng.random_range(0..3) {
                0 => format!(
                    "{} Deals",
                    CompanyName(EN).fake_with_rng::<String, _>(&mut rng)
                ),
                1 => format!("{} desk", Buzzword(EN).fake_with_rng::<String, _>(&mut rng)),
                _ => format!(
                    "Équipe {}",
                    CityName(FR_FR).fake_with_rng::<String, _>(&mut rng)
                ),
            };
            conversations.push(Conversation {
                id: format!("g-{}", conversations.len()),
                group: Some(name),
                members,
                history: Vec::new(),
            });
        }
        let nobody: Vec<usize> = (0..employees)
            .filter(|i| mappings[*i] == Mapping::Unregistered)
            .collect();
        if p.external_contacts >= 2 {
            let outsiders = vec![employees, employees + 1];
            let members = match nobody.first() {
                Some(u) => vec![*u, employees],
                None => outsiders,
            };
            conversations.push(Conversation {
                id: format!("c-{}", conversations.len()),
                group: None,
                members,
                history: Vec::new(),
            });
        }
        // Groups are busier than any one direct chat.
        let weighted: Vec<usize> = conversations
            .iter()
            .enumerate()
            .flat_map(|(i, c)| std::iter::repeat_n(i, if c.group.is_some() { 4 } else { 1 }))
            .collect();
        Ok(Self {
            p: p.clone(),
            rng,
            people,
            employees,
            users,
            csv_lines,
            conversations,
            weighted,
            end: p.start + TimeDelta::days(i64::from(p.days)),
            attachment_seq: 0,
            day: 0,
            day_start: p.start,
            times: Vec::new().into_iter(),
            produced: 0,
        })
    }

    /// How many items the days hold in all (boundary cases and revisions aside).
    pub fn total(&self) -> usize {
        self.p.items_per_day * self.p.days as usize
    }

    /// The scenario without its items: the directory, the employees the provider knows,
    /// the mapping file, the runs and the two unreadable raw items.
    pub fn shell(&self) -> Scenario {
        let p = &self.p;
        let domain = DOMAIN;
        let raw_items = vec![
            json!({"id": "wa-raw-1", "archived_at": (p.start + TimeDelta::hours(9)).to_rfc3339(), "type": "poll", "question": "Lunch?"}),
            json!({"id": "wa-raw-2", "archived_at": (p.start + TimeDelta::hours(10)).to_rfc3339(), "type": "text", "capture_mode": "phone_archiver"}),
        ];
        let mut runs = Vec::new();
        for day in 1..=p.days {
            if !p.missed_runs.contains(&day) || day == p.days {
                runs.push(RunSpec {
                    until: p.start + TimeDelta::days(i64::from(day)),
                    since: None,
                });
            }
        }
        // Items listed late near the last day's end are found by the look-back of a run the
        // day after.
        if p.late_rate > 0.0 {
            runs.push(RunSpec {
                until: p.start + TimeDelta::days(i64::from(p.days) + 1),
                since: None,
            });
        }
        let employees_json: Vec<Value> = self.people[..self.employees]
            .iter()
            .filter(|p| p.user_email.is_some())
            .map(Person::json)
            .collect();
        let mapping_csv = format!(
            "\u{feff}Mobile phone number,Email address\r\n{}\r\n",
            self.csv_lines.join("\r\n")
        );
        Scenario {
            name: String::new(),
            description: format!(
                "{} employees, {} external contacts, {} day(s) of {} items from {}, seed {}",
                p.employees,
                p.external_contacts,
                p.days,
                p.items_per_day,
                p.start.date_naive(),
                p.seed
            ),
            seed: Some(p.seed),
            generate: None,
            tenant_domain: domain.into(),
            users: self.users.clone(),
            employees: employees_json,
            mapping_csv: Some(mapping_csv),
            mapping_default_region: Some(FILE_REGION.into()),
            automatic_mapping: true,
            unmapped_mailbox: None,
            size_limit: 10 * 1024 * 1024,
            connector_defaults: false,
            items: Vec::new(),
            raw_items,
            visibility: (p.late_rate > 0.0).then(|| mock_telemessage::dataset::Visibility {
                seed: p.seed,
                rate: p.late_rate,
                max_lag_seconds: 6 * 3600,
                items: Default::default(),
            }),
            raw_text_items: Vec::new(),
            runs,
            provider_faults: None,
            mailbox_faults: None,
            crashes: Vec::new(),
            crash_by: Default::default(),
            concurrency: None,
            mailbox_profile: None,
        }
    }

    /// The next item, sent at `second` of the current day.
    fn item(&mut self, second: i64) -> Value {
        let Traffic {
            p,
            rng,
            people,
            conversations,
            weighted,
            end,
            attachment_seq: seq,
            day,
            day_start,
            produced,
            ..
        } = self;
        let (end, day_start, day) = (*end, *day_start, *day);
        let mut attachment_seq = *seq;
        let c = weighted[rng.random_range(0..weighted.len())];
        let sent = day_start
            + TimeDelta::seconds(second)
            + TimeDelta::milliseconds(rng.random_range(0..1000));
        let mut archived = sent + TimeDelta::seconds(rng.random_range(1..20));
        if rng.random_bool(0.01) {
            // Captured late (a phone offline for hours): still before the last run.
            archived =
                (sent + TimeDelta::hours(rng.random_range(2..30))).min(end - TimeDelta::minutes(5));
        }
        if archived >= end {
            archived = end - TimeDelta::seconds(1);
        }
        let id = format!("wa-{}-{:06}", day, *produced);
        let conv = &mut conversations[c];
        let sender = conv.members[rng.random_range(0..conv.members.len())];
        let to: Vec<Value> = conv
            .members
            .iter()
            .filter(|m| **m != sender)
            .map(|m| people[*m].json())
            .collect();
        let mut item = json!({
            "id": id, "capture_mode": if rng.random_bool(0.6) { "cloud_archiver" } else { "phone_archiver" },
            "archived_at": archived.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "sent_at": sent.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "conversation": {"id": conv.id, "type": if conv.group.is_some() { "group" } else { "direct" }, "name": conv.group},
            "from": people[sender].json(), "to": to,
        });
        let phrases = PHRASES[people[sender].locale];
        let text = phrases[rng.random_range(0..phrases.len())].to_owned();
        let own: Vec<&(String, usize, String)> = conv
            .history
            .iter()
            .filter(|(_, s, _)| *s == sender)
            .collect();
        let roll = rng.random_range(0..1000);
        let mut attach = |kind: &str,
                          lo: u64,
                          hi: u64,
                          name: String,
                          content_type: &str,
                          rng: &mut StdRng| {
            attachment_seq += 1;
            json!({"id": format!("att-{attachment_seq}"), "file_name": name, "content_type": content_type, "size": rng.random_range(lo..hi), "seed": p.seed ^ attachment_seq, "_kind": kind})
        };
        let kind = match roll {
            0..=549 => {
                item["type"] = json!("text");
                item["text"] = json!(text);
                if let Some((target, _, quoted)) =
                    conv.history.last().filter(|_| rng.random_bool(0.15))
                {
                    item["context"] = json!({"reply_to": target, "quoted_text": quoted, "forwarded": false, "frequently_forwarded": false});
                } else if rng.random_bool(0.04) {
                    item["context"] = json!({"reply_to": null, "quoted_text": null, "forwarded": true, "frequently_forwarded": rng.random_bool(0.3)});
                }
                if rng.random_bool(0.02) {
                    let scope = if rng.random_bool(0.7) {
                        "everyone"
                    } else {
                        "me"
                    };
                    item["deleted"] = json!({"scope": scope, "deleted_at": (sent + TimeDelta::seconds(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
                }
                "text"
            }
            550..=619 => media(
                &mut item,
                "image",
                attach(
                    "image",
                    20_000,
                    400_000,
                    format!("IMG_{}.jpg", sent.format("%Y%m%d_%H%M%S")),
                    "image/jpeg",
                    &mut *rng,
                ),
                &text,
                &mut *rng,
            ),
            620..=634 => {
                let huge = rng.random_bool(0.2);
                let (lo, hi) = if huge {
                    (12_000_000, 40_000_000)
                } else {
                    (300_000, 3_000_000)
                };
                media(
                    &mut item,
                    "video",
                    attach(
                        "video",
                        lo,
                        hi,
                        format!("VID_{}.mp4", sent.format("%Y%m%d_%H%M%S")),
                        "video/mp4",
                        &mut *rng,
                    ),
                    &text,
                    &mut *rng,
                )
            }
            635..=644 => media(
                &mut item,
                "audio",
                attach(
                    "audio",
                    50_000,
                    800_000,
                    "recording.m4a".into(),
                    "audio/mp4",
                    &mut *rng,
                ),
                &text,
                &mut *rng,
            ),
            645..=694 => media(
                &mut item,
                "voice_note",
                attach(
                    "voice",
                    5_000,
                    300_000,
                    format!("PTT-{}.opus", sent.format("%Y%m%d")),
                    "audio/ogg",
                    &mut *rng,
                ),
                "",
                &mut *rng,
            ),
            695..=724 => media(
                &mut item,
                "sticker",
                attach(
                    "sticker",
                    10_000,
                    400_000,
                    "sticker.webp".into(),
                    "image/webp",
                    &mut *rng,
                ),
                "",
                &mut *rng,
            ),
            725..=759 => {
                let huge = rng.random_bool(0.08);
                let (lo, hi) = if huge {
                    (11_000_000, 30_000_000)
                } else {
                    (20_000, 2_000_000)
                };
                let name = format!(
                    "{} {}.pdf",
                    Buzzword(EN).fake_with_rng::<String, _>(&mut *rng),
                    rng.random_range(1..9)
                );
                let att = attach("document", lo, hi, name, "application/pdf", &mut *rng);
                item["type"] = json!("document");
                item["document"] = json!({"caption": if rng.random_bool(0.5) { Some(text.clone()) } else { None }, "attachment": strip(att)});
                "document"
            }
            760..=769 => {
                item["type"] = json!("location");
                item["location"] = json!({"latitude": rng.random_range(-60.0..70.0f64), "longitude": rng.random_range(-170.0..170.0f64),
                                          "name": CityName(EN).fake_with_rng::<String, _>(&mut *rng), "address": StreetName(EN).fake_with_rng::<String, _>(&mut *rng)});
                "location"
            }
            770..=779 => {
                let other = &people[rng.random_range(0..people.len())];
                item["type"] = json!("contact");
                item["contact"] = json!({"name": other.name, "phones": [other.phone], "emails": other.user_email.iter().collect::<Vec<_>>(),
                                         "organization": CompanyName(EN).fake_with_rng::<String, _>(&mut *rng)});
                "contact"
            }
            780..=859 if !conv.history.is_empty() => {
                let (target, _, _) = &conv.history[rng.random_range(0..conv.history.len())];
                let emoji = ["👍", "❤️", "😂", "🙏", "😮", "✅"][rng.random_range(0..6)];
                item["type"] = json!("reaction");
                item["reaction"] = json!({"target_id": target, "emoji": if rng.random_bool(0.9) { Some(emoji) } else { None }});
                "reaction"
            }
            860..=889 if !own.is_empty() => {
                let (target, _, _) = own[rng.random_range(0..own.len())];
                item["type"] = json!("edit");
                item["edit"] = json!({"target_id": target, "text": format!("{text} (edited)")});
                "edit"
            }
            890..=909 if !own.is_empty() => {
                let (target, _, _) = own[rng.random_range(0..own.len())];
                item["type"] = json!("deletion");
                item["deletion"] = json!({"target_id": target, "scope": if rng.random_bool(0.7) { "everyone" } else { "me" }});
                "deletion"
            }
            910..=929 if conv.group.is_some() => {
                let action =
                    ["join", "leave", "add", "remove", "subject_change"][rng.random_range(0..5)];
                let member = people[conv.members[rng.random_range(0..conv.members.len())]].json();
                item["type"] = json!("membership");
                item["membership"] = json!({"action": action, "members": if matches!(action, "add" | "remove") { vec![member] } else { vec![] },
                                            "subject": if action == "subject_change" { Some(format!("{} 2027", conv.group.clone().unwrap_or_default())) } else { None }});
                "membership"
            }
            930..=969 => {
                let outcome = ["answered", "answered", "answered", "missed", "declined"]
                    [rng.random_range(0..5)];
                let joined: Vec<&str> = if outcome == "answered" {
                    conv.members
                        .iter()
                        .filter(|m| **m != sender && rng.random_bool(0.7))
                        .map(|m| people[*m].phone.as_str())
                        .collect()
                } else {
                    Vec::new()
                };
                item["type"] = json!("call");
                item["call"] = json!({"media": if rng.random_bool(0.4) { "video" } else { "voice" }, "outcome": outcome,
                                      "started_at": item["sent_at"], "duration_seconds": if outcome == "answered" { rng.random_range(20..3600) } else { 0 }, "joined": joined});
                "call"
            }
            _ => {
                item["type"] = json!("text");
                item["text"] = json!(text);
                "text"
            }
        };
        let quoted = if kind == "text" {
            item["text"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect()
        } else {
            format!("[{kind}]")
        };
        if matches!(
            kind,
            "text"
                | "image"
                | "video"
                | "document"
                | "voice_note"
                | "audio"
                | "sticker"
                | "location"
                | "contact"
        ) {
            conv.history.push((id, sender, quoted));
        }
        *seq = attachment_seq;
        *produced += 1;
        item
    }
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("seed", &self.p.seed)
            .field("people", &self.people.len())
            .field("conversations", &self.conversations.len())
            .field("day", &self.day)
            .field("produced", &self.produced)
            .finish()
    }
}

impl Iterator for Traffic {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(second) = self.times.next() {
                return Some(self.item(second));
            }
            if self.day >= self.p.days {
                return None;
            }
            // The day's send times, drawn at its start, in order.
            let rng = &mut self.rng;
            let mut times: Vec<i64> = (0..self.p.items_per_day)
                .map(|_| {
                    if rng.random_bool(0.75) {
                        rng.random_range(8 * 3600..18 * 3600)
                    } else {
                        rng.random_range(0..86_400)
                    }
                })
                .collect();
            times.sort_unstable();
            self.day_start = self.p.start + TimeDelta::days(i64::from(self.day));
            self.day += 1;
            self.times = times.into_iter();
        }
    }
}

/// Generates the scenario.
pub fn generate(p: &GeneratorParams) -> anyhow::Result<Scenario> {
    let mut traffic = Traffic::new(p)?;
    let mut items: Vec<Value> = traffic.by_ref().collect();
    if p.boundary_cases && traffic.employees >= 2 {
        let (a, b) = (traffic.people[0].json(), traffic.people[1].json());
        let day_one = p.start + TimeDelta::hours(12);
        for (n, size) in [10_485_759u64, 10_485_760, 10_485_761]
            .into_iter()
            .enumerate()
        {
            traffic.attachment_seq += 1;
            items.push(json!({
                "id": format!("wa-boundary-{size}"), "capture_mode": "phone_archiver",
                "archived_at": (day_one + TimeDelta::seconds(n as i64 + 1)).to_rfc3339(), "sent_at": day_one.to_rfc3339(),
                "conversation": {"id": "c-boundary", "type": "direct", "name": null}, "from": a, "to": [b],
                "type": "document", "document": {"caption": format!("{size} bytes"), "attachment":
                    {"id": format!("att-boundary-{size}"), "file_name": format!("boundary-{size}.bin"), "content_type": "application/octet-stream", "size": size, "seed": traffic.attachment_seq}},
            }));
        }
        items.push(json!({
            "id": "wa-boundary-long-text", "capture_mode": "cloud_archiver",
            "archived_at": (day_one + TimeDelta::seconds(9)).to_rfc3339(), "sent_at": day_one.to_rfc3339(),
            "conversation": {"id": "c-boundary", "type": "direct", "name": null}, "from": a, "to": [b],
            "type": "text", "text": "0123456789".repeat(1_100_000),
        }));
    }
    // Revisions: a text item sent again an hour later (within its day) with new text.
    // Drawn apart from the generator's stream, so a zero rate changes nothing else.
    let mut revised = Vec::new();
    for (n, item) in items.iter().enumerate() {
        if p.revision_rate > 0.0
            && item["type"] == "text"
            && mock_common::seeded::unit(p.seed ^ 0x2e71_5e0d, n as u64) < p.revision_rate
        {
            let mut again = item.clone();
            let at = item["archived_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
                .unwrap_or(p.start);
            let day_end =
                p.start + TimeDelta::days((at - p.start).num_days() + 1) - TimeDelta::seconds(1);
            again["archived_at"] = json!((at + TimeDelta::hours(1)).min(day_end).to_rfc3339());
            again["text"] = json!(format!(
                "{} [sent again by the provider with this line added]",
                item["text"].as_str().unwrap_or_default()
            ));
            revised.push(again);
        }
    }
    items.extend(revised);
    let mut scenario = traffic.shell();
    scenario.items = items;
    Ok(scenario)
}

fn strip(mut attachment: Value) -> Value {
    attachment.as_object_mut().map(|o| o.remove("_kind"));
    attachment
}

fn media(
    item: &mut Value,
    kind: &str,
    attachment: Value,
    caption: &str,
    rng: &mut StdRng,
) -> &'static str {
    item["type"] = json!("media");
    let caption = (!caption.is_empty() && rng.random_bool(0.4)).then_some(caption);
    item["media"] = json!({"kind": kind, "caption": caption, "attachment": strip(attachment)});
    match kind {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        "voice_note" => "voice_note",
        _ => "sticker",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> GeneratorParams {
        GeneratorParams {
            seed,
            start: DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
                .unwrap()
                .to_utc(),
            days: 2,
            employees: 25,
            external_contacts: 10,
            items_per_day: 300,
            missed_runs: vec![1],
            boundary_cases: false,
            late_rate: 0.0,
            revision_rate: 0.0,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_scenario() {
        let a = generate(&params(7)).unwrap();
        assert_eq!(a, generate(&params(7)).unwrap());
        assert_ne!(a.items, generate(&params(8)).unwrap().items);
        assert_eq!(a.items.len(), 600);
        assert_eq!(a.runs.len(), 1, "day 1's run is missed; day 2's catches up");
    }

    #[test]
    fn every_kind_appears_and_every_item_follows_the_provider_schema() {
        let s = generate(&params(11)).unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for item in &s.items {
            kinds.insert(item["type"].as_str().unwrap().to_owned());
        }
        for k in [
            "text",
            "media",
            "document",
            "location",
            "contact",
            "reaction",
            "edit",
            "deletion",
            "membership",
            "call",
        ] {
            assert!(kinds.contains(k), "no {k} item");
        }
        // The fake provider accepts the whole dataset (it validates every item).
        let dataset = json!({"items": s.items, "accounts": []});
        mock_telemessage::Dataset::from_json(&dataset.to_string())
            .unwrap()
            .prepare()
            .unwrap();
    }
}
