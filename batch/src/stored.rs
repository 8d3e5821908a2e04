//! What ClickHouse holds for a community, read with the query API's own statements (so the check
//! covers what dashboards see), as `Tables`.

use crate::tables::{key, Cell, Tables};
use crate::BatchError;
use engine::{Granularity, Mode};
use query_api::params::Selection;
use query_api::source::Source;

fn err(e: query_api::QueryError) -> BatchError {
    BatchError::Stored(e.to_string())
}

pub async fn stored_tables(source: &dyn Source, community: &str) -> Result<Tables, BatchError> {
    let mut t = Tables::default();
    let fresh = source.freshness(community).await.map_err(err)?;
    let mut scopes: Vec<Option<String>> = vec![None];
    scopes.extend(source.groups(community).await.map_err(err)?.into_iter().map(Some));
    for group in &scopes {
        let s = group.as_deref().unwrap_or("");
        for granularity in Granularity::ALL {
            let g = granularity.as_str();
            let sel =
                Selection { community: community.to_owned(), group: group.clone(), granularity, from: None, to: None };
            for mode in Mode::ALL {
                for row in source.retention(&sel, mode).await.map_err(err)? {
                    if mode == Mode::On {
                        t.put(key::size(s, g, row.cohort), Cell::Count(row.size));
                    }
                    for (k, v) in row.values.iter().enumerate() {
                        t.put(key::retention(s, g, mode.as_str(), row.cohort, k), Cell::Count(*v));
                    }
                }
            }
            for r in source.activation(&sel, fresh.as_of_ms).await.map_err(err)? {
                let put = |t: &mut Tables, c: &str, cell| t.put(key::cohort("activation", s, g, r.cohort, c), cell);
                put(&mut t, "size", Cell::Count(r.size));
                put(&mut t, "activated", Cell::Count(r.activated));
                put(&mut t, "median_hours_to_activate", Cell::Real(r.median_hours_to_activate));
                put(&mut t, "complete", Cell::Flag(r.complete));
            }
            for r in source.conversion(&sel, fresh.as_of_ms).await.map_err(err)? {
                let put = |t: &mut Tables, c: &str, cell| t.put(key::cohort("conversion", s, g, r.cohort, c), cell);
                put(&mut t, "size", Cell::Count(r.size));
                put(&mut t, "converted", Cell::Count(r.converted));
                put(&mut t, "value", Cell::Real(Some(r.value)));
                put(&mut t, "activated", Cell::Count(r.activated));
                put(&mut t, "activated_then_converted", Cell::Count(r.activated_then_converted));
                put(&mut t, "complete", Cell::Flag(r.complete));
            }
            for r in source.referral(&sel).await.map_err(err)? {
                let put = |t: &mut Tables, c: &str, cell| t.put(key::cohort("referral", s, g, r.cohort, c), cell);
                put(&mut t, "size", Cell::Count(r.size));
                put(&mut t, "referred", Cell::Count(r.referred));
                put(&mut t, "invited", Cell::Count(r.invited));
                put(&mut t, "k_factor", Cell::Real(Some(r.k_factor)));
            }
            for (p, v) in source.lifecycle(&sel).await.map_err(err)? {
                for (c, n) in engine::activity::LIFECYCLE.iter().zip(v) {
                    t.put(key::period("lifecycle", s, g, p, c), Cell::Count(n));
                }
            }
            for (p, v) in source.churn(&sel).await.map_err(err)? {
                for (c, n) in ["members_start", "churned", "left", "removed", "inactive"].iter().zip(v) {
                    t.put(key::period("churn", s, g, p, c), Cell::Count(n));
                }
            }
        }
        let sel = Selection {
            community: community.to_owned(),
            group: group.clone(),
            granularity: Granularity::Day,
            from: None,
            to: None,
        };
        for (d, v) in source.engagement(&sel).await.map_err(err)? {
            for (c, n) in engine::activity::ENGAGEMENT.iter().zip(v) {
                t.put(key::period("engagement", s, "day", d, c), Cell::Count(n));
            }
        }
    }
    Ok(t)
}
