//! Negative answers shared by a fleet (issue 16, S9): a domain without an `_mta-sts` record
//! (NXDOMAIN or NODATA) that one host looked up is not looked up again by its peers until the
//! answer's negative TTL ends.
//!
//! The core decides how long a negative answer counts
//! ([`Resolution::absent_until`](mta_sts_core::Resolution::absent_until), within
//! [`Config::negative_ttl_max`](mta_sts_core::Config::negative_ttl_max)) and whether a peer's
//! may be used ([`PolicyCache::adopt_absent`]); the client only carries them through the store's
//! [`FleetNotes`](crate::FleetNotes): after a lookup whose negative answer the core remembered,
//! it writes the note `absent/<domain>` (value `nxdomain` or `nodata`, expiring when the answer
//! does) in the background, like its policy writes; on a local miss, it reads that note at the
//! same time as the stored policy, within the same store timeout, and hands a note found to the
//! core. A store without notes shares nothing (each host remembers its own answers).
//!
//! Metrics: `mta_sts_store_operations_total{op="absent_get"}` with the results `hit` (adopted),
//! `miss`, `corrupt` (an unreadable value, or one the core refused), `timeout` and
//! `unavailable`; `{op="absent_set"}` with `ok`, `refused`, `unavailable`, `timeout` and
//! `dropped`.

use std::sync::Arc;

use mta_sts_core::{Absent, Lookup, NoPolicyReason, Outcome, UnixTime};

use super::{Driving, Inner, State, StoreNext, Waiters};
use crate::export_metrics;
use crate::runtime::{Runtime, until};
use crate::store::StoreErrorKind;
use crate::store_client::{OnStoreError, StoreSettings, count, deadline, error_result};

/// The note of a domain's negative answer.
fn note_key(domain: &str) -> String {
    format!("absent/{domain}")
}

/// What reading a domain's note came to.
enum NoteRead {
    /// A note: what the answer was and until when.
    Found(Absent, UnixTime),
    /// No note (or an unreadable one): look the domain up.
    Lookup,
    /// The store could not be read and the client defers: this is the error, for the outcome.
    Unavailable(String),
}

impl<R: Runtime> Inner<R> {
    /// On a local miss of `lookup`'s domain (whose flight this caller drives): reads the stored
    /// policy ([`Inner::read_store`]) and, at the same time, the domain's negative-answer note,
    /// both within the store timeout. A policy adopted wins; else a note the core adopts ends
    /// the flight with "no policy" for every caller waiting on it, without a TXT lookup.
    pub(super) async fn read_store_or_absence(
        &self,
        store: &StoreSettings,
        lookup: &Lookup,
        waiters: &Arc<Waiters>,
    ) -> StoreNext {
        if store.store.notes().is_none() {
            return self.read_store(store, lookup, Arc::clone(waiters)).await;
        }
        // Covers the flight until the note is handled: dropped before (the caller cancelled),
        // the flight is abandoned and its waiters start over.
        let mut driving = Driving::new(self, lookup, Arc::clone(waiters));
        let domain = lookup.domain().as_str();
        let policy = self.read_store(store, lookup, Arc::clone(waiters));
        let note = self.read_absence(store, domain);
        let (next, note) = futures_lite::future::zip(Box::pin(policy), note).await;
        if !matches!(next, StoreNext::Lookup) {
            // Adopted (the flight was ended for the callers to ask again) or deferred.
            driving.done = true;
            return next;
        }
        let outcome = match note {
            NoteRead::Lookup => {
                driving.done = true;
                return StoreNext::Lookup;
            }
            NoteRead::Unavailable(detail) => Outcome::StoreUnavailable(detail),
            NoteRead::Found(absent, until) => {
                let now = self.now();
                let mut st = self.lock();
                if !st.cache.adopt_absent(domain, absent, until, now) {
                    // Refused by the core (a fresh policy cached meanwhile, negative caching
                    // off): look the domain up.
                    drop(st);
                    count(store.store.name(), "absent_get", "corrupt");
                    driving.done = true;
                    return StoreNext::Lookup;
                }
                export_metrics(&st.cache.stats());
                drop(st);
                count(store.store.name(), "absent_get", "hit");
                tracing::debug!(
                    policy_domain = domain,
                    absent = %absent,
                    until = until.as_secs(),
                    store = store.store.name(),
                    "MTA-STS negative answer adopted from the store"
                );
                Outcome::NoPolicy(NoPolicyReason::NoRecord(absent.into()))
            }
        };
        // Ends the flight with this outcome for every caller waiting on it.
        if let Some(flight) = driving.flight {
            let mut st = self.lock();
            st.waiters.remove(&flight);
            st.cache.abandon(&driving.domain, flight);
        }
        driving.done = true;
        driving.waiters.end(Some(outcome.clone()));
        self.changed.notify(usize::MAX);
        StoreNext::Answer(outcome)
    }

    /// Reads `domain`'s note within the store timeout, counted; a failure follows
    /// `on_store_error`.
    async fn read_absence(&self, store: &StoreSettings, domain: &str) -> NoteRead {
        let Some(notes) = store.store.notes() else {
            return NoteRead::Lookup;
        };
        let name = store.store.name();
        let failed = |result: &'static str, detail: String| {
            count(name, "absent_get", result);
            tracing::debug!(store = name, domain, error = %detail, "MTA-STS store note not read");
            match store.on_error {
                OnStoreError::Defer => NoteRead::Unavailable(detail),
                _ => NoteRead::Lookup,
            }
        };
        let key = note_key(domain);
        let now = self.now();
        let deadline = deadline(&self.runtime, store.timeout);
        match until(&self.runtime, deadline, notes.read(&key, now)).await {
            None => failed("timeout", format!("no answer within {:?}", store.timeout)),
            Some(Ok(None)) => {
                count(name, "absent_get", "miss");
                NoteRead::Lookup
            }
            Some(Ok(Some((value, expires)))) => match Absent::parse(&value) {
                Some(absent) if expires > now => NoteRead::Found(absent, expires),
                Some(_) => {
                    count(name, "absent_get", "miss");
                    NoteRead::Lookup
                }
                None => {
                    // Hostile or another version's: ignored, overwritten by the next answer.
                    count(name, "absent_get", "corrupt");
                    NoteRead::Lookup
                }
            },
            Some(Err(e)) => match e.kind() {
                StoreErrorKind::Corrupt => {
                    count(name, "absent_get", "corrupt");
                    NoteRead::Lookup
                }
                _ => failed(error_result(&e), e.to_string()),
            },
        }
    }

    /// The negative answer to share after a lookup of `domain` that ended in one (`negative`):
    /// the one the core remembered (its time capped), if any, when the store keeps notes.
    pub(super) fn share_absence(
        &self,
        st: &State,
        negative: bool,
        domain: &str,
    ) -> Option<(Absent, UnixTime)> {
        let store = self.store.as_ref()?;
        if !negative || store.store.notes().is_none() {
            return None;
        }
        st.cache.peek_absent(domain, self.now())
    }

    /// Writes `domain`'s negative answer to the store's notes in the background (like a policy
    /// write: bounded by the store timeout, counted, dropped when too many writes are under
    /// way).
    pub(super) fn write_absence(&self, domain: &str, absent: Absent, expires: UnixTime) {
        let Some(store) = &self.store else { return };
        let name = store.store.name();
        let (settings, runtime) = (store.clone(), self.runtime.clone());
        let key = note_key(domain);
        let work = Box::pin(async move {
            let Some(notes) = settings.store.notes() else {
                return;
            };
            let deadline = deadline(&runtime, settings.timeout);
            let write = notes.set(&key, absent.as_str(), expires);
            match until(&runtime, deadline, write).await {
                Some(Ok(())) => count(name, "absent_set", "ok"),
                Some(Err(e)) => {
                    count(name, "absent_set", error_result(&e));
                    tracing::debug!(store = name, key, error = %e, "MTA-STS store note not written");
                }
                None => count(name, "absent_set", "timeout"),
            }
        });
        self.spawn_store_write(name, "absent_set", work);
    }
}
