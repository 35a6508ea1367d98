//! Credential files re-read while the service runs: the callers' tokens
//! (`FAIRCHANCE_TOKENS_FILE`, see [`crate::auth`]), the service's own token
//! (`FAIRCHANCE_CLIENT_TOKEN_FILE`, see [`crate::client`]) and the server's certificate and key
//! (`FAIRCHANCE_TLS_CERT`, `FAIRCHANCE_TLS_KEY`, see [`crate::tls`]), all mounted from Secrets.
//!
//! Kubernetes updates a mounted Secret in place by swapping a `..data` symlink, so the files
//! are polled (every `FAIRCHANCE_TOKENS_RELOAD`) and their content compared with the last
//! content seen, which notices the swap whatever the files' timestamps say. A new content that
//! does not validate is logged as an error naming the problem and counted
//! (`fairchance_credential_reload_failures_total{credential}`); the credentials in force stay
//! in force until a valid one comes.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential: &'static str,
}

static RELOAD_FAILURES: LazyLock<Family<CredentialLabels, Counter>> = LazyLock::new(|| {
    let family = Family::default();
    crate::metrics::register(
        "credential_reload_failures",
        "Changed credential files that could not be read or did not validate; the previous credentials stay in force",
        family.clone(),
    );
    family
});

/// What the watcher saw last, so each change is acted on (and logged) once.
#[derive(PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Unreadable(String),
}

/// A value replaced whole while it is in use. A reader takes the current version, an `Arc`
/// clone under a read lock held for nothing else, so a call never waits on a reload and a
/// reload never waits on a call.
#[derive(Debug)]
pub(crate) struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Live<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Self(Arc::new(RwLock::new(value)))
    }

    pub(crate) fn current(&self) -> Arc<T> {
        // A writer only swaps an Arc: a poisoned lock still holds a whole value.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(lock: &RwLock<Arc<T>>, value: T) {
        *lock.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

/// Credential files to keep current, read together (a certificate and its key).
pub(crate) struct Watch {
    /// Names the credential in logs and in the metric's `credential` label.
    pub credential: &'static str,
    /// The settings that named the files, for messages (`FAIRCHANCE_TOKENS_FILE (environment)`).
    pub origin: String,
    pub paths: Vec<PathBuf>,
    pub every: Duration,
}

impl Watch {
    /// Polls the files every `self.every` and puts each new valid version into `live`, until
    /// `stop` is cancelled or nothing holds `live` any more. `parse` gets the files' texts in
    /// the order of `self.paths`.
    ///
    /// The first look parses what it reads: the files may have changed since start.
    pub(crate) fn spawn<T, P>(self, live: &Live<T>, stop: Option<CancellationToken>, parse: P)
    where
        T: Send + Sync + 'static,
        P: Fn(&[String]) -> Result<T, String> + Send + 'static,
    {
        let live = Arc::downgrade(&live.0);
        let stop = stop.unwrap_or_default();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = self.run(live, parse) => {}
            }
        });
    }

    async fn run<T, P>(self, live: Weak<RwLock<Arc<T>>>, parse: P)
    where
        P: Fn(&[String]) -> Result<T, String>,
    {
        let mut last: Option<Seen> = None;
        loop {
            tokio::time::sleep(self.every).await;
            let Some(target) = live.upgrade() else {
                return;
            };
            let (seen, texts) = self.read().await;
            if last.as_ref() == Some(&seen) {
                continue;
            }
            let first_look = last.is_none();
            last = Some(seen);
            match texts.and_then(|texts| parse(&texts)) {
                Ok(value) => {
                    Live::replace(&target, value);
                    if !first_look {
                        tracing::info!(
                            credential = self.credential,
                            origin = %self.origin,
                            "credentials reloaded"
                        );
                    }
                }
                Err(problem) => {
                    RELOAD_FAILURES
                        .get_or_create(&CredentialLabels {
                            credential: self.credential,
                        })
                        .inc();
                    tracing::error!(
                        credential = self.credential,
                        origin = %self.origin,
                        %problem,
                        "credential reload rejected; the previous credentials stay in force"
                    );
                }
            }
        }
    }

    /// The files' texts, and what identifies this version of them.
    async fn read(&self) -> (Seen, Result<Vec<String>, String>) {
        let mut digest = Sha256::new();
        let mut texts = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            match tokio::fs::read(path).await {
                Ok(bytes) => {
                    digest.update((bytes.len() as u64).to_le_bytes());
                    digest.update(&bytes);
                    texts.push(
                        String::from_utf8(bytes)
                            .map_err(|_| format!("{}: not UTF-8 text", path.display())),
                    );
                }
                Err(error) => {
                    let why = format!("cannot read {}: {error}", path.display());
                    return (Seen::Unreadable(why.clone()), Err(why));
                }
            }
        }
        (
            Seen::Content(digest.finalize().into()),
            texts.into_iter().collect(),
        )
    }
}
