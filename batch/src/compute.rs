//! Every SPEC section 4 table of one community, recomputed in batch with polars from the scoped
//! event frame (see `frame`). Written from the SPEC, not from the engine: membership is a
//! cumulative sum over group-level state changes, period states are runs of periods between
//! changes, and every count is a distinct-member group-by. Slow parts stay in polars; only the
//! inactivity moments' local days go through Rust (they are instants no event carries).

use crate::frame::{self, Bounds, CHECKIN, CONVERSION, JOIN, LEAVE, MESSAGE, PERIOD_COLUMNS, REACTION};
use crate::tables::{key, Cell, Tables};
use crate::BatchError;
use engine::CommunityConfig;
use polars::prelude::*;
use std::collections::{BTreeMap, HashSet};

const DAY_MS: i64 = 86_400_000;

fn sm() -> [Expr; 2] {
    [col("scope"), col("member")]
}

fn inner() -> JoinArgs {
    JoinArgs::new(JoinType::Inner)
}

fn left() -> JoinArgs {
    JoinArgs::new(JoinType::Left)
}

fn sorted() -> SortMultipleOptions {
    SortMultipleOptions::default().with_maintain_order(true)
}

fn explode(lf: LazyFrame, column: &str) -> LazyFrame {
    lf.explode(cols([column]), ExplodeOptions { empty_as_null: false, keep_nulls: false })
}

/// One collected row: its string columns, then its integer columns (nulls as `None`).
type Row = (Vec<String>, Vec<Option<i64>>);

/// Rows of `lf`, string columns `strs` and integer columns `ints` (read as i64).
fn rows(lf: LazyFrame, strs: &[&str], ints: &[&str]) -> Result<Vec<Row>, BatchError> {
    let df = lf.collect()?;
    let mut s_cols = Vec::new();
    for s in strs {
        let c = df.column(s)?.as_materialized_series().cast(&DataType::String)?;
        s_cols.push(c.str()?.iter().map(|v| v.unwrap_or_default().to_owned()).collect::<Vec<_>>());
    }
    let mut i_cols = Vec::new();
    for i in ints {
        let c = df.column(i)?.as_materialized_series().cast(&DataType::Int64)?;
        i_cols.push(c.i64()?.iter().collect::<Vec<_>>());
    }
    Ok((0..df.height())
        .map(|r| (s_cols.iter().map(|c| c[r].clone()).collect(), i_cols.iter().map(|c| c[r]).collect()))
        .collect())
}

fn count(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

/// Per scope and member with a join: `j`, the cohort index per granularity (`c_d`, `c_w`,
/// `c_m`), and the inviter of the earliest join (the smallest if several joins share `j`).
fn joined(ev: &LazyFrame) -> LazyFrame {
    let joins = ev.clone().filter(col("kind").eq(lit(JOIN)));
    let j = joins.clone().group_by(sm()).agg([
        col("ts").min().alias("j"),
        col("d").min().alias("c_d"),
        col("w").min().alias("c_w"),
        col("m").min().alias("c_m"),
    ]);
    let inviter = joins
        .join(j.clone().select([col("scope"), col("member"), col("j")]), sm(), sm(), inner())
        .filter(col("ts").eq(col("j")))
        .group_by(sm())
        .agg([col("inviter").min().alias("inviter")]);
    j.join(inviter, sm(), sm(), left())
}

/// Membership changes per scope and member: `in_after` says whether the member is in after it;
/// `ord` orders changes of one member (instant, joins before leaves, then group and reason).
/// Group scope: a group's own join/leave events that change its state. Community scope: the
/// group-level changes that take the count of groups the member is in from 0 to 1 or 1 to 0.
fn transitions(ev: &LazyFrame) -> Result<LazyFrame, BatchError> {
    let keep = [col("member"), col("group"), col("ts"), col("kind"), col("reason"), col("d"), col("w"), col("m")];
    let changes = ev
        .clone()
        .filter(col("scope").neq(lit("")).and(col("kind").lt_eq(lit(LEAVE))))
        .sort(["member", "group", "ts", "kind", "reason"], sorted())
        .with_columns([col("kind").eq(lit(JOIN)).alias("in_after")])
        .with_columns([col("in_after")
            .shift(lit(1i64))
            .over([col("member"), col("group")])?
            .fill_null(lit(false))
            .alias("in_before")])
        .filter(col("in_after").neq(col("in_before")));
    let mut group_cols = vec![col("group").alias("scope"), col("in_after")];
    group_cols.extend(keep.clone());
    let group_scope = changes.clone().select(group_cols);
    let community = changes
        .with_columns([when(col("in_after")).then(lit(1i32)).otherwise(lit(-1i32)).alias("delta")])
        .sort(["member", "ts", "kind", "group", "reason"], sorted())
        .with_columns([col("delta").cum_sum(false).over([col("member")])?.gt(lit(0)).alias("c_in")])
        .with_columns([col("c_in").shift(lit(1i64)).over([col("member")])?.fill_null(lit(false)).alias("c_before")])
        .filter(col("c_in").neq(col("c_before")));
    let mut community_cols = vec![lit("").alias("scope"), col("c_in").alias("in_after")];
    community_cols.extend(keep);
    let community = community.select(community_cols);
    Ok(concat([group_scope, community], UnionArgs::default())?
        .sort(["scope", "member", "ts", "kind", "group", "reason"], sorted())
        .with_row_index("ord", None))
}

/// (scope, member, p) for every period index p (of column `c`) at whose end the member is in,
/// up to period `last`.
fn in_at_end(trans: &LazyFrame, c: &str, last: i32) -> Result<LazyFrame, BatchError> {
    let runs = trans
        .clone()
        .group_by([col("scope"), col("member"), col(c)])
        .agg([col("in_after").sort_by([col("ord")], SortMultipleOptions::default()).last().alias("state")])
        .sort(["scope", "member", c], sorted())
        .with_columns([col(c).shift(lit(-1i64)).over(sm())?.fill_null(lit(last + 1)).alias("until")])
        .filter(col("state"))
        .with_columns([int_ranges(col(c), col("until"), lit(1i32), DataType::Int32).alias("p")]);
    Ok(explode(runs, "p").select([col("scope"), col("member"), col("p")]))
}

/// Rows of `lf` (scope, member, `p`) whose period `p + 1` has no row: (scope, p + 1), up to `last`.
fn next_missing(lf: &LazyFrame, last: i32) -> LazyFrame {
    let present = lf.clone().select([col("scope"), col("member"), col("p"), lit(true).alias("present")]);
    lf.clone()
        .select([col("scope"), col("member"), (col("p") + lit(1i32)).alias("p")])
        .join(present, [col("scope"), col("member"), col("p")], [col("scope"), col("member"), col("p")], left())
        .filter(col("present").is_null().and(col("p").lt_eq(lit(last))))
}

fn per_scope_period(lf: LazyFrame, p: &str) -> LazyFrame {
    lf.group_by([col("scope"), col(p)]).agg([len().alias("n")])
}

pub fn compute(df: DataFrame, b: Bounds, cfg: &CommunityConfig) -> Result<Tables, BatchError> {
    let tz = cfg.timezone;
    let last_day = frame::local_day(b.as_of_ms, tz);
    let ev = df.lazy();
    let joins = joined(&ev);
    let trans = transitions(&ev)?;
    let mut t = Tables::default();

    // Participation at or after the join, for retention and inactivity.
    let participation_after_join = ev
        .clone()
        .filter(col("participation"))
        .join(joins.clone(), sm(), sm(), inner())
        .filter(col("ts").gt_eq(col("j")));

    // Member-level activation and conversion facts.
    let aw = cfg.activation_window_days as i64 * DAY_MS;
    let cw = cfg.conversion_window_days as i64 * DAY_MS;
    let rw = cfg.referral_window_days as i64 * DAY_MS;
    let min_events = cfg.activation_min_events.max(1) as i64;
    let j_only = joins.clone().select([col("scope"), col("member"), col("j")]);
    let activated = ev
        .clone()
        .filter(col("activation"))
        .join(j_only.clone(), sm(), sm(), inner())
        .filter(col("ts").gt_eq(col("j")).and(col("ts").lt(col("j") + lit(aw))))
        .sort(["scope", "member", "ts"], sorted())
        .with_row_index("i", None)
        .with_columns([
            (col("i").cast(DataType::Int64) - col("i").cast(DataType::Int64).min().over(sm())?).alias("rank")
        ])
        .filter(col("rank").eq(lit(min_events - 1)))
        .select([col("scope"), col("member"), col("ts").alias("activated_at")]);
    let conversions = ev
        .clone()
        .filter(col("kind").eq(lit(CONVERSION)))
        .join(j_only, sm(), sm(), inner())
        .filter(col("ts").gt_eq(col("j")).and(col("ts").lt(col("j") + lit(cw))))
        .group_by(sm())
        .agg([col("ts").min().alias("first_conv"), col("value_micros").fill_null(lit(0i64)).sum().alias("value")]);
    let facts = joins.clone().join(activated, sm(), sm(), left()).join(conversions, sm(), sm(), left());
    let invitees =
        joins.clone().filter(col("inviter").is_not_null()).select([col("scope"), col("inviter"), col("j").alias("yj")]);

    let last_of = |c: &str| frame::period_index(last_day, c);
    for (g, c) in PERIOD_COLUMNS {
        let cohort = format!("c_{c}");
        let last = last_of(c);
        let date = |p: i64| frame::period_date(p as i32, c);

        // Cohort sizes and retention "on", "on or after", "membership".
        for (s, v) in rows(
            joins.clone().group_by([col("scope"), col(&cohort)]).agg([len().alias("n")]),
            &["scope"],
            &[&cohort, "n"],
        )? {
            t.put(key::size(&s[0], g, date(v[0].unwrap_or_default())), Cell::Count(count(v[1])));
        }
        let active = participation_after_join.clone().select([
            col("scope"),
            col("member"),
            col(c).alias("p"),
            col(&cohort).alias("cohort"),
        ]);
        let on = active
            .clone()
            .unique(None, UniqueKeepStrategy::Any)
            .group_by([col("scope"), col("cohort"), col("p")])
            .agg([len().alias("n")]);
        let on_or_after = explode(
            active
                .group_by([col("scope"), col("member"), col("cohort")])
                .agg([col("p").max().alias("last")])
                .with_columns([
                    int_ranges(col("cohort"), col("last") + lit(1i32), lit(1i32), DataType::Int32).alias("p")
                ]),
            "p",
        )
        .group_by([col("scope"), col("cohort"), col("p")])
        .agg([len().alias("n")]);
        let ie = in_at_end(&trans, c, last)?;
        let membership = ie
            .clone()
            .join(
                joins.clone().select([col("scope"), col("member"), col(&cohort).alias("cohort")]),
                sm(),
                sm(),
                inner(),
            )
            .group_by([col("scope"), col("cohort"), col("p")])
            .agg([len().alias("n")]);
        for (mode, lf) in [("on", on), ("on_or_after", on_or_after), ("membership", membership)] {
            for (s, v) in rows(lf, &["scope"], &["cohort", "p", "n"])? {
                let (co, p) = (v[0].unwrap_or_default(), v[1].unwrap_or_default());
                t.put(key::retention(&s[0], g, mode, date(co), (p - co) as usize), Cell::Count(count(v[2])));
            }
        }

        // Activation, conversion and funnel, referral.
        let per_cohort = facts.clone().group_by([col("scope"), col(&cohort)]).agg([
            len().alias("size"),
            col("activated_at").count().alias("activated"),
            (col("activated_at") - col("j")).median().alias("median_ms"),
            (col("j") + lit(aw)).max().alias("aw_end"),
            col("first_conv").count().alias("converted"),
            col("value").sum().alias("value"),
            col("first_conv").gt_eq(col("activated_at")).cast(DataType::Int64).sum().alias("atc"),
            (col("j") + lit(cw)).max().alias("cw_end"),
            col("inviter").count().alias("referred"),
        ]);
        let df = per_cohort.collect()?;
        let median = df.column("median_ms")?.as_materialized_series().cast(&DataType::Float64)?;
        let median: Vec<Option<f64>> = median.f64()?.iter().collect();
        let cells = rows(
            df.lazy(),
            &["scope"],
            &[&cohort, "size", "activated", "aw_end", "converted", "value", "atc", "cw_end", "referred"],
        )?;
        let invited: BTreeMap<(String, i64), u64> = rows(
            joins
                .clone()
                .join(invitees.clone(), [col("scope"), col("member")], [col("scope"), col("inviter")], inner())
                .filter(col("yj").gt_eq(col("j")).and(col("yj").lt(col("j") + lit(rw))))
                .group_by([col("scope"), col(&cohort)])
                .agg([len().alias("n")]),
            &["scope"],
            &[&cohort, "n"],
        )?
        .into_iter()
        .map(|(s, v)| ((s[0].clone(), v[0].unwrap_or_default()), count(v[1])))
        .collect();
        for ((s, v), median_ms) in cells.into_iter().zip(median) {
            let (scope, co) = (s[0].as_str(), date(v[0].unwrap_or_default()));
            let size = count(v[1]);
            let put = |t: &mut Tables, table: &str, column: &str, cell: Cell| {
                t.put(key::cohort(table, scope, g, co, column), cell)
            };
            put(&mut t, "activation", "size", Cell::Count(size));
            put(&mut t, "activation", "activated", Cell::Count(count(v[2])));
            put(&mut t, "activation", "median_hours_to_activate", Cell::Real(median_ms.map(|m| m / 3_600_000.0)));
            put(&mut t, "activation", "complete", Cell::Flag(v[3].unwrap_or(i64::MAX) <= b.as_of_ms));
            put(&mut t, "conversion", "size", Cell::Count(size));
            put(&mut t, "conversion", "converted", Cell::Count(count(v[4])));
            put(&mut t, "conversion", "value", Cell::Real(Some(v[5].unwrap_or(0) as f64 / 1e6)));
            put(&mut t, "conversion", "activated", Cell::Count(count(v[2])));
            put(&mut t, "conversion", "activated_then_converted", Cell::Count(count(v[6])));
            put(&mut t, "conversion", "complete", Cell::Flag(v[7].unwrap_or(i64::MAX) <= b.as_of_ms));
            let invited = invited.get(&(s[0].clone(), v[0].unwrap_or_default())).copied().unwrap_or(0);
            put(&mut t, "referral", "size", Cell::Count(size));
            put(&mut t, "referral", "referred", Cell::Count(count(v[8])));
            put(&mut t, "referral", "invited", Cell::Count(invited));
            put(&mut t, "referral", "k_factor", Cell::Real(Some(invited as f64 / size as f64)));
        }

        // Lifecycle: active members of each period, by whether they are new, were active in the
        // period before, or not; and dormant members (active before, not now).
        let active_any = ev
            .clone()
            .filter(col("participation"))
            .select([col("scope"), col("member"), col(c).alias("p")])
            .unique(None, UniqueKeepStrategy::Any);
        let before = active_any.clone().select([
            col("scope"),
            col("member"),
            (col("p") + lit(1i32)).alias("p"),
            lit(true).alias("before"),
        ]);
        let lifecycle = active_any
            .clone()
            .join(before, [col("scope"), col("member"), col("p")], [col("scope"), col("member"), col("p")], left())
            .join(joins.clone().select([col("scope"), col("member"), col(&cohort).alias("cohort")]), sm(), sm(), left())
            .with_columns([
                col("cohort").eq(col("p")).fill_null(lit(false)).alias("is_new"),
                col("before").fill_null(lit(false)).alias("before"),
            ])
            .group_by([col("scope"), col("p")])
            .agg([
                col("is_new").cast(DataType::Int64).sum().alias("new"),
                col("is_new").not().and(col("before")).cast(DataType::Int64).sum().alias("returning"),
                col("is_new").not().and(col("before").not()).cast(DataType::Int64).sum().alias("resurrecting"),
            ]);
        for (s, v) in rows(lifecycle, &["scope"], &["p", "new", "returning", "resurrecting"])? {
            let p = date(v[0].unwrap_or_default());
            for (i, column) in ["new", "returning", "resurrecting"].into_iter().enumerate() {
                t.put(key::period("lifecycle", &s[0], g, p, column), Cell::Count(count(v[i + 1])));
            }
        }
        for (s, v) in rows(per_scope_period(next_missing(&active_any, last), "p"), &["scope"], &["p", "n"])? {
            t.put(
                key::period("lifecycle", &s[0], g, date(v[0].unwrap_or_default()), "dormant"),
                Cell::Count(count(v[1])),
            );
        }

        // Churn: members in at the start (= in at the end of the period before), churned (in at
        // the start, out at the end), left/removed by the last membership-ending leave of the
        // period of members out at its end, and inactivity moments (below).
        let start = ie.clone().select([col("scope"), col("member"), (col("p") + lit(1i32)).alias("p")]);
        for (s, v) in rows(per_scope_period(start.filter(col("p").lt_eq(lit(last))), "p"), &["scope"], &["p", "n"])? {
            let p = date(v[0].unwrap_or_default());
            t.put(key::period("churn", &s[0], g, p, "members_start"), Cell::Count(count(v[1])));
        }
        for (s, v) in rows(per_scope_period(next_missing(&ie, last), "p"), &["scope"], &["p", "n"])? {
            let p = date(v[0].unwrap_or_default());
            t.put(key::period("churn", &s[0], g, p, "churned"), Cell::Count(count(v[1])));
        }
        let in_marker = ie.clone().select([col("scope"), col("member"), col("p"), lit(true).alias("in_at_end")]);
        let last_leave = trans
            .clone()
            .filter(col("in_after").not())
            .group_by([col("scope"), col("member"), col(c).alias("p")])
            .agg([col("reason").sort_by([col("ord")], SortMultipleOptions::default()).last().alias("reason")])
            .join(in_marker, [col("scope"), col("member"), col("p")], [col("scope"), col("member"), col("p")], left())
            .filter(col("in_at_end").is_null())
            .group_by([col("scope"), col("p")])
            .agg([
                col("reason").eq(lit(0)).cast(DataType::Int64).sum().alias("left"),
                col("reason").neq(lit(0)).cast(DataType::Int64).sum().alias("removed"),
            ]);
        for (s, v) in rows(last_leave, &["scope"], &["p", "left", "removed"])? {
            let p = date(v[0].unwrap_or_default());
            t.put(key::period("churn", &s[0], g, p, "left"), Cell::Count(count(v[1])));
            t.put(key::period("churn", &s[0], g, p, "removed"), Cell::Count(count(v[2])));
        }
    }

    inactivity(&mut t, &joins, &participation_after_join, &trans, b, cfg)?;
    engagement(&mut t, &ev, &joins, &trans, last_day, cfg)?;
    Ok(t)
}

/// Inactivity churn moments `t + T` (t the join or a participation time) with no participation in
/// `(t, t + T]`, at or before as_of, with the member in at that instant; counted once per member
/// and period.
fn inactivity(
    t: &mut Tables,
    joins: &LazyFrame,
    participation_after_join: &LazyFrame,
    trans: &LazyFrame,
    b: Bounds,
    cfg: &CommunityConfig,
) -> Result<(), BatchError> {
    let span = cfg.inactivity_days as i64 * DAY_MS;
    let times = concat(
        [
            joins.clone().select([col("scope"), col("member"), col("j").alias("t")]),
            participation_after_join.clone().select([col("scope"), col("member"), col("ts").alias("t")]),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any)
    .sort(["scope", "member", "t"], sorted())
    .with_columns([col("t").shift(lit(-1i64)).over(sm())?.alias("next")])
    .filter(col("next").is_null().or(col("next").gt(col("t") + lit(span))))
    .with_columns([(col("t") + lit(span)).alias("moment")])
    .filter(col("moment").lt_eq(lit(b.as_of_ms)));
    let moments = times
        .select([col("scope"), col("member"), col("moment")])
        .join(
            trans.clone().select([col("scope"), col("member"), col("ts"), col("ord"), col("in_after")]),
            sm(),
            sm(),
            inner(),
        )
        .filter(col("ts").lt_eq(col("moment")))
        .group_by([col("scope"), col("member"), col("moment")])
        .agg([col("in_after").sort_by([col("ord")], SortMultipleOptions::default()).last().alias("in")])
        .filter(col("in"));
    let moments = rows(moments, &["scope", "member"], &["moment"])?;
    for (g, c) in PERIOD_COLUMNS {
        let mut seen = HashSet::new();
        for (s, v) in &moments {
            let p = frame::period_index(frame::local_day(v[0].unwrap_or_default(), cfg.timezone), c);
            if seen.insert((s[0].clone(), s[1].clone(), p)) {
                t.add(key::period("churn", &s[0], g, frame::period_date(p, c), "inactive"), 1);
            }
        }
    }
    Ok(())
}

/// Daily engagement: distinct active members over 1, WAU and MAU days, event counts, new members,
/// membership-ending leaves, and members at the end of the day.
fn engagement(
    t: &mut Tables,
    ev: &LazyFrame,
    joins: &LazyFrame,
    trans: &LazyFrame,
    last_day: i32,
    cfg: &CommunityConfig,
) -> Result<(), BatchError> {
    let date = frame::day_date;
    let active = ev
        .clone()
        .filter(col("participation"))
        .select([col("scope"), col("member"), col("d")])
        .unique(None, UniqueKeepStrategy::Any);
    for (column, width) in [("dau", 1i32), ("wau", cfg.wau_days as i32), ("mau", cfg.mau_days as i32)] {
        let spread = explode(
            active
                .clone()
                .with_columns([int_ranges(col("d"), col("d") + lit(width), lit(1i32), DataType::Int32).alias("p")]),
            "p",
        )
        .select([col("scope"), col("member"), col("p")])
        .unique(None, UniqueKeepStrategy::Any)
        .filter(col("p").lt_eq(lit(last_day)));
        for (s, v) in rows(per_scope_period(spread, "p"), &["scope"], &["p", "n"])? {
            t.put(
                key::period("engagement", &s[0], "day", date(v[0].unwrap_or_default() as i32), column),
                Cell::Count(count(v[1])),
            );
        }
    }
    let counts = ev.clone().group_by([col("scope"), col("d"), col("kind")]).agg([len().alias("n")]);
    for (s, v) in rows(counts, &["scope"], &["d", "kind", "n"])? {
        let column = match v[1].unwrap_or_default() as i32 {
            MESSAGE => "messages",
            REACTION => "reactions",
            CHECKIN => "checkins",
            JOIN => "joins",
            _ => continue,
        };
        t.put(
            key::period("engagement", &s[0], "day", date(v[0].unwrap_or_default() as i32), column),
            Cell::Count(count(v[2])),
        );
    }
    for (s, v) in rows(per_scope_period(joins.clone(), "c_d"), &["scope"], &["c_d", "n"])? {
        t.put(
            key::period("engagement", &s[0], "day", date(v[0].unwrap_or_default() as i32), "new_members"),
            Cell::Count(count(v[1])),
        );
    }
    for (s, v) in rows(per_scope_period(trans.clone().filter(col("in_after").not()), "d"), &["scope"], &["d", "n"])? {
        t.put(
            key::period("engagement", &s[0], "day", date(v[0].unwrap_or_default() as i32), "leaves"),
            Cell::Count(count(v[1])),
        );
    }
    for (s, v) in rows(per_scope_period(in_at_end(trans, "d", last_day)?, "p"), &["scope"], &["p", "n"])? {
        t.put(
            key::period("engagement", &s[0], "day", date(v[0].unwrap_or_default() as i32), "members"),
            Cell::Count(count(v[1])),
        );
    }
    Ok(())
}
