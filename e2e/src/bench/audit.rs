//! Counts one client's API requests from the kube-apiserver audit log (JSON lines, as
//! `plane.sh` writes it with `SLUICE_AUDIT=1`), split into the benchmark's phases.
//!
//! A request counts once, at the first event logged for its `auditID`: `ResponseComplete`
//! for an ordinary request, `ResponseStarted` for a watch (logged when it opens, so a
//! watch still open when the run ends is counted too). It belongs to the phase in which
//! the apiserver received it (`requestReceivedTimestamp`).

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What one request was: the columns the benchmark prints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestKind {
    pub verb: String,
    /// `resource` or `resource/subresource`; a non-resource URL (`/api`, `/version`) as is.
    pub resource: String,
    pub code: u16,
}

impl RequestKind {
    pub fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// Requests of one phase, by kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Serialised as a list: JSON maps need string keys.
    #[serde(with = "tally_serde")]
    pub by_kind: BTreeMap<RequestKind, u64>,
}

impl Tally {
    fn sum(&self, pred: impl Fn(&RequestKind) -> bool) -> u64 {
        self.by_kind
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(_, n)| n)
            .sum()
    }
    pub fn total(&self) -> u64 {
        self.sum(|_| true)
    }
    pub fn writes(&self) -> u64 {
        self.sum(RequestKind::is_write)
    }
    pub fn reads(&self) -> u64 {
        self.sum(RequestKind::is_read)
    }
    pub fn verb(&self, verb: &str) -> u64 {
        self.sum(|k| k.verb == verb)
    }
    /// Writes answered 409 Conflict.
    pub fn conflicts(&self) -> u64 {
        self.sum(|k| k.is_write() && k.code == 409)
    }
    /// Writes to Leases (leader election), reported apart: they are a fixed cost per
    /// second, not per Rollout.
    pub fn lease_writes(&self) -> u64 {
        self.sum(|k| k.is_write() && k.resource == "leases")
    }
    /// Requests answered 429 (the apiserver's own flow control throttled them).
    pub fn throttled(&self) -> u64 {
        self.sum(|k| k.code == 429)
    }
}

mod tally_serde {
    use super::RequestKind;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct Row {
        #[serde(flatten)]
        kind: RequestKind,
        count: u64,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<RequestKind, u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let rows: Vec<Row> = m
            .iter()
            .map(|(k, n)| Row {
                kind: k.clone(),
                count: *n,
            })
            .collect();
        rows.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<RequestKind, u64>, D::Error> {
        let rows = Vec::<Row>::deserialize(d)?;
        Ok(rows.into_iter().map(|r| (r.kind, r.count)).collect())
    }
}

/// One phase: a name and the half-open interval `[start, end)` of wall-clock time.
#[derive(Debug, Clone)]
pub struct PhaseWindow {
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    verb: String,
    #[serde(default)]
    request_uri: String,
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    request_received_timestamp: Timestamp,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

/// Whose requests to count.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// This client's.
    Is(&'a str),
    /// Everyone's but this client's (the log holds only benchmark identities): a check
    /// that no other controller ran during a run.
    IsNot(&'a str),
}

/// Tallies the requests of `who` in each window (same order as `windows`); requests
/// outside every window are not counted.
pub fn tally(path: &Path, who: Who<'_>, windows: &[PhaseWindow]) -> Result<Vec<Tally>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = vec![Tally::default(); windows.len()];
    let mut seen = HashSet::new();
    // Cheap pre-filter before parsing a line.
    let (username, wanted) = match who {
        Who::Is(u) => (u, true),
        Who::IsNot(u) => (u, false),
    };
    let needle = format!("\"username\":\"{username}\"");
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if wanted && !line.contains(&needle) {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        if (ev.user.username == username) != wanted || !seen.insert(ev.audit_id) {
            continue;
        }
        let Some(i) = windows.iter().position(|w| {
            w.start <= ev.request_received_timestamp && ev.request_received_timestamp < w.end
        }) else {
            continue;
        };
        let resource = match &ev.object_ref {
            Some(ObjectRef {
                resource: Some(r),
                subresource,
            }) => match subresource {
                Some(s) => format!("{r}/{s}"),
                None => r.clone(),
            },
            _ => ev
                .request_uri
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let kind = RequestKind {
            verb: ev.verb,
            resource,
            code: ev.response_status.map(|s| s.code).unwrap_or(0),
        };
        *out[i].by_kind.entry(kind).or_default() += 1;
    }
    Ok(out)
}

/// Follows the audit log for the moment a client opens its first watch on a resource:
/// the sign that a controller has started (Argo Rollouts, for one, first waits for its
/// leader-election Lease), whatever it logs.
pub struct WatchFollower {
    path: std::path::PathBuf,
    offset: u64,
    needle_user: String,
    needle_resource: String,
}

impl WatchFollower {
    /// From the log's current end.
    pub fn new(path: &Path, username: &str, resource: &str) -> Result<Self> {
        let offset = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        Ok(WatchFollower {
            path: path.to_path_buf(),
            offset,
            needle_user: format!("\"username\":\"{username}\""),
            needle_resource: format!("\"resource\":\"{resource}\""),
        })
    }

    /// True once a line since the last call shows the watch.
    pub fn seen(&mut self) -> Result<bool> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // Only whole lines; a partly written one is read again next time.
        let whole = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        self.offset += whole as u64;
        Ok(text[..whole].lines().any(|l| {
            l.contains("\"verb\":\"watch\"")
                && l.contains(&self.needle_user)
                && l.contains(&self.needle_resource)
        }))
    }
}
