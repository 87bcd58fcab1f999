//! The space layout: a BSP tree whose internal nodes are cut lines (an axis,
//! x or z, and a position) and whose leaves are cells, each owned by one
//! cellapp. Every role and tool reads it: `locate` routes a position to its
//! cell, `rect` gives a cell's rectangle, `cells_near` finds the cells that
//! need a ghost of an entity.
//!
//! Intervals are half-open: a point exactly on a cut line belongs to the
//! high side, and the space's own max edges belong to the cells that touch
//! them, so every point of the space is in exactly one cell.
//!
//! Every change — moving a line, splitting a cell, retiring one — bumps the
//! layout's epoch; apps act on the newest epoch they have.

use crate::ids::AppId;
use serde::{Deserialize, Serialize};

mod check;
mod view;
pub use view::{CellDetail, Density, Flow, SpaceView, ViewError, MAX_DENSITY_BINS, MAX_VIEW_BYTES};

/// A cell's id, unique in its space for the layout's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellId(pub u32);

/// A cut line's id, stable while the line exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LineId(pub u32);

/// The axis a line cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Axis {
    /// A line of constant x.
    X,
    /// A line of constant z.
    Z,
}

/// An axis-aligned rectangle on the x/z plane.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    /// Min x.
    pub x0: f32,
    /// Min z.
    pub z0: f32,
    /// Max x.
    pub x1: f32,
    /// Max z.
    pub z1: f32,
}

impl Rect {
    /// A rectangle from its corners.
    #[inline]
    pub fn new(x0: f32, z0: f32, x1: f32, z1: f32) -> Rect {
        Rect { x0, z0, x1, z1 }
    }

    /// From the `[min x, min z, max x, max z]` form used on the wire.
    pub fn from_bounds(b: [f32; 4]) -> Rect {
        Rect::new(b[0], b[1], b[2], b[3])
    }

    /// Area in square metres.
    pub fn area(&self) -> f64 {
        f64::from(self.x1 - self.x0).max(0.0) * f64::from(self.z1 - self.z0).max(0.0)
    }

    /// This rectangle grown by `d` on every side.
    pub fn grow(&self, d: f32) -> Rect {
        Rect::new(self.x0 - d, self.z0 - d, self.x1 + d, self.z1 + d)
    }

    /// Whether the two closed rectangles overlap with positive area or touch.
    #[inline]
    pub fn meets(&self, o: &Rect) -> bool {
        self.x0 <= o.x1 && o.x0 <= self.x1 && self.z0 <= o.z1 && o.z0 <= self.z1
    }

    /// Whether the closed rectangle holds the point.
    #[inline]
    pub fn holds(&self, x: f32, z: f32) -> bool {
        self.x0 <= x && x <= self.x1 && self.z0 <= z && z <= self.z1
    }

    /// The low and high ends along an axis.
    pub fn span(&self, axis: Axis) -> (f32, f32) {
        match axis {
            Axis::X => (self.x0, self.x1),
            Axis::Z => (self.z0, self.z1),
        }
    }

    fn cut(&self, axis: Axis, pos: f32) -> (Rect, Rect) {
        match axis {
            Axis::X => (
                Rect::new(self.x0, self.z0, pos, self.z1),
                Rect::new(pos, self.z0, self.x1, self.z1),
            ),
            Axis::Z => (
                Rect::new(self.x0, self.z0, self.x1, pos),
                Rect::new(self.x0, pos, self.x1, self.z1),
            ),
        }
    }
}

/// A node of the tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// A cell.
    Leaf {
        /// Its id.
        cell: CellId,
        /// The cellapp that simulates it.
        app: AppId,
    },
    /// A cut line: points below `pos` on `axis` go `low`, the rest `high`.
    Cut {
        /// Its id.
        line: LineId,
        /// The axis.
        axis: Axis,
        /// Where it cuts.
        pos: f32,
        /// Node index of the low side.
        low: u32,
        /// Node index of the high side.
        high: u32,
    },
}

/// Why a layout change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    /// No such cell.
    #[error("no cell {0:?} in the layout")]
    NoCell(CellId),
    /// No such line.
    #[error("no line {0:?} in the layout")]
    NoLine(LineId),
    /// The last cell of a space cannot be retired.
    #[error("the last cell of a space cannot be retired")]
    LastCell,
    /// A position that is not a number.
    #[error("line position {0} is not a finite number")]
    NotFinite(f32),
    /// No cellapps to cut the space for.
    #[error("a layout needs at least one cellapp")]
    NoApps,
    /// A layout from elsewhere that is not a sound tree.
    #[error("the layout is malformed: {0}")]
    Malformed(String),
}

/// One cell as a flat record (for the wire, the viewer and tests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellView {
    /// Its id.
    pub cell: CellId,
    /// Its cellapp.
    pub app: AppId,
    /// Its rectangle.
    pub rect: Rect,
}

/// One line as a flat record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineView {
    /// Its id.
    pub line: LineId,
    /// The axis.
    pub axis: Axis,
    /// Where it cuts.
    pub pos: f32,
    /// The range it may move in: the rectangle it cuts, along its axis,
    /// narrowed by lines of the same axis beneath it.
    pub range: (f32, f32),
    /// The rectangle it cuts.
    pub rect: Rect,
    /// The cells on its low side.
    pub low: Vec<CellId>,
    /// The cells on its high side.
    pub high: Vec<CellId>,
}

/// The layout of one space. Decoding one checks it ([`Layout::validate`]):
/// a layout that came from elsewhere and is unsound never exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Layout {
    /// The space's bounds.
    pub bounds: Rect,
    /// Bumped by every change.
    pub epoch: u64,
    nodes: Vec<Node>,
    root: u32,
    next_cell: u32,
    next_line: u32,
}

/// A layout as decoded, before [`Layout::validate`] has passed it.
#[derive(Deserialize)]
struct Unchecked {
    bounds: Rect,
    epoch: u64,
    nodes: Vec<Node>,
    root: u32,
    next_cell: u32,
    next_line: u32,
}

impl TryFrom<Unchecked> for Layout {
    type Error = LayoutError;

    fn try_from(u: Unchecked) -> Result<Layout, LayoutError> {
        let layout = Layout {
            bounds: u.bounds,
            epoch: u.epoch,
            nodes: u.nodes,
            root: u.root,
            next_cell: u.next_cell,
            next_line: u.next_line,
        };
        layout.validate()?;
        Ok(layout)
    }
}

impl Layout {
    /// One cell covering the whole space.
    pub fn single(bounds: Rect, app: AppId) -> Layout {
        Layout {
            bounds,
            epoch: 1,
            nodes: vec![Node::Leaf {
                cell: CellId(1),
                app,
            }],
            root: 0,
            next_cell: 2,
            next_line: 1,
        }
    }

    /// The space cut into one cell per app, of equal areas, cutting the
    /// longer side each time.
    pub fn equal(bounds: Rect, apps: &[AppId]) -> Result<Layout, LayoutError> {
        let Some(&first) = apps.first() else {
            return Err(LayoutError::NoApps);
        };
        let mut layout = Layout::single(bounds, first);
        layout.nodes.clear();
        layout.next_cell = 1;
        layout.root = layout.build(bounds, apps);
        layout.epoch = 1;
        Ok(layout)
    }

    fn build(&mut self, rect: Rect, apps: &[AppId]) -> u32 {
        if apps.len() <= 1 {
            let cell = CellId(self.next_cell);
            self.next_cell += 1;
            self.nodes.push(Node::Leaf {
                cell,
                app: apps.first().copied().unwrap_or(AppId(0)),
            });
            return (self.nodes.len() - 1) as u32;
        }
        let (lo, hi) = apps.split_at(apps.len() / 2);
        let share = lo.len() as f32 / apps.len() as f32;
        let axis = if rect.x1 - rect.x0 >= rect.z1 - rect.z0 {
            Axis::X
        } else {
            Axis::Z
        };
        let (a, b) = rect.span(axis);
        let pos = a + (b - a) * share;
        let (rl, rh) = rect.cut(axis, pos);
        let line = LineId(self.next_line);
        self.next_line += 1;
        let me = self.nodes.len();
        self.nodes.push(Node::Leaf {
            cell: CellId(0),
            app: AppId(0),
        });
        let low = self.build(rl, lo);
        let high = self.build(rh, hi);
        self.nodes[me] = Node::Cut {
            line,
            axis,
            pos,
            low,
            high,
        };
        me as u32
    }

    /// The cell that holds a point (points outside the space go to the
    /// nearest cell).
    pub fn locate(&self, x: f32, z: f32) -> CellId {
        let mut n = self.root;
        let mut rect = self.bounds;
        loop {
            match &self.nodes[n as usize] {
                Node::Leaf { cell, .. } => return *cell,
                Node::Cut {
                    axis,
                    pos,
                    low,
                    high,
                    ..
                } => {
                    let v = match axis {
                        Axis::X => x,
                        Axis::Z => z,
                    };
                    let (rl, rh) = rect.cut(*axis, *pos);
                    // On the line means high, unless the high side has no
                    // width (the line sits on the far edge).
                    let top = rect.span(*axis).1;
                    if v < *pos || (*pos >= top && v <= top) {
                        n = *low;
                        rect = rl;
                    } else {
                        n = *high;
                        rect = rh;
                    }
                }
            }
        }
    }

    /// The app that simulates the cell holding a point.
    pub fn app_at(&self, x: f32, z: f32) -> AppId {
        let cell = self.locate(x, z);
        self.app_of(cell).unwrap_or(AppId(0))
    }

    /// Every cell with its app and rectangle, in tree order.
    pub fn cells(&self) -> Vec<CellView> {
        let mut out = Vec::new();
        self.walk(self.root, self.bounds, &mut |node, rect| {
            if let Node::Leaf { cell, app } = node {
                out.push(CellView {
                    cell: *cell,
                    app: *app,
                    rect,
                });
            }
        });
        out
    }

    /// Every line with the rectangle it cuts and the range it may move in.
    pub fn lines(&self) -> Vec<LineView> {
        let mut out = Vec::new();
        self.walk(self.root, self.bounds, &mut |node, rect| {
            if let Node::Cut {
                line,
                axis,
                pos,
                low,
                high,
            } = node
            {
                out.push(LineView {
                    line: *line,
                    axis: *axis,
                    pos: *pos,
                    range: self.range(*axis, rect, *low, *high),
                    rect,
                    low: self.leaves(*low),
                    high: self.leaves(*high),
                });
            }
        });
        out
    }

    /// Where a line may go: inside the rectangle it cuts, and not past any
    /// line of the same axis below it in the tree (which would leave a cell
    /// with negative area).
    fn range(&self, axis: Axis, rect: Rect, low: u32, high: u32) -> (f32, f32) {
        let (mut a, mut b) = rect.span(axis);
        self.each_cut(low, &mut |ax, p| {
            if ax == axis {
                a = a.max(p);
            }
        });
        self.each_cut(high, &mut |ax, p| {
            if ax == axis {
                b = b.min(p);
            }
        });
        (a, b.max(a))
    }

    /// The cells of the subtree under node `n`.
    fn leaves(&self, n: u32) -> Vec<CellId> {
        let mut out = Vec::new();
        let mut stack = vec![n];
        while let Some(n) = stack.pop() {
            match &self.nodes[n as usize] {
                Node::Leaf { cell, .. } => out.push(*cell),
                Node::Cut { low, high, .. } => {
                    stack.push(*high);
                    stack.push(*low);
                }
            }
        }
        out
    }

    fn each_cut(&self, n: u32, f: &mut impl FnMut(Axis, f32)) {
        if let Node::Cut {
            axis,
            pos,
            low,
            high,
            ..
        } = &self.nodes[n as usize]
        {
            f(*axis, *pos);
            self.each_cut(*low, f);
            self.each_cut(*high, f);
        }
    }

    fn walk(&self, n: u32, rect: Rect, f: &mut impl FnMut(&Node, Rect)) {
        let node = &self.nodes[n as usize];
        f(node, rect);
        if let Node::Cut {
            axis,
            pos,
            low,
            high,
            ..
        } = node
        {
            let (rl, rh) = rect.cut(*axis, *pos);
            self.walk(*low, rl, f);
            self.walk(*high, rh, f);
        }
    }

    /// A cell's rectangle.
    pub fn rect(&self, cell: CellId) -> Option<Rect> {
        self.cells()
            .into_iter()
            .find(|c| c.cell == cell)
            .map(|c| c.rect)
    }

    /// A cell's app.
    pub fn app_of(&self, cell: CellId) -> Option<AppId> {
        self.nodes.iter().find_map(|n| match n {
            Node::Leaf { cell: c, app } if *c == cell => Some(*app),
            _ => None,
        })
    }

    /// The cells whose rectangles meet `rect` (closed rectangles: touching counts).
    pub fn cells_meeting(&self, rect: &Rect) -> Vec<CellId> {
        let mut out = Vec::new();
        self.collect_meeting(self.root, self.bounds, rect, &mut out);
        out
    }

    fn collect_meeting(&self, n: u32, here: Rect, q: &Rect, out: &mut Vec<CellId>) {
        if !here.meets(q) {
            return;
        }
        match &self.nodes[n as usize] {
            Node::Leaf { cell, .. } => out.push(*cell),
            Node::Cut {
                axis,
                pos,
                low,
                high,
                ..
            } => {
                let (rl, rh) = here.cut(*axis, *pos);
                self.collect_meeting(*low, rl, q, out);
                self.collect_meeting(*high, rh, q, out);
            }
        }
    }

    fn find_line(&self, line: LineId) -> Option<(usize, Rect)> {
        let mut found = None;
        let mut stack = vec![(self.root, self.bounds)];
        while let Some((n, rect)) = stack.pop() {
            if let Node::Cut {
                line: l,
                axis,
                pos,
                low,
                high,
            } = &self.nodes[n as usize]
            {
                if *l == line {
                    found = Some((n as usize, rect));
                    break;
                }
                let (rl, rh) = rect.cut(*axis, *pos);
                stack.push((*low, rl));
                stack.push((*high, rh));
            }
        }
        found
    }

    /// Moves a line, clamped to its range (see [`LineView::range`]).
    /// Returns where it went.
    pub fn move_line(&mut self, line: LineId, to: f32) -> Result<f32, LayoutError> {
        if !to.is_finite() {
            return Err(LayoutError::NotFinite(to));
        }
        let (n, rect) = self.find_line(line).ok_or(LayoutError::NoLine(line))?;
        let Node::Cut {
            axis, low, high, ..
        } = self.nodes[n]
        else {
            return Err(LayoutError::NoLine(line));
        };
        let (a, b) = self.range(axis, rect, low, high);
        let Node::Cut { pos, .. } = &mut self.nodes[n] else {
            return Err(LayoutError::NoLine(line));
        };
        let clamped = to.clamp(a, b);
        if *pos != clamped {
            *pos = clamped;
            self.epoch += 1;
        }
        Ok(clamped)
    }

    fn leaf_index(&self, cell: CellId) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| matches!(n, Node::Leaf { cell: c, .. } if *c == cell))
    }

    /// Splits a cell: a new cell for `app` starts with zero area at the
    /// cell's low edge along `axis` (a point on a line belongs to the high
    /// side, so the new cell holds nothing yet) and grows as the new line
    /// moves up. Returns the new cell and the new line.
    pub fn split(
        &mut self,
        cell: CellId,
        axis: Axis,
        app: AppId,
    ) -> Result<(CellId, LineId), LayoutError> {
        let leaf = self.leaf_index(cell).ok_or(LayoutError::NoCell(cell))?;
        let rect = self.rect(cell).ok_or(LayoutError::NoCell(cell))?;
        let old = self.nodes[leaf].clone();
        let new_cell = CellId(self.next_cell);
        self.next_cell += 1;
        let line = LineId(self.next_line);
        self.next_line += 1;
        self.nodes.push(Node::Leaf {
            cell: new_cell,
            app,
        });
        let low = (self.nodes.len() - 1) as u32;
        self.nodes.push(old);
        let high = (self.nodes.len() - 1) as u32;
        self.nodes[leaf] = Node::Cut {
            line,
            axis,
            pos: rect.span(axis).0,
            low,
            high,
        };
        self.epoch += 1;
        Ok((new_cell, line))
    }

    /// Retires a cell: its area goes to its sibling subtree and its line goes away.
    pub fn retire(&mut self, cell: CellId) -> Result<(), LayoutError> {
        let leaf = self.leaf_index(cell).ok_or(LayoutError::NoCell(cell))? as u32;
        let parent = self
            .nodes
            .iter()
            .position(|n| matches!(n, Node::Cut { low, high, .. } if *low == leaf || *high == leaf))
            .ok_or(LayoutError::LastCell)?;
        let Node::Cut { low, high, .. } = self.nodes[parent] else {
            return Err(LayoutError::LastCell);
        };
        let sibling = if low == leaf { high } else { low };
        // The sibling subtree takes the parent's place (and so its rectangle).
        self.nodes[parent] = self.nodes[sibling as usize].clone();
        self.nodes[sibling as usize] = Node::Leaf {
            cell: CellId(0),
            app: AppId(0),
        };
        self.nodes[leaf as usize] = Node::Leaf {
            cell: CellId(0),
            app: AppId(0),
        };
        self.compact();
        self.epoch += 1;
        Ok(())
    }

    /// Gives a cell to another app.
    pub fn reassign(&mut self, cell: CellId, to: AppId) -> Result<(), LayoutError> {
        let leaf = self.leaf_index(cell).ok_or(LayoutError::NoCell(cell))?;
        if let Node::Leaf { app, .. } = &mut self.nodes[leaf] {
            if *app != to {
                *app = to;
                self.epoch += 1;
            }
        }
        Ok(())
    }

    /// Drops unreachable nodes so indices stay dense.
    fn compact(&mut self) {
        let mut order = Vec::new();
        let mut stack = vec![self.root];
        while let Some(n) = stack.pop() {
            order.push(n);
            if let Node::Cut { low, high, .. } = self.nodes[n as usize] {
                stack.push(high);
                stack.push(low);
            }
        }
        let mut remap = vec![u32::MAX; self.nodes.len()];
        for (new, old) in order.iter().enumerate() {
            remap[*old as usize] = new as u32;
        }
        let mut nodes = Vec::with_capacity(order.len());
        for old in &order {
            let mut node = self.nodes[*old as usize].clone();
            if let Node::Cut { low, high, .. } = &mut node {
                *low = remap[*low as usize];
                *high = remap[*high as usize];
            }
            nodes.push(node);
        }
        self.nodes = nodes;
        self.root = 0;
    }
}

#[cfg(test)]
mod tests;
