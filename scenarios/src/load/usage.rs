//! CPU time and peak memory (getrusage), and throughput sampled while a phase runs.

use std::time::{Duration, Instant};

use serde::Serialize;

/// A process's (or its waited-for children's) CPU time and peak resident set.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Rusage {
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub max_rss_bytes: u64,
}

/// CPU time spent in a span.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cpu {
    pub user_seconds: f64,
    pub system_seconds: f64,
}

impl Rusage {
    fn read(who: nix::sys::resource::UsageWho) -> Self {
        match nix::sys::resource::getrusage(who) {
            Ok(u) => {
                let secs = |t: nix::sys::time::TimeVal| {
                    t.tv_sec() as f64 + t.tv_usec() as f64 / 1_000_000.0
                };
                Self {
                    user_seconds: secs(u.user_time()),
                    system_seconds: secs(u.system_time()),
                    // Linux reports kilobytes.
                    max_rss_bytes: u64::try_from(u.max_rss()).unwrap_or(0) * 1024,
                }
            }
            Err(_) => Self::default(),
        }
    }

    /// This process.
    pub fn own() -> Self {
        Self::read(nix::sys::resource::UsageWho::RUSAGE_SELF)
    }

    /// Every child this process has waited for: CPU summed, peak memory the largest.
    pub fn children() -> Self {
        Self::read(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
    }

    pub fn cpu(&self) -> Cpu {
        Cpu {
            user_seconds: self.user_seconds,
            system_seconds: self.system_seconds,
        }
    }

    pub fn cpu_since(&self, before: &Self) -> Cpu {
        self.cpu().since(before.cpu())
    }
}

/// Each fake's CPU time: from its own process, or with `--fakes in-process` from its own
/// threads (see `harness::Fakes::start_live`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EachFake {
    pub mailbox_ceiling: Cpu,
    pub mailbox_import: Cpu,
    pub provider_import: Cpu,
}

impl Cpu {
    /// The time spent since `before`.
    pub fn since(self, before: Self) -> Self {
        Self {
            user_seconds: self.user_seconds - before.user_seconds,
            system_seconds: self.system_seconds - before.system_seconds,
        }
    }
}

/// The CPU time of this process's threads named `name` (Linux: from /proc, in the
/// kernel's 1/100 s ticks; zero elsewhere). A thread's name in /proc is its first 15
/// bytes.
pub fn threads_cpu(name: &str) -> Cpu {
    let mut out = Cpu::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let named = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == &name[..name.len().min(15)]);
        if !named {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // After the name in parentheses: state, then ten fields, then utime and stime.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            out.user_seconds += user as f64 / 100.0;
            out.system_seconds += system as f64 / 100.0;
        }
    }
    out
}

/// Deliveries in one 10-second span of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Seconds from the start of the phase.
    pub from_second: u64,
    pub deliveries: u64,
    pub per_second: f64,
    /// The connector child's resident memory at the end of the span (Linux), if it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_rss_bytes: Option<u64>,
}

/// Space free for this user on the file system of `path`.
pub fn free_disk_bytes(path: &std::path::Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// This process's resident memory now, in MB (for progress lines; 0 where /proc is
/// not there).
pub fn rss_now_mb() -> f64 {
    rss_of(std::process::id()).unwrap_or(0) as f64 / 1e6
}

/// The resident memory of a process now, from /proc (Linux only).
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The span of each bucket.
pub const BUCKET: Duration = Duration::from_secs(10);

/// Counts messages stored by the fake mailbox once a second into [`BUCKET`]s, and shows
/// progress: a bar redrawn every second when stderr is a terminal, else a plain line
/// every [`BUCKET`] (for logs and CI).
#[derive(Debug)]
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Bucket>>,
}

impl Sampler {
    /// `expected` is a rough total, for the progress line.
    /// `child` is the connector's process id once it runs (0 before).
    pub fn start(
        label: &'static str,
        mailbox: super::mailbox::Mailbox,
        expected: u64,
        child: std::sync::Arc<std::sync::atomic::AtomicU32>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(expected.max(1));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  {prefix:8} [{bar:30}] {pos}/{len} stored ({percent}%), {elapsed} in, ~{eta} left  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label);
            bar
        });
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let base = mailbox.imports().await.unwrap_or(0);
            let mut buckets = Vec::new();
            let mut bucket_start = base;
            let mut last_second = base;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut seconds = 0u64;
            loop {
                let done = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                seconds += 1;
                // A child that stopped answering shows no progress; its error comes
                // from the phase.
                let now = mailbox.imports().await.unwrap_or(last_second);
                let pid = child.load(std::sync::atomic::Ordering::Relaxed);
                let rss = (pid != 0).then(|| rss_of(pid)).flatten();
                let rss_text = rss.map_or(String::new(), |r| {
                    format!(", connector RSS {:.0} MB", r as f64 / 1e6)
                });
                if let Some(bar) = &bar {
                    // The expected total is an estimate: never show more than 100 %.
                    if now - base > bar.length().unwrap_or(0) {
                        bar.set_length(now - base);
                    }
                    bar.set_position(now - base);
                    bar.set_message(format!("{}/s{rss_text}", now - last_second));
                }
                last_second = now;
                if !done && !seconds.is_multiple_of(BUCKET.as_secs()) {
                    continue;
                }
                let span = if done {
                    started.elapsed().as_secs_f64() - (buckets.len() as f64 * BUCKET.as_secs_f64())
                } else {
                    BUCKET.as_secs_f64()
                };
                let deliveries = now.saturating_sub(bucket_start);
                if !done || deliveries > 0 {
                    buckets.push(Bucket {
                        from_second: buckets.len() as u64 * BUCKET.as_secs(),
                        deliveries,
                        per_second: if span > 0.0 {
                            deliveries as f64 / span
                        } else {
                            0.0
                        },
                        connector_rss_bytes: rss,
                    });
                }
                bucket_start = now;
                if done {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    return buckets;
                }
                if bar.is_none() {
                    eprintln!(
                        "  {label}: {:>9} messages stored{}, {:>8.0}/s over the last {}s, {:.0}s in{rss_text}",
                        now - base,
                        if expected > 0 {
                            format!(" (~{:.0}%)", (now - base) as f64 * 100.0 / expected as f64)
                        } else {
                            String::new()
                        },
                        deliveries as f64 / BUCKET.as_secs_f64(),
                        BUCKET.as_secs(),
                        started.elapsed().as_secs_f64(),
                    );
                }
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Vec<Bucket> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
