//! The playbook: the declarative business rules (teams, routing, SLAs, cadences, intake
//! requirements, ...) that operators keep in git and mount as a ConfigMap.
//!
//! One TOML file holds a table per service; each service reads only its own [`Section`].
//! Errors name the file, line and column. The file is re-read on SIGHUP and when it changes
//! on disk (a ConfigMap update swaps a symlink); a reload that fails validation is logged and
//! the previous playbook stays in force.

use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A service's part of the playbook: the top-level table named [`Section::NAME`].
pub trait Section: DeserializeOwned + Default + Send + Sync + 'static {
    /// Name of the top-level table, e.g. `"intake"`.
    const NAME: &'static str;

    /// Checks beyond what deserialisation enforces (cross-references, ranges). Each error
    /// carries the byte span of the offending value when it has one (use `toml::Spanned`).
    fn validate(&self) -> Vec<SpannedError> {
        Vec::new()
    }
}

/// A semantic error at a place in the playbook text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpannedError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl SpannedError {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }
}

/// A built-in value, not from the file. Built-ins are valid, so its empty span never ends up
/// in an error.
pub fn unplaced<T>(value: T) -> toml::Spanned<T> {
    toml::Spanned::new(0..0, value)
}

/// A playbook string with a format of its own (a time zone, working hours, a delay).
pub trait PlaybookValue: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    /// What a value that does not parse reads as: a safe value, so nothing downstream can
    /// panic on it while its error is reported.
    fn fallback() -> Self;
}

/// A playbook string parsed when read. A value that does not parse keeps its error (reported
/// by the section's `validate` with its place, alongside every other problem) and reads as
/// [`PlaybookValue::fallback`].
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    text: toml::Spanned<String>,
    value: T,
    error: Option<String>,
}

impl<T: PlaybookValue> Parsed<T> {
    pub fn new(text: toml::Spanned<String>) -> Self {
        match T::parse(text.get_ref()) {
            Ok(value) => Self {
                text,
                value,
                error: None,
            },
            Err(error) => Self {
                text,
                value: T::fallback(),
                error: Some(error),
            },
        }
    }

    /// A built-in default, written as the file would write it.
    pub fn built_in(text: &str) -> Self {
        Self::new(unplaced(text.to_owned()))
    }

    /// Reports a parse error at its place; true when the value parsed.
    pub fn check(&self, errors: &mut Vec<SpannedError>) -> bool {
        match &self.error {
            Some(error) => {
                errors.push(SpannedError::at(self.text.span(), error.clone()));
                false
            }
            None => true,
        }
    }

    /// The parsed value (the fallback when it did not parse).
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The text as written, with its place.
    pub fn text(&self) -> &toml::Spanned<String> {
        &self.text
    }
}

impl<'de, T: PlaybookValue> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        toml::Spanned::<String>::deserialize(deserializer).map(Self::new)
    }
}

impl PlaybookValue for jiff::tz::TimeZone {
    fn parse(text: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(text).map_err(|_| {
            format!(
                "timezone {text:?} is not a known IANA time zone; use a name like Europe/Berlin"
            )
        })
    }

    /// UTC: a zone is needed to read hours in, and UTC at least is the same everywhere.
    fn fallback() -> Self {
        jiff::tz::TimeZone::UTC
    }
}

impl PlaybookValue for crate::hours::WeeklyHours {
    fn parse(text: &str) -> Result<Self, String> {
        crate::hours::WeeklyHours::parse(text)
    }

    /// Never working: bad hours must not make anyone look available, and business time over
    /// them reads as wall-clock time, so delays still end.
    fn fallback() -> Self {
        crate::hours::WeeklyHours::NEVER
    }
}

/// Why a playbook could not be used: every problem found, each with its line and column.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("cannot read playbook {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", format_problems(.path, .problems))]
    Invalid {
        path: String,
        problems: Vec<Located>,
    },
}

/// One problem with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn format_problems(path: &str, problems: &[Located]) -> String {
    let mut out = format!("invalid playbook {path}:");
    for p in problems {
        if p.line == 0 {
            out.push_str(&format!("\n  {path}: {}", p.message));
        } else {
            out.push_str(&format!(
                "\n  {path}:{}:{}: {}",
                p.line, p.column, p.message
            ));
        }
    }
    out
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Deserialises only the table `S::NAME` of a document, ignoring other services' tables, so
/// the toml deserializer keeps spans (and `deny_unknown_fields`) for the section itself.
struct SectionDoc<S>(Option<S>);

impl<'de, S: Section> Deserialize<'de> for SectionDoc<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor<S>(PhantomData<S>);
        impl<'de, S: Section> Visitor<'de> for DocVisitor<S> {
            type Value = SectionDoc<S>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a playbook table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut section = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == S::NAME {
                        section = Some(map.next_value::<S>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(SectionDoc(section))
            }
        }
        deserializer.deserialize_map(DocVisitor(PhantomData))
    }
}

/// Parses and validates section `S` of a playbook text. `origin` names the file in errors.
pub fn parse<S: Section>(origin: &str, text: &str) -> Result<S, PlaybookError> {
    let section = match toml::from_str::<SectionDoc<S>>(text) {
        Ok(doc) => doc.0.unwrap_or_default(),
        Err(e) => {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            return Err(PlaybookError::Invalid {
                path: origin.to_owned(),
                problems: vec![Located {
                    line,
                    column,
                    message: e.message().to_owned(),
                }],
            });
        }
    };
    let errors = section.validate();
    if errors.is_empty() {
        return Ok(section);
    }
    let problems = errors
        .into_iter()
        .map(|e| {
            let (line, column) = e.span.map_or((0, 0), |s| line_col(text, s.start));
            Located {
                line,
                column,
                message: e.message,
            }
        })
        .collect();
    Err(PlaybookError::Invalid {
        path: origin.to_owned(),
        problems,
    })
}

/// Reads and validates section `S` of the playbook file at `path`.
pub fn load<S: Section>(path: &Path) -> Result<S, PlaybookError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlaybookError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// The playbook section in force; cheap to clone, always the latest valid version.
#[derive(Debug, Clone)]
pub struct Playbook<S> {
    rx: watch::Receiver<Arc<S>>,
}

impl<S: Section> Playbook<S> {
    /// A fixed playbook that never reloads (tests, built-in defaults).
    pub fn fixed(section: S) -> Self {
        let (tx, rx) = watch::channel(Arc::new(section));
        // Keep the channel open for the life of the process: receivers then never see it close.
        std::mem::forget(tx);
        Self { rx }
    }

    /// The section in force now.
    pub fn current(&self) -> Arc<S> {
        self.rx.borrow().clone()
    }

    /// Loads section `S` from `path` (failing if it is invalid) and keeps it current: it is
    /// re-read on SIGHUP and whenever the file changes, until `stop` is cancelled.
    pub fn watch(path: PathBuf, stop: CancellationToken) -> Result<Self, PlaybookError> {
        let initial = load::<S>(&path)?;
        let (tx, rx) = watch::channel(Arc::new(initial));
        tokio::spawn(reload_loop::<S>(path, tx, stop));
        Ok(Self { rx })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

async fn reload_loop<S: Section>(
    path: PathBuf,
    tx: watch::Sender<Arc<S>>,
    stop: CancellationToken,
) {
    // Polling mtime is what works for ConfigMaps (inotify misses the symlink swap on some
    // kubelets); SIGHUP reloads at once.
    const POLL: Duration = Duration::from_secs(5);
    let mut last = modified(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => false,
            _ = hangup => true,
        };
        let now = modified(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match load::<S>(&path) {
            Ok(section) => {
                tracing::info!(section = S::NAME, path = %path.display(), "playbook reloaded");
                tx.send_replace(Arc::new(section));
            }
            Err(error) => {
                tracing::error!(section = S::NAME, %error, "playbook reload rejected; keeping the previous playbook");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[serde(default)]
        limit: Option<toml::Spanned<u32>>,
    }

    impl Section for Demo {
        const NAME: &'static str = "demo";
        fn validate(&self) -> Vec<SpannedError> {
            match &self.limit {
                Some(l) if *l.get_ref() > 10 => {
                    vec![SpannedError::at(l.span(), "limit must be at most 10")]
                }
                _ => Vec::new(),
            }
        }
    }

    #[test]
    fn reads_only_its_own_section() {
        let text = "[other]\nanything = { goes = 1 }\n\n[demo]\nlimit = 3\n";
        let demo: Demo = parse("p.toml", text).unwrap();
        assert_eq!(demo.limit.map(|l| l.into_inner()), Some(3));
    }

    #[test]
    fn a_missing_section_is_the_default() {
        let demo: Demo = parse("p.toml", "[other]\nx = 1\n").unwrap();
        assert!(demo.limit.is_none());
    }

    #[test]
    fn unknown_keys_are_reported_with_line_and_column() {
        let err = parse::<Demo>("p.toml", "[demo]\nlimit = 3\nlimt = 4\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.toml:3:1"), "{text}");
        assert!(text.contains("unknown field `limt`"), "{text}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let err = parse::<Demo>("p.toml", "[demo]\n\nlimit = 30\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid playbook p.toml:\n  p.toml:3:9: limit must be at most 10"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse::<Demo>("p.toml", "[demo]\nlimit = = 3\n").unwrap_err();
        assert!(err.to_string().contains("p.toml:2:"), "{err}");
    }

    #[tokio::test]
    async fn reloads_a_changed_file_and_keeps_the_old_one_when_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("playbook.toml");
        std::fs::write(&path, "[demo]\nlimit = 1\n").unwrap();
        let stop = CancellationToken::new();
        let pb = Playbook::<Demo>::watch(path.clone(), stop.clone()).unwrap();
        assert_eq!(pb.current().limit.as_ref().map(|l| *l.get_ref()), Some(1));
        let mut rx = pb.rx.clone();

        // An invalid version is rejected, the valid one after it is taken.
        std::fs::write(&path, "[demo]\nlimit = 99\n").unwrap();
        set_mtime_forward(&path, 10);
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, "[demo]\nlimit = 2\n").unwrap();
        set_mtime_forward(&path, 20);
        tokio::time::timeout(Duration::from_secs(30), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pb.current().limit.as_ref().map(|l| *l.get_ref()), Some(2));
        stop.cancel();
    }

    fn set_mtime_forward(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(secs))
            .unwrap();
    }
}
