//! Replica arithmetic: traffic weight to canary size, maxSurge / maxUnavailable, and how
//! far one reconcile may move the ReplicaSets towards their targets.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The canary size for a traffic weight: the whole number nearest to weight × replicas,
/// ties rounding up (so 50% of 5 is 3).
pub fn replicas_for_weight(weight: i32, replicas: i32) -> i32 {
    let weight = weight.clamp(0, 100) as i64;
    let replicas = replicas.max(0) as i64;
    ((weight * replicas * 2 + 100) / 200) as i32
}

/// Resolves an int-or-percent against `replicas`, rounding percentages up (maxSurge) or
/// down (maxUnavailable) as Deployments do. Malformed values (which admission refuses)
/// count as 0.
pub fn resolve(value: &IntOrString, replicas: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0).max(0);
            let scaled = pct * replicas.max(0) as i64;
            (if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }) as i32
        }
    }
}

/// The surge and unavailability budget of one rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most pods (of all revisions) allowed: replicas + maxSurge.
    pub max_total: i32,
    /// Fewest available pods (of all revisions) allowed: replicas − maxUnavailable.
    pub min_available: i32,
}

impl Budget {
    /// The budget for `replicas` desired pods. When both resolve to zero (admission
    /// refuses that, but small replica counts can round to it) one pod of surge is
    /// allowed so that a rollout can always make progress, as Deployments do.
    pub fn new(replicas: i32, max_surge: &IntOrString, max_unavailable: &IntOrString) -> Self {
        let mut surge = resolve(max_surge, replicas, true);
        let unavailable = resolve(max_unavailable, replicas, false);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        Budget {
            max_total: replicas + surge,
            min_available: (replicas - unavailable).max(0),
        }
    }
}

/// One ReplicaSet as the budget sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Current `spec.replicas`.
    pub current: i32,
    /// Available pods.
    pub available: i32,
    /// Where it should end up.
    pub target: i32,
}

/// How far each ReplicaSet may move towards its target in this reconcile without breaking
/// the budget: scale-ups fill the surge room, scale-downs remove unavailable pods freely
/// and available pods only while enough others stay available. Scale-ups are taken in
/// order (put the one that should grow first, first).
pub fn step_towards(budget: Budget, sets: &[Sizing]) -> Vec<i32> {
    let total: i32 = sets.iter().map(|s| s.current).sum();
    let available: i32 = sets.iter().map(|s| s.available.min(s.current)).sum();
    let mut surge_room = (budget.max_total - total).max(0);
    let mut removable_available = (available - budget.min_available).max(0);
    let mut next: Vec<i32> = sets.iter().map(|s| s.current).collect();

    // Scale-downs first: they may free surge room for the scale-ups.
    for (i, s) in sets.iter().enumerate() {
        if s.target >= s.current {
            continue;
        }
        let unavailable = s.current - s.available.min(s.current);
        let want = s.current - s.target;
        let free = want.min(unavailable);
        let from_available = (want - free).min(removable_available);
        removable_available -= from_available;
        next[i] = s.current - free - from_available;
        surge_room += free + from_available;
    }
    for (i, s) in sets.iter().enumerate() {
        if s.target <= s.current {
            continue;
        }
        let grow = (s.target - s.current).min(surge_room);
        surge_room -= grow;
        next[i] = s.current + grow;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_to_replicas_rounds_to_nearest_ties_up() {
        let cases = [
            // (weight, replicas, canary)
            (0, 5, 0),
            (20, 5, 1),
            (50, 5, 3), // 2.5 → 3
            (10, 5, 1), // 0.5 → 1
            (30, 5, 2), // 1.5 → 2
            (25, 10, 3),
            (24, 10, 2),
            (100, 5, 5),
            (33, 3, 1),
            (50, 1, 1),
            (49, 1, 0),
            (20, 0, 0),
            (150, 4, 4), // clamped
        ];
        for (w, r, want) in cases {
            assert_eq!(replicas_for_weight(w, r), want, "weight {w} of {r}");
        }
    }

    #[test]
    fn percentages_round_like_deployments() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve(&pct("25%"), 5, true), 2); // 1.25 → 2
        assert_eq!(resolve(&pct("25%"), 5, false), 1); // 1.25 → 1
        assert_eq!(resolve(&pct("0%"), 5, true), 0);
        assert_eq!(resolve(&IntOrString::Int(3), 5, true), 3);
        assert_eq!(resolve(&pct("100%"), 4, false), 4);
    }

    #[test]
    fn budget_never_deadlocks() {
        let zero = IntOrString::Int(0);
        let b = Budget::new(1, &IntOrString::String("25%".into()), &zero);
        // 25% of 1 rounds up to a surge of 1; unavailable rounds down to 0.
        assert_eq!(
            b,
            Budget {
                max_total: 2,
                min_available: 1
            }
        );
        let b = Budget::new(3, &zero, &zero);
        assert_eq!(
            b,
            Budget {
                max_total: 4,
                min_available: 3
            }
        );
    }

    fn s(current: i32, available: i32, target: i32) -> Sizing {
        Sizing {
            current,
            available,
            target,
        }
    }

    #[test]
    fn steps_respect_surge_and_availability() {
        // replicas 5, surge 1, unavailable 0: canary 0→1 then stable 5→4 once it is available.
        let b = Budget {
            max_total: 6,
            min_available: 5,
        };
        assert_eq!(step_towards(b, &[s(0, 0, 1), s(5, 5, 4)]), vec![1, 5]);
        assert_eq!(step_towards(b, &[s(1, 0, 1), s(5, 5, 4)]), vec![1, 5]);
        assert_eq!(step_towards(b, &[s(1, 1, 1), s(5, 5, 4)]), vec![1, 4]);
        // surge 0, unavailable 1: stable first, then canary fills the freed room.
        let b = Budget {
            max_total: 5,
            min_available: 4,
        };
        assert_eq!(step_towards(b, &[s(0, 0, 2), s(5, 5, 3)]), vec![1, 4]);
        assert_eq!(step_towards(b, &[s(1, 0, 2), s(4, 4, 3)]), vec![1, 4]);
        assert_eq!(step_towards(b, &[s(1, 1, 2), s(4, 4, 3)]), vec![2, 3]);
    }

    #[test]
    fn unavailable_pods_are_removed_freely() {
        // A canary whose pods never become ready can always be scaled down (abort).
        let b = Budget {
            max_total: 6,
            min_available: 5,
        };
        assert_eq!(step_towards(b, &[s(3, 0, 0), s(5, 5, 5)]), vec![0, 5]);
    }

    #[test]
    fn nothing_moves_when_on_target() {
        let b = Budget {
            max_total: 6,
            min_available: 5,
        };
        assert_eq!(step_towards(b, &[s(2, 2, 2), s(3, 3, 3)]), vec![2, 3]);
    }
}
