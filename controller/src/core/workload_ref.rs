//! `workloadRef.scaleDown`: what becomes of the pods of the Deployment a Rollout took its
//! template from. The template itself is resolved by the runtime before planning, so the
//! rest of the planner never knows where it came from.

use sluice_api::rollout::{Rollout, RolloutPhase, RolloutStatus, WorkloadScaleDown};

use super::action::{Action, PlannedEvent};
use super::observed::Observed;

/// The Deployment's size the plan asks for, and the Event of its reaching zero.
pub fn plan(
    rollout: &Rollout,
    observed: &Observed,
    status: &RolloutStatus,
) -> (Option<Action>, Option<PlannedEvent>) {
    let (Some(reference), Some(deployment)) = (&rollout.spec.workload_ref, &observed.workload)
    else {
        return (None, None);
    };
    let healthy = status.phase == Some(RolloutPhase::Healthy);
    let target = match reference.scale_down.unwrap_or_default() {
        WorkloadScaleDown::Never => return (None, None),
        WorkloadScaleDown::OnSuccess if healthy => 0,
        WorkloadScaleDown::OnSuccess => return (None, None),
        WorkloadScaleDown::Progressively if healthy => 0,
        // As many as the Rollout still lacks ready pods, and never more than the
        // Deployment has: sluice does not add Deployment pods. After a template change
        // they would run the new version outside the rollout's steps.
        WorkloadScaleDown::Progressively => {
            (rollout.spec.replicas - status.ready_replicas).clamp(0, deployment.replicas)
        }
    };
    if target == deployment.replicas {
        return (None, None);
    }
    let event = (target == 0).then(|| PlannedEvent {
        warning: false,
        reason: "DeploymentScaledDown".into(),
        action: format!("Deployment-{}", deployment.name),
        message: format!(
            "Deployment {} scaled to 0 ({} {})",
            deployment.name,
            if healthy {
                "the Rollout is"
            } else {
                "the Rollout has"
            },
            if healthy {
                "Healthy".to_string()
            } else {
                format!("{} ready pods", status.ready_replicas)
            }
        ),
    });
    let action = Action::ScaleDeployment {
        name: deployment.name.clone(),
        replicas: target,
    };
    (Some(action), event)
}
