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
