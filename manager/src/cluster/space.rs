//! The manager's side of the space: which cellapp gets which cell as
//! cellapps come and go, the cells' load reports, and the balancer that runs
//! once a second.
//!
//! - A cellapp that registers before the world has any entities gets an
//!   equal share (the layout is cut anew). One that registers while the world
//!   runs gets a cell split off the most loaded one, starting at zero area;
//!   the balancer grows it.
//! - A cellapp that asks to retire has its cell shrunk a quarter of its
//!   width per second while its reals migrate out; once the cell has no area
//!   and reports no reals (or a grace period passed), the cell is merged into
//!   its sibling and the cellapp is told it may go.
//! - A cellapp that vanishes has its cell merged into its sibling at once.

use std::collections::BTreeMap;
use std::time::Duration;
use tessera::balance::CellReport;
use tessera::layout::{Axis, CellId, Layout, LineId, Rect, SpaceView};
use tessera::proto::app::{AppMsg, Role};
use tessera::{AppId, Time};

use super::{Cluster, Output};
use crate::balance::{Policy, Tessera};

/// How often the balancer runs.
pub const BALANCE_PERIOD: Duration = Duration::from_secs(1);
/// The load (share of the tick period) at least one cell must report before
/// the balancer moves a line: below it every cellapp is idle enough that
/// moving lines would only cost migrations.
pub const DEFAULT_BALANCE_FLOOR: f32 = 0.1;
/// A retiring cell loses this share of its width per balancer run.
const RETIRE_STEPS: f32 = 4.0;
/// How long a retiring cell with no area may take to report that its reals
/// have left before it is merged anyway (its cellapp still forwards).
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Why a cellapp may not retire.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetireError {
    /// No such member, or not a cellapp.
    #[error("app {0} is not a cellapp of this cluster")]
    NotACellapp(AppId),
    /// It has no cell.
    #[error("cellapp {0} has no cell to give up")]
    NoCell(AppId),
    /// The manager restarted and is waiting for the apps to report back.
    #[error("the manager is waiting for the apps to report back; try again in a few seconds")]
    Rejoining,
}

/// A retirement under way.
#[derive(Debug, Clone, Copy)]
struct Retirement {
    cell: CellId,
    /// Metres the cell shrinks per run.
    step: f32,
    /// When the cell reached zero area, and the layout epoch then.
    empty: Option<(Time, u64)>,
}

/// The balancer's state.
pub(crate) struct Balance {
    policy: Box<dyn Policy>,
    pub(super) reports: BTreeMap<CellId, CellReport>,
    last: Option<Time>,
    retiring: BTreeMap<AppId, Retirement>,
    /// See [`DEFAULT_BALANCE_FLOOR`].
    floor: f32,
}

impl Balance {
    pub(crate) fn new() -> Balance {
        Balance {
            policy: Box::new(Tessera::default()),
            reports: BTreeMap::new(),
            last: None,
            retiring: BTreeMap::new(),
            floor: DEFAULT_BALANCE_FLOOR,
        }
    }
}

/// The longer axis of a rectangle (a split cuts across it).
fn longer(rect: &Rect) -> Axis {
    if rect.x1 - rect.x0 >= rect.z1 - rect.z0 {
        Axis::X
    } else {
        Axis::Z
    }
}

/// How often cellapps report their load, in seconds: the span a report's
/// migration counts cover.
pub const REPORT_PERIOD_S: f32 = 1.0;

impl Cluster {
    /// The space's layout with each cell's latest report, as the admin API
    /// serves it; `None` until a cellapp has registered.
    pub fn space_view(&self) -> Option<SpaceView> {
        let layout = self.layout.as_ref()?;
        Some(SpaceView::of(
            1,
            layout,
            |c| self.balance.reports.get(&c),
            REPORT_PERIOD_S,
        ))
    }

    /// Chooses the balancing policy (the default is `tessera`).
    pub fn set_policy(&mut self, policy: Box<dyn Policy>) {
        self.balance.policy = policy;
    }

    /// The load at least one cell must report before the balancer moves a
    /// line (see [`DEFAULT_BALANCE_FLOOR`]); 0 balances at any load.
    pub fn set_balance_floor(&mut self, floor: f32) {
        self.balance.floor = floor;
    }

    /// After any change of the layout: keep the epoch, forget reports of
    /// cells that are gone, and tell every app.
    pub(super) fn layout_changed(&mut self) {
        if let Some(layout) = &self.layout {
            self.epoch = self.epoch.max(layout.epoch);
            let cells: Vec<CellId> = layout.cells().iter().map(|c| c.cell).collect();
            self.balance.reports.retain(|c, _| cells.contains(c));
        } else {
            self.balance.reports.clear();
        }
        let all: Vec<AppId> = self.apps.keys().copied().collect();
        for app in all {
            self.send_layout(app);
        }
    }

    fn cellapps(&self) -> Vec<AppId> {
        self.apps
            .iter()
            .filter(|(_, a)| a.kind == Role::Cellapp)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A new cellapp: an equal share while the world is empty, otherwise a
    /// zero-area cell split off the most loaded cell.
    pub(super) fn cellapp_joined(&mut self, app: AppId) {
        let running = self.balance.reports.values().any(|r| r.reals > 0);
        self.give_cell(app, running);
    }

    /// Gives `app` a cell: split off the busiest (the largest, before any
    /// load report) when `keep` the layout, else the space cut anew in
    /// equal cells for every cellapp.
    pub(super) fn give_cell(&mut self, app: AppId, keep: bool) {
        let split = match &self.layout {
            Some(layout) if keep => layout
                .cells()
                .into_iter()
                .max_by(|a, b| {
                    let load = |c: &tessera::layout::CellView| {
                        self.balance.reports.get(&c.cell).map_or(0.0, |r| r.load)
                    };
                    load(a)
                        .total_cmp(&load(b))
                        .then(a.rect.area().total_cmp(&b.rect.area()))
                })
                .map(|c| (c.cell, longer(&c.rect))),
            _ => None,
        };
        match (split, self.layout.as_mut()) {
            (Some((cell, axis)), Some(layout)) => match layout.split(cell, axis, app) {
                Ok((new, line)) => {
                    tracing::info!(%app, ?new, ?line, from = ?cell, "new cellapp gets a cell split off the busiest");
                }
                Err(e) => tracing::warn!(%app, error = %e, "could not split a cell"),
            },
            _ => {
                let apps = self.cellapps();
                let epoch = self.epoch + 1;
                let bounds = Rect::from_bounds(self.space.bounds);
                self.layout = Layout::equal(bounds, &apps).ok().map(|mut l| {
                    l.epoch = epoch;
                    l
                });
            }
        }
        self.layout_changed();
    }

    /// A cellapp is gone: its cell goes to its sibling.
    pub(super) fn cellapp_left(&mut self, app: AppId) {
        self.balance.retiring.remove(&app);
        let Some(layout) = self.layout.as_mut() else {
            return;
        };
        let mine: Vec<CellId> = layout
            .cells()
            .iter()
            .filter(|c| c.app == app)
            .map(|c| c.cell)
            .collect();
        for cell in mine {
            if layout.retire(cell).is_err() {
                // The last cell: the space has no cellapp now.
                self.layout = None;
                break;
            }
        }
        self.layout_changed();
    }

    /// A cell's load report; kept if it comes from the cell's own cellapp.
    pub(super) fn cell_load(&mut self, from: AppId, report: CellReport) {
        if !report.is_valid() {
            tracing::warn!(app = %from, "malformed load report ignored");
            return;
        }
        let owner = self.layout.as_ref().and_then(|l| l.app_of(report.cell));
        if owner == Some(from) {
            if let Some(info) = self.apps.get_mut(&from) {
                info.load = report.load;
            }
            self.balance.reports.insert(report.cell, report);
        }
    }

    /// A cellapp asks to retire (an operator, or SIGTERM): its cell shrinks
    /// to nothing, its reals migrate, and then it is told it may go. The
    /// last cellapp of the space has nowhere to hand off; it is let go at
    /// once.
    pub fn retire(&mut self, _now: Time, app: AppId) -> Result<(), RetireError> {
        if self.rejoining.is_some() {
            return Err(RetireError::Rejoining);
        }
        if self.apps.get(&app).is_none_or(|a| a.kind != Role::Cellapp) {
            return Err(RetireError::NotACellapp(app));
        }
        let layout = self.layout.as_ref().ok_or(RetireError::NoCell(app))?;
        let cell = layout
            .cells()
            .into_iter()
            .find(|c| c.app == app)
            .ok_or(RetireError::NoCell(app))?;
        if layout.cells().len() == 1 {
            tracing::warn!(%app, "the last cellapp retires; nowhere to hand its reals");
            self.out.push(Output::App(app, AppMsg::Retired));
            return Ok(());
        }
        let width = layout
            .lines()
            .into_iter()
            .find(|l| l.low == [cell.cell] || l.high == [cell.cell])
            .map_or(0.0, |l| {
                let (a, b) = cell.rect.span(l.axis);
                b - a
            });
        tracing::info!(%app, cell = ?cell.cell, "cellapp retiring");
        self.balance.retiring.entry(app).or_insert(Retirement {
            cell: cell.cell,
            step: (width / RETIRE_STEPS).max(1.0),
            empty: None,
        });
        Ok(())
    }

    /// Once a [`BALANCE_PERIOD`]: shrink retiring cells, then let the policy
    /// move the other lines.
    pub(super) fn balance_tick(&mut self, now: Time) {
        if self.rejoining.is_some()
            || self
                .balance
                .last
                .is_some_and(|t| now.since(t) < BALANCE_PERIOD)
        {
            return;
        }
        self.balance.last = Some(now);
        let mut changed = self.shrink_retiring(now);
        let Some(layout) = self.layout.as_mut() else {
            if changed {
                self.layout_changed();
            }
            return;
        };
        let busy: Vec<CellId> = self.balance.retiring.values().map(|r| r.cell).collect();
        let lines: BTreeMap<LineId, bool> = layout
            .lines()
            .into_iter()
            .map(|l| {
                let touches = l.low.iter().chain(&l.high).any(|c| busy.contains(c));
                (l.line, touches)
            })
            .collect();
        let floor = self.balance.floor;
        let idle = self.balance.reports.values().all(|r| r.load < floor);
        let plan = if idle {
            Vec::new()
        } else {
            self.balance.policy.plan(layout, &self.balance.reports)
        };
        for (line, to) in plan {
            if lines.get(&line).copied().unwrap_or(true) {
                continue;
            }
            let before = layout.epoch;
            if layout.move_line(line, to).is_ok() && layout.epoch != before {
                changed = true;
            }
        }
        if changed {
            self.layout_changed();
        }
    }

    /// Moves every retiring cell's line a step; merges cells that are empty.
    /// Returns whether the layout changed.
    fn shrink_retiring(&mut self, now: Time) -> bool {
        let mut changed = false;
        let apps: Vec<AppId> = self.balance.retiring.keys().copied().collect();
        for app in apps {
            let Some(layout) = self.layout.as_mut() else {
                break;
            };
            let Some(r) = self.balance.retiring.get(&app).copied() else {
                continue;
            };
            let parent = layout
                .lines()
                .into_iter()
                .find(|l| l.low == [r.cell] || l.high == [r.cell]);
            let (Some(line), Some(rect)) = (parent, layout.rect(r.cell)) else {
                // Alone in the space (the others left meanwhile).
                self.balance.retiring.remove(&app);
                self.out.push(Output::App(app, AppMsg::Retired));
                continue;
            };
            let (a, b) = rect.span(line.axis);
            if b - a > 0.0 {
                let to = if line.low == [r.cell] {
                    (line.pos - r.step).max(a)
                } else {
                    (line.pos + r.step).min(b)
                };
                if layout.move_line(line.line, to).is_ok() {
                    changed = true;
                }
                continue;
            }
            let (since, epoch) = match r.empty {
                Some(e) => e,
                None => {
                    let e = (now, layout.epoch);
                    if let Some(r) = self.balance.retiring.get_mut(&app) {
                        r.empty = Some(e);
                    }
                    e
                }
            };
            let emptied = self
                .balance
                .reports
                .get(&r.cell)
                .is_some_and(|rep| rep.epoch >= epoch && rep.reals == 0);
            if emptied || now.since(since) >= RETIRE_GRACE {
                if layout.retire(r.cell).is_ok() {
                    changed = true;
                }
                self.balance.retiring.remove(&app);
                tracing::info!(%app, cell = ?r.cell, emptied, "retired cell merged");
                self.out.push(Output::App(app, AppMsg::Retired));
            }
        }
        changed
    }
}
