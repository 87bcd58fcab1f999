//! Named entities: base-only persistent entities that are not players (a
//! guild, an auction house), found by a unique name within their type.
//!
//! Game code calls one by type and name ([`crate::behavior::BaseCtx::call_named`]).
//! The baseapp asks the manager which baseapp holds it ([`AppMsg::Summon`]);
//! the first to ask holds it and loads it from storage (made fresh if it
//! has never been saved), and every other baseapp sends its calls there
//! ([`AppMsg::NamedCall`]). Calls wait, in order, while the entity is being
//! found or loaded. A named entity is saved like any base: when changed,
//! on the save period, and when the baseapp stops.

use std::collections::BTreeMap;
use tessera::defs::TypeId;
use tessera::proto::app::{AppMsg, MAX_ENTITY_NAME};
use tessera::storage::{DbId, StoredEntity};
use tessera::{AppId, EntityId, Value, MANAGER};

use super::{Bases, Output, StoreOp};
use crate::behavior::{BaseBehavior, BaseCalled, BaseCaller, BaseCtx};
use crate::persist;

/// A call of a named entity's base method, waiting for the entity.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Waiting {
    pub method: u16,
    pub args: Vec<Value>,
    pub from: EntityId,
}

/// Where a named entity is, as this baseapp knows it.
#[derive(Debug)]
pub(crate) enum Place {
    /// The manager was asked; calls wait.
    Asking(Vec<Waiting>),
    /// This baseapp holds it and is loading it; calls wait.
    Loading(Vec<Waiting>),
    /// Held here, as this entity.
    Here(EntityId),
    /// Held by another baseapp.
    There(AppId),
}

/// A named entity held here.
#[derive(Debug)]
pub(crate) struct NamedBase {
    pub db_id: DbId,
    pub ty: usize,
    pub props: Vec<Value>,
    pub fence: u64,
    pub dirty: bool,
}

/// The named entities this baseapp knows of and holds.
#[derive(Debug, Default)]
pub(crate) struct Named {
    pub places: BTreeMap<(TypeId, String), Place>,
    pub held: BTreeMap<EntityId, NamedBase>,
}

impl Bases {
    /// Calls a base method of a named entity, wherever it is held.
    pub(crate) fn call_named(&mut self, key: (TypeId, String), w: Waiting) {
        match self.named.places.get_mut(&key) {
            Some(Place::Here(e)) => {
                let e = *e;
                self.run_named(e, w);
            }
            Some(Place::There(app)) => {
                let app = *app;
                self.send_named(app, key, w);
            }
            Some(Place::Asking(q) | Place::Loading(q)) => q.push(w),
            None => {
                let (type_id, name) = key.clone();
                self.named.places.insert(key, Place::Asking(vec![w]));
                self.out
                    .push(Output::App(MANAGER, AppMsg::Summon { type_id, name }));
            }
        }
    }

    fn send_named(&mut self, app: AppId, (type_id, name): (TypeId, String), w: Waiting) {
        self.out.push(Output::App(
            app,
            AppMsg::NamedCall {
                type_id,
                name,
                method: w.method,
                args: w.args,
                from: w.from,
            },
        ));
    }

    /// The manager said where a named entity is held.
    pub(crate) fn summoned(&mut self, key: (TypeId, String), app: AppId) {
        let waiting = match self.named.places.remove(&key) {
            Some(Place::Asking(q) | Place::Loading(q)) => q,
            Some(other) => {
                self.named.places.insert(key, other);
                return;
            }
            None => Vec::new(),
        };
        if app != self.app {
            for w in waiting {
                self.send_named(app, key.clone(), w);
            }
            self.named.places.insert(key, Place::There(app));
            return;
        }
        let Some(ty) = self.defs.types.get(key.0 .0 as usize) else {
            return;
        };
        let fresh = persist::encode(ty, [0.0; 3], 0.0, &ty.defaults());
        self.out.push(Output::Store(StoreOp::LoadNamed {
            type_name: ty.name.clone(),
            name: key.1.clone(),
            fresh,
        }));
        self.named.places.insert(key, Place::Loading(waiting));
    }

    /// Storage gave a named entity this baseapp holds.
    pub(crate) fn named_loaded(
        &mut self,
        type_name: &str,
        name: String,
        row: Result<StoredEntity, String>,
    ) {
        let Some(ty) = self.defs.by_name(type_name) else {
            return;
        };
        let key = (ty.id, name);
        let loaded = row.and_then(|row| {
            persist::decode(ty, row.format_version, &row.data)
                .map(|l| (row, l))
                .map_err(|e| e.to_string())
        });
        let ((row, loaded), entity) = match (loaded, self.ids.take()) {
            (Ok(l), Some(e)) => (l, e),
            (Err(why), _) => {
                tracing::error!(ty = %type_name, name = %key.1, %why, "a named entity could not be loaded; its calls are dropped");
                self.named.places.remove(&key);
                return;
            }
            (_, None) => {
                tracing::error!(ty = %type_name, name = %key.1, "out of entity ids; a named entity's calls are dropped");
                self.named.places.remove(&key);
                return;
            }
        };
        let waiting = match self.named.places.insert(key.clone(), Place::Here(entity)) {
            Some(Place::Loading(q)) => q,
            _ => Vec::new(),
        };
        self.named.held.insert(
            entity,
            NamedBase {
                db_id: row.db_id,
                ty: ty.id.0 as usize,
                props: loaded.props,
                fence: row.fence,
                dirty: false,
            },
        );
        for w in waiting {
            self.run_named(entity, w);
        }
    }

    /// Another baseapp sends a call to a named entity it was told is here.
    pub(crate) fn named_call_arrived(&mut self, key: (TypeId, String), w: Waiting) {
        let named_type = self.defs.get(key.0).is_some_and(|t| !t.has_client);
        if !named_type || key.1.is_empty() || key.1.len() > MAX_ENTITY_NAME {
            tracing::warn!(type_id = ?key.0, "a call of a named entity with no such type or a bad name dropped");
            return;
        }
        match self.named.places.get(&key) {
            Some(Place::There(app)) => {
                // It moved on (this baseapp restarted, or let it go): pass it on.
                let app = *app;
                self.send_named(app, key, w);
            }
            _ => self.call_named(key, w),
        }
    }

    /// Whether a named entity is held here as `e`.
    pub(crate) fn is_named(&self, e: EntityId) -> bool {
        self.named.held.contains_key(&e)
    }

    /// Runs a base method of a named entity held here.
    fn run_named(&mut self, e: EntityId, w: Waiting) {
        let Some(ty) = self.named.held.get(&e).map(|nb| nb.ty) else {
            return;
        };
        let defs = self.defs.clone();
        let Some(m) = defs
            .types
            .get(ty)
            .and_then(|d| d.methods.get(w.method as usize))
        else {
            return;
        };
        if m.side != tessera::Side::Base || m.check_args(&w.args).is_err() {
            tracing::warn!(entity = %e, method = %m.name, "a named entity's call that does not fit the definitions dropped");
            return;
        }
        let called = BaseCalled {
            method: m,
            args: &w.args,
            caller: BaseCaller::Entity(w.from),
        };
        self.named_hook(e, "call", |b, ctx| b.call(ctx, &called));
    }

    /// Runs a hook of a named entity held here; what it changes is saved.
    pub(crate) fn named_hook(
        &mut self,
        e: EntityId,
        hook: &'static str,
        f: impl FnOnce(&dyn BaseBehavior, &mut BaseCtx<'_>),
    ) {
        let Some(nb) = self.named.held.get_mut(&e) else {
            return;
        };
        let defs = self.defs.clone();
        let Some(def) = defs.types.get(nb.ty) else {
            return;
        };
        let mut props = std::mem::take(&mut nb.props);
        let changed = self.hook(e, def, &mut props, hook, None, f);
        if let Some(nb) = self.named.held.get_mut(&e) {
            nb.props = props;
            nb.dirty |= changed.is_some_and(|c| !c.is_empty());
        }
    }

    /// The baseapps that are still there: named entities held by others
    /// that left are found again on the next call.
    pub(crate) fn named_holders_left(&mut self) {
        let peers = &self.peers;
        self.named
            .places
            .retain(|_, p| !matches!(p, Place::There(app) if !peers.contains_key(app)));
    }

    /// The rows of named entities that changed since their last save (all
    /// of them if `all`); they count as saved.
    pub(crate) fn named_rows(&mut self, all: bool) -> Vec<StoredEntity> {
        let defs = self.defs.clone();
        let mut rows = Vec::new();
        for nb in self.named.held.values_mut() {
            if !(nb.dirty || all) {
                continue;
            }
            let Some(ty) = defs.types.get(nb.ty) else {
                continue;
            };
            rows.push(StoredEntity {
                db_id: nb.db_id,
                type_name: ty.name.clone(),
                format_version: persist::FORMAT_VERSION,
                data: persist::encode(ty, [0.0; 3], 0.0, &nb.props),
                fence: nb.fence,
            });
            nb.dirty = false;
        }
        rows
    }
}
