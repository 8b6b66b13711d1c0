//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection:
//! only the holder reconciles; the others wait, caches warm, to take over.
//!
//! - A candidate takes a Lease that does not exist, that was released (no holder), or
//!   whose record it has seen unchanged for a whole lease duration. Expiry is judged by
//!   the candidate's own clock from when it last saw the record change, never from the
//!   holder's `renewTime`, so clock skew between machines cannot make two leaders.
//! - The leader renews every retry period. Every write is a replace conditioned on the
//!   resourceVersion read, so of two candidates at most one wins.
//! - A leader that has not renewed within the renew deadline (shorter than the lease
//!   duration) stops acting at once: by the time a standby may take over, it has stopped.
//! - On shutdown the leader releases the Lease (no holder, duration 1 s), so a standby
//!   takes over within about one retry period instead of a whole lease duration.
//!
//! [`Elector`] is the pure state machine (no client, no clock of its own); [`run`] drives
//! it against the API. Why not a crate: the maintained ones (kube-leader-election,
//! kube-lease-manager) pin older kube releases than the 5.0 this workspace uses.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Timings, as the peers' (Argo Rollouts, controller-runtime) defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a record unchanged means its holder is gone.
    pub lease_duration: Duration,
    /// Longest the leader goes without a successful renewal before it stops acting.
    pub renew_deadline: Duration,
    /// Between two attempts (renewals, or a standby's looks at the Lease).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The timings are usable: a leader must give up before a standby may take over.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be above zero and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// What a Lease says, as far as the election reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    /// Changes with every write, the holder's renewals included.
    pub resource_version: String,
}

impl Record {
    pub fn of(lease: &Lease) -> Self {
        Record {
            holder: lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        }
    }
}

/// What to do with the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// Write the Lease (version as read) with us as holder: a renewal, or a takeover of a
    /// released or expired one.
    Claim { takeover: bool },
    /// Someone else holds it: look again after the retry period.
    Follow,
}

/// One candidate's view of the election.
#[derive(Debug)]
pub struct Elector {
    pub identity: String,
    pub timing: Timing,
    /// The record last seen, and when (by our clock) it was first seen so.
    observed: Option<(Record, Instant)>,
    /// When we last wrote the Lease as its holder; None while not leading.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, timing: Timing) -> Self {
        Elector {
            identity: identity.into(),
            timing,
            observed: None,
            renewed: None,
        }
    }

    /// True while we hold the Lease and may act: renewed within the renew deadline.
    pub fn leading(&self, now: Instant) -> bool {
        self.renewed
            .is_some_and(|at| now.saturating_duration_since(at) < self.timing.renew_deadline)
    }

    /// The step for the Lease as just read (None: it does not exist).
    pub fn step(&mut self, lease: Option<&Record>, now: Instant) -> Step {
        let Some(record) = lease else {
            return Step::Create;
        };
        if self.observed.as_ref().map(|(r, _)| r) != Some(record) {
            self.observed = Some((record.clone(), now));
        }
        match &record.holder {
            Some(holder) if *holder == self.identity => Step::Claim { takeover: false },
            None => Step::Claim { takeover: true },
            Some(_) => {
                let unchanged_since = self.observed.as_ref().map_or(now, |(_, at)| *at);
                if now.saturating_duration_since(unchanged_since) >= self.timing.lease_duration {
                    Step::Claim { takeover: true }
                } else {
                    // Someone else leads: whatever we held is gone.
                    self.renewed = None;
                    Step::Follow
                }
            }
        }
    }

    /// Our write of the Lease (create or claim), started at `attempted`, succeeded.
    pub fn claimed(&mut self, written: Record, attempted: Instant) {
        self.observed = Some((written, attempted));
        self.renewed = Some(attempted);
    }

    /// We released the Lease.
    pub fn released(&mut self) {
        self.renewed = None;
    }
}

/// Where the Lease lives and who we are.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn held_lease(config: &Config, previous: Option<&Lease>, takeover: bool) -> Lease {
    let old = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let transitions = old.lease_transitions.unwrap_or(0) + i32::from(takeover);
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.timing.lease_duration.as_secs().max(1) as i32),
            acquire_time: if takeover || previous.is_none() {
                Some(micro_now())
            } else {
                old.acquire_time
            },
            renew_time: Some(micro_now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// Runs the election until `stop` resolves, publishing whether we lead on `leading`.
/// Returns when stopped (having released the Lease if we held it), or with `Err` when
/// leadership is lost: the caller must stop acting at once.
pub async fn run(
    client: Client,
    config: Config,
    leading: watch::Sender<bool>,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut elector = Elector::new(config.identity.clone(), config.timing);
    let timing = config.timing;
    let lost = || {
        format!(
            "lost the lease {}/{}: not renewed within {:?}",
            config.namespace, config.name, timing.renew_deadline
        )
    };
    tokio::pin!(stop);
    let mut last: Option<Lease> = None;
    loop {
        let attempted = Instant::now();
        // While leading, no attempt may outlast the renew deadline: a hung connection
        // must not carry a leader past it.
        let deadline = elector
            .renewed
            .filter(|_| elector.leading(attempted))
            .map(|at| at + timing.renew_deadline);
        let bound = deadline.map_or(timing.retry_period, |d| {
            d.saturating_duration_since(attempted)
                .min(timing.retry_period)
        });
        match tokio::time::timeout(bound, attempt(&api, &config, &mut elector, attempted)).await {
            Ok(Ok(Some(lease))) => last = Some(lease),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(error = %e, lease = %config.name, "leader election attempt failed"),
            Err(_) => warn!(lease = %config.name, "leader election attempt timed out"),
        }
        let now = Instant::now();
        let (was, is) = (*leading.borrow(), elector.leading(now));
        if was && !is {
            leading.send_replace(false);
            return Err(lost());
        }
        if is && !was {
            info!(identity = %config.identity, lease = %config.name, "became the leader");
            leading.send_replace(true);
        }
        // The next attempt after the retry period; while leading, no later than the
        // renew deadline, so that a loss is acted on in time.
        let mut wait = timing.retry_period.saturating_sub(now - attempted);
        if let Some(at) = elector.renewed.filter(|_| is) {
            wait = wait.min((at + timing.renew_deadline).saturating_duration_since(now));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => {
                if elector.leading(Instant::now()) {
                    release(&api, &config, last.as_ref()).await;
                    elector.released();
                }
                leading.send_replace(false);
                return Ok(());
            }
        }
    }
}

/// One look at the Lease and the write the elector asks for; the Lease as written.
async fn attempt(
    api: &Api<Lease>,
    config: &Config,
    elector: &mut Elector,
    attempted: Instant,
) -> Result<Option<Lease>, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let record = current.as_ref().map(Record::of);
    let written = match elector.step(record.as_ref(), attempted) {
        Step::Follow => return Ok(None),
        Step::Create => {
            api.create(&PostParams::default(), &held_lease(config, None, true))
                .await?
        }
        Step::Claim { takeover } => {
            // Conditioned on the version read: of two candidates, one wins.
            api.replace(
                &config.name,
                &PostParams::default(),
                &held_lease(config, current.as_ref(), takeover),
            )
            .await?
        }
    };
    elector.claimed(Record::of(&written), attempted);
    Ok(Some(written))
}

/// Gives the Lease up so a standby need not wait for it to expire.
async fn release(api: &Api<Lease>, config: &Config, last: Option<&Lease>) {
    let Some(mut lease) = last.cloned() else {
        return;
    };
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro_now());
    }
    lease.metadata.managed_fields = None;
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!(lease = %config.name, "released the lease"),
        Err(e) => warn!(error = %e, lease = %config.name, "could not release the lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, version: &str) -> Record {
        Record {
            holder: holder.map(str::to_string),
            resource_version: version.to_string(),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_default_timings_are_the_peers_and_are_usable() {
        let t = Timing::default();
        assert_eq!(
            (t.lease_duration, t.renew_deadline, t.retry_period),
            (secs(15), secs(10), secs(2))
        );
        assert!(t.check().is_ok());
        let bad = Timing {
            renew_deadline: secs(15),
            ..t
        };
        assert!(
            bad.check().is_err(),
            "a leader must give up before a standby may take over"
        );
        let bad = Timing {
            retry_period: secs(10),
            ..t
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn a_missing_lease_is_created_and_a_released_one_taken_at_once() {
        let start = Instant::now();
        let mut e = Elector::new("a", Timing::default());
        assert_eq!(e.step(None, start), Step::Create);
        assert_eq!(
            e.step(Some(&record(None, "7")), start),
            Step::Claim { takeover: true }
        );
    }

    #[test]
    fn a_held_lease_is_taken_only_after_a_whole_lease_duration_unchanged() {
        let start = Instant::now();
        let mut e = Elector::new("b", Timing::default());
        let held = record(Some("a"), "7");
        assert_eq!(e.step(Some(&held), start), Step::Follow);
        assert_eq!(e.step(Some(&held), start + secs(14)), Step::Follow);
        // A renewal (a new version) restarts the count.
        let renewed = record(Some("a"), "8");
        assert_eq!(e.step(Some(&renewed), start + secs(14)), Step::Follow);
        assert_eq!(e.step(Some(&renewed), start + secs(28)), Step::Follow);
        assert_eq!(
            e.step(Some(&renewed), start + secs(29)),
            Step::Claim { takeover: true }
        );
        assert!(
            !e.leading(start + secs(29)),
            "not before the write succeeds"
        );
    }

    #[test]
    fn the_leader_renews_and_stops_leading_at_the_renew_deadline() {
        let start = Instant::now();
        let mut e = Elector::new("a", Timing::default());
        assert_eq!(e.step(None, start), Step::Create);
        e.claimed(record(Some("a"), "1"), start);
        assert!(e.leading(start));
        assert_eq!(
            e.step(Some(&record(Some("a"), "1")), start + secs(2)),
            Step::Claim { takeover: false }
        );
        e.claimed(record(Some("a"), "2"), start + secs(2));
        // The API goes away: no attempt succeeds after this one.
        assert!(e.leading(start + secs(11)));
        assert!(!e.leading(start + secs(12)), "10 s after the last renewal");
        // ... which is before any standby may take over (15 s after it last saw a change).
        let mut standby = Elector::new("b", Timing::default());
        let last = record(Some("a"), "2");
        assert_eq!(standby.step(Some(&last), start + secs(2)), Step::Follow);
        assert_eq!(standby.step(Some(&last), start + secs(12)), Step::Follow);
        assert_eq!(
            standby.step(Some(&last), start + secs(17)),
            Step::Claim { takeover: true }
        );
    }

    #[test]
    fn a_leader_that_sees_another_holder_stops_leading() {
        let start = Instant::now();
        let mut e = Elector::new("a", Timing::default());
        e.claimed(record(Some("a"), "1"), start);
        assert_eq!(
            e.step(Some(&record(Some("b"), "2")), start + secs(1)),
            Step::Follow
        );
        assert!(!e.leading(start + secs(1)));
    }

    #[test]
    fn a_takeover_counts_a_transition_and_a_renewal_keeps_the_acquire_time() {
        let config = Config {
            namespace: "sluice".into(),
            name: "sluice-controller".into(),
            identity: "b".into(),
            timing: Timing::default(),
        };
        let first = held_lease(&config, None, true);
        let spec = first.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(1));
        let renewed = held_lease(&config, Some(&first), false);
        let r = renewed.spec.unwrap();
        assert_eq!(r.lease_transitions, Some(1));
        assert_eq!(r.acquire_time, spec.acquire_time);
        let taken = held_lease(&config, Some(&first), true).spec.unwrap();
        assert_eq!(taken.lease_transitions, Some(2));
    }
}
