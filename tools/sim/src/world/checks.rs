//! What a simulated world checks of itself: one real per entity, every
//! entity on the cell that covers it, ghosts where they belong, pings and
//! pongs, client views against the truth. The tests call these after
//! running a scenario; each names the first fault it finds.

use std::collections::BTreeMap;
use tessera::EntityId;
use tessera_cellapp::cell::{EntitySnapshot, OFFLOAD_HYSTERESIS};

use super::SimWorld;

impl SimWorld {
    /// No entity has two reals.
    pub fn check_single_real(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for (app, cell) in &self.cells() {
            for id in cell.real_ids() {
                if !seen.insert(id) {
                    return Err(format!("{id} has a second real on {app}"));
                }
            }
        }
        Ok(())
    }

    /// Every check of a world that has settled, each on its own so a
    /// planted fault can be matched to the check that catches it: the
    /// failures (each tagged with its check's name) and how many sightings
    /// the views check compared.
    pub fn settled_failures(&self, entities: usize) -> (Vec<String>, usize) {
        let mut failures = Vec::new();
        let mut add = |name: &str, r: Result<(), String>| {
            if let Err(e) = r {
                failures.push(format!("{name}: {e}"));
            }
        };
        add("single real", self.check_single_real());
        add("single real", self.broken.clone().map_or(Ok(()), Err));
        add("placement", self.check_placement(entities));
        add("ghosts", self.check_ghosts());
        add("pings", self.check_pings());
        let checked = match self.check_views(5.0) {
            Ok(n) => n,
            Err(e) => {
                failures.push(format!("views: {e}"));
                0
            }
        };
        (failures, checked)
    }

    /// After quiescence, all of: [`SimWorld::check_single_real`] (and
    /// nothing broke during the run), [`SimWorld::check_placement`],
    /// [`SimWorld::check_ghosts`] and [`SimWorld::check_pings`].
    pub fn check_settled(&self, entities: usize) -> Result<(), String> {
        self.check_single_real()?;
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        self.check_placement(entities)?;
        self.check_ghosts()?;
        self.check_pings()
    }

    /// Every entity there should be is real exactly once, on the cellapp
    /// whose cell covers it (within the offload hysteresis).
    pub fn check_placement(&self, entities: usize) -> Result<(), String> {
        let total = self.check_placement_of_all()?;
        if total != entities {
            return Err(format!("{total} reals, expected {entities}"));
        }
        Ok(())
    }

    /// Every real is on the cellapp whose cell covers it (within the
    /// offload hysteresis). Returns how many reals there are.
    pub fn check_placement_of_all(&self) -> Result<usize, String> {
        let layout = self.manager().layout().ok_or("no layout")?;
        let mut total = 0;
        for (app, cell) in &self.cells() {
            for e in cell.snapshot() {
                total += 1;
                let own = layout
                    .cells()
                    .into_iter()
                    .filter(|c| c.app == *app)
                    .any(|c| {
                        c.rect
                            .grow(OFFLOAD_HYSTERESIS + 0.5)
                            .holds(e.pos.x, e.pos.z)
                    });
                if !own {
                    return Err(format!(
                        "{} is real on {app} but stands at {:?}, outside its cell",
                        e.id, e.pos
                    ));
                }
            }
        }
        Ok(total)
    }

    /// Every ghost equals its real's position and ghosted properties and
    /// points to the real's cellapp.
    pub fn check_ghosts(&self) -> Result<(), String> {
        let reals: BTreeMap<EntityId, EntitySnapshot> =
            self.reals().into_iter().map(|r| (r.id, r)).collect();
        for (app, cell) in &self.cells() {
            for (g, real_app) in cell.ghosts() {
                let r = reals
                    .get(&g.id)
                    .ok_or_else(|| format!("{app} holds a ghost of {}, which has no real", g.id))?;
                if g.pos != r.pos {
                    return Err(format!(
                        "ghost of {} on {app} at {:?}, real at {:?}",
                        g.id, g.pos, r.pos
                    ));
                }
                let ty = self.defs.get(g.type_id).ok_or("unknown type")?;
                for p in ty.properties.iter().filter(|p| p.flags.on_ghosts()) {
                    if g.props.get(p.index as usize) != r.props.get(p.index as usize) {
                        return Err(format!("ghost of {} on {app}: {} differs", g.id, p.name));
                    }
                }
                let holder = self
                    .cells()
                    .iter()
                    .find(|(_, c)| c.real_ids().any(|id| id == g.id))
                    .map(|(a, _)| *a);
                if holder != Some(real_app) {
                    return Err(format!(
                        "ghost of {} on {app} points to {real_app}, real is on {holder:?}",
                        g.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every client's numbered pings came back exactly once, in order.
    pub fn check_pings(&self) -> Result<(), String> {
        for c in self.clients.values() {
            let expected: Vec<i64> = (1..=c.pinged).collect();
            if c.pongs != expected {
                let first_bad = c.pongs.iter().zip(&expected).position(|(a, b)| a != b);
                return Err(format!(
                    "client {}: {} pings, {} pongs, first out of order at {first_bad:?}",
                    c.id,
                    c.pinged,
                    c.pongs.len()
                ));
            }
        }
        Ok(())
    }

    /// While everything moves: every playing client sees every entity within
    /// its radius less `slack`, and nothing farther than radius plus
    /// `hysteresis` plus `slack` (`slack` covers what entities move during a
    /// tick or two of delay). Positions are not compared: lost datagrams
    /// make them lag until the next update.
    pub fn check_membership(&self, hysteresis: f32, slack: f32) -> Result<usize, String> {
        let reals = self.reals();
        let by_id: BTreeMap<EntityId, &EntitySnapshot> = reals.iter().map(|r| (r.id, r)).collect();
        let mut checked = 0;
        for client in self.clients.values() {
            let Some(view) = client.view() else { continue };
            let Some(me) = by_id.get(&view.me) else {
                continue;
            };
            let Some(radius) = me.aoi else { continue };
            for other in &reals {
                if other.id == me.id {
                    continue;
                }
                let d =
                    ((other.pos.x - me.pos.x).powi(2) + (other.pos.z - me.pos.z).powi(2)).sqrt();
                let seen = view.others.contains_key(&other.id);
                if !seen && d < radius - slack {
                    return Err(format!(
                        "{} misses {} at {d:.1} m while moving",
                        me.id, other.id
                    ));
                }
                if seen && d > radius + hysteresis + slack {
                    return Err(format!(
                        "{} still sees {} at {d:.1} m while moving",
                        me.id, other.id
                    ));
                }
                checked += 1;
            }
        }
        Ok(checked)
    }

    /// Checks every playing client's view against the reals: every entity
    /// within the AoI radius seen at its exact position with its public
    /// properties, nothing beyond radius plus `hysteresis`, nothing that does
    /// not exist. Returns how many sightings were checked.
    pub fn check_views(&self, hysteresis: f32) -> Result<usize, String> {
        let reals = self.reals();
        let by_id: BTreeMap<EntityId, &EntitySnapshot> = reals.iter().map(|r| (r.id, r)).collect();
        let mut checked = 0;
        for client in self.clients.values() {
            let Some(view) = client.view() else {
                return Err(format!(
                    "client {} is not playing: {:?}",
                    client.id, client.phase
                ));
            };
            checked += crate::truth::check_view(view, &by_id, &self.defs, hysteresis)?;
        }
        Ok(checked)
    }
}
