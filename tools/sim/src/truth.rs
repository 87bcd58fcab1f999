//! The AoI truth: what a client should see, computed from every real, and
//! the comparison with what it does see. The simulator and the end-to-end
//! tests use the same check.

use std::collections::BTreeMap;
use tessera::proto::client::Frame;
use tessera::view::View;
use tessera::{Definitions, EntityId};
use tessera_cellapp::cell::EntitySnapshot;
use tessera_cellapp::witness::position_reach;

/// Compares one client's view with the reals: every entity within the AoI
/// radius seen at its position (to the step positions travel at) with the properties of its level of
/// detail at that distance (all public ones, for a type without levels), nothing
/// beyond radius plus `hysteresis`, nothing that does not exist. Returns how
/// many sightings were checked.
pub fn check_view(
    view: &View,
    reals: &BTreeMap<EntityId, &EntitySnapshot>,
    defs: &Definitions,
    hysteresis: f32,
) -> Result<usize, String> {
    let me = reals
        .get(&view.me)
        .ok_or_else(|| format!("{} is not real anywhere", view.me))?;
    let radius = me.aoi.ok_or("a client entity has no witness")?;
    let step = Frame::around([0.0; 3], position_reach(radius, hysteresis)).scale;
    let mut checked = 0;
    for other in reals.values() {
        if other.id == me.id {
            continue;
        }
        let d = ((other.pos.x - me.pos.x).powi(2) + (other.pos.z - me.pos.z).powi(2)).sqrt();
        match view.others.get(&other.id) {
            Some(seen) => {
                if d > radius + hysteresis {
                    return Err(format!("{} sees {} at {d:.1} m", me.id, other.id));
                }
                // Positions travel to a step of the watcher's frame.
                let off = (glam::Vec3::from_array(seen.pos) - other.pos)
                    .abs()
                    .max_element();
                if off > step * 0.5 + 1e-3 {
                    return Err(format!(
                        "{} sees {} at {:?}, truth {:?}",
                        me.id, other.id, seen.pos, other.pos
                    ));
                }
                // The properties of the entity's level of detail at this
                // distance; others may be out of date, as designed.
                let ty = defs.get(other.type_id).ok_or("unknown type")?;
                let (_, level) = ty.detail_at(d);
                for &i in &level.props {
                    if seen.props.get(&i) != other.props.get(i as usize) {
                        let name = ty
                            .properties
                            .get(i as usize)
                            .map_or("?", |p| p.name.as_str());
                        return Err(format!("{} sees {}.{name} wrong", me.id, other.id));
                    }
                }
                checked += 1;
            }
            None if d <= radius => {
                return Err(format!("{} misses {} at {d:.1} m", me.id, other.id))
            }
            None => {}
        }
    }
    if let Some(ghost) = view.others.keys().find(|id| !reals.contains_key(id)) {
        return Err(format!("{} sees {ghost}, which does not exist", me.id));
    }
    Ok(checked)
}

/// How far from the truth a view may show an entity before the view counts
/// as behind on it, metres: a few ticks of walking, so that positions on
/// their way and the slower updates of far detail levels do not count.
pub const BEHIND_M: f32 = 5.0;

/// Over every view: the sightings (an entity within the watcher's AoI
/// radius of where the watcher really is) and how many of them the view is
/// behind on (it misses the entity, or shows it more than [`BEHIND_M`] from
/// where it is).
pub fn behind<'a>(
    views: impl IntoIterator<Item = &'a View>,
    reals: &BTreeMap<EntityId, &EntitySnapshot>,
) -> (u64, u64) {
    // Reals bucketed by 64 m squares, for the radius queries.
    const SQUARE: f32 = 64.0;
    let key = |x: f32, z: f32| ((x / SQUARE).floor() as i32, (z / SQUARE).floor() as i32);
    let mut squares: BTreeMap<(i32, i32), Vec<&EntitySnapshot>> = BTreeMap::new();
    for r in reals.values() {
        squares.entry(key(r.pos.x, r.pos.z)).or_default().push(r);
    }
    let (mut sightings, mut behind) = (0, 0);
    for view in views {
        let Some(me) = reals.get(&view.me) else {
            continue;
        };
        let Some(radius) = me.aoi else {
            continue;
        };
        let (lo, hi) = (
            key(me.pos.x - radius, me.pos.z - radius),
            key(me.pos.x + radius, me.pos.z + radius),
        );
        for sx in lo.0..=hi.0 {
            for sz in lo.1..=hi.1 {
                for other in squares.get(&(sx, sz)).into_iter().flatten() {
                    let d = ((other.pos.x - me.pos.x).powi(2) + (other.pos.z - me.pos.z).powi(2))
                        .sqrt();
                    if other.id == me.id || d > radius {
                        continue;
                    }
                    sightings += 1;
                    let off = view
                        .others
                        .get(&other.id)
                        .map(|s| glam::Vec3::from_array(s.pos).distance(other.pos));
                    if off.is_none_or(|d| d > BEHIND_M) {
                        behind += 1;
                    }
                }
            }
        }
    }
    (sightings, behind)
}
