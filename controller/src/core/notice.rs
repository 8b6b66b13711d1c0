//! Notices: the transitions of a rollout that people subscribe to (a step completed, a
//! pause that waits for someone, a promotion, an abort, a failed analysis, completion).
//! The plan names them; the runtime delivers them to webhooks once the status that
//! records the transition is written, so a transition is noticed once: a reconcile that
//! fails before that write plans it again, and one after it finds it already recorded.

use k8s_openapi::jiff::Timestamp;
use sluice_api::rollout::RolloutStatus;

use super::action::PlannedEvent;

/// What happened, as subscriptions name it (`sluice.dev/notify-on`, a webhook's
/// `triggers`). Declared in the order in which they happen within one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A new pod template: a new revision starts its steps.
    Updated,
    /// A canary step or a blue-green stage is done; the next one starts.
    StepCompleted,
    /// The rollout waits for someone: `pause: {}`, an inconclusive analysis, `spec.paused`.
    Paused,
    /// The new revision takes all the traffic: a canary past its last step (or promoted
    /// in full), a blue-green active Service switched.
    Promoted,
    /// An analysis failed (or erred) and aborted the rollout; `Aborted` follows.
    AnalysisFailed,
    /// The rollout aborted: traffic is back on the stable revision.
    Aborted,
    /// No progress within `progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// The new revision is stable.
    Completed,
}

impl Trigger {
    pub const ALL: [Trigger; 8] = [
        Trigger::Updated,
        Trigger::StepCompleted,
        Trigger::Paused,
        Trigger::Promoted,
        Trigger::AnalysisFailed,
        Trigger::Aborted,
        Trigger::ProgressDeadlineExceeded,
        Trigger::Completed,
    ];

    /// The name subscriptions use and messages carry: a contract with users' configs.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Updated => "updated",
            Trigger::StepCompleted => "step-completed",
            Trigger::Paused => "paused",
            Trigger::Promoted => "promoted",
            Trigger::AnalysisFailed => "analysis-failed",
            Trigger::Aborted => "aborted",
            Trigger::ProgressDeadlineExceeded => "progress-deadline-exceeded",
            Trigger::Completed => "completed",
        }
    }

    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether it says something went wrong (for the icons of chat messages).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Trigger::AnalysisFailed | Trigger::Aborted | Trigger::ProgressDeadlineExceeded
        )
    }

    /// The trigger a plan's Event tells, if any. Events already mark each transition once
    /// (see `phase::with_phase`); the transitions no Event tells are added where they
    /// are decided (a canary's promotion, a failed analysis).
    fn of_event(reason: &str) -> Option<Trigger> {
        Some(match reason {
            "NewRevision" => Trigger::Updated,
            "StepCompleted" | "StageCompleted" => Trigger::StepCompleted,
            "RolloutPaused" => Trigger::Paused,
            "ActiveServiceSwitched" => Trigger::Promoted,
            "RolloutAborted" => Trigger::Aborted,
            "ProgressDeadlineExceeded" => Trigger::ProgressDeadlineExceeded,
            "RolloutCompleted" => Trigger::Completed,
            _ => return None,
        })
    }
}

/// Where the steps stand when a notice is made: `completed` of `count` steps (canary) or
/// stages (blue-green) are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPosition {
    pub completed: u32,
    pub count: u32,
}

/// One transition to tell subscribers about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub trigger: Trigger,
    /// The revision it concerns (`status.currentPodHash`).
    pub revision: String,
    pub step: Option<StepPosition>,
    pub message: String,
    /// When the plan that made it saw the transition.
    pub at: Timestamp,
}

impl Notice {
    /// A notice a strategy decides on; `collect` fills in where the rollout stands.
    pub(super) fn of(trigger: Trigger, message: String) -> Notice {
        Notice {
            trigger,
            revision: String::new(),
            step: None,
            message,
            at: Timestamp::UNIX_EPOCH,
        }
    }

    /// Names this notice among all of the Rollout's: a webhook that retries after a lost
    /// answer sends the same key, so a receiver can drop the repeat.
    pub fn key(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.trigger.name(),
            self.revision,
            self.step.map_or(0, |s| s.completed),
            self.at.as_millisecond()
        )
    }
}

/// A plan's notices: its own (those no Event tells) and those its Events tell, in the
/// order they happened.
pub(super) fn collect(
    own: Vec<Notice>,
    events: &[PlannedEvent],
    status: &RolloutStatus,
    step: Option<StepPosition>,
    now: Timestamp,
) -> Vec<Notice> {
    let revision = status.current_pod_hash.clone().unwrap_or_default();
    let mut notices = own;
    notices.extend(
        events
            .iter()
            .filter_map(|e| Some(Notice::of(Trigger::of_event(&e.reason)?, e.message.clone()))),
    );
    for notice in &mut notices {
        notice.revision.clone_from(&revision);
        notice.step = step;
        notice.at = now;
    }
    // Stable: two of one trigger keep the order in which they were made.
    notices.sort_by_key(|n| n.trigger);
    notices
}
