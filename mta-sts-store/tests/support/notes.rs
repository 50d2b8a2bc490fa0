//! The [`FleetNotes`] contract, checked the same way on every store (S8): a claim is exclusive
//! until the note expires, only the holder's value releases it, `set` replaces, reads skip
//! expired notes, over-long keys and values are refused, and many hosts claiming at once get
//! exactly one lock.

use std::future::Future;

use mta_sts_core::UnixTime;
use mta_sts_net::{FleetNotes, MAX_NOTE_KEY, MAX_NOTE_VALUE, StoreErrorKind};

/// Runs the contract on `notes` (an empty store's); keys are prefixed with `tag`.
pub(crate) async fn contract(notes: &dyn FleetNotes, tag: &str) {
    let key = format!("lock/{tag}.test");
    let key = key.as_str();
    let t = UnixTime::from_secs(1_000);
    let later = UnixTime::from_secs(1_030);
    assert_eq!(notes.read(key, t).await.unwrap(), None);
    assert!(notes.claim(key, "host-1", t, later).await.unwrap());
    assert!(!notes.claim(key, "host-2", t, later).await.unwrap());
    // The holder itself cannot claim twice either.
    assert!(!notes.claim(key, "host-1", t, later).await.unwrap());
    assert!(!notes.remove(key, Some("host-2")).await.unwrap());
    assert_eq!(
        notes.read(key, t).await.unwrap(),
        Some(("host-1".to_owned(), later))
    );
    // Expired: absent, and claimable by another host.
    assert_eq!(notes.read(key, later).await.unwrap(), None);
    let after = UnixTime::from_secs(1_060);
    assert!(notes.claim(key, "host-2", later, after).await.unwrap());
    assert!(notes.remove(key, Some("host-2")).await.unwrap());
    assert!(!notes.remove(key, None).await.unwrap());
    assert!(notes.claim(key, "host-3", t, later).await.unwrap());
    assert!(notes.remove(key, None).await.unwrap());
    // set replaces whatever is there; values with spaces and UTF-8 come back as they were.
    let absent = format!("absent/{tag}.test");
    notes.set(&absent, "nxdomain 300", later).await.unwrap();
    notes.set(&absent, "no data: Zoë", after).await.unwrap();
    assert_eq!(
        notes.read(&absent, t).await.unwrap(),
        Some(("no data: Zoë".to_owned(), after))
    );
    // Limits: refused before the store is asked.
    let huge = "x".repeat(MAX_NOTE_VALUE + 1);
    let e = notes.set(&absent, &huge, later).await.unwrap_err();
    assert_eq!(e.kind(), &StoreErrorKind::Refused, "{e}");
    let e = notes.claim(&huge[..MAX_NOTE_KEY + 1], "v", t, later).await;
    assert_eq!(e.unwrap_err().kind(), &StoreErrorKind::Refused);
    assert_eq!(
        notes.read("", t).await.unwrap_err().kind(),
        &StoreErrorKind::Refused
    );
    let full = "v".repeat(MAX_NOTE_VALUE);
    notes.set(&absent, &full, later).await.unwrap();
    assert_eq!(notes.read(&absent, t).await.unwrap().unwrap().0, full);
}

/// `hosts` claims of one key at once, each by its own store handle: exactly one wins.
pub(crate) async fn one_winner(hosts: Vec<Box<dyn FleetNotesOwner>>, tag: &str) {
    let key = format!("lock/race-{tag}.test");
    let t = UnixTime::from_secs(2_000);
    let until = UnixTime::from_secs(2_030);
    let claims = hosts.iter().enumerate().map(|(i, h)| {
        let key = key.clone();
        async move {
            h.notes()
                .claim(&key, &format!("host-{i}"), t, until)
                .await
                .unwrap()
        }
    });
    let won = futures_join_all(claims.collect()).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

/// A store handle that keeps notes (so that each host has its own connection).
pub(crate) trait FleetNotesOwner: Send + Sync {
    /// Its notes.
    fn notes(&self) -> &dyn FleetNotes;
}

impl<S: mta_sts_net::PolicyStore> FleetNotesOwner for S {
    fn notes(&self) -> &dyn FleetNotes {
        mta_sts_net::PolicyStore::notes(self).expect("the store keeps notes")
    }
}

/// Polls every future until all are done (no extra dependency).
async fn futures_join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}
