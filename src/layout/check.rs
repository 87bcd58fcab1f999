//! Whether a layout that came from another process is sound: a tree whose
//! every index points inside it, each node reached once, unique cell and
//! line ids below the counters, finite cut positions inside the rectangle
//! they cut. A layout built by [`Layout`]'s own operations always is; one
//! decoded from the wire must be checked before it is walked, since a bad
//! index would panic.

use std::collections::BTreeSet;

use super::{Layout, LayoutError, Node, Rect};

impl Layout {
    /// Checks the tree; the error names the first fault found.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let bad = |why: String| Err(LayoutError::Malformed(why));
        let b = self.bounds;
        if ![b.x0, b.z0, b.x1, b.z1].iter().all(|v| v.is_finite()) || b.x0 >= b.x1 || b.z0 >= b.z1 {
            return bad("its bounds are not an ordered rectangle".into());
        }
        let mut seen = vec![false; self.nodes.len()];
        let mut cells = BTreeSet::new();
        let mut lines = BTreeSet::new();
        let mut stack: Vec<(u32, Rect)> = vec![(self.root, self.bounds)];
        while let Some((n, rect)) = stack.pop() {
            let Some(node) = self.nodes.get(n as usize) else {
                return bad(format!("node {n} is outside the tree"));
            };
            if std::mem::replace(&mut seen[n as usize], true) {
                return bad(format!("node {n} is reached twice"));
            }
            match node {
                Node::Leaf { cell, app } => {
                    if cell.0 == 0 || cell.0 >= self.next_cell || !cells.insert(*cell) {
                        return bad(format!("cell {} is repeated or out of range", cell.0));
                    }
                    if *app == crate::MANAGER {
                        return bad(format!("cell {} belongs to the manager", cell.0));
                    }
                }
                Node::Cut {
                    line,
                    axis,
                    pos,
                    low,
                    high,
                } => {
                    if line.0 == 0 || line.0 >= self.next_line || !lines.insert(*line) {
                        return bad(format!("line {} is repeated or out of range", line.0));
                    }
                    let (a, z) = rect.span(*axis);
                    if !pos.is_finite() || *pos < a || *pos > z {
                        return bad(format!("line {} cuts outside its rectangle", line.0));
                    }
                    let (rl, rh) = rect.cut(*axis, *pos);
                    stack.push((*low, rl));
                    stack.push((*high, rh));
                }
            }
        }
        if seen.iter().any(|s| !s) {
            return bad("some nodes are not in the tree".into());
        }
        Ok(())
    }
}
