//! Recording the world's load for `tessera sim --replay`: while recording,
//! every cellapp sends each real's position with its load report, and once
//! a second the manager turns what arrived into a [`Sample`] (with the cut
//! lines and each cell's reals) for the driver to append to the file.

use std::collections::BTreeMap;
use tessera::proto::app::{AppMsg, Role};
use tessera::recording::{quantize, CellCount, Header, Sample, Spot};
use tessera::{AppId, EntityId, Time};

use super::{Cluster, Output};

/// What a recording has gathered since its last sample.
pub(super) struct Recorder {
    started: Time,
    last: Time,
    spots: BTreeMap<EntityId, Spot>,
}

/// A sample is taken this often.
const PERIOD_US: u64 = 1_000_000;

impl Cluster {
    /// Starts recording: every cellapp (and any that joins) is asked for
    /// positions. Returns the recording's header; a recording already
    /// under way goes on.
    pub fn start_recording(&mut self, now: Time) -> Header {
        if self.recorder.is_none() {
            self.recorder = Some(Recorder {
                started: now,
                last: now,
                spots: BTreeMap::new(),
            });
            self.tell_cellapps_recording(true);
        }
        let [x0, z0, x1, z1] = self.space.bounds;
        Header {
            bounds: tessera::layout::Rect::new(x0, z0, x1, z1),
            tick_hz: u32::from(self.space.tick_hz),
        }
    }

    /// Stops recording.
    pub fn stop_recording(&mut self) {
        if self.recorder.take().is_some() {
            self.tell_cellapps_recording(false);
        }
    }

    /// Whether a recording is under way.
    pub fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    fn tell_cellapps_recording(&mut self, on: bool) {
        let cellapps: Vec<AppId> = self
            .apps
            .iter()
            .filter(|(_, a)| a.kind == Role::Cellapp)
            .map(|(id, _)| *id)
            .collect();
        for app in cellapps {
            self.out.push(Output::App(app, AppMsg::Record(on)));
        }
    }

    /// A cellapp that joined while recording is asked for positions too.
    pub(super) fn record_joined(&mut self, app: AppId) {
        if self.recorder.is_some() {
            self.out.push(Output::App(app, AppMsg::Record(true)));
        }
    }

    /// A cellapp's positions (taken only from an app that has a cell).
    pub(super) fn positions(&mut self, from: AppId, spots: Vec<(EntityId, [f32; 2], bool)>) {
        let [x0, z0, x1, z1] = self.space.bounds;
        let has_cell = self
            .layout
            .as_ref()
            .is_some_and(|l| l.cells().iter().any(|c| c.app == from));
        if !has_cell {
            tracing::warn!(app = %from, "positions from an app without a cell ignored");
            return;
        }
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        for (id, [x, z], client) in spots {
            r.spots.insert(
                id,
                Spot {
                    id: id.0,
                    x: quantize(x, x0, x1),
                    z: quantize(z, z0, z1),
                    client,
                },
            );
        }
    }

    /// Once a second while recording: the sample of what arrived.
    pub(super) fn record_tick(&mut self, now: Time) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        if now.since(r.last).as_micros() < u128::from(PERIOD_US) {
            return;
        }
        r.last = now;
        let t_ms = (now.since(r.started).as_millis()).min(u128::from(u32::MAX)) as u32;
        let spots = std::mem::take(&mut r.spots).into_values().collect();
        let (lines, cells) = match &self.layout {
            Some(layout) => (
                layout.lines().iter().map(|l| l.pos).collect(),
                layout
                    .cells()
                    .iter()
                    .map(|c| CellCount {
                        rect: c.rect,
                        reals: self.balance.reports.get(&c.cell).map_or(0, |r| r.reals),
                    })
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.out.push(Output::Sample(Sample {
            t_ms,
            lines,
            cells,
            spots,
        }));
    }
}
