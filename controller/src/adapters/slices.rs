//! Reading a sequential metric's evidence from Prometheus: the increase of counters (and
//! of histogram buckets) in each slice of one interval since the run's origin.
//!
//! The slices are a fixed grid, `(origin + (k-1)·interval, origin + k·interval]` for
//! `k = 1..=K` with `K` the complete slices before the look, so every look sees the same
//! slices as the one before plus the new ones (the test's martingale runs on that grid),
//! and a replay at a past time sees what the controller saw. One range query per
//! selector, `sum(increase(SELECTOR[interval]))` (`sum by (le)` for a histogram), at
//! step `interval` over the grid's ends; `increase` handles counter resets (a pod
//! restarting), and a slice without a point (no series yet) counts as zero.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::prometheus::{PrometheusClient, PrometheusError, QueryRequest, QueryResult, Series};
use crate::core::sequential::{CountSlice, HistogramSlice};

/// The slices of a look.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceGrid {
    /// Where the first slice starts: the run's start plus `initialDelay`.
    pub origin: Timestamp,
    /// Width of a slice: the metric's interval.
    pub interval: Duration,
    /// The time of the look: only slices ending at or before it are complete.
    pub until: Timestamp,
}

impl SliceGrid {
    /// How many complete slices there are.
    pub fn complete(&self) -> usize {
        let elapsed = self.until.duration_since(self.origin);
        let width = self.interval.as_millis().max(1);
        if elapsed.is_negative() {
            return 0;
        }
        (elapsed.unsigned_abs().as_millis() / width) as usize
    }

    /// The end of slice `k` (1-based).
    fn end(&self, k: usize) -> Timestamp {
        let d = SignedDuration::try_from(self.interval * k as u32).unwrap_or(SignedDuration::MAX);
        self.origin.checked_add(d).unwrap_or(Timestamp::MAX)
    }

    /// The slice (0-based) a point at unix time `t` (seconds) closes, if it is one.
    fn slot(&self, t: f64) -> Option<usize> {
        let from_origin = t * 1000.0 - self.origin.as_millisecond() as f64;
        let k = (from_origin / self.interval.as_millis().max(1) as f64).round();
        (k >= 1.0 && k <= self.complete() as f64).then(|| k as usize - 1)
    }

    /// Per-slice values of the series summed, zero where a slice has no point.
    fn per_slice<'a>(&self, series: impl Iterator<Item = &'a Series>) -> Vec<f64> {
        let mut out = vec![0.0; self.complete()];
        for s in series {
            for &(t, v) in &s.points {
                if let Some(k) = self.slot(t)
                    && v.is_finite()
                {
                    out[k] += v;
                }
            }
        }
        out
    }
}

/// Where slices are read from: a Prometheus server with the metric's connection.
pub struct SliceSource<'a> {
    pub prometheus: &'a PrometheusClient,
    /// The connection (address, headers, token, timeout); query, time and range are set
    /// per read.
    pub request: QueryRequest<'a>,
    pub grid: SliceGrid,
}

/// The PromQL of one selector's per-slice increase.
pub fn increase_query(selector: &str, interval: Duration, by_le: bool) -> String {
    let window = format!("{}ms", interval.as_millis());
    if by_le {
        format!("sum by (le) (increase({selector}[{window}]))")
    } else {
        format!("sum(increase({selector}[{window}]))")
    }
}

impl SliceSource<'_> {
    async fn series(&self, selector: &str, by_le: bool) -> Result<Vec<Series>, PrometheusError> {
        let k = self.grid.complete();
        if k == 0 {
            return Ok(Vec::new());
        }
        let query = increase_query(selector, self.grid.interval, by_le);
        let request = QueryRequest {
            query: &query,
            at: self.grid.end(k),
            range: Some((self.grid.interval * (k as u32 - 1), self.grid.interval)),
            ..self.request.clone()
        };
        Ok(match self.prometheus.query(&request).await? {
            QueryResult::Matrix(series) => series,
            // A one-slice range is still a matrix; anything else has no slices.
            _ => Vec::new(),
        })
    }

    /// The slices of counters `[canary events, canary total, baseline events, baseline
    /// total]`, oldest first.
    pub async fn counts(
        &self,
        selectors: &[String; 4],
    ) -> Result<Vec<CountSlice>, PrometheusError> {
        let mut columns = Vec::with_capacity(4);
        for s in selectors {
            columns.push(self.grid.per_slice(self.series(s, false).await?.iter()));
        }
        Ok(counts_from(&columns))
    }

    /// The slices of the histograms `[canary, baseline]` (selectors of `_bucket` series),
    /// oldest first.
    pub async fn histograms(
        &self,
        selectors: &[String; 2],
    ) -> Result<Vec<HistogramSlice>, PrometheusError> {
        let canary = self.series(&selectors[0], true).await?;
        let baseline = self.series(&selectors[1], true).await?;
        Ok(histograms_from(&self.grid, &canary, &baseline))
    }
}

fn counts_from(columns: &[Vec<f64>]) -> Vec<CountSlice> {
    let k = columns.iter().map(Vec::len).min().unwrap_or(0);
    (0..k)
        .map(|i| CountSlice {
            canary_events: columns[0][i],
            canary_total: columns[1][i],
            baseline_events: columns[2][i],
            baseline_total: columns[3][i],
        })
        .collect()
}

/// Per slice, each side's `(le, count)` buckets; series without a readable `le` are
/// ignored.
fn histograms_from(
    grid: &SliceGrid,
    canary: &[Series],
    baseline: &[Series],
) -> Vec<HistogramSlice> {
    let mut slices = vec![HistogramSlice::default(); grid.complete()];
    for (side, series) in [(0, canary), (1, baseline)] {
        for s in series {
            let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
                continue;
            };
            for (k, v) in grid.per_slice(std::iter::once(s)).into_iter().enumerate() {
                let buckets = if side == 0 {
                    &mut slices[k].canary
                } else {
                    &mut slices[k].baseline
                };
                buckets.push((le, v));
            }
        }
    }
    slices
}

fn parse_le(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        t => t.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn grid() -> SliceGrid {
        let origin: Timestamp = "2026-11-20T14:00:00Z".parse().unwrap();
        SliceGrid {
            origin,
            interval: Duration::from_secs(60),
            // Three complete slices and a bit of the fourth.
            until: origin.checked_add(SignedDuration::from_secs(200)).unwrap(),
        }
    }

    fn series(le: Option<&str>, points: &[(f64, f64)]) -> Series {
        Series {
            labels: le
                .map(|l| BTreeMap::from([("le".to_string(), l.to_string())]))
                .unwrap_or_default(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn the_grid_counts_complete_slices_from_the_origin() {
        let g = grid();
        assert_eq!(g.complete(), 3);
        assert_eq!(g.end(3), "2026-11-20T14:03:00Z".parse().unwrap());
        let before = SliceGrid {
            until: g.origin.checked_sub(SignedDuration::from_secs(5)).unwrap(),
            ..g
        };
        assert_eq!(before.complete(), 0);
    }

    #[test]
    fn points_land_in_their_slice_and_missing_ones_are_zero() {
        let g = grid();
        let t0 = g.origin.as_second() as f64;
        // Slice 2 has no point (no series yet); a point off the grid is ignored.
        let s = series(
            None,
            &[(t0 + 60.0, 5.0), (t0 + 180.0, 7.0), (t0 + 240.0, 9.0)],
        );
        assert_eq!(g.per_slice(std::iter::once(&s)), vec![5.0, 0.0, 7.0]);
        // Several series are summed.
        let t = series(None, &[(t0 + 60.0, 1.0), (t0 + 120.0, f64::NAN)]);
        assert_eq!(g.per_slice([&s, &t].into_iter()), vec![6.0, 0.0, 7.0]);
    }

    #[test]
    fn histogram_series_become_buckets_per_slice() {
        let g = grid();
        let t0 = g.origin.as_second() as f64;
        let canary = [
            series(Some("0.1"), &[(t0 + 60.0, 40.0), (t0 + 120.0, 45.0)]),
            series(Some("+Inf"), &[(t0 + 60.0, 50.0), (t0 + 120.0, 60.0)]),
            series(Some("bogus"), &[(t0 + 60.0, 1.0)]),
        ];
        let slices = histograms_from(&g, &canary, &[]);
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[0].canary, vec![(0.1, 40.0), (f64::INFINITY, 50.0)]);
        assert_eq!(slices[1].canary, vec![(0.1, 45.0), (f64::INFINITY, 60.0)]);
        assert!(slices[0].baseline.is_empty());
    }

    #[test]
    fn queries_wrap_the_selector() {
        let q = increase_query(
            "http_requests_total{code=~\"5..\"}",
            Duration::from_secs(60),
            false,
        );
        assert_eq!(
            q,
            "sum(increase(http_requests_total{code=~\"5..\"}[60000ms]))"
        );
        let h = increase_query("latency_bucket", Duration::from_secs(30), true);
        assert_eq!(h, "sum by (le) (increase(latency_bucket[30000ms]))");
    }

    #[test]
    fn count_columns_line_up() {
        let c = counts_from(&[
            vec![1.0, 2.0],
            vec![10.0, 20.0],
            vec![3.0, 4.0],
            vec![30.0, 40.0],
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].canary_events, 2.0);
        assert_eq!(c[1].baseline_total, 40.0);
    }
}
