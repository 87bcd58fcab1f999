//! `tessera sim --sweep KEY=A,B,C`: the same scenario (or replay) run once
//! for each value of one parameter, every policy each time, in one table
//! (`sweep.json`) and one chart of the imbalance against the parameter
//! (`sweep.svg`). KEY is a scenario's (`cellapps`, `npcs`, `clients`,
//! `duration`, `size`, `seed`, `client_aoi`, `cost.real_us`,
//! `cost.witness_us`, `cost.ghost_us`, `cost.migration_us`) or a policy's
//! tuning parameter, `POLICY.PARAM` (`tessera.dead_share`,
//! `bigworld.dead_band`, a game's own).

use anyhow::{bail, Context};
use serde::Serialize;
use tessera_sim::scenario::{Scenario, Spec};
use tessera_sim::score::Score;

/// The most values one sweep takes.
pub const MAX_VALUES: usize = 32;

/// The scenario keys a sweep may vary.
pub const SCENARIO_KEYS: [&str; 11] = [
    "cellapps",
    "npcs",
    "clients",
    "duration",
    "size",
    "seed",
    "client_aoi",
    "cost.real_us",
    "cost.witness_us",
    "cost.ghost_us",
    "cost.migration_us",
];

/// One parameter and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// What varies.
    pub key: String,
    /// Its values, in the order given.
    pub values: Vec<f64>,
}

impl std::str::FromStr for Sweep {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Sweep> {
        let Some((key, list)) = text.split_once('=') else {
            bail!("--sweep {text:?}: give KEY=A,B,C");
        };
        let key = key.trim().to_string();
        if !SCENARIO_KEYS.contains(&key.as_str()) && !key.contains('.') {
            bail!(
                "--sweep {key:?} is neither a scenario key ({}) nor a policy's parameter (POLICY.PARAM)",
                SCENARIO_KEYS.join(", ")
            );
        }
        let values = list
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("--sweep {key}: {v:?} is not a number"))
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        if !(2..=MAX_VALUES).contains(&values.len()) {
            bail!("--sweep {key}: give 2 to {MAX_VALUES} values");
        }
        Ok(Sweep { key, values })
    }
}

/// `v` as a count within `range`, or why not.
fn count(key: &str, v: f64, range: std::ops::RangeInclusive<usize>) -> anyhow::Result<usize> {
    if v.fract() != 0.0 || v < 0.0 || !range.contains(&(v as usize)) {
        bail!(
            "--sweep {key}: {v} is not a whole number from {} to {}",
            range.start(),
            range.end()
        );
    }
    Ok(v as usize)
}

impl Sweep {
    /// Whether it varies a policy's parameter rather than the scenario.
    pub fn is_policy(&self) -> bool {
        !SCENARIO_KEYS.contains(&self.key.as_str())
    }

    /// `scenario` with the key set to `v` (for a scenario key).
    pub fn apply(&self, mut scenario: Scenario, v: f64) -> anyhow::Result<Scenario> {
        let key = self.key.as_str();
        let real = |lo: f64, hi: f64| -> anyhow::Result<f32> {
            if !(lo..=hi).contains(&v) {
                bail!("--sweep {key}: {v} is not between {lo} and {hi}");
            }
            Ok(v as f32)
        };
        match key {
            "cellapps" => scenario.cellapps = count(key, v, 1..=64)?,
            "npcs" => scenario.npcs = count(key, v, 0..=1_000_000)?,
            "clients" => scenario.clients = count(key, v, 0..=100_000)?,
            "duration" => scenario.duration = count(key, v, 1..=86_400)? as u32,
            "size" => scenario.size = Some(real(200.0, 1_000_000.0)?),
            "client_aoi" => scenario.client_aoi = Some(real(1.0, 10_000.0)?),
            "cost.real_us" => scenario.cost.real_us = real(0.0, 1e6)?,
            "cost.witness_us" => scenario.cost.witness_us = real(0.0, 1e6)?,
            "cost.ghost_us" => scenario.cost.ghost_us = real(0.0, 1e6)?,
            "cost.migration_us" => scenario.cost.migration_us = real(0.0, 1e6)?,
            // The seed is the spec's, not the scenario's.
            _ => {}
        }
        Ok(scenario)
    }

    /// `spec` with a policy parameter or the seed set to `v`; checks that
    /// the policy has the parameter.
    pub fn apply_to_spec(&self, mut spec: Spec, v: f64) -> anyhow::Result<Spec> {
        if self.key == "seed" {
            spec.seed = count("seed", v, 0..=usize::MAX)? as u64;
            return Ok(spec);
        }
        if !self.is_policy() {
            return Ok(spec);
        }
        let (policy, param) = self.key.split_once('.').unwrap_or_default();
        let known = tessera_manager::balance::with(spec.game.policies());
        let Some(mut p) = known.make(policy) else {
            bail!(
                "--sweep {}: no policy {policy:?} (there are {})",
                self.key,
                known.names().join(", ")
            );
        };
        p.set(param, v)
            .map_err(|e| anyhow::anyhow!("--sweep {}: {e}", self.key))?;
        spec.policy_params
            .push((policy.to_string(), param.to_string(), v));
        Ok(spec)
    }
}

/// One run of a sweep, as `sweep.json` lists it.
#[derive(Serialize)]
pub struct Run<'a> {
    /// The parameter's value.
    pub value: f64,
    /// The policy.
    pub policy: &'a str,
    /// Its score (without the per-second series).
    pub score: &'a Score,
}

/// What `sweep.json` holds.
#[derive(Serialize)]
pub struct Table<'a> {
    /// The scenario's name.
    pub scenario: &'a str,
    /// What varied.
    pub key: &'a str,
    /// Its values.
    pub values: &'a [f64],
    /// Every run.
    pub runs: Vec<Run<'a>>,
}
