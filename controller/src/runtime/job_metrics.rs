//! The `job` provider in the AnalysisRun controller: sluice's Jobs, cached from the first
//! run that has a job metric (a controller whose runs never do watches no Job and needs
//! no RBAC for them), and what a measurement does with its Job: start it, look at it
//! again when it changes, stop it when the run ends first.

use std::sync::Arc;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunArgument, AnalysisRunStatus, JobMetric, Measurement,
};
use sluice_api::labels::ANALYSIS_RUN_UID_LABEL;

use super::{CACHE_SYNC_WAIT, ReconcileError, Settings, api, watches};
use crate::adapters::job as jobs_api;
use crate::adapters::written::{Cache, Written};
use crate::core::job::{self, controlled_by, job_name, measurement_number};

/// sluice's Jobs as the controller's watch holds them, and the client that writes them.
pub struct JobMetrics {
    client: Client,
    jobs: Store<Job>,
    /// Set by the first run with a job metric: starts the watch.
    want: tokio::sync::watch::Sender<bool>,
    /// Resolves (true) once the watch has listed; shared, because the store's own wait
    /// wakes only one of several waiters.
    ready: Shared<BoxFuture<'static, bool>>,
}

impl JobMetrics {
    /// The Job cache, and the stream that fills it once a run wants it (give it to the
    /// Controller, so that a Job's change brings back the run that owns it). Only Jobs
    /// sluice made for this controller's shard: they carry the run-uid label and the
    /// run's shard label.
    pub fn new(
        client: Client,
        settings: &Settings,
    ) -> (
        Self,
        impl Stream<Item = Result<Job, watcher::Error>> + Send + 'static,
    ) {
        let (jobs, writer) = reflector::store();
        let (want, mut wanted) = tokio::sync::watch::channel(false);
        let stream = {
            let api = api::<Job>(&client, settings.namespace.as_deref());
            let config = watcher::Config::default().labels(&format!(
                "{ANALYSIS_RUN_UID_LABEL},{}",
                settings.shard_labels()
            ));
            futures::stream::once(async move {
                let _ = wanted.wait_for(|wanted| *wanted).await;
                watches::cached_touched(api, config, writer)
            })
            .flatten()
        };
        let ready = {
            let jobs = jobs.clone();
            async move { jobs.wait_until_ready().await.is_ok() }
                .boxed()
                .shared()
        };
        (
            JobMetrics {
                client,
                jobs,
                want,
                ready,
            },
            stream,
        )
    }

    /// Starts the Job watch if it is not running yet and waits (at most
    /// [`CACHE_SYNC_WAIT`]) for its first list.
    pub async fn synced(&self) -> Result<(), ReconcileError> {
        self.want
            .send_if_modified(|wanted| !std::mem::replace(wanted, true));
        match tokio::time::timeout(CACHE_SYNC_WAIT, self.ready.clone()).await {
            Err(_) => Err(ReconcileError::CacheSyncing("Job")),
            Ok(false) => Err(ReconcileError::CacheClosed),
            Ok(true) => Ok(()),
        }
    }

    /// The cached Job `namespace/name`'s resourceVersion, as the expectations ask it.
    pub fn cached_version(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        self.cached(namespace, name).map(|j| j.resource_version())
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs.get(&ObjectRef::new(name).within(namespace))
    }

    /// Starts the next measurement of `metric`: creates its Job and returns it Running,
    /// or Error with why the Job cannot be made or was refused. What it created goes to
    /// `written`, so that the next reconcile finds it in the cache.
    pub async fn start(
        &self,
        run: &AnalysisRun,
        status: &AnalysisRunStatus,
        metric: &str,
        spec: &JobMetric,
        args: &[AnalysisRunArgument],
        written: &mut Vec<Written>,
    ) -> Measurement {
        let started = Timestamp::now();
        let number = measurement_number(status, metric);
        let outcome = match job::job_for(run, metric, spec, args, number) {
            Err(e) => Err(e.to_string()),
            Ok(job) => jobs_api::create(&self.client, &job, &run.uid().unwrap_or_default())
                .await
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(job) => {
                let namespace = job.namespace().unwrap_or_default();
                written.extend(Written::at(
                    Cache::Job,
                    &namespace,
                    &job.name_any(),
                    job.resource_version().as_deref(),
                ));
                Measurement {
                    phase: AnalysisPhase::Running,
                    value: None,
                    started_at: Some(Time(started)),
                    finished_at: None,
                    message: Some(format!("Job {} running", job.name_any())),
                }
            }
            Err(message) => Measurement {
                phase: AnalysisPhase::Error,
                value: None,
                started_at: Some(Time(started)),
                finished_at: Some(Time(Timestamp::now())),
                message: Some(message),
            },
        }
    }

    /// The outcome of `metric`'s measurement in flight (`running`), once its Job has one:
    /// Successful when it completed, Failed when it failed, Error when it is gone or not
    /// the run's. None while it runs. Read from the cache; the API only for a Job the
    /// cache does not hold.
    pub async fn resume(
        &self,
        run: &AnalysisRun,
        status: &AnalysisRunStatus,
        metric: &str,
        running: &Measurement,
    ) -> Result<Option<Measurement>, ReconcileError> {
        let namespace = run.namespace().unwrap_or_default();
        let name = job_name(&run.name_any(), metric, measurement_number(status, metric));
        let job = match self.cached(&namespace, &name) {
            Some(job) => Some(job),
            None => jobs_api::get(&self.client, &namespace, &name)
                .await?
                .map(Arc::new),
        };
        let finished = |phase, message| Measurement {
            phase,
            value: None,
            started_at: running.started_at.clone(),
            finished_at: Some(Time(Timestamp::now())),
            message: Some(message),
        };
        let Some(job) = job else {
            return Ok(Some(finished(
                AnalysisPhase::Error,
                format!("Job {name} no longer exists: it was deleted before it finished"),
            )));
        };
        if !controlled_by(&job, &run.uid().unwrap_or_default()) {
            return Ok(Some(finished(
                AnalysisPhase::Error,
                format!("Job {name} is not controlled by this AnalysisRun"),
            )));
        }
        Ok(job::outcome(&job).map(|(phase, message)| finished(phase, message)))
    }

    /// Deletes the Job of `metric`'s measurement in flight (its pods with it) because
    /// the run ended first; returns the Job's name.
    pub async fn stop(
        &self,
        run: &AnalysisRun,
        status: &AnalysisRunStatus,
        metric: &str,
        written: &mut Vec<Written>,
    ) -> Result<String, ReconcileError> {
        let namespace = run.namespace().unwrap_or_default();
        let name = job_name(&run.name_any(), metric, measurement_number(status, metric));
        written.push(jobs_api::delete(&self.client, &namespace, &name).await?);
        Ok(name)
    }
}

#[cfg(test)]
impl JobMetrics {
    /// A cache that has listed exactly `jobs`, and `client` to write with.
    pub fn for_tests(client: Client, jobs: Vec<Job>) -> Self {
        let (want, _) = tokio::sync::watch::channel(true);
        JobMetrics {
            client,
            jobs: crate::adapters::cache::testing::store_with((), jobs),
            want,
            ready: futures::future::ready(true).boxed().shared(),
        }
    }
}
