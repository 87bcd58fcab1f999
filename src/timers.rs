//! An entity's timers, set by game code on its cell or its base. On the
//! cell they belong to the real, not to the cell: each keeps the time it
//! next fires, and that time travels with the real when it moves cell
//! ([`crate::proto::app::TimerState`]), so a timer set on one cell fires on
//! the next, once per period, never on both.

use crate::proto::app::TimerState;
use crate::time::Time;

/// A timer of one entity, as game code's `add_timer` returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u32);

/// The most times one timer fires in one tick when the cell has fallen
/// behind; the rest fire on the following ticks.
pub const MAX_FIRES_PER_TICK: u32 = 8;

/// The most timers one entity may have set at once.
pub const MAX_TIMERS: usize = 256;

/// The state of a new timer `id`, set at `now` to fire `after` from then
/// and then every `every` (if given, which must not be zero).
pub fn new_timer(
    id: TimerId,
    now: Time,
    after: std::time::Duration,
    every: Option<std::time::Duration>,
    tag: u32,
) -> Option<TimerState> {
    let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let period_us = match every {
        Some(p) if p.is_zero() => return None,
        Some(p) => micros(p),
        None => 0,
    };
    Some(TimerState {
        id: id.0,
        due: Time(now.0.saturating_add(micros(after))),
        period_us,
        tag,
    })
}

/// The timers of one real.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timers {
    list: Vec<TimerState>,
    next: u32,
}

impl Timers {
    /// Timers as they arrived with a real from another cell.
    /// At most [`MAX_TIMERS`] are taken.
    pub fn from_parts(mut list: Vec<TimerState>, next: u32) -> Timers {
        list.truncate(MAX_TIMERS);
        Timers { list, next }
    }

    /// The timers and the next id, for the real's move to another cell.
    pub fn to_parts(&self) -> (Vec<TimerState>, u32) {
        (self.list.clone(), self.next)
    }

    /// The id the `k`-th timer added from now gets (0 is the next).
    pub fn id_after(&self, k: u32) -> TimerId {
        TimerId(self.next.wrapping_add(k))
    }

    /// How many timers are set.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No timer is set.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Sets a timer (its id was handed out by [`Timers::id_after`]).
    pub fn add(&mut self, t: TimerState) {
        self.next = self.next.max(t.id.wrapping_add(1));
        self.list.push(t);
    }

    /// Cancels a timer; an unknown id is ignored.
    pub fn cancel(&mut self, id: TimerId) {
        self.list.retain(|t| t.id != id.0);
    }

    /// The firings due at `now`, in the order they fell due: each timer at
    /// most [`MAX_FIRES_PER_TICK`] times.
    pub fn due(&self, now: Time) -> Vec<(TimerId, u32, Time)> {
        let mut out = Vec::new();
        for t in &self.list {
            let mut due = t.due;
            for _ in 0..MAX_FIRES_PER_TICK {
                if due > now {
                    break;
                }
                out.push((TimerId(t.id), t.tag, due));
                if t.period_us == 0 {
                    break;
                }
                due = Time(due.0.saturating_add(t.period_us));
            }
        }
        out.sort_by_key(|&(id, _, due)| (due, id));
        out
    }

    /// The firing of `id` that was due at `due` happened: a repeating timer
    /// moves on one period, a one-shot is gone. A firing not at the
    /// timer's current due time (it was cancelled and set again) is
    /// ignored.
    pub fn fired(&mut self, id: TimerId, due: Time) {
        let Some(i) = self.list.iter().position(|t| t.id == id.0) else {
            return;
        };
        let t = &mut self.list[i];
        if t.due != due {
            return;
        }
        if t.period_us == 0 {
            self.list.swap_remove(i);
        } else {
            t.due = Time(t.due.0.saturating_add(t.period_us));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(id: u32, due: u64, period_us: u64) -> TimerState {
        TimerState {
            id,
            due: Time(due),
            period_us,
            tag: id * 10,
        }
    }

    #[test]
    fn a_repeating_timer_fires_once_per_period() {
        let mut t = Timers::default();
        t.add(timer(0, 100, 50));
        let mut fired = 0;
        for now in (0..=1000).step_by(10) {
            for (id, _, due) in t.due(Time(now)) {
                t.fired(id, due);
                fired += 1;
            }
        }
        // Due at 100, 150, ..., 1000.
        assert_eq!(fired, 19);
    }

    #[test]
    fn a_late_tick_catches_up_without_firing_twice() {
        let mut t = Timers::default();
        t.add(timer(0, 100, 50));
        let first = t.due(Time(300));
        assert_eq!(first.len(), 5);
        for (id, _, due) in first {
            t.fired(id, due);
        }
        assert!(t.due(Time(300)).is_empty());
        assert_eq!(t.due(Time(350)).len(), 1);
    }

    #[test]
    fn a_one_shot_fires_once_and_is_gone() {
        let mut t = Timers::default();
        t.add(timer(3, 100, 0));
        let d = t.due(Time(500));
        assert_eq!(d, vec![(TimerId(3), 30, Time(100))]);
        t.fired(TimerId(3), Time(100));
        assert!(t.is_empty());
        assert_eq!(t.id_after(0), TimerId(4));
    }

    #[test]
    fn the_parts_carry_a_timer_to_another_cell_without_a_second_firing() {
        let mut here = Timers::default();
        here.add(timer(0, 100, 100));
        for (id, _, due) in here.due(Time(150)) {
            here.fired(id, due);
        }
        let (list, next) = here.to_parts();
        let there = Timers::from_parts(list, next);
        assert!(there.due(Time(150)).is_empty());
        assert_eq!(there.due(Time(200)).len(), 1);
        assert_eq!(there.id_after(0), TimerId(1));
    }

    #[test]
    fn cancelling_stops_a_timer() {
        let mut t = Timers::default();
        t.add(timer(0, 100, 10));
        t.add(timer(1, 100, 10));
        t.cancel(TimerId(0));
        assert!(t.due(Time(100)).iter().all(|(id, ..)| *id == TimerId(1)));
    }
}
