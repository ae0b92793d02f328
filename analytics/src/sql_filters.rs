//! What a query's filters say about the rows a table must read: bounds on its time column
//! and the regions named, taken from DataFusion's pushed-down filters so a scan reads only
//! those (`readings` and `meter_days` both cut their store reads by them).

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use iot_common::domain::RegionCode;

/// What a query's filters say about the rows it needs: bounds on its time column (`ts` of
/// `readings`, `day` of `meter_days`) and its regions.
#[derive(Debug, PartialEq)]
pub(crate) struct Pushed {
    time: &'static str,
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
    /// `None`: every region.
    pub(crate) regions: Option<BTreeSet<String>>,
}

impl Default for Pushed {
    fn default() -> Self {
        Self::on("ts")
    }
}

fn timestamp_of(v: &ScalarValue) -> Option<DateTime<Utc>> {
    let ms = match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000)?,
        ScalarValue::TimestampMillisecond(Some(ms), _) => *ms,
        ScalarValue::TimestampMicrosecond(Some(us), _) => us.div_euclid(1000),
        ScalarValue::TimestampNanosecond(Some(ns), _) => ns.div_euclid(1_000_000),
        ScalarValue::Date32(Some(d)) => i64::from(*d) * 86_400_000,
        _ => return None,
    };
    DateTime::from_timestamp_millis(ms)
}

/// The column a side of a comparison names, through casts the planner put on it.
fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

fn text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

const MS: TimeDelta = TimeDelta::milliseconds(1);

impl Pushed {
    pub(crate) fn on(time: &'static str) -> Self {
        Self {
            time,
            from: None,
            to: None,
            regions: None,
        }
    }

    /// Reads every filter it can use, as a scan gets them.
    pub(crate) fn of(time: &'static str, filters: &[Expr]) -> Self {
        let mut p = Self::on(time);
        for f in filters {
            p.take(f);
        }
        p
    }

    /// Which of `filters` a scan on `time` uses (inexactly: they stay in the plan).
    pub(crate) fn pushdown(
        time: &'static str,
        filters: &[&Expr],
    ) -> Vec<TableProviderFilterPushDown> {
        filters
            .iter()
            .map(|f| {
                if Self::on(time).take(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect()
    }

    /// The regions the filters name, as codes (`None`: every region).
    pub(crate) fn region_codes(&self) -> Option<Vec<RegionCode>> {
        self.regions.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|n| RegionCode::parse(n.as_str()).ok())
                .collect()
        })
    }

    fn later_from(&mut self, t: DateTime<Utc>) {
        self.from = Some(self.from.map_or(t, |f| f.max(t)));
    }
    fn earlier_to(&mut self, t: DateTime<Utc>) {
        self.to = Some(self.to.map_or(t, |x| x.min(t)));
    }
    fn only_regions(&mut self, r: BTreeSet<String>) {
        self.regions = Some(match self.regions.take() {
            None => r,
            Some(have) => have.intersection(&r).cloned().collect(),
        });
    }

    /// Folds in one filter if it is one the scan uses; false if it is not.
    pub(crate) fn take(&mut self, e: &Expr) -> bool {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, value, op) = match (column_name(left), literal(right)) {
                    (Some(c), Some(v)) => (c, v, *op),
                    _ => match (literal(left), column_name(right), op.swap()) {
                        (Some(v), Some(c), Some(op)) => (c, v, op),
                        _ => return false,
                    },
                };
                match (col, op) {
                    (c, _) if c == self.time => {
                        let Some(t) = timestamp_of(value) else {
                            return false;
                        };
                        match op {
                            Operator::GtEq | Operator::Gt => self.later_from(t),
                            Operator::Lt => self.earlier_to(t),
                            Operator::LtEq => self.earlier_to(t + MS),
                            Operator::Eq => {
                                self.later_from(t);
                                self.earlier_to(t + MS);
                            }
                            _ => return false,
                        }
                        true
                    }
                    ("region", Operator::Eq) => match text(value) {
                        Some(r) => {
                            self.only_regions(BTreeSet::from([r]));
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            Expr::Between(b) if !b.negated && column_name(&b.expr) == Some(self.time) => {
                match (
                    literal(&b.low).and_then(timestamp_of),
                    literal(&b.high).and_then(timestamp_of),
                ) {
                    (Some(low), Some(high)) => {
                        self.later_from(low);
                        self.earlier_to(high + MS);
                        true
                    }
                    _ => false,
                }
            }
            Expr::InList(l) if !l.negated && column_name(&l.expr) == Some("region") => {
                let names: Option<BTreeSet<String>> =
                    l.list.iter().map(|e| literal(e).and_then(text)).collect();
                match names {
                    Some(names) => {
                        self.only_regions(names);
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ts(s: &str) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(at(s).timestamp_millis()),
            Some("UTC".into()),
        ))
    }

    fn pushed(filters: &[Expr]) -> Pushed {
        let mut p = Pushed::default();
        for f in filters {
            p.take(f);
        }
        p
    }

    #[test]
    fn time_bounds_and_regions_are_read_from_filters() {
        let p = pushed(&[
            col("ts").gt_eq(ts("2026-11-01T00:00:00Z")),
            col("ts").lt(ts("2026-11-08T00:00:00Z")),
            col("region").eq(lit("E09000001")),
        ]);
        assert_eq!(p.from, Some(at("2026-11-01T00:00:00Z")));
        assert_eq!(p.to, Some(at("2026-11-08T00:00:00Z")));
        assert_eq!(p.regions, Some(BTreeSet::from(["E09000001".to_owned()])));
    }

    #[test]
    fn the_tightest_bounds_win_and_a_flipped_comparison_counts() {
        let p = pushed(&[
            ts("2026-11-02T00:00:00Z").lt_eq(col("ts")),
            col("ts").gt(ts("2026-11-01T00:00:00Z")),
            col("ts").lt_eq(ts("2026-11-05T00:00:00Z")),
            col("ts").lt(ts("2026-11-09T00:00:00Z")),
            col("region").in_list(vec![lit("A"), lit("B")], false),
            col("region").eq(lit("B")),
        ]);
        assert_eq!(p.from, Some(at("2026-11-02T00:00:00Z")));
        assert_eq!(p.to, Some(at("2026-11-05T00:00:00.001Z")));
        assert_eq!(p.regions, Some(BTreeSet::from(["B".to_owned()])));
    }

    #[test]
    fn other_filters_are_not_taken() {
        let mut p = Pushed::default();
        assert!(!p.take(&col("kwh").gt(lit(1.0))));
        assert!(!p.take(&col("ts").not_eq(ts("2026-11-01T00:00:00Z"))));
        assert!(!p.take(&col("region").in_list(vec![lit("A")], true)));
        assert_eq!(p, Pushed::default());
    }
}
