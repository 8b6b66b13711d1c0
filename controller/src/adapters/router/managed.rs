//! The names of the entries sluice adds to a router's own object for managed routes
//! (HTTPRoute rules, VirtualService HTTP routes), shared by the routers that add them.
//!
//! A name is `sluice-<rollout hash>-<setting fingerprint>-<user entry hash>-<route>-<k>`:
//! it says whose entry it is, which setting of which route made it, and from which of the
//! user's entries (the `k`th, as it was then). It is stored in users' objects, so it is a
//! contract with the next version: the test below pins it.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::hash::value_hash;
use crate::core::routes::RouteSetting;

/// Every managed entry's name starts with this, whichever Rollout made it.
pub const PREFIX: &str = "sluice-";
/// Length of a fingerprint in a managed entry's name (`core::hash::value_hash`).
const HASH_LEN: usize = 10;

/// What a managed entry's name says.
#[derive(Debug, PartialEq, Eq)]
struct ManagedName {
    fingerprint: String,
    base: String,
    route: String,
    k: usize,
}

/// The start of the names of the entries Rollout `rollout` made.
fn own_prefix(rollout: &str) -> String {
    format!("{PREFIX}{}-", value_hash(&rollout))
}

/// True when `name` is the name of an entry Rollout `rollout` made.
pub fn is_own(rollout: &str, name: &str) -> bool {
    name.starts_with(&own_prefix(rollout))
}

/// True when `name` is a managed entry of another Rollout's.
pub fn is_another_rollouts(rollout: &str, name: &str) -> bool {
    name.starts_with(PREFIX) && !is_own(rollout, name)
}

/// The name of Rollout `rollout`'s entry for `setting`, made from the user's `k`th entry,
/// whose hash (everything sluice does not change in it) is `base`.
pub fn name(rollout: &str, setting: &RouteSetting, base: &str, k: usize) -> String {
    format!(
        "{}{}-{base}-{}-{k}",
        own_prefix(rollout),
        setting.fingerprint(),
        setting.name
    )
}

fn parse(rollout: &str, name: &str) -> Option<ManagedName> {
    let rest = name.strip_prefix(&own_prefix(rollout))?;
    let fingerprint = rest.get(..HASH_LEN)?.to_string();
    let rest = rest.get(HASH_LEN..)?.strip_prefix('-')?;
    let base = rest.get(..HASH_LEN)?.to_string();
    let rest = rest.get(HASH_LEN..)?.strip_prefix('-')?;
    let (route, k) = rest.rsplit_once('-')?;
    Some(ManagedName {
        fingerprint,
        base,
        route: route.to_string(),
        k: k.parse().ok()?,
    })
}

/// The managed routes in place, by name, with their settings' fingerprints, from the names
/// of Rollout `rollout`'s entries and the hashes of the user's entries they are made from
/// (in order). A route is in place when it has exactly one entry per user entry, all of
/// one setting, each made from that user entry as it is now: a user entry changed since
/// (a new path) makes its copies stale, and the route reads as absent, to be rebuilt.
pub fn in_place<'a>(
    rollout: &str,
    own_names: impl IntoIterator<Item = &'a str>,
    user_bases: &[String],
) -> BTreeMap<String, String> {
    let mut seen: BTreeMap<String, (String, BTreeSet<usize>)> = BTreeMap::new();
    let mut broken: BTreeSet<String> = BTreeSet::new();
    for name in own_names {
        let Some(parsed) = parse(rollout, name) else {
            continue;
        };
        let fresh = user_bases.get(parsed.k) == Some(&parsed.base);
        let entry = seen
            .entry(parsed.route.clone())
            .or_insert_with(|| (parsed.fingerprint.clone(), BTreeSet::new()));
        if !fresh || entry.0 != parsed.fingerprint || !entry.1.insert(parsed.k) {
            broken.insert(parsed.route);
        }
    }
    seen.into_iter()
        .filter(|(name, (_, ks))| !broken.contains(name) && ks.len() == user_bases.len())
        .map(|(name, (fingerprint, _))| (name, fingerprint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::routes::RouteKind;

    fn setting(name: &str) -> RouteSetting {
        RouteSetting {
            name: name.into(),
            kind: RouteKind::Header { matches: vec![] },
        }
    }

    #[test]
    fn names_are_pinned_and_read_back() {
        let s = setting("testers");
        let n = name("web", &s, "0123456789", 2);
        assert_eq!(
            n, "sluice-g8wrx2mlmt-nkdcb8tttn-0123456789-testers-2",
            "a contract with the objects of every cluster sluice ran in: the Rollout's \
             hash, the setting's fingerprint, the user entry's hash, the route, k"
        );
        // The Rollout's name hashes as the routers held it before this module (a String).
        assert_eq!(value_hash(&"web"), value_hash(&"web".to_string()));
        assert!(is_own("web", &n));
        assert!(!is_own("api", &n));
        assert!(is_another_rollouts("api", &n));
        assert!(!is_another_rollouts("web", &n));
        assert!(!is_another_rollouts("web", "user-rule"));
        assert_eq!(
            parse("web", &n),
            Some(ManagedName {
                fingerprint: s.fingerprint(),
                base: "0123456789".into(),
                route: "testers".into(),
                k: 2,
            })
        );
        // A route name with dashes reads back whole.
        let dashed = name("web", &setting("beta-testers"), "0123456789", 0);
        assert_eq!(parse("web", &dashed).unwrap().route, "beta-testers");
    }

    #[test]
    fn a_route_is_in_place_only_with_one_fresh_entry_per_user_entry() {
        let s = setting("testers");
        let bases = vec!["aaaaaaaaaa".to_string(), "bbbbbbbbbb".to_string()];
        let both = [name("web", &s, &bases[0], 0), name("web", &s, &bases[1], 1)];
        let expected = BTreeMap::from([("testers".to_string(), s.fingerprint())]);
        assert_eq!(
            in_place("web", both.iter().map(String::as_str), &bases),
            expected
        );
        // One user entry without its copy: absent.
        assert!(in_place("web", [both[0].as_str()], &bases).is_empty());
        // A copy of a user entry as it was before it changed: absent.
        let stale = name("web", &s, "cccccccccc", 1);
        assert!(in_place("web", [both[0].as_str(), stale.as_str()], &bases).is_empty());
        // Two copies of the same user entry: absent.
        assert!(in_place("web", [both[0].as_str(), both[0].as_str()], &bases[..1]).is_empty());
        // Copies of two settings of one route: absent.
        let other = RouteSetting {
            name: "testers".into(),
            kind: RouteKind::Mirror {
                percentage: 5,
                matches: vec![],
            },
        };
        let mixed = [both[0].clone(), name("web", &other, &bases[1], 1)];
        assert!(in_place("web", mixed.iter().map(String::as_str), &bases).is_empty());
        // Another Rollout's names are not read.
        let theirs = [name("api", &s, &bases[0], 0), name("api", &s, &bases[1], 1)];
        assert!(in_place("web", theirs.iter().map(String::as_str), &bases).is_empty());
    }
}
